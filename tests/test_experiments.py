"""Every experiment config builds and runs a step at a tiny size through the `distill` CLI."""

import json
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from distill import experiments
from distill.cli import main
from distill.defaults import VADER
from distill.experiments import pretrain as experiments_pretrain
from distill.tasks import recipe
from flaxbert import Model, init_params
from flaxbert.configs import BertConfig
from flaxbert.pretrained import from_pretrained, save_pretrained
from flaxbert.tokenization import load_tokenizer

EXPERIMENTS = experiments.DIR
SMALL = "{'hidden_size': 32, 'num_hidden_layers': 2, 'num_attention_heads': 2, 'intermediate_size': 64}"
ONE_STEP = ["--config.trainer.num_steps=1", "--config.trainer.batch_size=8"]


@pytest.fixture(scope="module")
def small_teacher(tmp_path_factory, minilm_dir):
    path = tmp_path_factory.mktemp("teacher")
    model = Model(BertConfig(vocab_size=30522, hidden_size=48, num_hidden_layers=2,
                             num_attention_heads=4, intermediate_size=96), heads=("classifier",))
    save_pretrained(path, model, init_params(model, 0), load_tokenizer(minilm_dir / "vocab.txt"))
    return path


def distill_cli(program, config, workdir, *overrides):
    main(["distill", program, f"--config={EXPERIMENTS / config}", f"--workdir={workdir}", *overrides])
    return json.loads((Path(workdir) / "result.json").read_text())


def test_finetune_config(tmp_path):
    result = distill_cli("finetune", "finetune.py:sentiment", tmp_path, *ONE_STEP,
                         "--config.model.name=tiny", f"--config.model.overrides={SMALL}")
    assert result["steps"] == 1 and set(result["dev"]) == {"acc"} and "acc" in result["test"]


@pytest.mark.parametrize("variant", ["task", "embedding", "tinybert"])
def test_distill_configs(tmp_path, small_teacher, variant):
    result = distill_cli("distill", f"distill.py:{variant}", tmp_path, *ONE_STEP,
                         f"--config.teacher.name={small_teacher}",
                         f"--config.model.overrides={SMALL}", "--config.distill.held_out=16")
    assert result["steps"] == 1


@pytest.mark.slow
def test_recipe_config(tmp_path, small_teacher):
    """The demo recipe at one step a stage, plus a pre-training-curve point (PT+FT from the
    step-1 checkpoint of a 2-step pre-training): every method, the lr grid picked on dev."""
    stages = ("teacher_finetune", "student_finetune", "distill")
    # small held-out and transfer files (512 transfer lines are held out): the defaults (10k
    # snippets, 16k sentences) would score and label for longer than the stages train
    held_out, transfer = tmp_path / "held_out_GroundTruth.txt", tmp_path / "transfer.txt"
    movies = (VADER / "movieReviewSnippets_GroundTruth.txt").read_text(errors="replace")
    held_out.write_text("\n".join(movies.splitlines()[:200]) + "\n")
    transfer.write_text("\n".join(line.split("\t")[-1] for line in movies.splitlines()[-1000:]) + "\n")
    run = tmp_path / "run"
    steps = [f"--config.{stage}.trainer.num_steps=1" for stage in stages]
    steps += [f"--config.{stage}.data.buckets=(64,)" for stage in stages]  # one shape each
    main(["distill", "recipe", f"--config={EXPERIMENTS / 'recipe.py:demo'}",
          f"--workdir={run}", *steps,
          f"--config.teacher_finetune.model.name={small_teacher}",
          f"--config.pretrain.model.overrides={SMALL}", "--config.pretrain.trainer.num_steps=2",
          "--config.pretrain.trainer.checkpoint_every=1", "--config.pretrain.trainer.eval_every=1",
          "--config.pretrain.trainer.keep_checkpoints=3", "--config.recipe.pretrain_checkpoints=(1,)", "--config.recipe.seeds=(0,)",
          "--config.recipe.learning_rates=(3e-4, 1e-4)",  # the demo has a grid of one
          f"--config.pretrain.data.train=vader:{VADER / 'tweets_GroundTruth.txt'}",
          f"--config.pretrain.data.eval=vader:{held_out}", f"--config.distill.data.transfer={transfer}"])
    table = json.loads((run / "results.json").read_text())["table"]
    assert {row["method"] for row in table} == {"teacher", "scratch", "pt_ft", "kd", "kd_ft", "pd"}
    assert sorted(e["pretrain_steps"] for e in table if e["method"] == "pt_ft") == [1, 2]
    for e in table:
        if e["method"] in ("scratch", "pt_ft", "kd_ft", "pd"):  # both lrs, dev picked one
            assert len(e["lrs"]) == 1 and e["lrs"][0] in (3e-4, 1e-4)
    # the control fine-tunes what distillation from scratch exported, nothing pre-trained
    control = json.loads(next((run / "kd_ft_tiny_seed0").glob("lr*/config.json")).read_text())
    assert control["model"]["name"] == str(run / "kd_tiny_seed0" / "export")
    assert "distil from scratch + fine-tune" in (run / "results.md").read_text()
    sweep = json.loads((run / "scratch_tiny_seed0" / "sweep.json").read_text())
    assert [c["lr"] for c in sweep["cells"]] == [3e-4, 1e-4]
    assert (run / "pretrain_tiny" / "export_step1" / "model.safetensors").exists()
    assert (run / "results.md").read_text().startswith("| method |")
    assert (run / "results.png").exists() and (run / "pretraining_curve.png").exists()
    main(["distill", "report", str(run), "--out", str(run / "report")])
    assert (run / "report" / "results.md").read_text() == (run / "results.md").read_text()
    assert (run / "report" / "accuracy_vs_size.png").exists()


