"""One writer per run folder: `WORKDIR/run.lock`, held while a program writes there.

Two runs writing one work directory (a scheduler's re-queued job while the old process still
runs, a second terminal) would interleave checkpoints, metrics and exports. The `distill`
programs take the lock before anything is written (the CLI, for its --workdir; `stage`, for each
stage folder of a recipe or sweep) and release it when they end, on errors and on SIGTERM too:

    with run_lock.hold(workdir):
        ...   # write into workdir

The lock file is JSON naming its holder: host (and the kernel's boot id), pid, when that process
and the lock started, and a heartbeat the holder refreshes every `HEARTBEAT_SECONDS` (a thread).
Another process that finds it

- refuses, with one line naming the holder and how to stop it, when the holder is alive: on the
  same host, its pid runs and started before the lock; on another host, its heartbeat is younger
  than its lease (`LEASE_SECONDS`);
- takes it over with a warning when the holder is gone: the pid is not running (a SIGKILL or a
  crash leaves the file behind), the pid now belongs to a process started after the lock (reuse),
  the host rebooted, or another host's lease expired.

The same process may enter a folder it holds again (re-entrant). In a multi-process job only
process 0 takes the lock, for the whole job, and every process learns whether it did.

Local folders (shared file systems included) are created with O_CREAT|O_EXCL, and the holder
keeps an `flock` on the file: two starters cannot both create it, and a takeover is decided by
whoever gets the `flock` of the abandoned file. A URL work directory (gs://, s3://) is checked
and written through `etils.epath`, which offers no create-if-absent: runs started more than a few
seconds apart are kept apart, two started at the same moment may both pass (docs/multihost.md).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from distill.files import as_path, is_remote

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
#: How often the holder refreshes its heartbeat, and how long a silent holder on another host
#: keeps the lock (on its own host a holder is judged by its pid instead).
HEARTBEAT_SECONDS = 30.0
LEASE_SECONDS = 300.0
#: A lock file that stays unreadable this long was left by a process killed while creating it.
_UNREADABLE_GRACE_SECONDS = 10.0
#: Start times read from /proc are accurate to about a clock tick and the boot time's second.
_START_TOLERANCE_SECONDS = 1.0


class RunFolderBusy(RuntimeError):
    """Another live process holds the work directory's lock."""


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(
        timespec="milliseconds")


