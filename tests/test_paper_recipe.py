"""`recipe.py:paper` end to end on this CPU, shrunk by overrides: a tiny teacher, two student
sizes, a pair task read as the paper config reads it — `tfds:glue/rte`, a real prepared TFDS set
built here by TFDS's own GLUE builder — with an NLI* pair transfer set made by `distill
transfer-pairs` from a prepared TFDS `snli`, Wikipedia-style pre-training text from TFDS, a few
steps per stage — BERT's two pre-training phases, the lr × batch-size grid, the GLUE submission
files — and a rerun that skips every stage."""

import json
import re
import sys

import pytest

from distill import experiments
from distill.cli import main
from distill.data import tasks as task_data
from distill.experiments import recipe as recipe_configs
from flaxbert import Model, init_params
from flaxbert.configs import BertConfig
from flaxbert.pretrained import save_pretrained
from flaxbert.tokenization import load_tokenizer

STUDENTS = ("bert_uncased_L-2_H-128_A-2", "bert_uncased_L-4_H-128_A-2")


def write_rte(folder, sentences):
    """RTE in the official GLUE layout: train / dev with labels, test without."""
    rte = folder / "RTE"
    rte.mkdir(parents=True)
    labels = task_data.GLUE_TASKS["rte"].labels
    pairs = list(zip(sentences[0::2], sentences[1::2]))
    for split, rows in (("train", pairs[:48]), ("dev", pairs[48:64]), ("test", pairs[64:80])):
        header = "index\tsentence1\tsentence2" + ("" if split == "test" else "\tlabel")
        lines = [header] + [f"{i}\t{a}\t{b}" + ("" if split == "test" else f"\t{labels[i % 2]}")
                            for i, (a, b) in enumerate(rows)]
        (rte / f"{split}.tsv").write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_paper_recipe_runs_every_stage_writes_submissions_and_a_rerun_skips_them(
        tmp_path, minilm_dir, movie_sentences, monkeypatch):
    from tfds_builders import prepare_glue, prepare_snli, prepare_text

    vocab = minilm_dir / "vocab.txt"
    teacher = tmp_path / "teacher"
    model = Model(BertConfig(vocab_size=30522, hidden_size=48, num_hidden_layers=2,
                             num_attention_heads=4, intermediate_size=96), heads=())
    save_pretrained(teacher, model, init_params(model, 0), load_tokenizer(vocab))
    sentences = [s.replace("\t", " ") for s in movie_sentences[:400]]
    tfds_dir = tmp_path / "tensorflow_datasets"  # the TFDS data folder every `tfds:` spec reads
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    write_rte(tmp_path / "glue", sentences)
    prepare_glue(tmp_path / "glue", "rte", tfds_dir)
    prepare_snli(list(zip(sentences[200:264:2], sentences[201:265:2])), tmp_path / "snli", tfds_dir)
    transfer = tmp_path / "nli_star.tsv"  # NLI*: the pairs, labels dropped, RTE's dev/test left out
    main(["distill", "transfer-pairs", f"--out={transfer}", "--tfds=snli",
          "--task=tfds:glue/rte"])
    assert len(transfer.read_text().splitlines()) == 32
    prepare_text("20230601.en", [(f"article {i}", "\n".join(sentences[i:i + 8]))
                                 for i in range(0, 400, 8)], tfds_dir)
    corpus = "tfds:wikipedia/20230601.en"
    run = tmp_path / "run"
    tiny_stage = {"trainer.eval_every": 1000, "trainer.checkpoint_every": 1000,
                  "data.max_seq_length": 32, "data.buckets": "(32,)"}
    overrides = [f"--config.{block}.{k}={v}" for block in ("teacher_finetune", "student_finetune",
                                                           "distill")
                 for k, v in {**tiny_stage, "trainer.num_epochs": 1}.items()]
    overrides += [
        "--config.recipe.tasks=('rte',)",  # recipe.task_name: the paper's tfds:glue/{task}
        f"--config.recipe.transfer.rte={transfer}", f"--config.recipe.students={STUDENTS}",
        f"--config.recipe.vocab={vocab}", f"--config.teacher_finetune.model.name={teacher}",
        "--config.recipe.learning_rates=(1e-4,)", "--config.recipe.batch_sizes=(8, 16)",
        "--config.teacher_finetune.trainer.batch_size=16", "--config.distill.trainer.batch_size=16",
        "--config.distill.distill.held_out=0",
        f"--config.pretrain.data.train={corpus}", f"--config.pretrain.data.eval={corpus}",
        "--config.pretrain.data.dupe_factor=1", "--config.pretrain.data.max_seq_length=32",
        "--config.pretrain.data.max_predictions_per_seq=5",
        "--config.recipe.pretrain_long_seq_length=64",
        "--config.recipe.pretrain_long_max_predictions=10",
        "--config.pretrain.trainer.batch_size=8", "--config.pretrain.trainer.num_steps=4",
        "--config.pretrain.trainer.eval_every=2", "--config.pretrain.trainer.checkpoint_every=2",
        "--config.pretrain.optimizer.warmup_steps=1", "--config.recipe.pretrain_long_fraction=0.5",
    ]
    command = ["distill", "recipe", f"--config={experiments.DIR / 'recipe.py'}:paper",
               f"--workdir={run}", *overrides]
    main(command)

    # BERT's two phases: 2 steps at 32 tokens, then the 64-token run continues at step 2 to 4
    for student in STUDENTS:
        short = json.loads((run / f"pretrain_{student}_len32" / "result.json").read_text())
        long = json.loads((run / f"pretrain_{student}" / "result.json").read_text())
        assert short["steps"] == 2 and long["steps"] == 4
        saved = json.loads((run / f"pretrain_{student}" / "config.json").read_text())
        assert saved["data"]["max_seq_length"] == 64 and saved["init_from"].endswith("_len32")
        first_logged = [json.loads(line)["step"] for line in
                        (run / f"pretrain_{student}" / "metrics.jsonl").read_text().splitlines()]
        assert min(first_logged) == 3  # it started from the first phase's step 2
    # every student method over the lr × batch-size grid, dev picked
    table = json.loads((run / "results.json").read_text())["rte"]["table"]
    assert {(e["method"], e["student"]) for e in table} == (
        {("teacher", "BERT-Large uncased")}
        | {(m, s) for m in ("scratch", "pt_ft", "kd", "pd") for s in STUDENTS})
    for method in ("scratch", "pt_ft", "pd"):
        sweep = json.loads((run / "rte" / f"{method}_{STUDENTS[0]}_seed0" / "sweep.json").read_text())
        assert [(c["lr"], c["batch_size"]) for c in sweep["cells"]] == [(1e-4, 8), (1e-4, 16)]
    rows = json.loads((run / "rte" / "results.json").read_text())["rows"]
    assert {r["batch_size"] for r in rows if r["method"] in ("scratch", "pt_ft", "pd")} <= {8, 16}
    assert (run / "results.md").read_text().startswith("## rte\n\n| method |")
    # GLUE submission files: index<TAB>label name for all 16 test pairs, per method and student
    folders = sorted(p.name for p in (run / "submissions").iterdir())
    assert folders == sorted(["teacher"] + [f"{m}_{s}_seed0" for m in ("scratch", "pt_ft", "pd")
                                            for s in STUDENTS])
    for folder in folders:
        lines = (run / "submissions" / folder / "RTE.tsv").read_text().splitlines()
        assert lines[0] == "index\tprediction" and len(lines) == 17
        assert all(re.fullmatch(r"\d+\t(entailment|not_entailment)", line) for line in lines[1:])

    # a rerun skips every stage: no stage runs, no result, checkpoint or prediction is rewritten
    def outputs():
        return {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()
                and (p.name == "result.json" or "checkpoints" in p.parts
                     or "predictions" in p.parts or "submissions" in p.parts)}
    before = outputs()
    log = run / "log.txt"
    ran_before = log.read_text().count(": running in ")
    main(command)
    assert outputs() == before
    assert log.read_text().count(": running in ") == ran_before
    stages = [p for p in before if p.name == "result.json"]
    assert log.read_text().count("done earlier") >= len(stages)


