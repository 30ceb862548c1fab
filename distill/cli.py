"""`distill` — the training programs, each driven by an ml_collections config file.

    distill pretrain --config experiments/pretrain.py:tiny --workdir runs/pt --config.trainer.num_steps=100
    distill finetune --config experiments/finetune.py:sentiment --workdir runs/ft
    distill distill  --config experiments/distill.py:... --workdir runs/kd

Any config field can be overridden with `--config.a.b=value`; an unknown field is an error before
anything is built. Running the same command again in the same work directory resumes. Multi-host
jobs run one process per host with `--coordinator_address/--num_processes/--process_id` (or none
of them on a TPU pod or under SLURM); see docs/multihost.md.
"""

from __future__ import annotations

import importlib
import logging
import sys

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
}

USAGE = (f"usage: distill {{{','.join(PROGRAMS)}}} --config FILE.py[:ARG] --workdir DIR "
         f"[--config.FIELD=VALUE ...]\n       distill report WORKDIRS... --out DIR")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) > 1 and argv[1] == "report":
        import argparse

        from distill.tasks.recipe import report
        parser = argparse.ArgumentParser(prog="distill report",
                                         description="collect recipe runs into one table and plots")
        parser.add_argument("workdirs", nargs="+")
        parser.add_argument("--out", required=True)
        args = parser.parse_args(argv[2:])
        try:
            report(args.workdirs, args.out)
        except (ValueError, FileNotFoundError) as e:
            raise SystemExit(f"distill report: {e}") from None
        return
    if len(argv) < 2 or argv[1] not in PROGRAMS:
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    program = argv.pop(1)

    from absl import flags
    from ml_collections import config_flags

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
    if flags_.config is None or flags_.workdir is None:
        raise SystemExit(f"distill {program}: --config and --workdir are required\n{USAGE}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from distill import distributed
    try:
        distributed.initialize(flags_.coordinator_address, flags_.num_processes, flags_.process_id)
    except ValueError as e:
        raise SystemExit(f"distill {program}: {e}") from None
    module_name, _, function = PROGRAMS[program].partition(":")
    entry = getattr(importlib.import_module(module_name), function or "run")
    try:
        entry(flags_.config, flags_.workdir)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"distill {program}: {e}") from None


if __name__ == "__main__":
    main()
