"""`make bench`: flaxbert's train steps against transformers (PyTorch) on this machine, same run.

    python benchmarks/run.py --out docs/benchmarks.md [--quick] [--models medium,base]
        [--sections mlm,distill,cache,packing,pipeline,electra,shapes,breakdown]
    benchmarks/gpu.sh      # on one GPU: the quick run (< 5 min), written as the GPU section

Runs wherever it is started: on CPU in float32; on a GPU (or TPU) in bfloat16 (PyTorch under
CUDA bf16 autocast) with GPU-sized batches, and the tables then go to the "GPU" section of --out,
leaving the CPU tables there as they are (and a CPU run keeps an existing GPU section).

Measures, each pair back to back in one process:
  * the machine's matmul peak (jnp.dot and torch.matmul, f32 on CPU, bf16 on accelerators);
  * the MLM pre-training step (BERT tiny/mini/small/medium/base, seq 128): flaxbert's jitted
    Trainer step (AdamW) vs `BertForMaskedLM` + `torch.optim.AdamW`, same sizes, batch and masks;
  * a distillation step (BERT-Base teacher → tiny / small student; MLM soft cross-entropy +
    uniform hidden-state MSE through a projection): ours vs the same losses written in PyTorch;
  * general distillation BERT-Base → BERT-Tiny with the live teacher vs the top-k teacher cache,
    and (given a pre-trained MLM teacher, --mlm-teacher) top-k KL against the full KL;
  * sequence packing on real text (the demo's pre-training data) against padded batches;
  * the input pipeline's batches/s against what the fastest step consumes;
  * ELECTRA's step (BERT-Tiny discriminator, ¼-width generator): the generator's samples drawn
    by inverting the softmax's cumulative sum (ours) against `jax.random.categorical`'s Gumbel
    noise over the vocabulary;
  * for the MFU shortfall: the model's own matmul shapes timed in isolation (what the hardware
    gives at those shapes bounds what a step can reach), and an ablation timing of our MLM step
    (encoder forward + backward, MLM head + loss, AdamW and the rest).

Useful FLOPs use one formula for both frameworks (6·N per token for the trained matmul weights,
2·N for a frozen teacher, attention's T² terms, the MLM head at the masked positions only);
HF's MLM head also projects every unmasked position, work we do not count as useful.
Writes the tables, machine and versions to --out and prints them.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distill import defaults, host_memory  # noqa: E402

host_memory.reuse_freed_memory()  # as the `distill` programs do; before JAX starts (below)
from distill.distillation import DistillTask  # noqa: E402
from distill.models import ModelSpec  # noqa: E402
from distill.tasks.pretrain import MaskedLMTask  # noqa: E402
from distill.trainer import Trainer, place_batch  # noqa: E402
from flaxbert import Model, get_config  # noqa: E402
from flaxbert.params import abstract_params  # noqa: E402

SEQ = 128
PREDICTIONS = 20  # 15% of 128, BERT's max_predictions_per_seq
ACCELERATOR = jax.default_backend() != "cpu"
COMPUTE_DTYPE = "bfloat16" if ACCELERATOR else "float32"
BATCH = {"tiny": 32, "mini": 32, "small": 16, "medium": 8, "base": 8}
if ACCELERATOR:
    BATCH = {"tiny": 256, "mini": 256, "small": 128, "medium": 64, "base": 64}
GOALS = "MLM step ≥ 4× PyTorch tokens/s (tiny), ≥ 2× (mini … base); MFU ≥ 80% (medium, base); " \
        "packing ≥ 1.3×; input pipeline ≥ 5× the step's consumption"


# --- timing --------------------------------------------------------------------------------------
def timed(fn, *, min_steps=3, min_seconds=4.0, warmup=2) -> float:
    """Median seconds per call of `fn` (which must block until its work is done)."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_steps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 50:
            break
    return statistics.median(times)


