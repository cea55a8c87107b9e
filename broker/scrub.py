"""Scrub: CRC-check the bytes of one segment and say where each bad range lies.

Recovery (the last segment), the start-up scrub of sealed segments after an unclean shutdown,
``sluice scrub`` and the fetch path's error branch (is this offset a message boundary?) all walk
a segment the same way, so they agree on where messages are. The walk is pure over a reader
(anything with ``read(pos, n) -> bytes``: a Segment, a ``segment.FileReader``, or ``BytesReader``
over a byte string), so every rule here is tested on byte strings. Positions are bytes from the
segment's start.

A walk starts at a known boundary and validates whole messages a chunk at a time (one
``message.validate_set`` call: sizes, magic, CRCs in C). At a bad entry at ``p`` it resumes at

1. ``p + 4 + size`` when that size fits in the segment and a valid entry starts there (or it is
   the segment's end): a flipped byte in a message leaves its size alone, so its neighbours stay;
2. else the first position after ``p`` where a whole entry validates (size, magic, CRC): a
   corrupt size field broke the framing, and the walk resyncs past it;
3. else the segment's end.

Rule 2 must stay cheap over a long run of garbage, where many positions look like a header with
a large size: it looks for entries under RESYNC_MAX_ENTRY (16 MiB, four times the default
request bound), and CRC-checks one above RESYNC_SMALL_ENTRY only when the bytes after it look
like a header too (or it ends the segment). So a big message right before a second corrupt one
is found by rule 1 or not at all; every message up to 64 KiB is always found.

``[p, resume)`` is one bad range. In a log's last segment a bad range that reaches the end has
no good message after it: a torn tail, which recovery cuts. Anywhere else a bad range stays on
disk and reads skip it (a fetch there answers CORRUPT_MESSAGE with the resume offset).

Worked example: three messages a, b, c of 15 bytes at 0, 15 and 30 (a 45-byte segment)::

    damage                          scrub(...)                    scrub(..., last=True)
    none                            bad [], torn None             the same
    a byte of b's value flipped     bad [(15, 15, "crc")]         the same
    b's size field set to 200       bad [(15, 15, "truncated")]   the same (rule 2 finds c)
    c cut in half (37 bytes)        bad [(30, 7, "truncated")]    bad [], torn 30
    b flipped and c cut in half     bad [(15, 22, "crc")]         bad [], torn 15

The last row is the torn-segment drill: the cut starts at the flipped message.

A fetch at an offset whose entry does not check out asks ``locate`` where the offset lies and
answers ``read_error``'s typed error: CORRUPT_MESSAGE with where readable data resumes, or
INVALID_OFFSET naming the message boundaries around it.

Checkpoints: telling whether an offset is a boundary means walking from a known boundary before
it. ``Checkpoints`` keeps one known boundary about every CHECKPOINT_BYTES of a segment, found
as walks pass (not a per-message index; it fills only on the error path and in recovery).
"""
from __future__ import annotations

import bisect
import functools
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, NamedTuple, Protocol

from broker import message
from broker.message import (HEADER, HEADER_SIZE, KEY_HEADER, MAGIC_KEYED, MIN_SIZE,
                            SIZE_FIELD, InvalidMessage)
from coordinator.errors import CorruptMessage, InvalidOffset, SluiceError

CHUNK = 1 << 20
MAX_MAGIC = message.MAGIC_GAP      # stored data may hold the cleaner's gap markers


def validate_set(buf, max_message_bytes: int) -> int:
    """``message.validate_set`` for stored data: gap markers are valid entries here."""
    return message.validate_set(buf, max_message_bytes, markers=[])
CHECKPOINT_BYTES = 1 << 20
ANY_SIZE = 1 << 31          # a stored message is judged by its segment, not today's size limit
RESYNC_MAX_ENTRY = 16 << 20  # rule 2 looks for entries smaller than this,
RESYNC_SMALL_ENTRY = 64 << 10  # and CRC-checks a bigger one only if a plausible header follows
_SIZE = struct.Struct(">I")
_HEAD = HEADER_SIZE + KEY_HEADER.size