def _seed_runs(tmp_path, accuracies: dict[str, list[float]]) -> Path:
    """A recipe work directory's results.json with the rows the recipe writes, one per seed."""
    rows = [{"method": method, "student": "tiny", "seed": seed,
             "description": recipe.DESCRIPTIONS.get(method, method),
             "dev_acc": acc - 0.01, "test_acc": acc, "lr": 1e-4, "pretrain_steps": None,
             "mlm_accuracy": None, "parameters": 4_400_000, "wall_seconds": 60.0}
            for method, accs in accuracies.items() for seed, acc in enumerate(accs)]
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "results.json").write_text(json.dumps({"rows": rows, "table": []}))
    return tmp_path


def test_report_shows_mean_and_std_over_seeds_and_marks_gaps_within_the_spread(tmp_path):
    # pd - pt_ft = 0.5 points < their spread (std 0.8); pd - scratch = 6 points > any spread
    run = _seed_runs(tmp_path / "run", {"scratch": [0.70, 0.71, 0.72],
                                         "pt_ft": [0.765, 0.775, 0.785],
                                         "pd": [0.77, 0.78, 0.79]})
    main(["distill", "report", str(run), "--out", str(tmp_path / "report")])
    table = {e["method"]: e for e in
             json.loads((tmp_path / "report" / "results.json").read_text())["table"]}
    assert table["pd"]["test_acc"] == pytest.approx(0.78)
    assert table["pd"]["test_acc_std"] == pytest.approx(np.std([0.77, 0.78, 0.79]))
    assert table["pd"]["within_spread_of"] == [recipe.DESCRIPTIONS["pt_ft"]]
    assert table["pt_ft"]["within_spread_of"] == [recipe.DESCRIPTIONS["pd"]]
    assert table["scratch"]["within_spread_of"] == []
    md = (tmp_path / "report" / "results.md").read_text()
    assert "**78.0 ± 0.8**" in md and "**71.0 ± 0.8**" in md
    scratch_line = next(line for line in md.splitlines() if line.startswith("| fine-tune from"))
    assert "| none |" in scratch_line
    assert (tmp_path / "report" / "results.png").exists()


def test_report_counts_a_run_copied_into_several_work_directories_once(tmp_path):
    # two work directories that share a copied teacher and hold seeds 0 and 1 of PD each
    first = _seed_runs(tmp_path / "first", {"teacher": [0.84], "pd": [0.80]})
    second = _seed_runs(tmp_path / "second", {"teacher": [0.84], "pd": [0.80, 0.78]})
    main(["distill", "report", str(first), str(second), "--out", str(tmp_path / "report")])
    table = {e["method"]: e for e in
             json.loads((tmp_path / "report" / "results.json").read_text())["table"]}
    assert table["teacher"]["seeds"] == 1
    assert table["pd"]["seeds"] == 2 and table["pd"]["test_acc"] == pytest.approx(0.79)