def _seconds(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso).timestamp()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start_time(pid: int) -> float | None:
    """When process `pid` started (epoch seconds), or None when no such process runs (a zombie
    counts as gone). Without /proc (not Linux) a live process reports 0.0: start unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except FileNotFoundError:
        return None if Path("/proc/self/stat").exists() else _alive_elsewhere(pid)
    except (OSError, StopIteration):
        return _alive_elsewhere(pid)
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (command) "; field 3 on
    if fields[0] in ("Z", "X"):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start, in ticks


def _alive_elsewhere(pid: int) -> float | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return 0.0


def _identity() -> dict[str, Any]:
    now = time.time()
    started = process_start_time(os.getpid()) or now
    return {"host": socket.gethostname(), "boot_id": _boot_id(), "pid": os.getpid(),
            "process_started": _iso(started), "started": _iso(now), "heartbeat": _iso(now),
            "lease_seconds": LEASE_SECONDS, "token": uuid.uuid4().hex,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]}


def stale_reason(record: dict[str, Any], now: float | None = None) -> str | None:
    """Why the holder named by `record` is gone, or None when it may still be running."""
    now = time.time() if now is None else now
    same_host = record.get("host") == socket.gethostname()
    if same_host and record.get("boot_id") and record["boot_id"] != _boot_id():
        return "its host has rebooted since"
    if same_host:
        pid = int(record["pid"])
        started = process_start_time(pid)
        if started is None:
            return f"process {pid} is not running"
        if started > _seconds(record["process_started"]) + _START_TOLERANCE_SECONDS:
            return (f"pid {pid} now belongs to another process, started "
                    f"{_readable(_iso(started))}, after the lock's")
        return None
    silent = now - _seconds(record["heartbeat"])
    lease = float(record.get("lease_seconds", LEASE_SECONDS))
    if silent > lease:
        return f"no heartbeat for {silent:.0f} s, longer than its {lease:.0f} s lease"
    return None


def _readable(iso: str) -> str:
    return datetime.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe(record: dict[str, Any]) -> str:
    text = f"host {record['host']}, pid {record['pid']}, started {_readable(record['started'])}"
    if record.get("host") != socket.gethostname():
        silent = time.time() - _seconds(record["heartbeat"])
        text += (f", last heartbeat {silent:.0f} s ago (its lease: "
                 f"{float(record.get('lease_seconds', LEASE_SECONDS)):.0f} s)")
    return text


def _parse(text: str) -> dict[str, Any] | None:
    try:
        record = json.loads(text)
        for key in ("host", "pid", "process_started", "started", "heartbeat", "token"):
            record[key]  # noqa: B018 - a lock missing a field is unreadable
        return record
    except (ValueError, KeyError, TypeError):
        return None


class RunLock:
    """The lock of one work directory, held by this process (see the module docstring)."""

    def __init__(self, workdir):
        self.workdir = as_path(workdir)
        self.path = self.workdir / LOCK_FILE
        self.remote = is_remote(self.workdir)
        self.record = _identity()
        self.takeover: str | None = None  # the warning, when a stale lock was taken over
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- taking and giving back -------------------------------------------------------------
    def acquire(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self._acquire_remote if self.remote else self._acquire_local)()
        if self.takeover:
            log.warning("%s", self.takeover)
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat",
                                        daemon=True)
        self._thread.start()

    def _acquire_local(self) -> None:
        path = os.fspath(self.path)
        deadline = time.time() + 5.0
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pass
            else:
                _flock(fd, wait=True)  # a contender may hold it for an instant
                self._fd = fd
                self._write()
                return
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # released meanwhile: create it
            try:
                flocked = _flock(fd, wait=False)
                record = _parse(os.pread(fd, 1 << 16, 0).decode("utf-8", "replace"))
                if flocked and not _same_file(fd, path):
                    continue  # released and maybe re-created meanwhile: look again
                if record is None:
                    age = time.time() - os.fstat(fd).st_mtime
                    if not flocked or age < _UNREADABLE_GRACE_SECONDS:
                        if time.time() < deadline:
                            time.sleep(0.1)  # being written: read it again
                            continue
                        raise RunFolderBusy(self._busy(None))
                    reason = f"the lock file is unreadable and {age:.0f} s old"
                else:
                    reason = stale_reason(record)
                    if reason is None or not flocked:  # its holder runs (or is taking it over)
                        raise RunFolderBusy(self._busy(record))
                self.takeover = self._took_over(record, reason)
                self._fd, fd = fd, None
                self._write()
                return
            finally:
                if fd is not None:
                    os.close(fd)

    def _acquire_remote(self) -> None:
        if self.path.exists():
            record = _parse(self.path.read_text())
            reason = (stale_reason(record) if record is not None
                      else "the lock file is unreadable")
            if reason is None:
                raise RunFolderBusy(self._busy(record))
            self.takeover = self._took_over(record, reason)
        self._write()
        # no create-if-absent: read back, so that a writer that raced in is seen at least
        # when its write landed first
        if (_parse(self.path.read_text()) or {}).get("token") != self.record["token"]:
            raise RunFolderBusy(self._busy(_parse(self.path.read_text())))

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            if self._owned():
                self.path.unlink()
            else:
                log.warning("%s was taken over by another run; left it in place", self.path)
        finally:
            if self._fd is not None:
                os.close(self._fd)  # drops the flock
                self._fd = None

    # --- the file ---------------------------------------------------------------------------
    def _write(self) -> None:
        data = (json.dumps(self.record, indent=2) + "\n").encode()
        if self._fd is None:
            self.path.write_bytes(data)
            return
        # rewritten in place: the flock belongs to this file, not to its name
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))
        os.fsync(self._fd)

    def _owned(self) -> bool:
        if self._fd is not None:
            return _same_file(self._fd, os.fspath(self.path))
        try:
            return (_parse(self.path.read_text()) or {}).get("token") == self.record["token"]
        except FileNotFoundError:
            return False

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                if not self._owned():
                    log.error("%s was taken over by another run (this run was silent longer "
                              "than its lease); two runs now write %s", self.path, self.workdir)
                    return
                self.record["heartbeat"] = _iso(time.time())
                self._write()
            except OSError as e:  # a full disk or a network blip: try again at the next beat
                log.warning("could not refresh %s: %s", self.path, e)

    def _busy(self, record: dict[str, Any] | None) -> str:
        if record is None:
            return (f"{self.workdir} is in use: its lock {self.path} is being written by another "
                    f"run, or unreadable; delete it if you know no other run uses the folder")
        return (f"{self.workdir} is in use by another run ({describe(record)}); stop that run "
                f"first (`kill {record['pid']}` on {record['host']}), or delete {self.path} if "
                f"you know that process is gone")

    def _took_over(self, record: dict[str, Any] | None, reason: str) -> str:
        holder = f" ({describe(record)})" if record else ""
        return f"took over {self.path} from a run that is gone{holder}: {reason}"


def _flock(fd: int, wait: bool) -> bool:
    """Takes the file's flock; False when another open file holds it. A file system without
    locks (ENOLCK) counts as taken: the record alone decides there."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        if e.errno == errno.ENOLCK:
            return True
        raise


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


