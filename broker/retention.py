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

Holds (backlog protection, coordinator/backlog_protection.py): a consumer group protected with
``hold`` or ``refuse`` gives its committed offset and a cap, ``(offset, max_hold_bytes)``.
Retention then keeps the segment holding the offset and every later one, however old, as long
as what it keeps past its own rules fits the cap; past the cap the oldest held segments go
anyway (``Decision.forced``), so a dead group cannot fill the disk. Several holds: each is
judged alone, and the cut is the shortest of their cuts. An offset below the log start holds
from the start. Same example, one hold at offset 150, cap 150 bytes::

    retention wants 2 (segments 0 and 100); segment 100 holds offset 150: held 1 (100 B <= 150)
    -> delete 1; with a cap of 50 B: 100 B > 50, the hold gives way -> delete 2, forced 1
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from broker.segment import find_segment


@dataclass(frozen=True)
class Decision:
    """What one retention pass deletes: ``delete`` segments from the front; ``wanted`` by the
    retention rules alone; ``held_from`` per hold, the first segment it keeps (None: it keeps
    nothing retention wanted). ``forced(i)``: segments of hold i's unconsumed data deleted
    anyway (its cap)."""

    delete: int
    wanted: int = 0
    held_from: tuple[int | None, ...] = ()

    @property
    def held(self) -> int:
        return self.wanted - self.delete

    def forced(self, hold: int) -> int:
        start = self.held_from[hold]
        return 0 if start is None else max(0, self.delete - start)


def segments_to_delete(segments: Sequence[tuple[int, int, float]], now: float,
                       retention_ms: int, retention_bytes: int | None = None) -> int:
    """How many segments to delete from the front.

    ``segments`` is ``(start_offset, size_bytes, mtime_seconds)`` oldest first; ``now`` is in
    seconds since the epoch, like mtimes.
    """
    return decide(segments, now, retention_ms, retention_bytes).delete


def decide(segments: Sequence[tuple[int, int, float]], now: float, retention_ms: int,
           retention_bytes: int | None = None,
           holds: Sequence[tuple[int, int]] = ()) -> Decision:
    """The retention rules with holds (``(offset, max_hold_bytes)`` each; module docstring).

    The module's example with a "day" of 1 s:

    >>> log = [(0, 100, 7.0), (100, 100, 9.5), (200, 100, 8.0), (300, 100, 8.0)]
    >>> decide(log, 10.0, 1000, 250, holds=[(150, 150)])
    Decision(delete=1, wanted=2, held_from=(1,))
    >>> d = decide(log, 10.0, 1000, 250, holds=[(150, 50)]); d, d.forced(0)
    (Decision(delete=2, wanted=2, held_from=(1,)), 1)
    """
    wanted = _wanted(segments, now, retention_ms, retention_bytes)
    delete, held_from = wanted, []
    starts = [start for start, _, _ in segments]
    for offset, cap in holds:
        first = max(0, find_segment(starts, offset)) if segments else 0
        if first >= wanted:
            held_from.append(None)
            continue
        held_from.append(first)
        keep_from, held_bytes = first, sum(size for _, size, _ in segments[first:wanted])
        while held_bytes > cap:
            held_bytes -= segments[keep_from][1]
            keep_from += 1
        delete = min(delete, keep_from)
    return Decision(delete, wanted, tuple(held_from))


def _wanted(segments: Sequence[tuple[int, int, float]], now: float, retention_ms: int,
            retention_bytes: int | None) -> int:
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
