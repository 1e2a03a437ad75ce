"""One run per output folder: an exclusive lock file, with stale locks detected.

Two ``grouputils run`` processes writing into one output folder (a real
accident on a shared server) would interleave their manifests and outputs.
:class:`RunLock` makes the second one refuse to start, naming the first.

The lock is a small JSON file (host, pid, process start time, when the run
started) created with ``O_CREAT | O_EXCL``, which is atomic on local file
systems and on NFSv3+; it is removed when the run ends, however it ends, except
by SIGKILL or a crash of the machine. A lock left behind like that is *stale*
when it was taken on this host by a process that no longer exists (or whose
pid now belongs to a younger process): the next run takes it over with a
warning. A lock taken on another host cannot be checked from here, so it is
reported with the host and the file to delete once the user knows that run is
gone.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from grouputils.core.errors import GroupUtilsError, OutputError
from grouputils.core.layout import LOCK_FILE

__all__ = ["RunLock", "RunLockedError", "LOCK_NAME"]

log = logging.getLogger(__name__)

LOCK_NAME = LOCK_FILE


class RunLockedError(GroupUtilsError, RuntimeError):
    """Another run holds the output folder."""


def _this_process() -> dict[str, Any]:
    me = psutil.Process()
    return {
        "host": socket.gethostname(),
        "pid": me.pid,
        "process_started": me.create_time(),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "token": uuid.uuid4().hex,
    }


def _is_stale(holder: dict[str, Any]) -> bool:
    """True when ``holder`` was this host's process and that process is gone."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        proc = psutil.Process(int(holder["pid"]))
        started = proc.create_time()
    except (psutil.NoSuchProcess, KeyError, TypeError, ValueError):
        return True
    except psutil.AccessDenied:  # someone else's live process
        return False
    # the pid was reused by a process that started later than the lock's holder
    return abs(started - float(holder.get("process_started", started))) > 1.0


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable or half-written: treated as held by an unknown run
    return data if isinstance(data, dict) else {}


class RunLock:
    """An exclusive lock on an output folder, as a context manager.

    Parameters
    ----------
    folder : str or Path
        Where the lock file lives (made if missing), e.g.
        ``<output>/.grouputils``.
    what : str or Path, optional
        What the lock protects, for messages (default ``folder``).

    Raises
    ------
    RunLockedError
        On entering, when a live run holds the lock (the message names its
        host, pid, start time and the lock file).
    OutputError
        The folder cannot be written.
    """

    def __init__(self, folder: str | Path, what: str | Path | None = None) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.what = str(what if what is not None else folder)
        self.holder: dict[str, Any] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunLockedError` naming the holder."""
        mine = _this_process()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(self.path.parent, f"cannot be created ({e.strerror or e})") from e
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                other = _read(self.path)
                if other is None:  # released meanwhile
                    continue
                if other and _is_stale(other):
                    self._take_over(other)
                    continue
                raise RunLockedError(self._held_message(other)) from None
            except OSError as e:
                raise OutputError(
                    self.path, f"cannot create the run lock ({e.strerror or e})"
                ) from e
            with os.fdopen(fd, "w") as f:
                json.dump(mine, f)
                f.flush()
                os.fsync(f.fileno())
            self.holder = mine
            return
        raise RunLockedError(
            f"{self.what}: could not take the run lock {self.path} (it keeps changing)"
        )

    def _take_over(self, stale: dict[str, Any]) -> None:
        """Move a stale lock aside (atomically, so two runs cannot both take it)."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = _read(aside)
        if moved != stale:  # another run took it over between our read and rename: give it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        else:
            log.warning(
                "%s: taking over a stale run lock of pid %s on %s (started %s), which is no longer running",
                self.what,
                stale.get("pid"),
                stale.get("host"),
                stale.get("started"),
            )
        aside.unlink(missing_ok=True)

    def _held_message(self, other: dict[str, Any]) -> str:
        if not other:
            return f"{self.what} is locked by another run (unreadable lock file {self.path}); if no run is using it, delete that file"
        where = (
            "this host"
            if other.get("host") == socket.gethostname()
            else f"host {other.get('host')}"
        )
        hint = (
            "wait for it to finish or stop it"
            if where == "this host"
            else f"wait for it to finish; if it is no longer running there, delete {self.path}"
        )
        return (
            f"{self.what} is in use by another grouputils run (pid {other.get('pid')} on {where}, "
            f"started {other.get('started')}): {hint}"
        )

    def release(self) -> None:
        """Remove the lock file if it is still ours."""
        if self.holder is None:
            return
        current = _read(self.path)
        if current and current.get("token") == self.holder["token"]:
            self.path.unlink(missing_ok=True)
        self.holder = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
