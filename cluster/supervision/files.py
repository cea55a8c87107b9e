"""The local cluster's files in its data dir: how every other command finds the cluster.

| file / dir       | what                                                   | written by         |
| ---------------- | ------------------------------------------------------ | ------------------ |
| zookeeper        | the connect string (``coordinator.zk.resolve`` reads   | the supervisor at  |
|                  | it); removed at stop                                   | start              |
| cluster.json     | supervisor pid, ZooKeeper nodes, each slot's pid,      | the supervisor, at |
|                  | phase, dashboard address; replaced atomically          | every change       |
| supervisor.log   | the supervisor's log (and, detached, the children's    | the supervisor     |
|                  | stderr)                                                |                    |
| supervisor.lock  | flock held while a supervisor runs; holds its pid      | the supervisor     |
| broker-<i>/      | broker i's data                                        | broker i           |
| loaded/<group>/  | what the default worker handler loaded, hourly files   | the group workers  |
|                  | per partition                                          |                    |
| zookeeper-data/  | the embedded ZooKeeper nodes' data and logs            | ZooKeeper          |

cluster.json is read by ``sluice cluster status``, a detached ``up`` waiting for ready, the
drills (which process to kill) and ``sluice dashboard`` (where the page is); they all read it
through ``ClusterFiles``. ``SupervisorLog`` makes supervisor.log the log of every package of
ours in a supervisor's process.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
from pathlib import Path

from cluster.errors import ClusterError
from coordinator import zk as zkconnect

CLUSTER_FILE = "cluster.json"
LOG_FILE = "supervisor.log"
LOCK_FILE = "supervisor.lock"
ZK_DIR = "zookeeper-data"
LOADED_DIR = "loaded"
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"
#: The loggers whose records supervisor.log gets: every package of ours.
PACKAGE_LOGGERS = ("broker", "clients", "cluster", "coordinator")


class ClusterFiles:
    """The files of the cluster in ``data_dir`` (made absolute)."""

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = Path(data_dir).resolve()

    @property
    def state_file(self) -> Path:
        return self.data_dir / CLUSTER_FILE

    @property
    def log_file(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def lock_file(self) -> Path:
        return self.data_dir / LOCK_FILE

    @property
    def connect_file(self) -> Path:
        return self.data_dir / zkconnect.CONNECT_FILE

    @property
    def zookeeper_dir(self) -> Path:
        return self.data_dir / ZK_DIR

    def broker_dir(self, broker_id: int) -> Path:
        return self.data_dir / f"broker-{broker_id}"

    def loaded_dir(self, group: str) -> Path:
        return self.data_dir / LOADED_DIR / group

    # --- cluster.json ---------------------------------------------------------------------

    def read_state(self) -> dict:
        """cluster.json, or a ClusterError saying there is no cluster (or a damaged file)."""
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            raise ClusterError(f"no cluster in {self.data_dir}: start one with "
                               "'sluice cluster up'") from None
        except json.JSONDecodeError as exc:
            raise ClusterError(f"{self.state_file} is not valid JSON ({exc}): remove it and "
                               "start again") from exc

    def try_read_state(self) -> dict | None:
        """cluster.json, or None while there is none (a supervisor that has not written it)."""
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def write_state(self, state: dict) -> None:
        write_atomic(self.state_file, json.dumps(state, indent=2) + "\n")

    # --- the zookeeper file ---------------------------------------------------------------

    def write_connect(self, connect_string: str) -> None:
        write_atomic(self.connect_file, connect_string + "\n")

    def remove_connect(self, connect_string: str) -> None:
        """Remove the zookeeper file if it still names ``connect_string`` (ours, not a newer
        supervisor's)."""
        try:
            if self.connect_file.read_text().strip() == connect_string:
                self.connect_file.unlink()
        except FileNotFoundError:
            pass

    # --- supervisor.lock ------------------------------------------------------------------

    def take_lock(self) -> int:
        """Hold the lock for this process (its pid written in it); the open descriptor, which
        keeps the lock until closed. ClusterError when another supervisor holds it."""
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ClusterError(self.already_running(self.running_pid())) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def running_pid(self) -> int | None:
        """The pid of the supervisor holding the lock (-1 when it wrote none yet), None when
        no supervisor holds it."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.read(fd, 64).decode("ascii", "replace").strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def already_running(self, pid: int | None) -> str:
        return (f"a cluster is already running in {self.data_dir} (supervisor pid {pid}): "
                f"stop it with 'sluice cluster down --data-dir {self.data_dir}'")

    # --- supervisor.log -------------------------------------------------------------------

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no supervisor.log)"
        return "\n".join(text.splitlines()[-lines:])


class SupervisorLog:
    """supervisor.log for a supervisor in this process: every package logger of ours at INFO,
    unless stderr already is that file (a detached supervisor, whose root logger writes it)."""

    def __init__(self, path: Path):
        self.path = path
        self._handler: logging.Handler | None = None
        self._saved_levels: dict[str, int] = {}

    def attach(self) -> None:
        if _stderr_is(self.path):
            return
        self._handler = logging.FileHandler(self.path)
        self._handler.setFormatter(logging.Formatter(LOG_FORMAT))
        for name in PACKAGE_LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(self._handler)
            if logger.level == logging.NOTSET or logger.level > logging.INFO:
                self._saved_levels[name] = logger.level
                logger.setLevel(logging.INFO)

    def detach(self) -> None:
        if self._handler is None:
            return
        for name in PACKAGE_LOGGERS:
            logging.getLogger(name).removeHandler(self._handler)
        for name, level in self._saved_levels.items():
            logging.getLogger(name).setLevel(level)
        self._saved_levels.clear()
        self._handler.close()
        self._handler = None


def _stderr_is(path: Path) -> bool:
    try:
        mine = os.fstat(sys.stderr.fileno())
        theirs = os.stat(path)
    except (OSError, AttributeError, ValueError):
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename, so a reader never sees half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