def test_rows_name_a_non_default_pretraining_and_stay_apart_in_the_table():
    mlm = recipe.descriptions(experiments_pretrain.get_config("tiny,corpora"))
    assert mlm == recipe.DESCRIPTIONS
    config = experiments_pretrain.get_config("tiny,movies")
    config.objective = "electra"
    electra = recipe.descriptions(config)
    assert electra["pt_ft"] == "ELECTRA pre-train on in-domain text + fine-tune"
    assert electra["pd"].startswith("ELECTRA pre-train on in-domain text + distil")
    rows = [{"method": "pt_ft", "student": "tiny", "seed": 0, "description": d["pt_ft"],
             "dev_acc": 0.7, "test_acc": acc, "lr": 1e-4, "pretrain_steps": 100,
             "mlm_accuracy": None, "parameters": 1, "wall_seconds": 1.0}
            for d, acc in ((mlm, 0.70), (electra, 0.75))]
    table = recipe.summarise(rows)
    assert [(e["description"], e["test_acc"]) for e in table] == [(mlm["pt_ft"], 0.70),
                                                                   (electra["pt_ft"], 0.75)]


def test_the_pretraining_curve_draws_a_line_per_objective(tmp_path):
    mlm, electra = (recipe.pretraining_name(experiments_pretrain.get_config("tiny,corpora")),
                    "ELECTRA")
    rows = [{"method": method, "student": "tiny", "seed": seed, "description": method + name,
             "pretraining": name, "dev_acc": 0.7, "test_acc": 0.7 + 0.01 * steps / 100,
             "lr": 1e-4, "pretrain_steps": steps, "mlm_accuracy": 0.1, "parameters": 1,
             "wall_seconds": 1.0}
            for name in (mlm, electra) for method in ("pt_ft", "pd") for steps in (100, 200)
            for seed in (0, 1)]
    table = recipe.summarise(rows)
    curves = recipe.pretraining_curves(table)
    assert sorted(curves) == [("tiny", "ELECTRA"), ("tiny", "MLM")]
    for entries in curves.values():
        assert sorted((e["method"], e["pretrain_steps"], e["seeds"]) for e in entries) == [
            ("pd", 100, 2), ("pd", 200, 2), ("pt_ft", 100, 2), ("pt_ft", 200, 2)]
    # rows from before the pre-training was named are MLM's
    old = [{k: v for k, v in r.items() if k != "pretraining"} for r in rows if
           r["pretraining"] == mlm]
    assert sorted(recipe.pretraining_curves(recipe.summarise(old))) == [("tiny", "MLM")]
    recipe.plot_pretraining_curve(tmp_path / "curve.png", table)
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_the_methods_plot_axis_shows_two_point_gaps():
    low, high = recipe.accuracy_axis(np.array([76.9, 79.2, 81.6, 84.1]), np.array([0.6, 0.2, 0.3, 0]))
    assert low <= 76.3 and high >= 84.1 and 2 / (high - low) > 0.1  # the old 45–100 axis: 0.036
    assert recipe.accuracy_axis(np.array([99.0]), np.array([0.5]))[1] == 100.0


def test_report_with_one_seed_claims_no_spread(tmp_path):
    run = _seed_runs(tmp_path / "run", {"scratch": [0.70], "pd": [0.705]})
    table = recipe.report([run], tmp_path / "report")
    assert all(e["within_spread_of"] == [] for e in table)
    assert (tmp_path / "report" / "results.md").read_text().count("one seed: no spread") == 2


def test_config_typo_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit, match="unknown config field 'num_stepz'.*num_steps"):
        main(["distill", "pretrain", f"--config={EXPERIMENTS / 'pretrain.py:tiny'}",
              f"--workdir={tmp_path}", "--config.trainer.num_stepz=3"])