class Reader(Protocol):
    def read(self, pos: int, n: int) -> bytes: ...


class BytesReader:
    """A reader over bytes in memory (tests, and anything already read)."""

    def __init__(self, data):
        self.data = bytes(data)

    def read(self, pos: int, n: int) -> bytes:
        return self.data[pos:pos + n]


class Bad(NamedTuple):
    """A bad range of a segment: ``position`` and ``size`` in bytes, and why (message.py's
    reasons: truncated, size, magic, crc)."""

    position: int
    size: int
    reason: str


@dataclass
class Report:
    """What a scrub of one segment found. ``torn_at``: where a torn tail starts (last segment
    only; None when there is none)."""

    size: int
    messages: int = 0
    bad: list[Bad] = field(default_factory=list)
    torn_at: int | None = None

    @property
    def valid_end(self) -> int:
        """Where recovery leaves the segment's end."""
        return self.size if self.torn_at is None else self.torn_at


class Piece(NamedTuple):
    """One step of a walk: whole valid messages [start, end), or (``reason`` set) a bad range."""

    start: int
    end: int
    messages: int
    reason: str | None


class Location(NamedTuple):
    """Where an offset lies in a segment.

    ``kind``: ``message`` (a valid message starts there), ``corrupt`` (a bad range starts
    there), ``inside`` (inside the valid message at ``before``), ``inside_bad`` (inside the bad
    range at ``before``). ``after`` is the next boundary, for a bad range where data resumes.
    """

    kind: str
    before: int
    after: int
    reason: str | None = None


class Checkpoints:
    """Known message boundaries of one segment, at least ``spacing`` bytes apart, sorted.

    >>> points = Checkpoints(spacing=100)
    >>> for pos in (50, 120, 130, 260):
    ...     points.add(pos)
    >>> list(points), points.floor(200)
    ([0, 120, 260], 120)
    """

    def __init__(self, spacing: int | None = None):
        self.spacing = CHECKPOINT_BYTES if spacing is None else spacing
        self._known = [0]

    def __len__(self) -> int:
        return len(self._known)

    def __iter__(self):
        return iter(self._known)

    def floor(self, pos: int) -> int:
        """The last known boundary at or before ``pos``."""
        return self._known[bisect.bisect_right(self._known, pos) - 1]

    def add(self, pos: int) -> None:
        index = bisect.bisect_right(self._known, pos)
        if pos - self._known[index - 1] < self.spacing:
            return
        if index < len(self._known) and self._known[index] - pos < self.spacing:
            return
        self._known.insert(index, pos)


def scrub(reader: Reader, size: int, last: bool = False, start: int = 0,
          on_progress: Callable[[int], None] | None = None,
          checkpoints: Checkpoints | None = None) -> Report:
    """CRC-check ``size`` bytes of a segment from ``start`` (a boundary); see the module's
    example. ``on_progress(position)`` is called after each step of the walk."""
    report = Report(size)
    for piece in pieces(reader, size, start, checkpoints):
        if piece.reason is None:
            report.messages += piece.messages
        else:
            report.bad.append(Bad(piece.start, piece.end - piece.start, piece.reason))
        if on_progress is not None:
            on_progress(piece.end)
    if last and report.bad and report.bad[-1].position + report.bad[-1].size == size:
        report.torn_at = report.bad.pop().position
    return report


def locate(reader: Reader, size: int, pos: int,
           checkpoints: Checkpoints | None = None) -> Location:
    """Where ``pos`` (< ``size``) lies: walked from the nearest checkpoint before it."""
    start = checkpoints.floor(pos) if checkpoints is not None else 0
    for piece in pieces(reader, size, start, checkpoints):
        if piece.end <= pos:
            continue
        if piece.reason is not None:
            kind = "corrupt" if piece.start == pos else "inside_bad"
            return Location(kind, piece.start, piece.end, piece.reason)
        if piece.messages == 1:
            kind = "message" if piece.start == pos else "inside"
            return Location(kind, piece.start, piece.end)
        before, after = _neighbours(reader.read(piece.start, piece.end - piece.start),
                                    pos - piece.start)
        kind = "message" if before == pos - piece.start else "inside"
        return Location(kind, piece.start + before, piece.start + after)
    raise ValueError(f"position {pos} is not inside the {size} bytes walked")


