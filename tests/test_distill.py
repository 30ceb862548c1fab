"""Distillation: teacher frozen, gradients reach the student and projections, cache = live teacher,
layer maps, student initialisation, and (slow) real-teacher sentence-embedding distillation."""

import json
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from distill import defaults, distillation, layer_maps, student_init
from distill.models import ModelSpec
from distill.tasks import distill as kd
from distill.tasks.common import derived
from distill.trainer import THROUGHPUT_METRICS
from flaxbert import Model, init_params
from flaxbert.configs import BertConfig
from flaxbert.params import flatten
from flaxbert.pretrained import from_pretrained, save_pretrained
from flaxbert.tokenization import load_tokenizer

TEACHER = dict(vocab_size=30522, hidden_size=48, num_hidden_layers=4, num_attention_heads=4,
               intermediate_size=96, max_position_embeddings=64)
STUDENT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=64)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, minilm_dir):
    """A small random BERT classifier with the real vocab, saved like a fine-tuned teacher."""
    path = tmp_path_factory.mktemp("teacher")
    model = Model(BertConfig(**TEACHER), heads=("classifier",), num_labels=2)
    save_pretrained(path, model, init_params(model, 3), load_tokenizer(minilm_dir / "vocab.txt"))
    return path


@pytest.fixture(scope="module")
def transfer_file(tmp_path_factory, movie_sentences):
    path = tmp_path_factory.mktemp("transfer") / "transfer.txt"
    path.write_text("\n".join(movie_sentences[:200]))
    return path


def make_config(teacher_dir, transfer_file, terms, **changes):
    config = ml_collections.ConfigDict()
    config.teacher = ml_collections.ConfigDict(dict(name=str(teacher_dir), dtype="float32",
                                                    scan_layers=False))
    config.model = defaults.model("tiny", overrides=STUDENT)
    config.task = ml_collections.ConfigDict(dict(name="", data_dir="", seed=0))
    config.data = ml_collections.ConfigDict(dict(transfer=str(transfer_file), vader_dir="",
                                                 max_seq_length=32, buckets=(32,), vocab="",
                                                 group_by_length=False))
    config.distill = ml_collections.ConfigDict(dict(
        terms=terms, alpha=1.0, student_init="model", include_train_texts=False, cache="",
        held_out=32))
    config.trainer = defaults.trainer(batch_size=8, num_steps=6, log_every=1, eval_every=3,
                                      checkpoint_every=100)
    config.optimizer = defaults.optimizer(lr=1e-3, warmup_fraction=0.0)
    config.mesh = defaults.mesh()
    return derived(config, **changes)


def metrics_rows(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


ALL_TERMS = [
    dict(feature="logits", loss="soft_ce", weight=1.0, temperature=2.0, t_squared=True),
    dict(feature="hidden", loss="mse", weight=1.0, layers="uniform"),
    dict(feature="attention_logits", loss="mse", weight=0.1, layers="uniform"),
    dict(feature="attention_probs", loss="kl", weight=1.0, layers="last"),
    dict(feature="value_relation", loss="kl", weight=1.0, layers="last"),
    dict(feature="embedding", loss="cosine", weight=1.0, pooling="mean"),
]


def test_teacher_frozen_student_and_projections_trained(tmp_path, teacher_dir, transfer_file):
    config = make_config(teacher_dir, transfer_file, ALL_TERMS)
    result = kd.run(config, tmp_path / "run")
    assert result["steps"] == 6
    rows = [r for r in metrics_rows(tmp_path / "run") if "loss" in r]
    assert all(np.isfinite(r["loss"]) for r in rows) and rows[-1]["grad_norm"] > 0
    assert any("eval_hidden_mse_1" in r for r in metrics_rows(tmp_path / "run"))
    assert from_pretrained(tmp_path / "run" / "export", tokenizer=False).model.config.hidden_size == 32


def test_a_scanned_teacher_distils_like_the_unrolled_one(tmp_path, teacher_dir, transfer_file):
    """teacher.scan_layers changes how the teacher compiles, not what it computes: every term
    (per-layer hidden states and attention maps included) gives the same losses."""
    runs = {}
    for scan in (False, True):
        kd.run(make_config(teacher_dir, transfer_file, ALL_TERMS, **{
            "teacher.scan_layers": scan, "trainer.num_steps": 2, "trainer.eval_every": 2}),
            tmp_path / str(scan))
        runs[scan] = metrics_rows(tmp_path / str(scan))
    assert len(runs[True]) == len(runs[False]) == 3  # two training steps, one evaluation
    compared = set()
    for unrolled, scanned in zip(runs[False], runs[True]):
        for name in unrolled:
            if name not in THROUGHPUT_METRICS and isinstance(unrolled[name], float):
                np.testing.assert_allclose(scanned[name], unrolled[name], rtol=1e-5, err_msg=name)
                compared.add(name)
    assert {"loss", "eval_hidden_mse_1", "eval_attention_probs_kl_3"} <= compared, compared


def test_teacher_bit_identical_after_training(tmp_path, teacher_dir, transfer_file):
    from distill.data.features import encode_examples, train_batches
    from distill.data.tasks import Example
    from distill.trainer import Trainer

    config = make_config(teacher_dir, transfer_file, ALL_TERMS)
    teacher, teacher_params, tokenizer = from_pretrained(teacher_dir, heads=("classifier",))
    task = distillation.DistillTask(config, ModelSpec(config.model, ("classifier",), vocab_size=30522),
                          teacher, teacher_params)
    texts = transfer_file.read_text().splitlines()[:64]
    features = encode_examples([Example(str(i), t, None, None) for i, t in enumerate(texts)],
                               tokenizer, 32)
    features["has_label"] = np.zeros(64, np.float32)
    trainer = Trainer(task, config, tmp_path / "t")
    before = jax.device_get(trainer.frozen)
    start = jax.device_get(trainer.initial_state().params)
    state = trainer.fit(train_batches(features, 8, seed=0, buckets=(32,)))
    after = jax.device_get(trainer.frozen)
    for name, value in flatten(before).items():
        np.testing.assert_array_equal(flatten(after)[name], value, err_msg=name)
    trained = jax.device_get(state.params)
    for name in ("projections/hidden_mse_1/kernel", "projections/embedding_cosine_5/kernel",
                 "student/backbone/layer_1/output/kernel"):
        assert np.any(flatten(trained)[name] != flatten(start)[name]), name


def test_gradients_reach_student_and_projections_not_teacher(teacher_dir, transfer_file, tmp_path):
    config = make_config(teacher_dir, transfer_file, ALL_TERMS)
    teacher, teacher_params, tokenizer = from_pretrained(teacher_dir, heads=("classifier",))
    task = distillation.DistillTask(config, ModelSpec(config.model, ("classifier",), vocab_size=30522),
                          teacher, teacher_params)
    params = jax.tree_util.tree_map(lambda x: x.value if hasattr(x, "value") else x,
                                    task.init_params(jax.random.PRNGKey(0)),
                                    is_leaf=lambda x: hasattr(x, "value"))
    from distill.data.features import encode_examples
    from distill.data.tasks import Example
    texts = transfer_file.read_text().splitlines()[:8]
    batch = encode_examples([Example(str(i), t, None, None) for i, t in enumerate(texts)],
                            tokenizer, 32)
    batch["has_label"] = np.zeros(8, np.float32)
    den = task.denominators(batch)

    def loss_of(student_params, frozen):
        return task.loss(student_params, frozen, batch, None, den)[0]

    grads, teacher_grads = jax.grad(loss_of, argnums=(0, 1))(params, task.frozen)
    for name, g in flatten(grads).items():
        if "pooler" in name or "classifier" in name and "logits" not in name:
            continue
        assert np.any(np.asarray(g) != 0), f"no gradient reaches {name}"
    assert flatten(grads["projections"])
    # the teacher sits under stop_gradient: its gradients are exactly zero
    assert all(not np.any(np.asarray(g)) for g in flatten(teacher_grads).values())


def test_cache_equals_live_teacher(tmp_path, teacher_dir, transfer_file):
    terms = [dict(feature="logits", loss="soft_ce", weight=1.0, temperature=1.0, t_squared=False)]
    live = kd.run(make_config(teacher_dir, transfer_file, terms, **{"distill.held_out": 0}),
                  tmp_path / "live")
    cache = tmp_path / "cache.npz"
    cached = kd.run(make_config(teacher_dir, transfer_file, terms,
                                **{"distill.held_out": 0, "distill.cache": str(cache)}),
                    tmp_path / "cached")
    assert cache.exists() and live["steps"] == cached["steps"] == 6
    a = [r["loss"] for r in metrics_rows(tmp_path / "live") if "loss" in r]
    b = [r["loss"] for r in metrics_rows(tmp_path / "cached") if "loss" in r]
    np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)
    # the same teacher in another folder (a moved or copied run) reads the cache: same losses
    moved = tmp_path / "moved_teacher"
    shutil.copytree(teacher_dir, moved)
    stamp = cache.stat().st_mtime_ns
    kd.run(make_config(moved, transfer_file, terms,
                       **{"distill.held_out": 0, "distill.cache": str(cache)}), tmp_path / "moved")
    assert cache.stat().st_mtime_ns == stamp
    c = [r["loss"] for r in metrics_rows(tmp_path / "moved") if "loss" in r]
    np.testing.assert_allclose(c, b, atol=1e-6, rtol=0)
    # a cache made for other data is refused
    other = tmp_path / "other.txt"
    other.write_text("a different transfer set\nwith other sentences\n" * 20)
    with pytest.raises(ValueError, match="fingerprint mismatch"):
        kd.run(make_config(teacher_dir, other, terms,
                           **{"distill.held_out": 0, "distill.cache": str(cache)}),
               tmp_path / "refused")


