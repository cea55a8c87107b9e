"""Drill handlers for group workers: the loader, plus when each message was consumed.

``timed_files`` loads exactly as ``cluster.workers.loader.hourly_files`` does (so the ledger reads the
same files) and also appends one line per message to a per-process file beside the loader's
root, ``<root>.times/<pid>.log``: ``<time.time()>\\t<topic>\\t<partition>\\t<offset>``. Its
``flush()`` flushes both before the worker commits (the loader's lines are fsynced, so commits
stay after durability). ``read_times`` reads every worker's lines back::

    WorkerConfig(..., handler="cluster.drills.handlers:timed_files")
    read_times(data_dir / "loaded" / group)  # [Consumption(t, pid, topic, partition, offset)]
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NamedTuple

from cluster.workers.loader import HourlyFiles


class Consumption(NamedTuple):
    t: float          # wall clock (time.time()) when the handler processed the message
    pid: int          # the worker process that processed it
    topic: str
    partition: int
    offset: int


def times_dir(root: str | os.PathLike) -> Path:
    root = Path(root)
    return root.with_name(root.name + ".times")


class TimedFiles(HourlyFiles):
    def __init__(self, root=None):
        super().__init__(root)
        self._times = None

    def __call__(self, message) -> None:
        super().__call__(message)
        if self._times is None:
            folder = times_dir(self.root)
            folder.mkdir(parents=True, exist_ok=True)
            self._times = open(folder / f"{os.getpid()}.log", "ab")
        self._times.write(b"%.6f\t%s\t%d\t%d\n" % (time.time(), message.topic.encode(),
                                                     message.partition, message.offset))

    def flush(self) -> None:
        super().flush()
        if self._times is not None:
            self._times.flush()


timed_files = TimedFiles()


def read_times(root: str | os.PathLike) -> list[Consumption]:
    """Every consumption recorded under ``root``'s times dir, sorted by time."""
    rows = []
    for path in Path(times_dir(root)).glob("*.log"):
        pid = int(path.stem)
        for line in path.read_bytes().splitlines():
            parts = line.split(b"\t")
            if len(parts) != 4:
                continue          # a line cut short by a crash
            rows.append(Consumption(float(parts[0]), pid, parts[1].decode(), int(parts[2]),
                                    int(parts[3])))
    rows.sort()
    return rows
