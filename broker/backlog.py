"""Backlog at risk: how long until retention deletes a group's oldest unconsumed message. Pure.

The pull model's silent loss (the paper gives producers no back-pressure): a slow group's
committed offset sits in a segment that retention (broker/retention.py) is about to delete.
Retention deletes whole segments from the front, never the active (last) one, so the segment
``k`` holding the committed offset goes

- by time once it and every segment before it are older than the retention (a younger one
  stops the cut): ``max(mtime of segments 0..k) + retention - now`` seconds from now, the
  countdown the dashboards show (cluster/observe/retention_left.py uses this function);
- by size (``retention_bytes``) once the bytes from segment ``k`` to the log end exceed it. In
  seconds that is the room left divided by how fast the log grows, measured here from the
  listing itself: the bytes written after segment ``k`` was sealed (its mtime) over the time
  since. No growth measured: no estimate by size (unless the room is already gone).

The sooner of the two is the answer; None when segment ``k`` is the active one (it cannot be
deleted until the log rolls), 0 when the offset is already below the log start (the loss has
happened). A group is *at risk* when the answer is at most its ``min_seconds``
(``at_risk``): it stays at risk until it commits past the segments close to expiry.

Worked example, retention 1 hour (3600 s), retention_bytes 350, now = 10_000::

    segment start  size  mtime
    0              100   5_000
    100            100   7_000     <- committed offset 150 is here (k = 1)
    200            100   9_000
    300             50   9_500     (active)
    by time: max(5_000, 7_000) + 3600 - 10_000 = 600 s
    by size: bytes from k on = 250, room 350 - 250 = 100 B; written since mtime(k) = 150 B in
             3000 s = 0.05 B/s -> 2000 s
    seconds_left = 600; at risk for min_seconds >= 600
"""
from __future__ import annotations

from typing import Sequence

from broker.segment import find_segment


def seconds_left(segments: Sequence[tuple[int, int, float]], position: int, now: float,
                 retention_ms: int, retention_bytes: int | None = None) -> float | None:
    """Seconds until retention may delete the segment holding ``position``.

    ``segments`` are ``(start_offset, size_bytes, mtime_seconds)`` sorted by start offset.

    >>> log = [(0, 100, 5_000.0), (100, 100, 7_000.0), (200, 100, 9_000.0), (300, 50, 9_500.0)]
    >>> seconds_left(log, 150, 10_000.0, 3_600_000, 350)
    600.0
    >>> seconds_left(log, 150, 10_000.0, 86_400_000, 350)     # a day: size comes first
    2000.0
    >>> seconds_left(log, 320, 10_000.0, 3_600_000) is None   # the active segment
    True
    """
    if not segments:
        return None
    index = find_segment([start for start, _, _ in segments], position)
    if index < 0:
        return 0.0
    if index == len(segments) - 1:
        return None
    newest = max(mtime for _, _, mtime in segments[:index + 1])
    left = max(0.0, newest + retention_ms / 1000.0 - now)
    if retention_bytes is not None:
        by_size = _size_left(segments, index, now, retention_bytes)
        if by_size is not None:
            left = min(left, by_size)
    return left


def _size_left(segments, index: int, now: float, retention_bytes: int) -> float | None:
    room = retention_bytes - sum(size for _, size, _ in segments[index:])
    if room < 0:
        return 0.0
    written = sum(size for _, size, _ in segments[index + 1:])
    elapsed = now - segments[index][2]
    if written <= 0 or elapsed <= 0:
        return None
    return room / (written / elapsed)


def at_risk(left: float | None, min_seconds: float) -> bool:
    """Whether a countdown is within ``min_seconds`` of retention.

    >>> at_risk(600.0, 3600), at_risk(600.0, 60), at_risk(None, 3600), at_risk(0.0, 0)
    (True, False, False, True)
    """
    return left is not None and left <= min_seconds