def test_unknown_preset_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="unknown model preset 'tinyy'"):
        main(["distill", "finetune", f"--config={EXPERIMENTS / 'finetune.py:sentiment'}",
              f"--workdir={tmp_path}", "--config.model.name=tinyy"])


def test_sweep_2x2x2_writes_a_table_with_mean_and_std(tmp_path, movie_sentences):
    """On a small JSONL task with named columns (the `columns` task), 2 lrs × 2 batches × 2 seeds."""
    for split, rows in (("train", movie_sentences[:64]), ("dev", movie_sentences[64:96])):
        lines = [json.dumps({"text": t, "label": ("neg", "pos")[i % 2]}) for i, t in enumerate(rows)]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    main(["distill", "sweep", f"--config={EXPERIMENTS / 'sweep_finetune.py:sentiment,small'}",
          f"--workdir={tmp_path}", "--config.finetune.trainer.num_steps=2",
          "--config.finetune.data.buckets=(64,)", "--config.sweep.seeds=(3, 4)",  # the grid overridable
          f"--config.finetune.model.overrides={SMALL}", "--config.finetune.task.name=columns",
          f"--config.finetune.task.train={tmp_path / 'train.jsonl'}",
          f"--config.finetune.task.dev={tmp_path / 'dev.jsonl'}",
          "--config.finetune.task.text_a=text", "--config.finetune.task.labels=('neg', 'pos')"])
    summary = json.loads((tmp_path / "sweep.json").read_text())
    assert len(summary["cells"]) == 4 and all(len(c["dev"]) == 2 for c in summary["cells"])
    for cell in summary["cells"]:
        assert cell["dev_mean"] == pytest.approx(sum(cell["dev"]) / 2)
    assert summary["best"]["dev_mean"] == max(c["dev_mean"] for c in summary["cells"])
    table = (tmp_path / "sweep.md").read_text()
    assert table.count("±") == 1 + 4 and "best on dev" in table  # header + one per cell
    assert len(list(tmp_path.glob("lr*_bs*_seed*"))) == 8
    assert {p.name.rsplit("_seed", 1)[1] for p in tmp_path.glob("lr*_bs*_seed*")} == {"3", "4"}


@pytest.mark.slow
def test_pretraining_on_real_text_beats_the_majority_token_baseline(tmp_path, vader_dir):
    """BERT-Tiny, MLM on the VADER transfer text, held-out MLM accuracy on the first 2,000 movie
    snippets (also the pretrain.py config's run through the CLI: its export and curves)."""
    held_out = tmp_path / "movie_GroundTruth.txt"
    lines = (vader_dir / "movieReviewSnippets_GroundTruth.txt").read_text(errors="replace").splitlines()
    held_out.write_text("\n".join(lines[:2000]) + "\n")
    result = distill_cli("pretrain", "pretrain.py:tiny", tmp_path / "run",
                         "--config.trainer.num_steps=400", "--config.trainer.eval_every=400",
                         "--config.data.max_seq_length=32", "--config.data.max_predictions_per_seq=5",
                         f"--config.data.eval=vader:{held_out}")
    print(f"held-out MLM accuracy {result['eval_mlm_accuracy']:.3f} vs most-frequent-token "
          f"baseline {result['majority_token_accuracy']:.3f}")
    assert result["steps"] == 400
    assert result["eval_mlm_accuracy"] >= 1.3 * result["majority_token_accuracy"]
    assert (tmp_path / "run" / "export" / "model.safetensors").exists()
    assert (tmp_path / "run" / "curves.png").exists()