def read_error(where: Location, offset: int, start: int, end: int,
               next_start: int | None = None) -> SluiceError:
    """The error a fetch at ``offset`` answers when no valid message starts there: ``where``
    is ``locate``'s answer in the segment [``start``, ``end``) of the partition; ``next_start``
    is the next segment's start when the read was to run to this sealed segment's end (a bad
    range that ends the segment resumes there, past any gap).

    Worked example, messages of 15 bytes at 100, 115 and 130 of a segment [100, 145)::

        where                          error
        ("corrupt", 15, 30, "crc")     CorruptMessage at 115, resume_offset 130
        ("inside", 15, 30)             InvalidOffset at 121: boundaries 115 and 130
        ("inside_bad", 15, 30, "crc")  InvalidOffset at 121: inside corrupt bytes 115..130

    >>> read_error(Location("corrupt", 15, 30, "crc"), 115, 100, 145).resume_offset
    130
    >>> str(read_error(Location("inside", 15, 30), 121, 100, 145))
    'offset 121 is not the start of a message: it lies inside the message at 115; the next one starts at 130'
    """
    before, after = start + where.before, start + where.after
    if where.kind == "corrupt":
        resume = next_start if after == end and next_start is not None else after
        return CorruptMessage(f"offset {offset} holds a corrupt message ({where.reason}): "
                              f"{after - offset} bytes up to offset {after} cannot be read; "
                              f"readable data resumes at {resume}", resume_offset=resume)
    if where.kind == "inside_bad":
        return InvalidOffset(f"offset {offset} is not the start of a message: it lies inside "
                             f"corrupt bytes at {before}..{after}; the nearest message "
                             f"boundaries are {before} and {after}")
    if where.kind == "inside":
        return InvalidOffset(f"offset {offset} is not the start of a message: it lies inside "
                             f"the message at {before}; the next one starts at {after}")
    return InvalidOffset(f"offset {offset} is not the start of a message")


def pieces(reader: Reader, size: int, start: int = 0,
           checkpoints: Checkpoints | None = None) -> Iterator[Piece]:
    """The walk: runs of valid messages and bad ranges, back to back from ``start`` to ``size``.

    Boundaries it passes go into ``checkpoints`` until a bad range whose end the walk had to
    search for (rule 2 or 3): with a larger ``size`` (an active segment that grew) that search
    might end elsewhere, so what follows it is not recorded.
    """
    pos = start
    trusted = checkpoints is not None
    while pos < size:
        buf = reader.read(pos, min(CHUNK, size - pos))
        try:
            count = validate_set(buf, ANY_SIZE)
            good = len(buf)
        except InvalidMessage as bad:
            good, count = bad.position, bad.valid_count
        if not good:
            good, reason = entry_at(reader, size, pos)
            count = 1
        if good:
            yield Piece(pos, pos + good, count, None)
            pos += good
            if trusted and pos < size:
                checkpoints.add(pos)
            continue
        resume, exact = resume_after(reader, size, pos)
        yield Piece(pos, resume, 0, reason)
        pos = resume
        trusted = trusted and exact
        if trusted and pos < size:
            checkpoints.add(pos)