def test_layer_maps():
    assert layer_maps.layer_pairs("uniform", 12, 4, "hidden") == [(0, 0), (3, 1), (6, 2), (9, 3), (12, 4)]
    assert layer_maps.layer_pairs("uniform", 6, 2, "attention_probs") == [(3, 1), (6, 2)]
    assert layer_maps.layer_pairs("last", 6, 2, "attention_probs") == [(6, 2)]
    assert layer_maps.layer_pairs([[0, 0], [5, 2]], 6, 2, "hidden") == [(0, 0), (5, 2)]
    with pytest.raises(ValueError, match="not a multiple"):
        layer_maps.layer_pairs("uniform", 6, 4, "hidden")
    with pytest.raises(ValueError, match=r"layer pair \(teacher 7, student 1\).*out of range"):
        layer_maps.layer_pairs([[7, 1]], 6, 2, "hidden")
    with pytest.raises(ValueError, match="expected uniform, last or"):
        layer_maps.layer_pairs("skip", 12, 6, "hidden")


def test_bad_terms_are_refused(teacher_dir, transfer_file, tmp_path):
    bad = [dict(feature="attention_probs", loss="mse", weight=1.0)]
    with pytest.raises(ValueError, match=r"loss 'mse' does not apply to attention_probs"):
        kd.run(make_config(teacher_dir, transfer_file, bad), tmp_path / "a")
    heads = [dict(feature="attention_probs", loss="kl", weight=1.0, layers="last")]
    config = make_config(teacher_dir, transfer_file, heads,
                         **{"model.overrides": dict(STUDENT, num_attention_heads=2)})
    with pytest.raises(ValueError, match="needs equal head counts; teacher has 4, student 2"):
        kd.run(config, tmp_path / "b")


def test_student_truncated_from_teacher(teacher_dir):
    teacher, params, _ = from_pretrained(teacher_dir, tokenizer=False)
    student_cfg = teacher.config.replace(num_hidden_layers=2)
    # extract_distilbert.py's choice: 0, 2, 4, 7, 9, 11 of 12; first and last of 4 for 2
    assert student_init.distilbert_layers(12, 6) == [0, 2, 4, 7, 9, 11]
    assert student_init.distilbert_layers(4, 2) == [0, 3]
    assert student_init.distilbert_layers(12, 4) == [0, 4, 7, 11]
    every = student_init.truncated_from_teacher(params, teacher.config, student_cfg, "every_other")
    np.testing.assert_array_equal(every["backbone"]["layer_0"]["output"]["kernel"],
                                  params["backbone"]["layer_0"]["output"]["kernel"])
    np.testing.assert_array_equal(every["backbone"]["layer_1"]["output"]["kernel"],
                                  params["backbone"]["layer_3"]["output"]["kernel"])
    assert "layer_2" not in every["backbone"]
    first = student_init.truncated_from_teacher(params, teacher.config, student_cfg, "first")
    np.testing.assert_array_equal(first["backbone"]["layer_1"]["output"]["kernel"],
                                  params["backbone"]["layer_1"]["output"]["kernel"])
    with pytest.raises(ValueError, match="needs equal widths"):
        student_init.truncated_from_teacher(params, teacher.config, student_cfg.replace(hidden_size=32,
                                                                               intermediate_size=64), "first")


@pytest.mark.slow
def test_sentence_embedding_distillation_from_real_teacher(tmp_path, minilm_dir, vader_dir):
    """all-MiniLM-L6-v2 → BERT-Tiny on the real VADER transfer text: held-out cosine rises."""
    config = make_config(minilm_dir, "vader", [dict(feature="embedding", loss="cosine",
                                                    weight=1.0, pooling="mean")],
                         **{"data.vader_dir": str(vader_dir), "data.max_seq_length": 32,
                            "data.buckets": (32,),
                            "trainer.batch_size": 32,
                            "trainer.num_steps": 150, "trainer.eval_every": 75,
                            "distill.held_out": 256, "model.overrides": {},
                            "teacher.scan_layers": True})
    kd.run(config, tmp_path / "emb")
    evals = [r["eval_embedding_cosine"] for r in metrics_rows(tmp_path / "emb")
             if "eval_embedding_cosine" in r]
    print("held-out student–teacher cosine by eval:", evals)
    # The target is 0.8 within a few CPU minutes; 300 steps reach about 0.45-0.55
    # (figures in the closing notes). The test holds the part that must hold: the cosine rises.
    assert evals[-1] >= 0.33 and evals[-1] > evals[0] + 0.03


