"""Bad input gets one clear line naming the file, field, value or line — and nothing in the work
directory is lost, overwritten or half-created. The matrix is a table: the next case is one row.

Each row: (command line, what to set up first, a substring the error must contain). In the
command line, {tmp} is the test's folder, {minilm} the all-MiniLM-L6-v2 folder and {pretrain}
distill/experiments/pretrain.py; setups write the files the row names.
"""

import hashlib
import json
from pathlib import Path

import pytest

from distill import experiments

EXPERIMENTS = experiments.DIR
TINY = ["--config={pretrain}:tiny", "--workdir={tmp}/run"]

MATRIX = [
    # configs
    (["distill", "pretrain", *TINY, "--config.trainer.nope=1"], None,
     "unknown config field"),
    (["distill", "pretrain", *TINY, "--config.trainer.num_steps=many"], None,
     "num_steps"),
    (["distill", "pretrain", "--config={tmp}/missing.py", "--workdir={tmp}/run"], None,
     "missing.py"),
    (["distill", "pretrain", "--config={pretrain}:tiny"], None,
     "--config and --workdir are required"),
    (["distill", "pretrain", *TINY, "--config.model.name={minilm}",
      "--config.model.overrides={{'hidden_size': 64, 'hidden_dropout_prob': 0.0}}"], None,
     "model.name={minilm} is a weights folder, whose architecture is fixed (hidden_size=384 "
     "there, 64 asked); only hidden_dropout_prob"),
    # work directories
    (["distill", "pretrain", "--config={pretrain}:tiny", "--workdir={tmp}/a_file"], "a_file",
     "--workdir {tmp}/a_file is an existing file"),
    (["distill", "pretrain", "--config={pretrain}:mini", "--workdir={tmp}/run"], "tiny_run",
     "model.name: 'tiny' there, 'mini' in this run"),
    (["distill", "pretrain", *TINY, "--config.data.max_seq_length=64"], "tiny_run",
     "data.max_seq_length: 128 there, 64 in this run\nuse a new --workdir"),
    (["distill", "pretrain", *TINY], "bad_config_json",
     "{tmp}/run/config.json is not readable JSON"),
    # files
    (["flaxbert", "embed", "--model={minilm}", "--input={tmp}/missing.txt"], None,
     "input file {tmp}/missing.txt does not exist"),
    (["flaxbert", "embed", "--model={minilm}", "--input={tmp}/latin1.txt"], "latin1",
     "input file {tmp}/latin1.txt is not UTF-8: line 2, column 7 has the byte 0xe9"),
    (["distill", "vocab", "--input=text:{tmp}/latin1.txt", "--out={tmp}/vocab"],
     "latin1", "text file {tmp}/latin1.txt is not UTF-8: line 2, column 7"),
    (["flaxbert", "embed", "--model={tmp}/nope", "--input={tmp}/texts.txt"], "texts",
     "nope"),
    # shapes
    (["flaxbert", "embed", "--model={minilm}", "--input={tmp}/texts.txt", "--seq-length=4096"],
     "texts", "seq_length=4096; expected 2..512"),
    (["flaxbert", "embed", "--model={minilm}", "--input={tmp}/texts.txt", "--batch-size=0"],
     "texts", "batch_size=0; expected a positive number of texts"),
]


def _tiny_config_json():
    from distill.cli import _load_experiment
    return _load_experiment(f"{EXPERIMENTS / 'pretrain.py'}:tiny").to_json_best_effort(
        indent=2, sort_keys=True)


SETUPS = {
    "a_file": lambda tmp: (tmp / "a_file").write_text("not a folder\n"),
    "tiny_run": lambda tmp: ((tmp / "run" / "checkpoints" / "4").mkdir(parents=True),
                             (tmp / "run" / "checkpoints" / "4" / "state").write_bytes(b"\0" * 64),
                             (tmp / "run" / "config.json").write_text(_tiny_config_json())),
    "bad_config_json": lambda tmp: ((tmp / "run").mkdir(),
                                    (tmp / "run" / "config.json").write_text("{not json")),
    "latin1": lambda tmp: (tmp / "latin1.txt").write_bytes(
        "a first line\nun café crème\n".encode("latin-1")),
    "texts": lambda tmp: (tmp / "texts.txt").write_text("one text\nanother text\n"),
}


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("argv,setup,expected", MATRIX,
                         ids=[f"{row[0][1]}-{row[2][:40]}" for row in MATRIX])
