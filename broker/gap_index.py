"""The gap index of a compacted segment: where each run of kept messages sits in its file.

Log compaction (broker/cleaner.py) keeps the byte offsets of the messages it keeps, so a
compacted segment is shorter than the offsets it spans: its file holds the kept messages back
to back, and a 17-byte gap marker (``message.encode_gap``) wherever messages were removed,
saying at which offset the next entry is. The file is still one run of valid entries, so a
fetch reads any range of it with one ``pread`` and sends it as it is; the marker tells the
consumer where the offsets jump. The index maps between a partition offset and a file
position without walking the file: one ``(offset, position)`` pair per run, the first run at
``(segment start, 0)``, each later one just after a marker.

Worked example: a segment at 1000 kept a 20-byte message at 1000, then (a marker at file
position 20, resume 1100) a 30-byte message at 1100, then (a marker at 67, resume 1200, the
segment's end) nothing::

    runs        (1000, 0), (1100, 37), (1200, 84)      file size 84
    position    1000 -> 0, 1010 -> 10, 1020..1099 -> 20 (the marker), 1100 -> 37, 1200 -> 84
    offset_at   0 -> 1000, 20 -> 1020 (the gap's first offset), 37 -> 1100, 84 -> 1200

>>> index = GapIndex(1000, [(1100, 37), (1200, 84)])
>>> [index.position(o, 84) for o in (1000, 1010, 1020, 1099, 1100, 1130, 1200)]
[0, 10, 20, 20, 37, 67, 84]
>>> [index.offset_at(p) for p in (0, 20, 37, 67, 84)]
[1000, 1020, 1100, 1130, 1200]
>>> index.end(84)
1200

A segment that has markers always has a sidecar file ``<start>.gaps``: written ``pending``
(durably) before the first marker reaches the segment file, then complete with the runs. At
open, a complete sidecar is used as it is; a pending or damaged one means the file is walked
(``runs_of``) and the sidecar written again. A segment without a sidecar has no markers.
"""
from __future__ import annotations

import bisect
import os
import struct
import zlib
from pathlib import Path
from typing import Callable, Iterable

from broker.message import GAP_ENTRY, GAP_SIZE, HEADER, MAGIC_GAP, SIZE_FIELD, gap_resume
from broker.segment import NAME_DIGITS, replace_file

SUFFIX = ".gaps"
_MAGIC = b"SLGAPS1\n"
_PENDING = b"SLGAPS1?"
_COUNT = struct.Struct(">I")
_RUN = struct.Struct(">QQ")
_SIZE = struct.Struct(">Q")


class GapIndex:
    """The runs of one segment: ``start`` and ``(offset, position)`` of each later run."""

    __slots__ = ("offsets", "positions")

    def __init__(self, start: int, runs: Iterable[tuple[int, int]] = ()):
        self.offsets = [start]
        self.positions = [0]
        for offset, position in runs:
            self.add(offset, position)

    def __repr__(self) -> str:
        return f"GapIndex({list(zip(self.offsets, self.positions))})"

    @property
    def runs(self) -> list[tuple[int, int]]:
        """The runs after the first, as stored."""
        return list(zip(self.offsets[1:], self.positions[1:]))

    def add(self, offset: int, position: int) -> None:
        """A run that starts at file ``position`` (just after a marker) with ``offset``."""
        if offset <= self.offsets[-1] or position < self.positions[-1] + GAP_ENTRY:
            raise ValueError(f"run ({offset}, {position}) does not follow {self!r}")
        self.offsets.append(offset)
        self.positions.append(position)

    def offset_at(self, position: int) -> int:
        """The partition offset of the entry at file ``position`` (a marker's is the first
        offset of its gap; the file's size gives the segment's end)."""
        run = bisect.bisect_right(self.positions, position) - 1
        return self.offsets[run] + position - self.positions[run]

    def position(self, offset: int, size: int) -> int:
        """Where a read at ``offset`` starts in a file of ``size`` bytes: inside a run, its
        place there; inside a gap, the marker at the gap's start (the read then tells the
        reader where the data resumes); at or past the end, ``size``."""
        run = bisect.bisect_right(self.offsets, offset) - 1
        data_end = (self.positions[run + 1] - GAP_ENTRY if run + 1 < len(self.positions)
                    else size)
        return min(self.positions[run] + offset - self.offsets[run], data_end)

    def end(self, size: int) -> int:
        """The segment's end offset for a file of ``size`` bytes."""
        return self.offset_at(size)

    def truncate(self, position: int) -> None:
        """Forget the runs that start at or after file ``position`` (a cut of the file)."""
        keep = bisect.bisect_left(self.positions, position, lo=1)
        del self.offsets[keep:], self.positions[keep:]