@pytest.mark.slow
def test_hidden_and_attention_distillation_from_real_teacher(tmp_path, minilm_dir, vader_dir):
    """all-MiniLM-L6-v2 → a 2-layer student with the teacher's 12 heads (attention maps need equal
    head counts) and a third of its width (hidden states go through a projection), on the real
    VADER transfer text: both held-out layer losses fall at every evaluation."""
    terms = [dict(feature="hidden", loss="mse", weight=1.0, layers="uniform"),
             dict(feature="attention_probs", loss="kl", weight=1.0, layers="uniform")]
    student = dict(hidden_size=192, num_hidden_layers=2, num_attention_heads=12,
                   intermediate_size=768)
    config = make_config(minilm_dir, "vader", terms,
                         **{"data.vader_dir": str(vader_dir), "data.max_seq_length": 32,
                            "data.buckets": (32,),
                            "trainer.batch_size": 32,
                            "trainer.num_steps": 80, "trainer.eval_every": 20,
                            "distill.held_out": 256, "model.overrides": student,
                            "teacher.scan_layers": True})
    kd.run(config, tmp_path / "layers")
    rows = [r for r in metrics_rows(tmp_path / "layers") if "eval_hidden_mse_0" in r]
    hidden = [r["eval_hidden_mse_0"] for r in rows]
    attention = [r["eval_attention_probs_kl_1"] for r in rows]
    print("held-out hidden MSE by eval:", hidden, "attention KL:", attention)
    assert len(rows) == 4
    assert all(b < a for a, b in zip(hidden, hidden[1:])), hidden
    assert all(b < a for a, b in zip(attention, attention[1:])), attention
    assert hidden[-1] < 0.95 * hidden[0] and attention[-1] < 0.9 * attention[0]


def _progressive_run(tmp_path, teacher_dir, transfer_file, num_steps):
    from distill.data.features import encode_examples, train_batches
    from distill.data.tasks import Example
    from distill.trainer import Trainer

    terms = [dict(feature="hidden", loss="feature_map", weight=1.0, layers=[[2, 1], [4, 2]])]
    config = make_config(teacher_dir, transfer_file, terms,
                         **{"distill.progressive_steps": 3, "trainer.num_steps": num_steps,
                            "trainer.checkpoint_every": 2, "optimizer.schedule": "constant"})
    teacher, teacher_params, tokenizer = from_pretrained(teacher_dir)
    task = distillation.DistillTask(config, ModelSpec(config.model, (), vocab_size=30522), teacher,
                          teacher_params)
    texts = transfer_file.read_text().splitlines()[:64]
    features = encode_examples([Example(str(i), t, None, None) for i, t in enumerate(texts)],
                               tokenizer, 32)
    trainer = Trainer(task, config, tmp_path)
    return trainer, trainer.fit(train_batches(features, 8, seed=0, buckets=(32,)))


def test_progressive_schedule_restarts_per_stage_unless_global(teacher_dir, transfer_file):
    """`distill.progressive_schedule`: per_stage (default) hands the stage length to the optimizer
    (optim.stage_schedule restarts warmup and decay); global runs one schedule over all stages."""
    teacher, teacher_params, _ = from_pretrained(teacher_dir)
    terms = [dict(feature="hidden", loss="feature_map", weight=1.0, layers=[[2, 1], [4, 2]])]

    def task(**changes):
        config = make_config(teacher_dir, transfer_file, terms,
                             **{"distill.progressive_steps": 3, **changes})
        return distillation.DistillTask(config, ModelSpec(config.model, (), vocab_size=30522),
                                        teacher, teacher_params)

    assert task().stage_steps == 3
    assert task(**{"distill.progressive_schedule": "global"}).stage_steps == 0
    with pytest.raises(ValueError, match="progressive_schedule='restart'.*per_stage.*global"):
        task(**{"distill.progressive_schedule": "restart"})


def crash_after_batches(monkeypatch, n):
    """Makes the trainer die when it takes batch n + 1, like a killed job."""
    import distill.trainer

    original, calls = distill.trainer.place_batch, []

    def place(batch, sharding):
        calls.append(1)
        if len(calls) > n:
            raise RuntimeError("killed")
        return original(batch, sharding)

    monkeypatch.setattr(distill.trainer, "place_batch", place)


def test_progressive_transfer_trains_one_layer_per_stage(tmp_path, teacher_dir, transfer_file):
    """Stage 0 = steps 1-3 trains layer 0 only; stage 1 = steps 4-6 trains layer 1 only."""
    trainer, stage0 = _progressive_run(tmp_path / "three", teacher_dir, transfer_file, 3)
    start = flatten(jax.device_get(trainer.initial_state().params))
    after0 = flatten(jax.device_get(stage0.params))
    changed = {name for name in start if np.any(after0[name] != start[name])}
    assert any(n.startswith("student/backbone/layer_0/") for n in changed)
    assert any(n.startswith("projections/") for n in changed)
    assert not any(n.startswith(("student/backbone/layer_1/", "student/backbone/embeddings"))
                   for n in changed), sorted(changed)
    _, stage1 = _progressive_run(tmp_path / "six", teacher_dir, transfer_file, 6)
    after1 = flatten(jax.device_get(stage1.params))
    for name in start:
        if name.startswith(("student/backbone/layer_0/", "student/backbone/embeddings")):
            np.testing.assert_array_equal(after1[name], after0[name], err_msg=name)
    assert any(np.any(after1[n] != start[n]) for n in start
               if n.startswith("student/backbone/layer_1/"))


def test_progressive_transfer_survives_a_resume_mid_stage(tmp_path, teacher_dir, transfer_file,
                                                         monkeypatch):
    _, straight = _progressive_run(tmp_path / "straight", teacher_dir, transfer_file, 6)
    with monkeypatch.context() as patch, pytest.raises(RuntimeError, match="killed"):
        crash_after_batches(patch, 5)  # dies in stage 1; the last checkpoint is step 4
        _progressive_run(tmp_path / "resumed", teacher_dir, transfer_file, 6)
    _, resumed = _progressive_run(tmp_path / "resumed", teacher_dir, transfer_file, 6)
    a, b = flatten(jax.device_get(straight.params)), flatten(jax.device_get(resumed.params))
    for name in a:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)


@pytest.mark.slow
def test_sharded_distillation_matches_single_device(tmp_path, sharded_distill_run):
    from helpers import DISTILL_STEPS, losses, run_worker

    single = run_worker(tmp_path / "single", *DISTILL_STEPS)
    _, sharded = sharded_distill_run
    assert sharded["devices"] == 8 and sharded["kernel_shard_shape"] == [32, 512]
    np.testing.assert_allclose(losses(sharded), losses(single), atol=1e-4, rtol=0)


# --- general distillation on raw text, exactness, the defects of issue 13 -------------------------
MLM_TEACHER = dict(TEACHER, max_position_embeddings=64)