# --- holding, re-entrant and once per job -----------------------------------------------------
_held: dict[str, list] = {}  # key → [RunLock, depth]
_held_guard = threading.Lock()


def _key(workdir) -> str:
    return str(workdir) if is_remote(workdir) else os.path.realpath(os.fspath(workdir))


@contextlib.contextmanager
def hold(workdir) -> Iterator[RunLock | None]:
    """Holds `workdir`'s lock for the block (yields it; None on processes other than 0), or
    raises `RunFolderBusy` naming the live holder. Re-entrant within a process."""
    import jax

    from distill.distributed import all_processes_agree

    lock, error = None, None
    if jax.process_index() == 0:
        try:
            lock = _enter(workdir)
        except RunFolderBusy as e:
            error = e
    if not all_processes_agree(error is None):
        if lock is not None:
            _exit(workdir)
        raise error or RunFolderBusy(f"process 0 could not take the lock of {workdir}; its log "
                                     f"says why")
    try:
        with _exit_on_sigterm():
            yield lock
    finally:
        if lock is not None:
            _exit(workdir)


def holds(workdir) -> bool:
    """Whether this process holds `workdir`'s lock."""
    with _held_guard:
        return _key(workdir) in _held


def _enter(workdir) -> RunLock:
    with _held_guard:
        entry = _held.get(_key(workdir))
        if entry is None:
            lock = RunLock(workdir)
            lock.acquire()
            entry = _held[_key(workdir)] = [lock, 0]
        entry[1] += 1
        return entry[0]


def _exit(workdir) -> None:
    with _held_guard:
        entry = _held[_key(workdir)]
        entry[1] -= 1
        if entry[1] == 0:
            del _held[_key(workdir)]
            entry[0].release()


@contextlib.contextmanager
def _exit_on_sigterm():
    """SIGTERM (the default action kills without cleanup) unwinds instead, so `hold` releases the
    lock and half-written outputs are removed; exit status 128 + 15 as for the default. Left
    alone where a handler is already set (the trainer's preemption saving), in multi-process
    jobs (JAX's preemption sync manager owns SIGTERM there, set from C++: Python still reports
    the default) and off the main thread."""
    import jax

    if (threading.current_thread() is not threading.main_thread() or jax.process_count() > 1
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
