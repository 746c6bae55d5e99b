"""One run per output folder: an exclusive lock, a run id, and no silent reuse of a folder that holds another run.

``OutputDirLock`` creates ``OUTPUT_DIR/dalr_run.lock`` (exclusively) holding the pid, host and start time of the run
and keeps an ``flock`` on it while the run lives. A second run into the same folder is refused with the holder's
pid, host and start time. A lock whose process is gone (a SIGKILL, a crash, a reboot) is reported as stale and never
taken over silently: the message says which file to delete once the user has checked no run uses the folder.

``start_run`` refuses a fresh run in a folder that holds an earlier run unless ``overwrite_output_dir`` is set (then
the earlier run's checkpoints and files are removed first), and writes ``dalr_run.json`` with a new run id that every
checkpoint manifest records: a resume checks the checkpoint comes from this very run, not only from the same
configuration.
"""

from __future__ import annotations

import datetime
import errno
import json
import logging
import os
import re
import shutil
import socket
import uuid

logger = logging.getLogger(__name__)

LOCK_FILE = "dalr_run.lock"
RUN_FILE = "dalr_run.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-\d+$")
# Files a finished or interrupted run leaves at the top of its output folder (besides checkpoint-N folders).
RUN_ARTIFACTS = (
    RUN_FILE,
    "dalr_run_report.json",
    "dalr_schedule.json",
    "dalr_card_data.json",
    "model.safetensors",
    "modules.json",
    "config.json",
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
    "README.md",
    "training_args.bin",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "dalr_training_heads.safetensors",
    "dalr_lora_adapter",
    "1_Pooling",
    "export",
    "stand_in_features",
    "runs",
)


# What makes a folder hold an earlier run: checkpoints, a saved model, a report or an export.
_RESULTS = ("model.safetensors", "dalr_run_report.json", "export", "dalr_lora_adapter")


class OutputDirInUse(RuntimeError):
    """Another run holds the output folder, or a dead run left its lock behind."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputDirLock:
    """Exclusive lock on an output folder for the lifetime of a run (use as a context manager)."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK_FILE)
        self._fd: int | None = None

    def _holder(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def acquire(self) -> OutputDirLock:
        import fcntl

        os.makedirs(self.output_dir, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            self._refuse()
            raise  # not reached: _refuse always raises
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
            os.write(fd, json.dumps(holder).encode())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(self.path)
            raise
        self._fd = fd
        return self

    def _refuse(self) -> None:
        import fcntl

        holder = self._holder()
        who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"
        alive = True
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise OutputDirInUse(
                f"output_dir {self.output_dir} was locked by another run ({who}) a moment ago; try again"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alive = False  # nobody holds the flock: the process that created the lock is gone
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
        finally:
            os.close(fd)
        same_host = holder.get("host") == socket.gethostname()
        if alive and same_host and isinstance(holder.get("pid"), int) and not _pid_alive(holder["pid"]):
            alive = False
        if alive:
            raise OutputDirInUse(
                f"output_dir {self.output_dir} is in use by another run ({who}); wait for it to finish or choose "
                "another output_dir"
            )
        raise OutputDirInUse(
            f"output_dir {self.output_dir} holds a stale lock ({self.path}) of a run that is no longer running "
            f"({who}); it was not removed automatically: check that no run uses this folder, delete {self.path}, "
            "then resume with --resume_from_checkpoint last (or start again with --overwrite_output_dir)"
        )

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def earlier_run_files(output_dir: str) -> list[str]:
    """What an earlier run left in ``output_dir`` (checkpoints, the saved model, run files)."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in sorted(os.listdir(output_dir)):
        if _CHECKPOINT_RE.match(name) or name in RUN_ARTIFACTS:
            found.append(name)
    return found


def read_run_id(output_dir: str) -> str | None:
    """The id of the run that owns ``output_dir`` (None for a folder made without the recipe)."""
    path = os.path.join(output_dir, RUN_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


def start_run(output_dir: str, *, resume: bool, overwrite: bool, keep: tuple[str, ...] = ()) -> str:
    """Claim ``output_dir`` for a run (call with the lock held, on the main process); returns the run id.

    A resume keeps the folder's run id. A fresh run in a folder that holds an earlier run is refused unless
    ``overwrite``, in which case the earlier run's files are removed (names in ``keep`` stay).
    """
    if resume:
        run_id = read_run_id(output_dir)
        if run_id is not None:
            return run_id
    else:
        earlier = [name for name in earlier_run_files(output_dir) if name not in keep]
        # a run that stopped before its first checkpoint (e.g. a model that failed to load) left nothing to lose
        worth_keeping = [name for name in earlier if _CHECKPOINT_RE.match(name) or name in _RESULTS]
        if worth_keeping and not overwrite:
            shown = ", ".join(earlier[:6]) + (", ..." if len(earlier) > 6 else "")
            raise FileExistsError(
                f"output_dir {output_dir} holds an earlier run ({shown}); resume it with --resume_from_checkpoint "
                "last, choose another output_dir, or pass --overwrite_output_dir to delete it and start afresh"
            )
        for name in earlier:
            path = os.path.join(output_dir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        if worth_keeping:
            logger.warning("overwrite_output_dir: removed the earlier run in %s (%s)", output_dir, ", ".join(earlier))
    run_id = uuid.uuid4().hex
    tmp = os.path.join(output_dir, RUN_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"run_id": run_id, "started": _now(), "pid": os.getpid(), "host": socket.gethostname()}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(output_dir, RUN_FILE))
    return run_id


_WRITE_FAILURES = (
    "iostream error",
    "failed writing file",
    "file write failed",
    "no space left",
    "os error 28",
    "file too large",
    "os error 27",
)


def _newest_file(folder: str) -> str:
    newest, newest_time = folder, -1.0
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            try:
                mtime = os.stat(path).st_mtime
            except OSError:
                continue
            if mtime > newest_time:
                newest, newest_time = path, mtime
    return newest


class DiskFullError(OSError):
    """Writing a run's files failed because the disk (or the process's file size limit) is full."""

    def __str__(self) -> str:
        return str(self.strerror)


class no_space_message:  # noqa: N801 - used as a context manager, like contextlib's helpers
    """Report a full disk as ``no space left on device while writing FILE`` instead of a C++ stream error."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir

    def __enter__(self) -> no_space_message:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # OSError, torch's RuntimeError ("iostream error") and safetensors' SafetensorError (a plain Exception)
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, DiskFullError):
            return None
        full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
        if not full and any(text in str(exc).lower() for text in _WRITE_FAILURES):
            full = True
        if not full:
            return None
        target = getattr(exc, "filename", None) or _newest_file(self.output_dir)
        try:
            free = shutil.disk_usage(self.output_dir).free
            room = f"{free / 2**20:.0f} MiB free on that disk"
        except OSError:
            room = "free space unknown"
        raise DiskFullError(
            errno.ENOSPC,
            f"no space left on device while writing {target} ({room}; or a file size limit was reached); free space "
            "and resume with --resume_from_checkpoint last (the last complete checkpoint is intact)",
        ) from exc
