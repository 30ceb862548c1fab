"""Every experiment config builds and runs a step at a tiny size through the `distill` CLI."""

import json
from pathlib import Path

import pytest

from distill.cli import main
from flaxbert import Model, init_params
from flaxbert.configs import BertConfig
from flaxbert.pretrained import save_pretrained
from flaxbert.tokenization import load_tokenizer

EXPERIMENTS = Path(__file__).parents[1] / "experiments"
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


def test_recipe_config(tmp_path, small_teacher):
    steps = [f"--config.{stage}.trainer.num_steps=1" for stage in
             ("teacher_finetune", "student_finetune", "pretrain", "distill")]
    main(["distill", "recipe", f"--config={EXPERIMENTS / 'recipe.py:demo'}",
          f"--workdir={tmp_path}", *steps,
          f"--config.teacher_finetune.model.name={small_teacher}",
          f"--config.pretrain.model.overrides={SMALL}"])
    table = json.loads((tmp_path / "results.json").read_text())["table"]
    assert {row["method"] for row in table} == {"teacher", "scratch", "pt_ft", "kd", "pd"}
    assert (tmp_path / "results.md").read_text().startswith("| method |")
    assert (tmp_path / "results.png").exists()
    main(["distill", "report", str(tmp_path), "--out", str(tmp_path / "report")])
    assert (tmp_path / "report" / "results.md").read_text() == (tmp_path / "results.md").read_text()
    assert (tmp_path / "report" / "accuracy_vs_size.png").exists()


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


@pytest.mark.slow
def test_pretraining_on_real_text_beats_the_majority_token_baseline(tmp_path):
    """BERT-Tiny, MLM on the VADER transfer text, held-out MLM accuracy on the movie snippets
    (also the pretrain.py config's run through the CLI: its export and curves)."""
    result = distill_cli("pretrain", "pretrain.py:tiny", tmp_path, "--config.trainer.num_steps=600",
                         "--config.trainer.eval_every=600", "--config.data.max_seq_length=32",
                         "--config.data.max_predictions_per_seq=5")
    print(f"held-out MLM accuracy {result['eval_mlm_accuracy']:.3f} vs most-frequent-token "
          f"baseline {result['majority_token_accuracy']:.3f}")
    assert result["steps"] == 600
    assert result["eval_mlm_accuracy"] >= 1.3 * result["majority_token_accuracy"]
    assert (tmp_path / "export" / "model.safetensors").exists()
    assert (tmp_path / "curves.png").exists()


@pytest.fixture(scope="module")
def small_mlm_teacher(tmp_path_factory, minilm_dir):
    path = tmp_path_factory.mktemp("mlm_teacher")
    model = Model(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=4,
                             num_attention_heads=2, intermediate_size=64), heads=("mlm",))
    save_pretrained(path, model, init_params(model, 0), load_tokenizer(minilm_dir / "vocab.txt"))
    return path


@pytest.mark.parametrize("variant", ["distilbert", "minilm"])
def test_general_distillation_configs(tmp_path, small_mlm_teacher, variant):
    """The raw-text recipes run a step from their documented command (student = every other
    layer of the teacher for distilbert; the teacher's head count for minilm)."""
    overrides = ("{'hidden_size': 32, 'intermediate_size': 64, 'num_attention_heads': 2, "
                 "'num_hidden_layers': 2}"
                 if variant == "distilbert" else SMALL)
    result = distill_cli("distill", f"distill.py:{variant}", tmp_path, *ONE_STEP,
                         f"--config.teacher.name={small_mlm_teacher}",
                         f"--config.model.overrides={overrides}")
    assert result["steps"] == 1 and "final" in result