@pytest.fixture(scope="module")
def mlm_teacher_dir(tmp_path_factory, minilm_dir):
    """A small random BERT with MLM and NSP heads and the real vocab, saved like a pre-trained one."""
    path = tmp_path_factory.mktemp("mlm_teacher")
    model = Model(BertConfig(**MLM_TEACHER), heads=("mlm", "nsp"))
    save_pretrained(path, model, init_params(model, 4), load_tokenizer(minilm_dir / "vocab.txt"))
    return path


def raw_text_config(teacher_dir, minilm_dir, vader_dir, terms, **changes):
    """General distillation on the real VADER text (pretrain's data block)."""
    files = ",".join(str(vader_dir / f"{n}_GroundTruth.txt") for n in ("tweets", "nytEditorialSnippets"))
    config = make_config(teacher_dir, "", terms, **{"distill.held_out": 0})
    config.distill.update(dict(cache_top_k=64, cache_epochs=1, cache_rows_per_shard=65536))
    config.data = ml_collections.ConfigDict(dict(
        vocab=str(minilm_dir / "vocab.txt"), train=f"vader:{files}",
        eval=f"vader:{vader_dir / 'movieReviewSnippets_GroundTruth.txt'}",
        sentences_per_document=8, max_seq_length=32, max_predictions_per_seq=5,
        masked_lm_prob=0.15, short_seq_prob=0.1, nsp=False, whole_word_masking=False, pack=False,
        dupe_factor=1, seed=1))
    return derived(config, **changes)


def _unboxed(tree):
    return jax.tree_util.tree_map(lambda x: x.value if hasattr(x, "value") else x, tree,
                                  is_leaf=lambda x: hasattr(x, "value"))


def _masked_batch(tokenizer, sentences, n=8, length=32, predictions=5, seed=0):
    from distill.data.features import encode_examples
    from distill.data.tasks import Example
    batch = encode_examples([Example(str(i), t, None, None) for i, t in enumerate(sentences[:n])],
                            tokenizer, length)
    rng = np.random.default_rng(seed)
    lengths = batch["input_mask"].sum(-1)
    batch["masked_lm_positions"] = np.stack([rng.choice(np.arange(1, l - 1), predictions)
                                             for l in lengths]).astype(np.int32)
    batch["masked_lm_ids"] = np.take_along_axis(batch["input_word_ids"], batch["masked_lm_positions"], 1)
    batch["masked_lm_weights"] = np.ones((n, predictions), np.float32)
    batch["next_sentence_labels"] = rng.integers(0, 2, n).astype(np.int32)
    batch["has_label"] = np.zeros(n, np.float32)
    return batch


def test_student_identical_to_teacher_gives_zero_terms(mlm_teacher_dir, transfer_file):
    """Teacher as its own student: every distillation term is 0 and soft CE = H(teacher)."""

    from distill import losses
    teacher, params, tokenizer = from_pretrained(mlm_teacher_dir)
    terms = [dict(feature="mlm_logits", loss="kl", temperature=2.0, t_squared=True),
             dict(feature="nsp_logits", loss="kl"),
             dict(feature="hidden", loss="mse", layers="uniform"),
             dict(feature="hidden", loss="cosine", layers="uniform"),
             dict(feature="hidden", loss="feature_map", layers="uniform"),
             dict(feature="attention_logits", loss="mse", layers="uniform"),
             dict(feature="attention_probs", loss="kl", layers="uniform"),
             dict(feature="value_relation", loss="kl", layers="uniform"),
             dict(feature="embedding", loss="mse", pooling="mean"),
             dict(feature="mlm_logits", loss="soft_ce", temperature=1.0)]
    config = make_config(mlm_teacher_dir, transfer_file, terms,
                         **{"model.overrides": MLM_TEACHER})
    spec = ModelSpec(config.model, ("mlm", "nsp"), vocab_size=30522)
    spec.model = teacher
    task = distillation.DistillTask(config, spec, teacher, params)
    batch = _masked_batch(tokenizer, transfer_file.read_text().splitlines())
    s_out = task._apply(teacher, params, batch)
    t_out = task.teacher_outputs(task.frozen, batch)
    values = task.term_losses({"student": params}, s_out, t_out, batch)
    for term in task.terms[:-1]:
        assert abs(float(values[term["name"]])) < 1e-5, (term["name"], values[term["name"]])
    p = jax.nn.softmax(t_out["mlm_logits"], -1)
    entropy = -(p * jax.nn.log_softmax(t_out["mlm_logits"], -1)).sum(-1).mean()
    np.testing.assert_allclose(float(values[task.terms[-1]["name"]]), float(entropy), rtol=1e-5)
    assert float(losses.cross_entropy(s_out["mlm_logits"], batch["masked_lm_ids"],
                                      batch["masked_lm_weights"])) > 0


def test_alpha_half_adds_exactly_the_hard_label_gradient(teacher_dir, transfer_file):
    """On labelled rows, grad(α = 0.5) = 0.5·grad(α = 1) + 0.5·grad(hard cross-entropy)."""
    from distill import losses
    teacher, teacher_params, tokenizer = from_pretrained(teacher_dir)
    terms = [dict(feature="logits", loss="soft_ce", weight=1.0, temperature=2.0, t_squared=True),
             dict(feature="hidden", loss="mse", weight=1.0, layers="uniform")]
    batch = _masked_batch(tokenizer, transfer_file.read_text().splitlines())
    batch["label"] = np.array([0, 1, 1, 0, 1, 0, 0, 1], np.int32)
    batch["has_label"] = np.array([1, 1, 1, 1, 0, 0, 1, 1], np.float32)

    def grads(alpha):
        config = make_config(teacher_dir, transfer_file, terms, **{"distill.alpha": alpha})
        task = distillation.DistillTask(config, ModelSpec(config.model, ("classifier",),
                                                          vocab_size=30522), teacher, teacher_params)
        params = _unboxed(task.init_params(jax.random.PRNGKey(0)))
        den = {**task.denominators(batch), "step": 0}
        g = jax.grad(lambda p: task.loss(p, task.frozen, batch, None, den)[0])(params)
        return task, params, g

    task, params, half = grads(0.5)
    _, _, full = grads(1.0)

    def hard(p):
        out = task._apply(task.student.model, p["student"], batch)
        return losses.cross_entropy(out["logits"], batch["label"], batch["has_label"])

    hard_grad = jax.grad(hard)(params)
    for name, g in flatten(half).items():
        expected = 0.5 * flatten(full)[name] + 0.5 * flatten(hard_grad)[name]
        np.testing.assert_allclose(g, expected, atol=1e-6, rtol=1e-5, err_msg=name)
    assert np.any(flatten(hard_grad)["student/classifier/kernel"] != 0)