def path_of(directory: Path, start: int) -> Path:
    return Path(directory) / f"{start:0{NAME_DIGITS}d}{SUFFIX}"


def write_pending(directory: Path, start: int) -> None:
    """Say, durably, that markers may be in segment ``start`` before the first one is."""
    replace_file(path_of(directory, start), _PENDING, sync=True)


def write(directory: Path, start: int, index: GapIndex, size: int, sync: bool = True) -> None:
    """The complete sidecar: the runs and the file size they describe, with a CRC."""
    body = _COUNT.pack(len(index.offsets) - 1) + _SIZE.pack(size) + b"".join(
        _RUN.pack(o, p) for o, p in index.runs)
    replace_file(path_of(directory, start), _MAGIC + body + _COUNT.pack(zlib.crc32(body)),
                 sync=sync)


def read(directory: Path, start: int, size: int) -> GapIndex | None:
    """The index in the sidecar of segment ``start`` whose file has ``size`` bytes; None when
    there is no sidecar. Raises ValueError when the sidecar is pending, damaged or describes
    another size (the caller walks the file: ``runs_of``)."""
    try:
        data = path_of(directory, start).read_bytes()
    except FileNotFoundError:
        return None
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 16:
        raise ValueError("pending or not a gap index")
    body, crc = data[len(_MAGIC):-4], _COUNT.unpack(data[-4:])[0]
    count = _COUNT.unpack_from(body)[0]
    recorded = _SIZE.unpack_from(body, 4)[0]
    if zlib.crc32(body) != crc or len(body) != 12 + count * _RUN.size or recorded != size:
        raise ValueError("damaged, or written for another file size")
    return GapIndex(start, _RUN.iter_unpack(body[12:]))


def exists(directory: Path, start: int) -> bool:
    return path_of(directory, start).exists()


def remove(directory: Path, start: int) -> None:
    try:
        os.unlink(path_of(directory, start))
    except FileNotFoundError:
        pass


def runs_of(read_at: Callable[[int, int], bytes], size: int, start: int,
            chunk: int = 1 << 20) -> GapIndex:
    """Build the index by walking the framing of a file of ``size`` bytes (``read_at(pos,
    n)``): each gap marker starts a run. Stops at the first entry that does not fit (a torn
    tail is recovery's to cut)."""
    index = GapIndex(start)
    pos = 0
    buf, buf_at = b"", 0
    while pos + HEADER.size <= size:
        if pos + HEADER.size > buf_at + len(buf):
            buf, buf_at = read_at(pos, min(chunk, size - pos)), pos
            if len(buf) < HEADER.size:
                break
        entry, magic, _ = HEADER.unpack_from(buf, pos - buf_at)
        nxt = pos + SIZE_FIELD + entry
        if entry < 5 or nxt > size:
            break
        if magic == MAGIC_GAP and entry == GAP_SIZE:
            if nxt > buf_at + len(buf):
                buf, buf_at = read_at(pos, min(chunk, size - pos)), pos
            index.add(gap_resume(buf, pos - buf_at), nxt)
        pos = nxt
    return index