def test_bad_input_is_one_clear_line_and_nothing_is_lost(tmp_path, minilm_dir, argv, setup,
                                                         expected):
    from distill.cli import main as distill_main
    from flaxbert.cli import main as flaxbert_main

    if setup:
        SETUPS[setup](tmp_path)
    fill = dict(tmp=tmp_path, minilm=minilm_dir, pretrain=EXPERIMENTS / "pretrain.py")
    argv = [a.format(**fill) for a in argv]
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as stop:
        if argv[0] == "distill":
            distill_main(argv)
        else:
            flaxbert_main(argv[1:])
    message = str(stop.value.code)
    assert stop.value.code != 0
    assert expected.format(**fill) in message
    assert "Traceback" not in message
    assert snapshot(tmp_path) == before  # nothing written, moved or removed


def test_refused_workdir_lists_every_differing_field_and_the_resumable_ones(tmp_path):
    from distill.cli import _load_experiment
    from distill.tasks.common import check_workdir

    SETUPS["tiny_run"](tmp_path)
    config = _load_experiment(f"{EXPERIMENTS / 'pretrain.py'}:mini")
    config.data.nsp = True
    with pytest.raises(ValueError) as refused:
        check_workdir(tmp_path / "run", config)
    text = str(refused.value)
    assert "model.name: 'tiny' there, 'mini' in this run" in text
    assert "data.nsp: False there, True in this run" in text
    assert "Fields that may change on resume: num_steps" in text
    # the resumable fields alone are allowed, and reported
    config = _load_experiment(f"{EXPERIMENTS / 'pretrain.py'}:tiny")
    config.trainer.num_steps = 5000
    config.trainer.eval_every = 7
    config.mesh.fsdp = 2
    changes = check_workdir(tmp_path / "run", config)
    assert changes == {"mesh.fsdp": (1, 2), "trainer.eval_every": (500, 7),
                       "trainer.num_steps": (2000, 5000)}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["name"] == "tiny"


def test_a_finished_recipe_may_grow_its_seeds_methods_and_curve_points_but_not_its_grid(tmp_path):
    from distill.cli import _load_experiment
    from distill.tasks.common import check_workdir, prepare_workdir

    run = prepare_workdir(tmp_path / "run", _load_experiment(f"{EXPERIMENTS / 'recipe.py'}:demo"))
    grown = _load_experiment(f"{EXPERIMENTS / 'recipe.py'}:demo")
    grown.recipe.seeds, grown.recipe.pretrain_checkpoints = (0, 1, 2), (150,)
    grown.recipe.methods = ("scratch", "pt_ft")
    assert set(check_workdir(run, grown)) == {"recipe.seeds", "recipe.pretrain_checkpoints",
                                              "recipe.methods"}
    grown.recipe.learning_rates = (1e-4,)  # the stages already run were picked on another grid
    with pytest.raises(ValueError, match="recipe.learning_rates"):
        check_workdir(run, grown)


def test_a_run_from_before_a_field_existed_resumes_only_under_the_value_it_ran_as(tmp_path):
    from distill.cli import _load_experiment
    from distill.tasks.common import check_workdir, prepare_workdir

    run = prepare_workdir(tmp_path / "run", _load_experiment(f"{EXPERIMENTS / 'recipe.py'}:demo"))
    saved = json.loads((run / "config.json").read_text())
    for block, field in (("pretrain", "objective"), ("pretrain", "embedding_gradient"),
                         ("recipe", "batch_sizes")):
        del saved[block][field]
    del saved["pretrain"]["data"]["tfds_data_dir"]
    del saved["pretrain"]["electra"]
    (run / "config.json").write_text(json.dumps(saved))
    today = _load_experiment(f"{EXPERIMENTS / 'recipe.py'}:demo")
    assert check_workdir(run, today) == {}  # it ran as MLM, dense, the default batch grid,
    #                                          its TFDS data (if any) in $TFDS_DATA_DIR
    today.pretrain.objective = "electra"
    with pytest.raises(ValueError, match="pretrain.objective: '\\(absent\\)' there, 'electra'"):
        check_workdir(run, today)