def test_gradient_accumulation_is_exact_for_token_averaged_terms(teacher_dir, transfer_file):
    """Two micro-batches of unequal token counts sum to the full batch's gradient."""
    from distill.trainer import split_microbatches
    teacher, teacher_params, tokenizer = from_pretrained(teacher_dir)
    terms = [dict(feature="hidden", loss="mse", weight=1.0, layers="uniform"),
             dict(feature="attention_logits", loss="mse", weight=1.0, layers="uniform"),
             dict(feature="attention_probs", loss="kl", weight=1.0, layers="last")]
    config = make_config(teacher_dir, transfer_file, terms)
    task = distillation.DistillTask(config, ModelSpec(config.model, (), vocab_size=30522),
                                    teacher, teacher_params)
    params = _unboxed(task.init_params(jax.random.PRNGKey(0)))
    lines = transfer_file.read_text().splitlines()
    batch = _masked_batch(tokenizer, sorted(lines[:8], key=len))  # rows i::2 differ in length
    den = {**task.denominators(batch), "step": 0}
    loss = lambda p, b: task.loss(p, task.frozen, b, None, den)[0]  # noqa: E731
    whole = jax.grad(loss)(params, batch)
    micro = split_microbatches(batch, 2)
    parts = [jax.grad(loss)(params, jax.tree_util.tree_map(lambda x: x[i], micro)) for i in (0, 1)]
    for name, g in flatten(whole).items():
        np.testing.assert_allclose(flatten(parts[0])[name] + flatten(parts[1])[name], g,
                                   atol=1e-6, rtol=1e-4, err_msg=name)


def test_embeddings_from_teacher_copy_verbatim_at_equal_width(teacher_dir):
    teacher, params, _ = from_pretrained(teacher_dir, tokenizer=False)
    student = Model(teacher.config.replace(num_hidden_layers=2), heads=())
    copied = student_init.embeddings_from_teacher(params, init_params(student, 1))
    for name, value in flatten(params["backbone"]["embeddings"]).items():
        np.testing.assert_array_equal(flatten(copied["backbone"]["embeddings"])[name], value)


def test_terms_the_data_cannot_feed_fail_at_start(tmp_path, teacher_dir, mlm_teacher_dir,
                                                  transfer_file, minilm_dir, vader_dir):
    mlm = [dict(feature="mlm_logits", loss="kl", weight=1.0)]
    with pytest.raises(ValueError, match=r"terms\[0\] \(mlm_logits/kl\) needs masked-LM instances"):
        kd.run(make_config(mlm_teacher_dir, transfer_file, mlm), tmp_path / "a")
    nsp = [dict(feature="nsp_logits", loss="hard", weight=1.0)]
    with pytest.raises(ValueError, match=r"nsp_logits/hard\) needs sentence pairs.*data.nsp=True"):
        kd.run(raw_text_config(mlm_teacher_dir, minilm_dir, vader_dir, nsp), tmp_path / "b")
    with pytest.raises(ValueError, match=r"needs the teacher's mlm head, and .* has none"):
        kd.run(raw_text_config(teacher_dir, minilm_dir, vader_dir, mlm), tmp_path / "c")
    logits = [dict(feature="logits", loss="soft_ce", weight=1.0)]
    with pytest.raises(ValueError, match=r"alpha=0.5 < 1 weighs a hard-label term, but no row"):
        kd.run(make_config(teacher_dir, transfer_file, logits, **{"distill.alpha": 0.5}),
               tmp_path / "d")


@pytest.mark.slow
def test_general_distillation_on_raw_text_lowers_held_out_mlm_kl(tmp_path, mlm_teacher_dir,
                                                                 minilm_dir, vader_dir):
    """`distill distill` on real text, MLM-logit KL·T² + hidden cosine with a live teacher:
    held-out MLM-logit KL falls; the export loads with its MLM head. (With DistilBERT's hard
    MLM term at weight 2 and this random teacher, the KL rises: the labels pull the student
    away from the teacher — measured 0.0161 → 0.0184 over 40 steps.)"""
    terms = [dict(feature="mlm_logits", loss="kl", weight=5.0, temperature=2.0, t_squared=True),
             dict(feature="hidden", loss="cosine", weight=1.0, layers="last")]
    # held out: the first 480 movie snippets (the whole 10k file costs a minute per evaluation)
    held_out = tmp_path / "movie_snippets.txt"
    lines = (vader_dir / "movieReviewSnippets_GroundTruth.txt").read_text(errors="replace").splitlines()
    held_out.write_text("\n".join(lines[:480]) + "\n")
    config = raw_text_config(mlm_teacher_dir, minilm_dir, vader_dir, terms,
                             **{"trainer.num_steps": 40, "trainer.eval_every": 20,
                                "data.eval": f"vader:{held_out}",
                                "model.overrides": dict(STUDENT, hidden_size=48,
                                                        intermediate_size=96)})
    result = kd.run(config, tmp_path / "general")
    rows = [r for r in metrics_rows(tmp_path / "general") if "eval_mlm_logits_kl_0" in r]
    kl = [r["eval_mlm_logits_kl_0"] for r in rows]
    print("held-out MLM-logit KL:", kl, "result:", result)
    assert len(kl) == 2 and kl[-1] < kl[0]
    assert "eval_teacher_mlm_accuracy" in result
    assert from_pretrained(tmp_path / "general" / "export", tokenizer=False).model.heads == ("mlm",)


# --- the top-k teacher cache of general distillation (distill.teacher_cache) --------------------
CACHED_TERMS = [dict(feature="mlm_logits", loss="kl", weight=5.0, temperature=2.0, t_squared=True),
                dict(feature="mlm_logits", loss="hard", weight=2.0)]


@pytest.fixture(scope="module")
def small_raw_text(tmp_path_factory, vader_dir):
    """A few hundred real VADER lines for training and for the held-out set (vader: specs)."""
    root = tmp_path_factory.mktemp("raw_text")
    for name, source, n in (("train", "tweets", 320), ("eval", "movieReviewSnippets", 96)):
        lines = (vader_dir / f"{source}_GroundTruth.txt").read_text(errors="replace").splitlines()
        (root / f"{name}_GroundTruth.txt").write_text("\n".join(lines[:n]) + "\n")
    return root


def cached_config(teacher_dir, minilm_dir, vader_dir, raw_text, cache, **changes):
    return raw_text_config(teacher_dir, minilm_dir, vader_dir, CACHED_TERMS, **{
        "data.train": f"vader:{raw_text / 'train_GroundTruth.txt'}",
        "data.eval": f"vader:{raw_text / 'eval_GroundTruth.txt'}",
        "distill.cache": str(cache), "distill.cache_top_k": 8, "distill.cache_epochs": 2,
        "distill.cache_rows_per_shard": 64, "trainer.num_steps": 6, "trainer.eval_every": 3,
        "trainer.checkpoint_every": 2, "model.overrides": STUDENT, **changes})


def _cache_rows(cache, split):
    from distill.teacher_cache import TopKSource
    manifest = json.loads((cache / split / "manifest-p000.json").read_text())
    source = TopKSource(cache / split, manifest["shards"])
    return {k: np.stack([source[i][k] for i in range(len(source))]) for k in source[0]}


