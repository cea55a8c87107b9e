"""Where a consumer goes after a fetch error: pure decisions, no I/O.

A broker's error about a position says where readable data resumes (``resume_offset``): below
the log start (retention deleted it), inside a gap a recovery cut left, at a corrupt message.
The consumer moves there and notes what it skipped; it never resets the whole position to
``start`` because of one bad spot, and it never asks again in a loop. An error that does not
say where to go is raised to the application, or, for an offset out of range without a resume
offset (an older broker, or a position past the end), decided from the log's bounds.

Decisions (``on_corrupt`` is the consumer's policy, "skip" or "raise"):

>>> from broker.protocol import OffsetGap, OffsetOutOfRange, CorruptMessage, InvalidOffset
>>> decide(OffsetGap("in a gap", resume_offset=900), 500, "skip")
Decision(action='resume', kind='gap', resume=900)
>>> decide(CorruptMessage("bad crc", resume_offset=515), 500, "skip")
Decision(action='resume', kind='corrupt', resume=515)
>>> decide(CorruptMessage("bad crc", resume_offset=515), 500, "raise").action
'raise'
>>> decide(InvalidOffset("not a message boundary"), 500, "skip").action
'raise'
>>> decide(OffsetOutOfRange("below the start", resume_offset=4096), 500, "skip")
Decision(action='resume', kind='retention', resume=4096)
>>> decide(OffsetOutOfRange("outside the log"), 500, "skip").action
'locate'
>>> locate(500, log_start=4096, log_end=9000, start="latest")
Decision(action='resume', kind='retention', resume=4096)
>>> locate(9500, log_start=0, log_end=9000, start="earliest")
Decision(action='reset', kind='past_end', resume=0)
>>> locate(9500, log_start=0, log_end=9000, start="latest")
Decision(action='reset', kind='past_end', resume=9000)
>>> estimated_messages(1500, seen_bytes=3000, seen_messages=20)
10
"""
from __future__ import annotations

from dataclasses import dataclass

from broker import protocol

ON_CORRUPT = ("skip", "raise")


@dataclass(frozen=True)
class Decision:
    """``action``: "retry" (the same fetch later), "raise" (to the application, position kept),
    "locate" (ask the log's bounds, then ``locate``), "resume" (move to ``resume``, which is
    past ``kind`` of data loss) or "reset" (move to ``resume`` chosen by ``start``)."""

    action: str
    kind: str | None = None
    resume: int | None = None


RETRY = Decision("retry")
RAISE = Decision("raise")
LOCATE = Decision("locate")


def decide(error: protocol.SluiceError, offset: int, on_corrupt: str) -> Decision:
    """What to do about ``error`` from a fetch at ``offset``."""
    if error.retriable:
        return RETRY
    resume = error.resume_offset
    if isinstance(error, protocol.OffsetOutOfRange):
        if resume is None:
            return LOCATE
        return Decision("resume", "retention", resume) if resume > offset else RAISE
    if resume is None or resume <= offset:
        return RAISE
    if isinstance(error, protocol.OffsetGap):
        return Decision("resume", "gap", resume)
    if isinstance(error, protocol.CorruptMessage) and on_corrupt == "skip":
        return Decision("resume", "corrupt", resume)
    return RAISE


def locate(offset: int, log_start: int, log_end: int, start: str) -> Decision:
    """An offset out of range, decided from the log's bounds: below the start, resume at the
    start (retention); past the end, the log lost data the group had read: reset by ``start``;
    inside (it became readable meanwhile), fetch again."""
    if offset < log_start:
        return Decision("resume", "retention", log_start)
    if offset > log_end:
        return Decision("reset", "past_end", log_start if start == "earliest" else log_end)
    return RETRY


def named(error: protocol.SluiceError, topic: str, partition: int,
          offset: int | None) -> protocol.SluiceError:
    """The error again, for the application: its text names the partition and the offset, and
    so do its attributes ``topic``, ``partition``, ``offset`` (``resume_offset`` is kept)."""
    where = f"{topic}/{partition}" if offset is None else f"{topic}/{partition} at offset {offset}"
    again = type(error)(f"{where}: {error}", error.code, error.resume_offset)
    again.topic, again.partition, again.offset = topic, partition, offset
    return again


def estimated_messages(nbytes: int, seen_bytes: int, seen_messages: int) -> int | None:
    """Messages in ``nbytes`` by the mean size of those seen (None before any was seen)."""
    if not seen_messages or not seen_bytes:
        return None
    return max(1, round(nbytes * seen_messages / seen_bytes)) if nbytes > 0 else 0