def test_an_nsp_pretraining_checkpoint_exports_as_a_curve_point(tmp_path, movie_sentences):
    """The replica pre-trains with MLM + NSP; a kept checkpoint of that run exports (both heads)
    for the pre-training curve's fine-tuning, and differs from the run's final export."""
    text = tmp_path / "train.txt"
    text.write_text("\n\n".join("\n".join(movie_sentences[i:i + 4])
                                for i in range(0, 800, 4)) + "\n")
    run = tmp_path / "run"
    distill_cli("pretrain", "pretrain.py:tiny", run, "--config.trainer.num_steps=2",
                "--config.trainer.batch_size=8", "--config.trainer.checkpoint_every=1",
                "--config.trainer.eval_every=2", "--config.trainer.keep_checkpoints=3",
                f"--config.model.overrides={SMALL}", f"--config.data.train=text:{text}",
                f"--config.data.eval=text:{text}", "--config.data.nsp=True",
                "--config.data.max_seq_length=32", "--config.data.max_predictions_per_seq=5",
                "--config.data.dupe_factor=1")
    config = ml_collections.ConfigDict(json.loads((run / "config.json").read_text()))
    export = recipe.export_pretraining_checkpoint(config, run, 1)
    early, final = from_pretrained(export), from_pretrained(run / "export")
    assert set(early.model.heads) == set(final.model.heads) == {"mlm", "nsp"}
    assert not np.allclose(early.params["nsp"]["kernel"], final.params["nsp"]["kernel"])


@pytest.fixture(scope="module")
def small_mlm_teacher(tmp_path_factory, minilm_dir):
    path = tmp_path_factory.mktemp("mlm_teacher")
    model = Model(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=4,
                             num_attention_heads=2, intermediate_size=64), heads=("mlm",))
    save_pretrained(path, model, init_params(model, 0), load_tokenizer(minilm_dir / "vocab.txt"))
    return path


@pytest.mark.parametrize("variant", ["distilbert", "distilbert_cached", "minilm"])
def test_general_distillation_configs(tmp_path, small_mlm_teacher, movie_sentences, variant):
    """The raw-text recipes run a step from their documented command (student = every other
    layer of the teacher for distilbert; the teacher's head count for minilm), on small real
    texts (the defaults take minutes to mask, cache and score at this batch size)."""
    held_out, train = tmp_path / "held_out.txt", tmp_path / "train.txt"
    held_out.write_text("\n".join(movie_sentences[:256]) + "\n")
    train.write_text("\n".join(movie_sentences[256:1280]) + "\n")
    overrides = ("{'hidden_size': 32, 'intermediate_size': 64, 'num_attention_heads': 2, "
                 "'num_hidden_layers': 2}"
                 if variant.startswith("distilbert") else SMALL)
    cache = [f"--config.distill.cache={tmp_path / 'top_k'}"] if variant.endswith("cached") else []
    result = distill_cli("distill", f"distill.py:{variant}", tmp_path, *ONE_STEP,
                         f"--config.teacher.name={small_mlm_teacher}",
                         f"--config.model.overrides={overrides}", f"--config.data.eval=text:{held_out}",
                         f"--config.data.train=text:{train}", "--config.data.dupe_factor=1", *cache)
    assert result["steps"] == 1 and "final" in result
    if cache:
        assert (tmp_path / "top_k" / "train" / "manifest-p000.json").exists()


def test_self_pretraining_adds_the_task_train_texts_and_evaluates_on_dev_and_test(tmp_path):
    """pretrain.py:tiny,movies: the in-domain text + the task's training texts; the task's dev and
    test sentences are the held-out evaluation and in no training file."""
    from distill.data.corpora import normalise
    from distill.data.sources import read_documents
    from distill.data.tasks import vader_sentiment
    from distill.tasks import pretrain

    config = pretrain.with_task_texts(experiments_pretrain.get_config("tiny,movies"), tmp_path)
    splits = vader_sentiment(VADER, seed=0)
    train_files = config.data.train.removeprefix("text:").split(",")
    assert train_files == [str(experiments_pretrain.CORPORA / "movies.txt"),
                           str(tmp_path / "task_train.txt")]
    trained = [s for d in read_documents(f"text:{train_files[1]}") for s in d]
    assert trained == [e.text_a for e in splits["train"]]
    held_out = [s for d in read_documents(config.data.eval) for s in d]
    assert held_out == [e.text_a for e in splits["dev"] + splits["test"]]
    # the dev/test sentences `make assets` removed from movies.txt (corpora.py's normalisation)
    movies = {normalise(line) for line in Path(train_files[0]).read_text().splitlines()}
    assert not movies & {normalise(text) for text in held_out}
    with pytest.raises(ValueError, match="data.task_texts='sst2'"):
        config = experiments_pretrain.get_config("tiny,movies")
        config.data.task_texts = "sst2"
        pretrain.with_task_texts(config, tmp_path)