def test_top_k_cache_holds_the_teachers_top_k_at_the_masked_positions(
        tmp_path, mlm_teacher_dir, minilm_dir, vader_dir, small_raw_text):
    """Every cached row is a masked instance of `distill pretrain`'s recipe (static masks: one
    set per cached pass) with the teacher's k largest MLM logits and their ids there."""
    from distill.tasks import pretrain

    config = cached_config(mlm_teacher_dir, minilm_dir, vader_dir, small_raw_text, tmp_path / "cache")
    result = kd.run(config, tmp_path / "run")
    assert result["steps"] == 6 and "eval_mlm_accuracy" in result
    model, params, tokenizer = from_pretrained(mlm_teacher_dir)
    for split, batches in (("train", pretrain.training_passes(config, tokenizer, 2)),
                           ("eval", pretrain.held_out_dataset(config, tokenizer))):
        rows = _cache_rows(tmp_path / "cache", split)
        data = {k: np.concatenate([b[k] for b in batches]) for k in (
            "input_word_ids", "masked_lm_positions", "masked_lm_ids", "masked_lm_weights")}
        if split == "train":  # two passes: the same instances under different masks
            text = data["input_word_ids"].copy()
            for row, (pos, ids, w) in enumerate(zip(data["masked_lm_positions"],
                                                    data["masked_lm_ids"], data["masked_lm_weights"])):
                text[row, pos[w > 0]] = ids[w > 0]
            half = len(text) // 2
            np.testing.assert_array_equal(text[:half], text[half:])
            assert not np.array_equal(data["masked_lm_positions"][:half],
                                      data["masked_lm_positions"][half:])
        for key, value in data.items():
            np.testing.assert_array_equal(rows[key], value, err_msg=f"{split} {key}")
        logits = np.asarray(model.apply({"params": params}, rows["input_word_ids"][:16],
                                        rows["input_mask"][:16], rows["input_type_ids"][:16],
                                        rows["masked_lm_positions"][:16])["mlm_logits"])
        order = np.argsort(-logits, -1)[..., :8]
        np.testing.assert_array_equal(rows["teacher_topk_ids"][:16], order)
        np.testing.assert_allclose(rows["teacher_topk_logits"][:16],
                                   np.take_along_axis(logits, order, -1), atol=1e-5)
    assert len(list((tmp_path / "cache" / "train").glob("p000-*"))) > 1  # sharded


def test_cached_run_never_calls_the_teacher_again_and_resumes_exactly(
        tmp_path, mlm_teacher_dir, minilm_dir, vader_dir, small_raw_text, monkeypatch):
    """With the cache written, runs read it alone (the teacher step is never built), a run
    killed at step 5 resumes from step 4's checkpoint (data position included) and ends with
    the straight run's weights."""
    from distill import teacher_cache

    cache = tmp_path / "cache"
    config = cached_config(mlm_teacher_dir, minilm_dir, vader_dir, small_raw_text, cache)
    kd.run(config, tmp_path / "first")

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher ran although the cache is complete")

    monkeypatch.setattr(teacher_cache, "teacher_top_k_step", no_teacher)
    kd.run(config, tmp_path / "straight")
    with monkeypatch.context() as patch, pytest.raises(RuntimeError, match="killed"):
        crash_after_batches(patch, 5)
        kd.run(config, tmp_path / "resumed")
    kd.run(config, tmp_path / "resumed")
    losses = {name: [r["loss"] for r in metrics_rows(tmp_path / name) if "loss" in r]
              for name in ("first", "straight", "resumed")}
    assert losses["first"] == losses["straight"] == losses["resumed"][-6:]
    a = from_pretrained(tmp_path / "straight" / "export", tokenizer=False).params
    b = from_pretrained(tmp_path / "resumed" / "export", tokenizer=False).params
    for name, value in flatten(a).items():
        np.testing.assert_array_equal(flatten(b)[name], value, err_msg=name)


def test_an_interrupted_cache_write_keeps_its_whole_shards(
        tmp_path, mlm_teacher_dir, minilm_dir, vader_dir, small_raw_text, monkeypatch):
    """Killed after some teacher batches, the rerun keeps the whole shards (64 rows = 8
    batches each), runs the teacher only on the rest, and the cache equals one written in one
    go; a cache of another teacher is refused by name."""
    from distill import teacher_cache

    original, calls = teacher_cache.teacher_top_k_step, []

    def counting(*args, fail_after=None, **kwargs):
        step = original(*args, **kwargs)

        def run(batch):
            calls.append(1)
            if fail_after is not None and len(calls) > fail_after:
                raise RuntimeError("killed")
            return step(batch)
        return run

    whole = tmp_path / "whole"
    config = cached_config(mlm_teacher_dir, minilm_dir, vader_dir, small_raw_text, whole,
                           **{"trainer.num_steps": 1})
    monkeypatch.setattr(teacher_cache, "teacher_top_k_step", counting)
    kd.run(config, tmp_path / "a")
    total, calls[:] = len(calls), []
    config = derived(config, **{"distill.cache": str(tmp_path / "killed")})
    monkeypatch.setattr(teacher_cache, "teacher_top_k_step",
                        lambda *a, **k: counting(*a, fail_after=20, **k))
    with pytest.raises(RuntimeError, match="killed"):
        kd.run(config, tmp_path / "b")
    monkeypatch.setattr(teacher_cache, "teacher_top_k_step", counting)
    calls[:] = []
    kd.run(config, tmp_path / "b")
    assert len(calls) == total - 16  # shards 0 and 1 (batches 1-16) were whole
    for split in ("train", "eval"):
        a, b = _cache_rows(whole, split), _cache_rows(tmp_path / "killed", split)
        for key in a:
            np.testing.assert_array_equal(b[key], a[key], err_msg=f"{split} {key}")

    other_teacher = tmp_path / "other_teacher"
    model = Model(BertConfig(**MLM_TEACHER), heads=("mlm", "nsp"))
    save_pretrained(other_teacher, model, init_params(model, 5), load_tokenizer(minilm_dir / "vocab.txt"))
    with pytest.raises(ValueError, match=f"teacher cache {whole}.*fingerprint mismatch"):
        kd.run(derived(config, **{"distill.cache": str(whole), "teacher.name": str(other_teacher)}),
               tmp_path / "c")
    with pytest.raises(ValueError, match=r"terms\[2\] \(hidden/cosine\) needs the live teacher"):
        kd.run(derived(config, **{"distill.terms": [*CACHED_TERMS, dict(
            feature="hidden", loss="cosine", weight=1.0, layers="last")]}), tmp_path / "d")


def test_top_k_fingerprint_follows_the_corpus_bytes_not_its_paths(tmp_path, monkeypatch):
    from distill import teacher_cache

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("the first text\n")
    (corpus / "b.txt").write_text("the second text\n")
    params, identity = {"w": np.ones(3, np.float32)}, "teacher"

    def print_(folder, max_seq_length=64):
        return teacher_cache.top_k_fingerprint(
            dict(train=str(folder), vocab=str(folder / "a.txt"), max_seq_length=max_seq_length),
            params, identity, top_k=8)

    moved = shutil.copytree(corpus, tmp_path / "elsewhere" / "corpus")
    assert print_(moved) == print_(corpus)
    (moved / "b.txt").write_text("the second text!\n")
    assert print_(moved) != print_(corpus)
    assert print_(corpus, max_seq_length=128) != print_(corpus)
    assert print_(tmp_path / "empty") != print_(corpus)
    # no eval source: nothing else is read (an empty path once meant the working directory)
    monkeypatch.chdir(tmp_path)
    before = print_(corpus)
    (tmp_path / "unrelated.txt").write_text("not a source")
    assert print_(corpus) == before


