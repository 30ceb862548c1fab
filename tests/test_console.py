"""What a user sees: `--help` for every command, and a console of one progress bar, the eval
lines and the summary (library logs go to WORKDIR/log.txt; -v brings them back)."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distill.cli import EXPERIMENTS, PROGRAMS, TOOLS
from distill.cli import main as distill_main
from flaxbert.cli import main as flaxbert_main

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("program", list(PROGRAMS))
def test_distill_help_shows_usage_an_example_and_the_config_fields(program, capsys):
    distill_main(["distill", program, "--help"])  # returns: exit status 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: distill {program} --config FILE.py")
    assert f"example:\n  distill {program} --config {EXPERIMENTS[program]}" in out
    assert "(with their defaults):" in out
    assert out.count("\n  --config.") >= 10  # every field, one line each


def test_distill_help_of_a_given_config_lists_its_fields_with_overrides(capsys):
    distill_main(["distill", "pretrain", "--config=pretrain.py:tiny",
                  "--config.trainer.num_steps=77", "--help"])
    out = capsys.readouterr().out
    assert "distill/experiments/pretrain.py:tiny (with their defaults):" in out
    assert "  --config.trainer.num_steps=77\n" in out and "  --config.model.name='tiny'\n" in out


def test_distill_top_level_help_lists_every_command(capsys):
    distill_main(["distill", "--help"])
    out = capsys.readouterr().out
    for program in [*PROGRAMS, *TOOLS]:
        assert f"\n  {program:9s} " in out


@pytest.mark.parametrize("command", [["info"], ["embed"], ["convert"], ["demo"], []])
def test_flaxbert_help_exits_0_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as done:
        flaxbert_main([*command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: flaxbert")
    assert "example" in out and "\n  flaxbert " + " ".join(command) in out


def test_verbose_brings_library_logs_to_the_console_and_the_file_keeps_them(tmp_path, capsys):
    from distill.cli import setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        for verbose in (False, True):
            log_file = setup_logging(tmp_path / str(verbose), verbose)
            logging.getLogger("absl").info("orbax says %d", 1)
            logging.getLogger("distill.trainer").info("step 3: eval_acc=0.5")
            logging.getLogger("jax._src.xla_bridge").warning("a warning")
            err = capsys.readouterr().err
            assert "step 3: eval_acc=0.5" in err and "warning: a warning" in err
            assert ("orbax says 1" in err) == verbose
            text = Path(log_file).read_text()
            assert "INFO absl: orbax says 1" in text and "step 3: eval_acc=0.5" in text
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


@pytest.mark.slow
def test_a_30_step_pretrain_console_is_a_progress_bar_eval_lines_and_a_summary(tmp_path,
                                                                               vader_dir):
    corpus = tmp_path / "tweets.txt"
    lines = (vader_dir / "tweets_GroundTruth.txt").read_text().splitlines()[:400]
    corpus.write_text("\n".join(lines) + "\n")
    workdir = tmp_path / "pt"
    overrides = {"trainer.num_steps": 30, "trainer.eval_every": 15, "trainer.checkpoint_every": 10,
                 "trainer.log_every": 5, "trainer.batch_size": 8, "data.max_seq_length": 32,
                 "data.max_predictions_per_seq": 5, "data.train": f"vader:{corpus}",
                 "data.eval": f"vader:{corpus}", "data.dupe_factor": 1}
    proc = subprocess.run(
        [sys.executable, "-m", "distill.cli", "pretrain",
         "--config=pretrain.py:tiny", f"--workdir={workdir}",
         *(f"--config.{k}={v}" for k, v in overrides.items())],
        capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = (proc.stdout + proc.stderr).replace("\r", "\n").splitlines()
    assert not [line for line in console if "INFO" in line]
    others = [line for line in console if line.strip() and "step/s" not in line
              and "?step" not in line and not line.startswith("pt:")]
    assert len(others) <= 15, others
    assert any(line.startswith("step 30: eval_mlm_accuracy=") for line in others)
    assert any(line.startswith("pre-training done: ") for line in others)
    log = (workdir / "log.txt").read_text()
    assert "INFO absl:" in log and "CheckpointManager" in log