def test_a_gs_workdir_without_gcsfs_names_the_gcs_extra(monkeypatch, capsys):
    """The pod command (docs/multihost.md) on a host without gcsfs stops at once, saying which
    extra installs it (fsspec alone says only "Please install gcsfs")."""
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # not installed, whatever this venv holds
    with pytest.raises(SystemExit) as stop:
        main(["distill", "recipe", f"--config={experiments.DIR / 'recipe.py'}:paper",
              "--workdir=gs://bucket/paper"])
    message = str(stop.value)
    assert "gcsfs" in message and "pip install 'flaxbert[gcs]'" in message
    assert len(message.splitlines()) == 1


def test_a_paper_run_may_grow_its_tasks_but_not_its_fine_tuning_grid(tmp_path):
    """New tasks are new folders; the batch sizes, like the lrs, decided the cells dev picked from."""
    from distill.tasks.common import check_workdir, prepare_workdir

    run = prepare_workdir(tmp_path / "run", recipe_configs.get_config("paper"))
    grown = recipe_configs.get_config("paper")
    grown.recipe.tasks = ("sst2", "mnli", "rte", "qnli")
    grown.plan.device = "h100"  # the plan's assumptions are no part of the runs
    assert set(check_workdir(run, grown)) == {"recipe.tasks", "plan.device"}
    grown.recipe.batch_sizes = (32,)
    with pytest.raises(ValueError, match="recipe.batch_sizes"):
        check_workdir(run, grown)


def test_the_short_phase_follows_the_whole_runs_schedule():
    """BERT's 128-token phase stops at 90 % of a schedule that spans all steps
    (`optimizer.schedule_steps`), so the 512-token phase continues the same learning rate."""
    from distill import defaults, optim

    opt = defaults.optimizer(lr=1.0, warmup_steps=10, schedule="linear")
    _, whole = optim.make_optimizer(opt, 100)
    _, alone = optim.make_optimizer(opt, 90)  # a run of 90 steps decays to 0 by its end
    opt.schedule_steps = 100
    _, first_phase = optim.make_optimizer(opt, 90)
    for step in (5, 50, 89):
        assert float(first_phase(step)) == pytest.approx(float(whole(step)))
    assert float(alone(89)) < 0.5 * float(whole(89))
