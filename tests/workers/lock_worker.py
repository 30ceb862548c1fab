"""Takes a work directory's lock as one process of a `jax.distributed` job and prints, as JSON,
whether this process holds it and what the lock file says while it is held (or the refusal).

    python tests/workers/lock_worker.py WORKDIR --coordinator 127.0.0.1:PORT --num-processes 2 \\
        --process-id 0   # and the same with --process-id 1
"""

import argparse
import json
import os

from distill import distributed, run_lock


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    args = parser.parse_args()
    distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    lock_file = os.path.join(args.workdir, run_lock.LOCK_FILE)
    try:
        with run_lock.hold(args.workdir) as lock:
            seen = json.load(open(lock_file))
            distributed.all_processes_agree(True)  # both read the file while it is held
            print(json.dumps({"holds": lock is not None, "pid": os.getpid(),
                              "lock_pid": seen["pid"]}))
    except run_lock.RunFolderBusy as e:
        print(json.dumps({"refused": str(e)}))


if __name__ == "__main__":
    main()
