"""The default group-worker handler: the paper's Hadoop loader in miniature.

Each message is appended as one line ``<offset>\\t<value>`` to an hourly file per partition,
``<root>/<topic>/<partition>/<YYYYMMDDHH>.log`` (UTC, by the time it was loaded). The worker
calls ``flush()`` before it commits offsets, so a committed offset is always on disk here
first: a crash replays at most what was loaded after the last commit (at-least-once). A commit
before a rebalance runs ``flush()`` on the consumer's rebalance thread while messages are
being loaded, so one lock covers the files.
"""
from __future__ import annotations

import base64
import os
import threading
import time
from pathlib import Path

ROOT_ENV = "SLUICE_LOADER_DIR"


class HourlyFiles:
    def __init__(self, root: str | os.PathLike | None = None):
        self._root = Path(root) if root else None
        self._files: dict[tuple[str, int, str], object] = {}
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = Path(os.environ.get(ROOT_ENV, "loaded"))
        return self._root

    def __call__(self, message) -> None:
        hour = time.strftime("%Y%m%d%H", time.gmtime())
        key = (message.topic, message.partition, hour)
        value = message.value
        if b"\n" in value or b"\t" in value:
            value = b"b64:" + base64.b64encode(value)
        with self._lock:
            f = self._files.get(key)
            if f is None:
                self._close_other_hours(hour)
                folder = self.root / message.topic / str(message.partition)
                folder.mkdir(parents=True, exist_ok=True)
                f = self._files[key] = open(folder / f"{hour}.log", "ab")
            f.write(b"%d\t%s\n" % (message.offset, value))

    def flush(self) -> None:
        """Make every loaded line durable before the worker commits."""
        with self._lock:
            for f in self._files.values():
                f.flush()
                os.fsync(f.fileno())

    def _close_other_hours(self, hour: str) -> None:
        for key in [k for k in self._files if k[2] != hour]:
            f = self._files.pop(key)
            f.flush()
            os.fsync(f.fileno())
            f.close()


hourly_files = HourlyFiles()


def read_loaded(root: str | os.PathLike) -> dict[tuple[str, int], list[tuple[int, bytes]]]:
    """Every (offset, value) a loader wrote under root, by (topic, partition), in file order."""
    result: dict[tuple[str, int], list[tuple[int, bytes]]] = {}
    for path in sorted(Path(root).glob("*/*/*.log")):
        topic, partition = path.parent.parent.name, int(path.parent.name)
        rows = result.setdefault((topic, partition), [])
        for line in path.read_bytes().splitlines():
            offset, _, value = line.partition(b"\t")
            if value.startswith(b"b64:"):
                value = base64.b64decode(value[4:])
            rows.append((int(offset), value))
    return result