@pytest.mark.slow
def test_progressive_transfer_on_real_text_lowers_each_stages_layer_loss(
        tmp_path, minilm_dir, ib_bert_teacher_dir, small_raw_text):
    """distill/experiments/distill.py:mobilebert_pkt (narrow IB-BERT teacher, random here; narrow
    MobileBERT student, all but the layers copied from the teacher, LAMB with a warmup
    restarted every stage, lower layers frozen) on real VADER text, 4 stages × 8 steps: each
    stage lowers the held-out objective of the layer it trains (its terms' weighted sum:
    feature map, mean, variance, attention), and at the end every layer's is below its value
    at the start."""
    base = recipe("mobilebert_pkt")
    changes = raw_text_changes(ib_bert_teacher_dir, minilm_dir, small_raw_text, **{
        "distill.progressive_steps": 8, "trainer.num_steps": 32, "trainer.eval_every": 8,
        # a random teacher shares the embeddings that dominate both residual streams, so the
        # start is near the optimum and the recipe's stage peak (4.5e-3) overshoots it in 8 steps
        # (layer 1: 0.165 → 0.99); the recipe's lr on a pre-trained teacher: experiments/README.md
        "trainer.batch_size": 16, "optimizer.lr": 1e-3})
    start = kd.run(derived(base, **{**changes, "trainer.num_steps": 0}), tmp_path / "start")["final"]
    kd.run(derived(base, **changes), tmp_path / "pkt")
    rows = [r for r in metrics_rows(tmp_path / "pkt") if any(k.startswith("eval_") for k in r)]
    assert [r["step"] for r in rows] == [8, 16, 24, 32]
    names = [f"{t['feature']}_{t['loss']}_{i}" for i, t in enumerate(base.distill.terms)]

    def objective(row, layer, prefix="eval_"):
        return sum(float(t["weight"]) * row[f"{prefix}{name}_layer{layer}"]
                   for name, t in zip(names, base.distill.terms))

    before = {layer: objective(start, layer, "") for layer in range(1, 5)}
    for stage, row in enumerate(rows, 1):
        previous = before[stage] if stage == 1 else objective(rows[stage - 2], stage)
        print(f"stage {stage}: layer {stage} held-out objective {previous:.4f} → "
              f"{objective(row, stage):.4f}")
        assert objective(row, stage) < previous
    for layer in range(1, 5):
        assert objective(rows[-1], layer) < before[layer]


# --- the recipes of distill/experiments/distill.py as the released code runs them (issue 29) ----
def recipe(name, **changes):
    from distill.experiments import distill as recipes
    return derived(recipes.get_config(name), **changes)


def raw_text_changes(teacher_dir, minilm_dir, raw_text, **changes):
    """A general-distillation recipe on `small_raw_text`'s real lines, small and for 2 steps."""
    return {"teacher.name": str(teacher_dir), "data.vocab": str(minilm_dir / "vocab.txt"),
            "data.train": f"vader:{raw_text / 'train_GroundTruth.txt'}",
            "data.eval": f"vader:{raw_text / 'eval_GroundTruth.txt'}",
            "data.max_seq_length": 32, "data.max_predictions_per_seq": 5,
            "trainer.batch_size": 8, "trainer.num_steps": 2, "trainer.eval_every": 2,
            "trainer.checkpoint_every": 100, **changes}


def student_of(config):
    """The student (initial parameters set) and teacher `distill distill` builds for a config."""
    teacher, params, tokenizer = kd.load_teacher(config)
    return kd.student_and_teacher(config, teacher, params, tokenizer)


@pytest.fixture(scope="module")
def ib_bert_teacher_dir(tmp_path_factory, minilm_dir):
    """A random narrow IB-BERT (pretrain.py's NARROW_IB_BERT) with MLM and NSP heads."""
    from distill.experiments.pretrain import NARROW_IB_BERT
    from flaxbert.mobilebert import MobileBertConfig

    path = tmp_path_factory.mktemp("ib_bert")
    model = Model(MobileBertConfig(**{**NARROW_IB_BERT, "vocab_size": 30522}), heads=("mlm", "nsp"))
    save_pretrained(path, model, init_params(model, 6), load_tokenizer(minilm_dir / "vocab.txt"))
    return path


DISTILBERT_STUDENT = dict(MLM_TEACHER, num_hidden_layers=2)  # the teacher's width, half its depth


def test_mlm_baseline_starts_from_distilberts_initial_student(
        tmp_path, mlm_teacher_dir, minilm_dir, small_raw_text):
    """The baseline's claim, "the same student and init": array for array, the teacher's MLM
    head included (a hard MLM term reads no teacher head, which once dropped it); it trains."""
    changes = raw_text_changes(mlm_teacher_dir, minilm_dir, small_raw_text,
                               **{"model.overrides": DISTILBERT_STUDENT})
    distilbert = flatten(student_of(recipe("distilbert", **changes))[0].initial_params)
    baseline = flatten(student_of(recipe("mlm_baseline", **changes))[0].initial_params)
    teacher = flatten(from_pretrained(mlm_teacher_dir, tokenizer=False).params)
    assert baseline.keys() == distilbert.keys()
    for name, value in distilbert.items():
        np.testing.assert_array_equal(baseline[name], value, err_msg=name)
    heads = [name for name in distilbert if name.startswith("mlm/")]
    assert heads
    for name in heads:
        np.testing.assert_array_equal(distilbert[name], teacher[name], err_msg=name)
    result = kd.run(recipe("mlm_baseline", **changes), tmp_path / "baseline")
    assert result["steps"] == 2 and 0 <= result["eval_mlm_accuracy"] <= 1


def test_distilbert_distils_every_real_token(mlm_teacher_dir, transfer_file):
    """distilbert's KD term reads every real token's MLM distribution (distiller.py's
    restrict_ce_to_mask=False): logits differing at one unmasked real token change it, at a
    padded one they do not; `tokens="masked"` reads the masked positions alone."""
    config = recipe("distilbert", **{"teacher.name": str(mlm_teacher_dir),
                                     "model.overrides": DISTILBERT_STUDENT})
    teacher, params, tokenizer = from_pretrained(mlm_teacher_dir)
    task = distillation.DistillTask(config, ModelSpec(config.model, ("mlm",), vocab_size=30522),
                                    teacher, params)
    batch = _masked_batch(tokenizer, transfer_file.read_text().splitlines())
    t_out = task.teacher_outputs(task.frozen, batch)
    np.testing.assert_allclose(  # the masked positions' logits are the all-token ones gathered
        np.take_along_axis(t_out["token_mlm_logits"], batch["masked_lm_positions"][..., None], 1),
        t_out["mlm_logits"], atol=1e-5)
    kd_term = next(t for t in task.terms if t["loss"] == "kl")
    assert kd_term["tokens"] == "all"

    def kd_value(row, position):
        changed = t_out["token_mlm_logits"].at[row, position].add(
            jax.random.normal(jax.random.PRNGKey(0), (30522,)))
        s_out = {**t_out, "token_mlm_logits": changed}
        return float(task.term_losses({}, s_out, t_out, batch)[kd_term["name"]])

    lengths = batch["input_mask"].sum(-1)
    row = int(np.argmin(lengths))
    unmasked = next(p for p in range(1, lengths[row]) if p not in batch["masked_lm_positions"][row])
    assert kd_value(row, unmasked) > 1e-3
    assert kd_value(row, int(lengths[row])) < 1e-6  # padding
    masked = derived(config, **{"distill.terms": [dict(kd_term, tokens="masked")]})
    task = distillation.DistillTask(masked, ModelSpec(masked.model, ("mlm",), vocab_size=30522),
                                    teacher, params)
    assert kd_value(row, unmasked) < 1e-6
    with pytest.raises(ValueError, match=r"tokens='all'.*soft losses only"):
        distillation.DistillTask(derived(config, **{"distill.terms": [dict(
            feature="mlm_logits", loss="hard", tokens="all")]}),
            ModelSpec(masked.model, ("mlm",), vocab_size=30522), teacher, params)