def timed_together(fns: dict, *, rounds=9, warmup=2, reduce=statistics.median) -> dict[str, float]:
    """Seconds per call of each of `fns` (the median over rounds, or `reduce`), measured in
    interleaved rounds so that a machine whose speed drifts (shared hosts, clock boost) affects
    them all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: reduce(t) for name, t in times.items()}


def matmul_peak(shapes) -> dict[str, float]:
    """The best FLOP/s of [m,k]×[k,n] matmuls over a few shapes and repeats: jax (the peak MFU
    is measured against) and torch. The best, not the median: a peak is what the hardware can
    give, and a low estimate would inflate every MFU."""
    import torch

    dtype = jnp.bfloat16 if ACCELERATOR else jnp.float32
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    f = jax.jit(lambda x, y: x @ y)
    best = {"jax": 0.0, "torch": 0.0}
    for m, k, n in shapes:
        a, b = (jax.random.normal(jax.random.PRNGKey(i), shape, dtype)
                for i, shape in enumerate(((m, k), (k, n))))
        ta, tb = (torch.randn(*shape, device=device,
                              dtype=torch.bfloat16 if device == "cuda" else torch.float32)
                  for shape in ((m, k), (k, n)))
        seconds = timed_together({"jax": lambda: f(a, b).block_until_ready(),
                                  "torch": lambda: (ta @ tb, sync())}, rounds=5, reduce=min)
        for name, s in seconds.items():
            best[name] = max(best[name], 2 * m * k * n / s)
    return best


# --- FLOPs ---------------------------------------------------------------------------------------
def matmul_weights(config) -> int:
    """Parameters that multiply activations (embedding tables are lookups)."""
    flat = jax.tree_util.tree_flatten_with_path(abstract_params(Model(config, heads=())))[0]
    return sum(math.prod(x.shape) for path, x in flat
               if getattr(path[-1], "key", None) != "embedding")


def forward_flops(config, batch: int) -> float:
    """One forward pass: 2·N per token, attention's QKᵀ and AV (4·T²·H per layer per sequence),
    the MLM head at the masked positions (transform + vocab projection)."""
    h, v = config.hidden_size, config.vocab_size
    tokens = batch * SEQ
    return (2 * matmul_weights(config) * tokens
            + 4 * config.num_hidden_layers * batch * SEQ * SEQ * h
            + 2 * batch * PREDICTIONS * (h * h + h * v))


# --- batches -------------------------------------------------------------------------------------
def mlm_batch(batch: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, vocab, (batch, SEQ)).astype(np.int32)
    positions = np.sort(np.stack([rng.choice(np.arange(1, SEQ - 1), PREDICTIONS, replace=False)
                                  for _ in range(batch)]), axis=1).astype(np.int32)
    return {"input_word_ids": ids, "input_mask": np.ones_like(ids),
            "input_type_ids": np.zeros_like(ids), "masked_lm_positions": positions,
            "masked_lm_ids": np.take_along_axis(ids, positions, 1),
            "masked_lm_weights": np.ones((batch, PREDICTIONS), np.float32),
            "example_weight": np.ones(batch, np.float32)}


def trainer_config(model: str, batch: int) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.model = defaults.model(model, dtype=COMPUTE_DTYPE,
                               overrides={"hidden_dropout_prob": 0.0,
                                          "attention_probs_dropout_prob": 0.0})
    cfg.trainer = defaults.trainer(batch_size=batch, num_steps=1000)
    cfg.optimizer = defaults.optimizer(lr=1e-4)
    cfg.mesh = defaults.mesh()
    return cfg


@contextlib.contextmanager
def our_step_fn(task, cfg, batch):
    """A callable running one of our jitted train steps on `batch` (and waiting for it)."""
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(task, cfg, workdir)
        state = trainer.initial_state()
        placed = place_batch(batch, trainer.batch_sharding)
        holder = {"state": state}

        def step():
            holder["state"], metrics = trainer.train_step(holder["state"], trainer.frozen, placed)
            jax.block_until_ready(metrics["loss"])

        with jax.set_mesh(trainer.mesh):
            yield step


def our_step(task, cfg, batch) -> float:
    with our_step_fn(task, cfg, batch) as step:
        return timed(step)


# --- PyTorch peers -------------------------------------------------------------------------------
def torch_config(config, **extra):
    from transformers import BertConfig as HFConfig

    return HFConfig(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                    num_hidden_layers=config.num_hidden_layers,
                    num_attention_heads=config.num_attention_heads,
                    intermediate_size=config.intermediate_size, hidden_act="gelu",
                    max_position_embeddings=config.max_position_embeddings,
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **extra)


def torch_tensors(batch, device):
    import torch

    ids = torch.from_numpy(batch["input_word_ids"]).long().to(device)
    labels = torch.full_like(ids, -100)
    rows = torch.arange(len(ids))[:, None]
    pos = torch.from_numpy(batch["masked_lm_positions"]).long()
    labels[rows, pos] = torch.from_numpy(batch["masked_lm_ids"]).long().to(device)
    return ids, torch.ones_like(ids), labels, pos.to(device)


def torch_autocast(device):
    """bf16 autocast on CUDA (the compute dtype our steps use there); nothing on CPU."""
    import torch

    if device == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def torch_mlm_step(config, batch) -> float:
    import torch
    from transformers import BertForMaskedLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = BertForMaskedLM(torch_config(config)).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    ids, mask, labels, _ = torch_tensors(batch, device)

    def step():
        with torch_autocast(device):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()

    return timed(step)


def torch_distill_step(teacher_cfg, student_cfg, batch) -> float:
    """The same objective as DISTILL_TERMS: soft CE on MLM logits at the masked positions (T=1)
    + MSE of projected student hidden states to every (Lt/Ls)-th teacher layer and embeddings."""
    import torch
    import torch.nn.functional as F
    from transformers import BertForMaskedLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    teacher = BertForMaskedLM(torch_config(teacher_cfg)).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = BertForMaskedLM(torch_config(student_cfg)).to(device).train()
    project = torch.nn.Linear(student_cfg.hidden_size, teacher_cfg.hidden_size).to(device)
    params = list(student.parameters()) + list(project.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    ids, mask, _, pos = torch_tensors(batch, device)
    rows = torch.arange(len(ids), device=device)[:, None]
    every = teacher_cfg.num_hidden_layers // student_cfg.num_hidden_layers

    def masked_logits(model, hidden):
        return model.cls(hidden[rows, pos])

    def step():
        with torch_autocast(device):
            with torch.no_grad():
                t_out = teacher.bert(input_ids=ids, attention_mask=mask, output_hidden_states=True)
                t_logits = masked_logits(teacher, t_out.last_hidden_state)
            s_out = student.bert(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            s_logits = masked_logits(student, s_out.last_hidden_state).float()
            soft = -(F.softmax(t_logits.float(), -1) * F.log_softmax(s_logits, -1)).sum(-1).mean()
            hidden = sum(F.mse_loss(project(s_out.hidden_states[m]).float(),
                                    t_out.hidden_states[m * every].float())
                         for m in range(student_cfg.num_hidden_layers + 1))
            loss = soft + hidden / (student_cfg.num_hidden_layers + 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        loss.item()

    return timed(step)


DISTILL_TERMS = [dict(feature="mlm_logits", loss="soft_ce", weight=1.0, temperature=1.0),
                 dict(feature="hidden", loss="mse", weight=1.0, layers="uniform")]
# DistilBERT's MLM terms (its cosine term needs the teacher's hidden states: not cacheable)
GENERAL_TERMS = [dict(feature="mlm_logits", loss="kl", weight=5.0, temperature=2.0, t_squared=True),
                 dict(feature="mlm_logits", loss="hard", weight=2.0)]
TOP_K = 64


def our_distill_step(teacher_cfg, student_name, batch) -> float:
    from flaxbert import init_params

    cfg = trainer_config(student_name, len(batch["input_word_ids"]))
    cfg.distill = ml_collections.ConfigDict(dict(alpha=1.0, terms=DISTILL_TERMS))
    compute = jnp.bfloat16 if ACCELERATOR else jnp.float32
    teacher = Model(teacher_cfg, heads=("mlm",), dtype=compute, param_dtype=compute)
    task = DistillTask(cfg, ModelSpec(cfg.model, ("mlm",)), teacher, init_params(teacher, 1))
    return our_step(task, cfg, batch)


# --- sections ------------------------------------------------------------------------------------
def cache_section(teacher_dir: str):
    """General distillation BERT-Base → BERT-Tiny with DistilBERT's MLM terms, paired: the step
    with the live teacher against the step reading the teacher's top-64 logits from the cache
    (`distill.teacher_cache`), and — with a pre-trained MLM teacher at hand — how far the
    renormalised top-k KL is from the full-vocabulary KL on real held-out text."""
    from distill import teacher_cache
    from flaxbert import init_params

    teacher_cfg = get_config("base").replace(hidden_dropout_prob=0.0,
                                             attention_probs_dropout_prob=0.0)
    b = BATCH["base"]
    cfg = trainer_config("tiny", b)
    cfg.distill = ml_collections.ConfigDict(dict(alpha=1.0, terms=GENERAL_TERMS))
    compute = jnp.bfloat16 if ACCELERATOR else jnp.float32
    teacher = Model(teacher_cfg, heads=("mlm",), dtype=compute, param_dtype=compute)
    params = init_params(teacher, 1)
    batch = mlm_batch(b, teacher_cfg.vocab_size, seed=2)
    top_k_step = teacher_cache.teacher_top_k_step(
        teacher, params, teacher_cache.local_mesh(cfg.mesh), TOP_K, nsp=False, batch_size=b)
    cached_batch = {**batch, **top_k_step(batch)}  # the row as the cache stores it
    live = DistillTask(cfg, ModelSpec(cfg.model, ("mlm",)), teacher, params)
    cached = DistillTask(cfg, ModelSpec(cfg.model, ("mlm",)), teacher, None)
    with our_step_fn(live, cfg, batch) as live_step, \
            our_step_fn(cached, cfg, cached_batch) as cached_step:
        times = timed_together({"live": live_step, "cached": cached_step}, rounds=5)
    result = dict(batch=b, live_s=times["live"], cached_s=times["cached"],
                  ratio=times["live"] / times["cached"])
    print(f"general distillation base → tiny: live {times['live']:.3f} s, cached "
          f"{times['cached']:.3f} s, ×{result['ratio']:.2f}", flush=True)
    if teacher_dir and Path(teacher_dir, "config.json").exists():
        result["approximation"] = top_k_error(teacher_dir)
    return result


def top_k_error(teacher_dir: str, ks=(16, 64, 256)) -> dict:
    """A pre-trained MLM teacher and its every-other-layer student (DistilBERT's init) on the
    held-out movie snippets, masked as `distill pretrain` masks them: the full KL at T = 2 and
    T = 1 against the top-k one, and the cosine between the two losses' gradients with respect
    to the student's logits."""
    from distill import losses, student_init
    from distill.data.pretraining import text_to_pretraining_dataset
    from flaxbert.pretrained import from_pretrained

    teacher, params, tokenizer = from_pretrained(teacher_dir)
    s_cfg = teacher.config.replace(num_hidden_layers=max(teacher.config.num_hidden_layers // 2, 1))
    student = Model(s_cfg, heads=("mlm",))
    s_params = student_init.truncated_from_teacher(params, teacher.config, s_cfg, "every_other")
    s_params["mlm"] = params["mlm"]
    data = text_to_pretraining_dataset(f"vader:{defaults.VADER / 'movieReviewSnippets_GroundTruth.txt'}",
                                       tokenizer, batch_size=64, max_seq_length=64,
                                       max_predictions_per_seq=10, nsp=False, dupe_factor=1,
                                       shuffle=False, num_epochs=1, seed=1)
    apply = jax.jit(lambda m, p, b: m.apply({"params": p}, b["input_word_ids"], b["input_mask"],
                                            b["input_type_ids"], b["masked_lm_positions"])["mlm_logits"],
                    static_argnums=0)
    t_logits, s_logits, weights = [], [], []
    for i, batch in enumerate(data):
        if i == 8:  # 512 sequences, ~5,000 masked positions
            break
        t_logits.append(np.asarray(apply(teacher, params, batch)))
        s_logits.append(np.asarray(apply(student, s_params, batch)))
        weights.append(batch["masked_lm_weights"])
    t, s, w = (jnp.asarray(np.concatenate(x)) for x in (t_logits, s_logits, weights))
    p_t = jax.nn.softmax(t, -1)
    rows = {}
    for temperature in (2.0, 1.0):
        full_fn = lambda z: losses.kl_divergence(z, t, temperature, w, True)  # noqa: E731
        full, g_full = jax.value_and_grad(full_fn)(s)
        for k in ks:
            values, ids = losses.top_k(t, k)
            top_fn = lambda z: losses.top_k_kl_divergence(z, values, ids, temperature, w, True)  # noqa: E731
            top, g_top = jax.value_and_grad(top_fn)(s)
            mass = float((jnp.take_along_axis(p_t, ids, -1).sum(-1) * w).sum() / w.sum())
            cosine = float(jnp.vdot(g_full, g_top) / (jnp.linalg.norm(g_full) * jnp.linalg.norm(g_top)))
            rows[f"T={temperature:g} k={k}"] = dict(full=float(full), top=float(top), mass=mass,
                                                    relative=abs(float(top) - float(full)) / float(full),
                                                    grad_cosine=cosine)
            print(f"top-k KL T={temperature:g} k={k}: full {float(full):.4f}, top-k {float(top):.4f}, "
                  f"teacher mass in top k {mass:.3f}, gradient cosine {cosine:.3f}", flush=True)
    return {"teacher": teacher_dir, "positions": int(np.asarray(w).sum()), "rows": rows}


def mlm_section(sizes, peak):
    rows = []
    for name in sizes:
        config = get_config(name).replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        batch = mlm_batch(BATCH[name], config.vocab_size)
        cfg = trainer_config(name, BATCH[name])
        ours = our_step(MaskedLMTask(ModelSpec(cfg.model, ("mlm",)), nsp=False), cfg, batch)
        theirs = torch_mlm_step(config, batch)
        flops = 3 * forward_flops(config, BATCH[name])
        tokens = BATCH[name] * SEQ
        rows.append(dict(model=name, batch=BATCH[name], ours_tokens=tokens / ours,
                         torch_tokens=tokens / theirs, ratio=theirs / ours,
                         ours_mfu=flops / ours / peak, torch_mfu=flops / theirs / peak,
                         ours_s=ours, torch_s=theirs))
        print(f"mlm {name}: ours {tokens / ours:,.0f} tok/s, torch {tokens / theirs:,.0f} tok/s, "
              f"×{theirs / ours:.2f}, MFU {flops / ours / peak:.1%}", flush=True)
    return rows


def distill_section(students, peak):
    rows = []
    teacher_cfg = get_config("base").replace(hidden_dropout_prob=0.0,
                                             attention_probs_dropout_prob=0.0)
    for name in students:
        student_cfg = get_config(name).replace(hidden_dropout_prob=0.0,
                                               attention_probs_dropout_prob=0.0)
        b = BATCH["base"]
        batch = mlm_batch(b, teacher_cfg.vocab_size, seed=1)
        ours = our_distill_step(teacher_cfg, name, batch)
        theirs = torch_distill_step(teacher_cfg, student_cfg, batch)
        flops = forward_flops(teacher_cfg, b) + 3 * forward_flops(student_cfg, b)
        rows.append(dict(model=f"base → {name}", batch=b, ours_tokens=b * SEQ / ours,
                         torch_tokens=b * SEQ / theirs, ratio=theirs / ours,
                         ours_mfu=flops / ours / peak, torch_mfu=flops / theirs / peak,
                         ours_s=ours, torch_s=theirs))
        print(f"distill base → {name}: ×{theirs / ours:.2f}", flush=True)
    return rows


def real_text_batches(pack: bool, batch: int, sentences_per_document: int | None = None,
                      cross_documents: bool | None = None):
    """The demo's pre-training text (distill/experiments/pretrain.py) at seq 128."""
    from distill.data.pretraining import text_to_pretraining_dataset
    from distill.experiments import pretrain as experiment
    from flaxbert.tokenization import load_tokenizer

    d = experiment.get_config("tiny").data
    tokenizer = load_tokenizer(d.vocab)
    return text_to_pretraining_dataset(
        d.train, tokenizer, batch_size=batch, max_seq_length=SEQ,
        max_predictions_per_seq=PREDICTIONS, masked_lm_prob=d.masked_lm_prob,
        short_seq_prob=d.short_seq_prob, nsp=False, dupe_factor=1, seed=d.seed, pack=pack,
        sentences_per_document=sentences_per_document or d.sentences_per_document,
        cross_documents=cross_documents)


def packing_section():
    """Real (non-padding) tokens per second of BERT-Tiny MLM steps on the demo's text taken as
    it is (each tweet / review / editorial snippet its own document, one instance each), padded
    vs packed; and, for context, RoBERTa's FULL-SENTENCES, which fills rows by running unrelated
    snippets together (attention crosses them)."""
    out = {}
    b = BATCH["tiny"]
    for key, pack, cross in (("padded", False, False), ("packed", True, False),
                             ("FULL-SENTENCES (snippets run together), padded", False, True)):
        it = iter(real_text_batches(pack, b, 1, cross))
        batches = [next(it) for _ in range(8)]
        fill = float(np.mean([(x["input_mask"] > 0).mean() for x in batches]))
        cfg = trainer_config("tiny", b)
        seconds = our_step(MaskedLMTask(ModelSpec(cfg.model, ("mlm",)), nsp=False), cfg,
                           batches[0])
        out[key] = dict(fill=fill, seconds=seconds, real_tokens=fill * b * SEQ / seconds)
        print(f"{key}: fill {fill:.1%}, {fill * b * SEQ / seconds:,.0f} real tok/s", flush=True)
    out["ratio"] = out["packed"]["real_tokens"] / out["padded"]["real_tokens"]
    return out


def pipeline_section(step_seconds: float):
    it = iter(real_text_batches(False, BATCH["tiny"]))
    for _ in range(20):  # warm the prefetch threads
        next(it)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 5.0:
        next(it)
        n += 1
    per_second = n / (time.perf_counter() - start)
    return dict(batches_per_second=per_second, step_batches_per_second=1 / step_seconds,
                ratio=per_second * step_seconds)


def electra_section() -> dict:
    """Seconds per ELECTRA train step (BERT-Tiny, batch 32 × 128, 20 masks) with the generator's
    samples from `electra.sample_categorical` and from `jax.random.categorical`, interleaved."""
    from distill import electra
    from distill.experiments import pretrain as pretrain_configs
    from distill.tasks import pretrain
    from flaxbert.tokenization import load_tokenizer

    config = pretrain_configs.get_config("tiny")
    config.objective = "electra"
    config.trainer.batch_size = BATCH["tiny"]
    task = pretrain.make_task(config, load_tokenizer(config.data.vocab))
    batch = mlm_batch(BATCH["tiny"], get_config("tiny").vocab_size)
    samplers = {"inverse CDF (ours)": electra.sample_categorical,
                "jax.random.categorical": jax.random.categorical}
    with contextlib.ExitStack() as stack:
        steps = {}
        try:
            for name, sampler in samplers.items():  # each step traces with its sampler in place
                electra.sample_categorical = sampler
                steps[name] = stack.enter_context(our_step_fn(task, config, batch))
                steps[name]()
        finally:
            electra.sample_categorical = samplers["inverse CDF (ours)"]
        seconds = timed_together(steps)
    ours, gumbel = seconds["inverse CDF (ours)"], seconds["jax.random.categorical"]
    return {"ours_s": ours, "gumbel_s": gumbel, "ratio": gumbel / ours}


def shape_section(name: str, peak: float):
    """The model's own matmuls ([B·T, H] × [H, F]) timed alone, as a share of the peak."""
    config = get_config(name)
    tokens, h, f = BATCH[name] * SEQ, config.hidden_size, config.intermediate_size
    dtype = jnp.bfloat16 if ACCELERATOR else jnp.float32
    rows = []
    for label, (m, k, n) in {"QKV/attention-out  [BT,H]×[H,H]": (tokens, h, h),
                             "FFN in            [BT,H]×[H,4H]": (tokens, h, f),
                             "FFN out           [BT,4H]×[4H,H]": (tokens, f, h),
                             "attention scores  [T,d]×[d,T]": (SEQ, 64, SEQ)}.items():
        a = jnp.ones((m, k), dtype)
        w = jnp.ones((k, n), dtype)
        fn = jax.jit(lambda x, y: x @ y)
        seconds = timed(lambda: fn(a, w).block_until_ready(), min_seconds=1.0)
        rows.append((label, 2 * m * k * n / seconds / peak))
    # The score matmuls as the model runs them: all B·A heads in one batched product, in the
    # [batch, length, heads, head_dim] layout the projections produce.
    b, heads, d = BATCH[name], config.num_attention_heads, config.head_dim
    q = jnp.ones((b, SEQ, heads, d), dtype)
    scores = jax.jit(lambda x, y: jnp.einsum("bqhd,bkhd->bhqk", x, y))
    seconds = timed(lambda: scores(q, q).block_until_ready(), min_seconds=1.0)
    rows.append((f"attention scores, all {b}×{heads} heads batched [B,T,A,d]",
                 2 * b * heads * SEQ * SEQ * d / seconds / peak))
    return rows


def breakdown_section(names):
    """Ablation timing of our MLM step, as shares of the full step: the encoder's forward +
    backward alone (gradient of a function of `sequence_output`), what the MLM head and loss add
    (gradient of the real loss), and the rest (AdamW, clipping, metrics). The three are timed in
    interleaved rounds."""
    rows = []
    for name in names:
        cfg = trainer_config(name, BATCH[name])
        task = MaskedLMTask(ModelSpec(cfg.model, ("mlm",)), nsp=False)
        params = task.init_params(jax.random.key(0))
        host_batch = mlm_batch(BATCH[name], task.spec.config.vocab_size)
        batch = {k: jnp.asarray(v) for k, v in host_batch.items()}
        den = task.denominators(batch)

        def encoder_only(p, batch=batch):
            out = task.model.apply({"params": p}, batch["input_word_ids"], batch["input_mask"],
                                   batch["input_type_ids"])
            return out["sequence_output"].astype(jnp.float32).mean()

        with_head = jax.jit(jax.grad(lambda p, batch=batch, den=den: task.loss(
            p, None, batch, None, den)[0]))
        encoder = jax.jit(jax.grad(encoder_only))
        with our_step_fn(task, cfg, host_batch) as step:
            t = timed_together({
                "step": step,
                "head": lambda f=with_head: jax.block_until_ready(f(params)),
                "encoder": lambda f=encoder: jax.block_until_ready(f(params))})
        rows.append(dict(model=name, **t))
        print(f"breakdown {name}: step {t['step'] * 1e3:.0f} ms, fwd+bwd {t['head'] * 1e3:.0f} "
              f"ms, encoder alone {t['encoder'] * 1e3:.0f} ms", flush=True)
    return rows


# --- report --------------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"device": f"{jax.devices()[0].device_kind} × {jax.device_count()} ({jax.default_backend()})",
            "cpu": f"{cpu}, {os.cpu_count()} cores", "python": platform.python_version(),
            "jax": jax.__version__, "flax": __import__("flax").__version__,
            "torch": torch.__version__, "transformers": transformers.__version__,
            "torch threads": str(torch.get_num_threads())}


def verdict(ok: bool, text: str) -> str:
    return ("met: " if ok else "missed: ") + text


def render(info, peak, mlm, distill, packing, pipeline, shapes, shape_model,
           breakdown, cache=None, electra=None, title="# Benchmarks", level="#") -> str:
    """The report; sections not run (None / empty) are left out. `level` prefixes headings."""
    h = level + "#"
    lines = [title, "",
             "Written by `make bench` (benchmarks/run.py); every ratio compares runs made back to "
             "back in the same process on the machine below. Goals (issue #9): " + GOALS + ".", "",
             f"{h} Machine", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [f"- compute dtype: {COMPUTE_DTYPE}"]
    lines += ["", f"Matmul peak (the MFU denominator): jax {peak['jax'] / 1e9:,.1f} GFLOP/s, "
              f"torch {peak['torch'] / 1e9:,.1f} GFLOP/s.", ""]
    table = ["| model | batch × 128 | flaxbert tokens/s | PyTorch tokens/s | ratio | "
             "flaxbert MFU | PyTorch MFU |", "|---|---|---|---|---|---|---|"]
    for title, rows in (("MLM pre-training step (AdamW, seq 128)", mlm),
                        ("Distillation step (BERT-Base teacher, soft CE + hidden MSE)", distill)):
        if not rows:
            continue
        lines += [f"{h} {title}", ""] + table
        lines += [f"| {r['model']} | {r['batch']} | {r['ours_tokens']:,.0f} | "
                  f"{r['torch_tokens']:,.0f} | ×{r['ratio']:.2f} | {r['ours_mfu']:.1%} | "
                  f"{r['torch_mfu']:.1%} |" for r in rows]
        lines.append("")
    if cache:
        lines += [f"{h} Teacher cache for general distillation (BERT-Base teacher → BERT-Tiny)", "",
                  f"DistilBERT's MLM terms (5·KL at T = 2 · T² + 2·hard MLM), batch "
                  f"{cache['batch']} × 128, 20 masked positions a row: the step with the live "
                  f"teacher {cache['live_s'] * 1e3:,.0f} ms, reading the teacher's top-{TOP_K} "
                  f"logits from the cache {cache['cached_s'] * 1e3:,.0f} ms: "
                  f"**×{cache['ratio']:.1f}** (interleaved rounds, same process).", ""]
        approx = cache.get("approximation")
        if approx:
            lines += [f"The approximation, on {approx['positions']:,} masked positions of the "
                      f"held-out movie snippets with a pre-trained teacher (`{approx['teacher']}`)"
                      f" and its every-other-layer student: the top-k KL renormalises both "
                      f"models over the teacher's k largest logits (the student's mass elsewhere "
                      f"is left to the hard MLM term). The gradient cosine compares the two "
                      f"losses' gradients with respect to the student's logits.", "",
                      "| | teacher mass in top k (at T = 1) | full KL·T² | top-k KL·T² | relative "
                      "difference | gradient cosine |", "|---|---|---|---|---|---|"]
            lines += [f"| {name} | {r['mass']:.3f} | {r['full']:.4f} | {r['top']:.4f} | "
                      f"{r['relative']:.1%} | {r['grad_cosine']:.4f} |"
                      for name, r in approx["rows"].items()]
            lines.append("")
    if packing:
        lines += [f"{h} Sequence packing (real text, BERT-Tiny MLM, seq 128)", "",
                  "The demo's pre-training text: tweets, Amazon reviews and NYT editorial "
                  "snippets.", "",
                  "| batches | fill (real tokens / slots) | real tokens/s |", "|---|---|---|"]
        lines += [f"| {k} | {v['fill']:.1%} | {v['real_tokens']:,.0f} |"
                  for k, v in packing.items() if k != "ratio"]
        lines += ["", f"On the snippets as they are, packing gives ×{packing['ratio']:.2f} real "
                  f"tokens/s over padded batches. FULL-SENTENCES also fills rows, but lets "
                  f"attention cross between unrelated texts; packing keeps each text's attention "
                  f"to itself.", ""]
    if pipeline:
        lines += [f"{h} Input pipeline", "",
                  f"The pre-training pipeline (grain, 2 threads, real text) yields "
                  f"{pipeline['batches_per_second']:.1f} batches/s; the BERT-Tiny step consumes "
                  f"{pipeline['step_batches_per_second']:.1f}/s: ×{pipeline['ratio']:.1f}.", ""]
    if electra:
        lines += [f"{h} ELECTRA's generator sampling (BERT-Tiny, batch {BATCH['tiny']} × {SEQ}, "
                  f"{PREDICTIONS} masks)", "",
                  f"The train step with the samples drawn by inverse CDF (one uniform per masked "
                  f"position) {electra['ours_s'] * 1e3:,.0f} ms, with `jax.random.categorical` "
                  f"(Gumbel noise over 30,522 words) {electra['gumbel_s'] * 1e3:,.0f} ms: "
                  f"**×{electra['ratio']:.2f}** (interleaved rounds, same process).", ""]
    if shapes:
        lines += [f"{h} Where the time goes: the model's matmuls alone", "",
                  f"Each of BERT-{shape_model.capitalize()}'s matmul shapes at its benchmark "
                  "batch, timed in isolation, as a share of the measured peak — the ceiling for "
                  "a step built of them:", "", "| matmul | share of peak |", "|---|---|"]
        lines += [f"| `{label}` | {share:.1%} |" for label, share in shapes]
        if max(share for _, share in shapes) > 1:
            lines += ["", "(A share above 100%: the machine ran faster when these were timed "
                      "than when the peak was, minutes earlier — on a shared machine speed "
                      "drifts, so compare ratios measured back to back, not figures from "
                      "different sections.)"]
        top = max(shapes[:3], key=lambda row: row[1])[1]
        lines += ["", f"Reading: the encoder's big matmuls reach at most {top:.0%} of the peak "
                  f"even timed alone; one head's score matmul (seq 128, head size 64) "
                  f"{shapes[3][1]:.0%}, all heads batched as the model runs them "
                  f"{shapes[4][1]:.0%}.", ""]
    if breakdown:
        lines += ["Within our MLM step (ablation timing, interleaved rounds): the whole train "
                  "step; the gradient of the loss alone (forward + backward, no optimizer); the "
                  "gradient through the encoder alone (no MLM head). The head's share is what it "
                  "adds to the gradient; the optimizer's cost is what the step adds to it (close "
                  "to nothing, or below it where the donated step reuses buffers the "
                  "gradient-only program allocates). The MLM head (a projection onto the "
                  "30,522-word vocabulary, its softmax and the tied embedding's gradient) does "
                  "not shrink with the encoder, so it weighs most in the smallest models:", "",
                  "| model | train step | fwd+bwd | encoder fwd+bwd | MLM head + loss share |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['step'] * 1e3:,.0f} ms | {r['head'] * 1e3:,.0f} ms | "
                  f"{r['encoder'] * 1e3:,.0f} ms | {1 - r['encoder'] / r['head']:.0%} |"
                  for r in breakdown]
        lines.append("")
    by = {r["model"]: r for r in mlm}
    goals = []
    if "tiny" in by:
        goals.append(verdict(by["tiny"]["ratio"] >= 4, f"tiny ×{by['tiny']['ratio']:.2f} vs ×4"))
    for name in ("mini", "small", "medium", "base"):
        if name in by:
            goals.append(verdict(by[name]["ratio"] >= 2, f"{name} ×{by[name]['ratio']:.2f} vs ×2"))
    for name in ("medium", "base"):
        if name in by:
            goals.append(verdict(by[name]["ours_mfu"] >= 0.8,
                                 f"{name} MFU {by[name]['ours_mfu']:.1%} vs 80%"))
    if packing:
        goals.append(verdict(packing["ratio"] >= 1.3, f"packing ×{packing['ratio']:.2f} vs ×1.3"))
    if cache:
        goals.append(verdict(cache["ratio"] >= 3, f"cached general distillation "
                                                  f"×{cache['ratio']:.1f} vs ×3"))
    if pipeline:
        goals.append(verdict(pipeline["ratio"] >= 5,
                             f"input pipeline ×{pipeline['ratio']:.1f} vs ×5"))
    if goals:
        lines += [f"{h} Goals", ""] + [f"- {g}" for g in goals] + [""]
    return "\n".join(lines)


def write_report(path: Path, text: str, part: str) -> None:
    """Writes `text` as one part of the document: "cpu" (the top, a CPU run's tables), "gpu" (an
    accelerator run's), or another named part (e.g. "sharding", the `distill compile` figures);
    the parts already there and not rewritten are kept, each after its marker line."""
    parts, name = {"cpu": []}, "cpu"
    for line in (path.read_text().splitlines() if path.exists() else []):
        match = re.fullmatch(r"<!-- part: (\w+) -->", line)
        if match:
            name = match.group(1)
            parts[name] = []
        else:
            parts[name].append(line)
    parts = {k: "\n".join(v).strip("\n") for k, v in parts.items()}
    parts[part] = text.strip("\n")
    out = [parts.pop("cpu") or "# Benchmarks"]
    out += [f"\n<!-- part: {k} -->\n{v}" for k, v in parts.items() if v]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")


SECTIONS = ("mlm", "distill", "cache", "packing", "pipeline", "electra", "shapes", "breakdown")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument("--quick", action="store_true",
                        help="tiny and mini only, distillation into tiny (a smoke run; < 5 min "
                             "on one GPU)")
    parser.add_argument("--models", default="",
                        help="comma-separated MLM rows to run (default: all, or tiny,mini)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run, of {','.join(SECTIONS)}")
    parser.add_argument("--part", default="",
                        help="write the run as this named part of --out (e.g. a run of a few "
                             "rows), keeping the full run's tables")
    parser.add_argument("--mlm-teacher", default="runs/teacher_mini/export",
                        help="a pre-trained MLM teacher folder for the top-k approximation "
                             "figure (left out when missing)")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if sections - set(SECTIONS):
        parser.error(f"--sections: unknown {sorted(sections - set(SECTIONS))}; expected some of "
                     f"{SECTIONS}")
    sizes = tuple(args.models.split(",")) if args.models else (
        ("tiny", "mini") if args.quick else tuple(BATCH))
    if set(sizes) - set(BATCH):
        parser.error(f"--models: unknown {sorted(set(sizes) - set(BATCH))}; expected some of "
                     f"{tuple(BATCH)}")
    info = machine()
    print("\n".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    # squares, and BERT-Base's FFN shapes at its benchmark batch (XLA:CPU can run those faster)
    tokens = BATCH["base"] * SEQ
    peak = matmul_peak([(n, n, n) for n in ((4096, 8192) if ACCELERATOR else (1024, 2048))]
                       + [(tokens, 768, 3072), (tokens, 3072, 768)])
    print(f"matmul peak: jax {peak['jax'] / 1e9:.1f} GFLOP/s, torch {peak['torch'] / 1e9:.1f}",
          flush=True)
    mlm = mlm_section(sizes, peak["jax"]) if "mlm" in sections else []
    distill = (distill_section(("tiny",) if args.quick else ("tiny", "small"), peak["jax"])
               if "distill" in sections else [])
    cache = cache_section(args.mlm_teacher) if "cache" in sections else None
    packing = packing_section() if "packing" in sections else None
    pipeline = (pipeline_section(mlm[0]["ours_s"]) if "pipeline" in sections and mlm
                else None)
    electra = electra_section() if "electra" in sections else None
    shape_model = "mini" if args.quick else "base"
    shapes = shape_section(shape_model, peak["jax"]) if "shapes" in sections else None
    breakdown = (breakdown_section([name for name in sizes if name in ("tiny", "medium", "base")])
                 if "breakdown" in sections else None)
    part = args.part or ("gpu" if ACCELERATOR else "cpu")
    if part == "cpu":
        text = render(info, peak, mlm, distill, packing, pipeline, shapes, shape_model, breakdown,
                      cache, electra)
    else:
        title = (f"## {jax.default_backend().upper()} run" if part == "gpu" else f"## Run {part}")
        title += f" ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {' '.join(sys.argv[1:])})"
        text = render(info, peak, mlm, distill, packing, pipeline, shapes, shape_model,
                      breakdown, cache, electra, title=title, level="##")
    write_report(Path(args.out), text, part)
    print(text)


if __name__ == "__main__":
    main()