def entry_at(reader: Reader, size: int, pos: int) -> tuple[int, str | None]:
    """``(length, None)`` when a whole valid entry starts at ``pos``, else ``(0, reason)``.

    An entry longer than a chunk is CRC-checked a chunk at a time, never read whole.
    """
    left = size - pos
    if left < HEADER_SIZE:
        return 0, "truncated"
    head = reader.read(pos, min(left, _HEAD))
    length = SIZE_FIELD + _SIZE.unpack_from(head)[0]
    if length - SIZE_FIELD < MIN_SIZE:
        return 0, "size"
    if length > left:
        return 0, "truncated"
    if length <= CHUNK:
        data = head if length <= len(head) else reader.read(pos, length)
        try:
            validate_set(memoryview(data)[:length], ANY_SIZE)
        except InvalidMessage as bad:
            return 0, bad.reason
        return length, None
    _, magic, crc = HEADER.unpack_from(head)
    if magic > MAX_MAGIC:
        return 0, "magic"
    if magic == MAGIC_KEYED and _HEAD + _SIZE.unpack_from(head, HEADER_SIZE + 1)[0] > length:
        return 0, "size"
    value = 0
    done = HEADER_SIZE
    while done < length:
        part = reader.read(pos + done, min(CHUNK, length - done))
        if not part:
            return 0, "truncated"
        value = zlib.crc32(part, value)
        done += len(part)
    return (length, None) if value == crc else (0, "crc")


def resume_after(reader: Reader, size: int, pos: int) -> tuple[int, bool]:
    """Where readable data resumes after the bad entry at ``pos`` (rules 1-3 of the module
    docstring), and whether rule 1 (the entry's own size) gave it."""
    head = reader.read(pos, SIZE_FIELD)
    if len(head) == SIZE_FIELD:
        own = _SIZE.unpack_from(head)[0]
        end = pos + SIZE_FIELD + own
        if own >= MIN_SIZE and end <= size and (end == size or entry_at(reader, size, end)[0]):
            return end, True
    found = first_valid(reader, size, pos + 1)
    return (size if found is None else found), False


def first_valid(reader: Reader, size: int, start: int) -> int | None:
    """The first position at or after ``start`` where a whole valid entry starts; None if none.

    A regular expression finds the candidates in C (a size under RESYNC_MAX_ENTRY, magic 0 or
    1); only those are checked, a big one only when a plausible header follows it.
    """
    pattern = _candidates((min(size, RESYNC_MAX_ENTRY) - 1) >> 24)
    pos = start
    while size - pos >= HEADER_SIZE:
        buf = reader.read(pos, min(CHUNK + HEADER_SIZE, size - pos))
        for match in pattern.finditer(buf):
            at = match.start()
            if at >= CHUNK:
                break
            length = SIZE_FIELD + _SIZE.unpack_from(buf, at)[0]
            end = pos + at + length
            if end > size:
                continue
            if length > RESYNC_SMALL_ENTRY and not _header_follows(reader, size, end):
                continue
            if at + length <= len(buf):
                try:
                    validate_set(memoryview(buf)[at:at + length], ANY_SIZE)
                    return pos + at
                except InvalidMessage:
                    continue
            if entry_at(reader, size, pos + at)[0]:
                return pos + at
        pos += CHUNK
    return None


def _header_follows(reader: Reader, size: int, pos: int) -> bool:
    """Whether ``pos`` ends the segment or holds what looks like a header (a size of at least
    MIN_SIZE, magic 0, 1 or 2; it may run past the end: a torn tail after a good message)."""
    if size - pos < HEADER_SIZE:
        return True
    own, magic, _ = HEADER.unpack_from(reader.read(pos, HEADER_SIZE))
    return own >= MIN_SIZE and magic <= MAX_MAGIC


@functools.lru_cache(maxsize=64)
def _candidates(top: int) -> re.Pattern:
    """Headers whose size field's first byte is at most ``top``, whose size is at least
    MIN_SIZE, and whose magic is 0 or 1 (the lookahead finds overlapping candidates)."""
    first = re.escape(bytes([min(top, 255)]))
    return re.compile(rb"(?=(?!\x00\x00\x00[\x00-\x04])[\x00-" + first
                      + rb"][\x00-\xff]{3}[\x00\x01][\x00-\xff]{4})", re.DOTALL)


def _neighbours(run: bytes, pos: int) -> tuple[int, int]:
    """(start, end) of the message holding ``pos`` in a run of whole valid messages."""
    at = 0
    while True:
        end = at + SIZE_FIELD + _SIZE.unpack_from(run, at)[0]
        if end > pos:
            return at, end
        at = end