def test_released_pkt_option_moves_no_variable_outside_the_layers(teacher_dir, transfer_file):
    """progressive_lower_lr = 0.1 (the released code): the stage's layer at 1, the layers below at
    0.1, above at 0, and everything outside the layers at 0 (lamb_optimizer.py); projections 1."""
    terms = [dict(feature="hidden", loss="feature_map", weight=1.0, layers=[[1, 1], [2, 2]]),
             dict(feature="hidden", loss="mse", weight=1.0, layers=[[1, 1], [2, 2]])]
    config = make_config(teacher_dir, transfer_file, terms, **{
        "distill.progressive_steps": 3, "distill.progressive_lower_lr": 0.1})
    teacher, teacher_params, _ = from_pretrained(teacher_dir)
    task = distillation.DistillTask(config, ModelSpec(config.model, ("mlm",), vocab_size=30522),
                                    teacher, teacher_params)
    params = _unboxed(task.init_params(jax.random.PRNGKey(0)))
    mask = flatten(jax.device_get(task.update_mask(4, params)))  # stage 1
    for name, scale in mask.items():
        expected = (1.0 if name.startswith(("projections/", "student/backbone/layer_1/"))
                    else 0.1 if name.startswith("student/backbone/layer_0/") else 0.0)
        assert np.all(scale == np.float32(expected)), (name, scale.ravel()[0])
    assert any(n.startswith("student/mlm/") for n in mask)


@pytest.mark.slow
def test_pkt_carries_the_teachers_embeddings_and_heads_into_pre_training_distillation(
        tmp_path, ib_bert_teacher_dir, minilm_dir, small_raw_text):
    """mobilebert_pkt (released-code option, lower layers at 0.1) copies every variable outside
    the encoder layers from the IB-BERT teacher, keeps them through PKT and exports them;
    mobilebert_pd then starts with the teacher's embeddings, pooler, MLM and NSP heads, array for
    array, and trains. The mean/variance terms run in every stage."""
    pkt = recipe("mobilebert_pkt", **raw_text_changes(
        ib_bert_teacher_dir, minilm_dir, small_raw_text, **{
            "distill.progressive_steps": 2, "distill.progressive_lower_lr": 0.1,
            "trainer.num_steps": 8, "trainer.eval_every": 8}))
    result = kd.run(pkt, tmp_path / "pkt")
    assert {"hidden_mean_mse_1", "hidden_variance_l1_2"} <= result["final"].keys()
    teacher = flatten(from_pretrained(ib_bert_teacher_dir, tokenizer=False).params)
    exported = flatten(from_pretrained(tmp_path / "pkt" / "export", tokenizer=False).params)
    outside = [name for name in exported if not name.startswith("backbone/layer_")]
    assert {name.split("/")[0] for name in outside} == {"backbone", "mlm", "nsp"}
    assert any(name.startswith("backbone/embeddings/") for name in outside)
    for name in outside:
        np.testing.assert_array_equal(exported[name], teacher[name], err_msg=name)
    pd = recipe("mobilebert_pd", **raw_text_changes(
        ib_bert_teacher_dir, minilm_dir, small_raw_text,
        **{"model.name": str(tmp_path / "pkt" / "export")}))
    student = student_of(pd)[0]
    assert student.heads == ("mlm", "nsp")
    initial = flatten(student.initial_params)
    for name in outside:
        np.testing.assert_array_equal(initial[name], teacher[name], err_msg=name)
    result = kd.run(pd, tmp_path / "pd")
    assert result["steps"] == 2 and np.isfinite(result["final"]["mlm_loss"])


@pytest.mark.slow
def test_tinybert_phases_chain_and_carry_the_projection(
        tmp_path, mlm_teacher_dir, teacher_dir, minilm_dir, small_raw_text, transfer_file):
    """tinybert_general → tinybert_task (intermediate layers, from the general export and its
    projection `fit_dense`) → tinybert_task_pred (prediction layer, from the task export); the
    layered terms sum their layer pairs, as general_distill.py sums them."""
    general = recipe("tinybert_general", **raw_text_changes(
        mlm_teacher_dir, minilm_dir, small_raw_text, **{"model.overrides": STUDENT}))
    kd.run(general, tmp_path / "general")
    row = next(r for r in metrics_rows(tmp_path / "general") if "eval_hidden_mse_0" in r)
    np.testing.assert_allclose(row["eval_hidden_mse_0"],
                               sum(row[f"eval_hidden_mse_0_layer{i}"] for i in range(3)), rtol=1e-5)
    with np.load(tmp_path / "general" / "export" / student_init.PROJECTIONS_FILE) as saved:
        saved = dict(saved)
    assert set(saved) == {"hidden_mse_0/kernel", "hidden_mse_0/bias"}
    task_changes = {"teacher.name": str(teacher_dir), "task.name": "",
                    "data.transfer": str(transfer_file), "data.max_seq_length": 32,
                    "data.buckets": (32,), "distill.include_train_texts": False,
                    "distill.held_out": 32, "trainer.batch_size": 8, "trainer.num_steps": 2,
                    "trainer.eval_every": 2, "trainer.checkpoint_every": 100}
    task = recipe("tinybert_task", **{**task_changes,
                                      "model.name": str(tmp_path / "general" / "export")})
    student, teacher, teacher_params = student_of(task)
    initial = flatten(distillation.DistillTask(task, student, teacher, teacher_params)
                      .initial_params["projections"])
    assert initial.keys() == saved.keys()
    for name, value in saved.items():
        np.testing.assert_array_equal(initial[name], value, err_msg=name)
    assert kd.run(task, tmp_path / "task")["steps"] == 2
    pred = recipe("tinybert_task_pred", **{**task_changes,
                                           "model.name": str(tmp_path / "task" / "export")})
    assert [t["feature"] for t in pred.distill.terms] == ["logits"]
    assert kd.run(pred, tmp_path / "pred")["steps"] == 2
