"""How long until retention deletes messages a lagging group has not read yet.

Silent data loss happens when time-based retention deletes the segment a slow group is still
reading (the paper's consumers keep their own position, so nothing tells them). The broker's cleaner (``broker.retention``) deletes whole segments from the
front of a log, oldest first, once their last write (mtime) is older than ``retention_ms``, never
the active (last) segment. So the segment holding a group's committed offset goes once it and
every segment before it are older than the retention::

    seconds_left = max(mtime of segments 0..k) + retention_ms / 1000 - now

where k is the segment holding the committed offset. ``None`` when that segment is the active
one (it cannot be deleted until the log rolls), 0 when the committed offset is already below
the log start (the loss has happened; the group's data_loss shows it).

It is an estimate, on the early side: the cleaner runs every ``cleaner_interval_ms`` (60 s by
default), so a segment goes up to that much later; a log that rolls before then makes the active
segment deletable (the estimate then appears); size-based retention (``retention_bytes``, off by
default) is not modelled. The segment mtimes are read from the broker's data dir, so this works
where the sampler runs on the brokers' host (the local cluster's supervisor does).

Worked example, retention 1 hour (3600 s), now = 10_000::

    segment start  mtime
    0              5_000
    1000           7_000     <- committed offset 1500 is here (k = 1)
    2000           9_500     (active)
    seconds_left = max(5_000, 7_000) + 3600 - 10_000 = 600
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from broker import backlog
from broker.segment import SUFFIX, parse_segment_name


def seconds_left(segments: Sequence[tuple[int, float]], position: int, now: float,
                 retention_ms: int) -> float | None:
    """Seconds until the segment holding ``position`` may be deleted. Pure: the time rule of
    ``broker.backlog.seconds_left``, the countdown that drives backlog protection.

    ``segments`` are ``(start_offset, mtime_seconds)`` sorted by start offset.
    """
    return backlog.seconds_left([(start, 0, mtime) for start, mtime in segments], position,
                                now, retention_ms)


def list_segments(directory: str | os.PathLike) -> list[tuple[int, float]]:
    """``(start_offset, mtime)`` of the segment files in one partition's directory, sorted.

    A segment deleted between the listing and its stat is left out; a missing directory is an
    empty list.
    """
    found = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        if not entry.name.endswith(SUFFIX):
            continue
        try:
            start = parse_segment_name(entry.name)
            found.append((start, entry.stat().st_mtime))
        except (ValueError, FileNotFoundError):
            continue
    return sorted(found)


def partition_dir(broker_data_dir: str | os.PathLike, topic: str, partition: int) -> Path:
    """Where a broker keeps one partition (``broker.server``'s layout)."""
    return Path(broker_data_dir) / topic / str(partition)
