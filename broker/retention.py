"""Retention: which old segments of a log the cleaner deletes. Pure: no files, time passed in.

Retention works on whole segments, oldest first, as in the paper:

- time: segments go from the front while their last write (mtime, as Kafka 0.7 used) is older
  than ``now - retention``; the first younger one stops the cut, because a log can only lose a
  prefix (its offsets stay one contiguous range);
- size (optional): the oldest segments go while the log is bigger than ``retention_bytes``;
- never the last segment, the one being written, whatever its age or size.

Worked example, retention 1 day, ``now`` = day 10, retention_bytes = 250::

    start  size  mtime     time rule        size rule (total 400)
    0      100   day 7     old: delete      400 > 250: delete
    100    100   day 9.5   young: stop      300 > 250: delete
    200    100   day 8     (after a young   200: stop
                           one: kept)
    300    100   day 8     active: never
    -> delete 2 segments (the size rule reaches further than the time rule)
"""
from __future__ import annotations

from typing import Sequence


def segments_to_delete(segments: Sequence[tuple[int, int, float]], now: float,
                       retention_ms: int, retention_bytes: int | None = None) -> int:
    """How many segments to delete from the front.

    ``segments`` is ``(start_offset, size_bytes, mtime_seconds)`` oldest first; ``now`` is in
    seconds since the epoch, like mtimes.
    """
    deletable = len(segments) - 1
    if deletable <= 0:
        return 0
    cutoff = now - retention_ms / 1000.0
    by_time = 0
    while by_time < deletable and segments[by_time][2] < cutoff:
        by_time += 1
    by_size = 0
    if retention_bytes is not None:
        total = sum(size for _, size, _ in segments)
        while by_size < deletable and total > retention_bytes:
            total -= segments[by_size][1]
            by_size += 1
    return max(by_time, by_size)
