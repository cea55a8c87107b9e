"""A Segment: one file of a partition's log, named by the byte offset of its first message.

A partition folder holds files ``<start offset, 20 digits>.log``; only the newest is written.
The file is opened ``O_RDWR | O_APPEND`` so every write lands at its end, and is read with
``pread`` rather than mmap: cutting a file back (recovery, a failed append) under a live mapping
turns a later access into SIGBUS, while ``pread`` just returns fewer bytes.

A Segment knows nothing of messages; ``broker.log.Log`` decides what goes in and what comes out.
A compacted segment (broker/cleaner.py) has a gap index (broker/gap_index.py): its file is
shorter than the offsets it spans, and ``position`` / ``offset_at`` translate; a segment
without one has file position = offset - start.
"""
from __future__ import annotations

import bisect
import errno
import os
from pathlib import Path
from typing import Sequence

from coordinator.errors import StorageError

SUFFIX = ".log"
NAME_DIGITS = 20
OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def segment_name(start: int) -> str:
    """``segment_name(1024) == "00000000000000001024.log"``: names sort as their offsets do."""
    if not 0 <= start < 10 ** NAME_DIGITS:
        raise ValueError(f"segment start offset {start} does not fit in {NAME_DIGITS} digits")
    return f"{start:0{NAME_DIGITS}d}{SUFFIX}"


def parse_segment_name(name: str) -> int:
    """The start offset in a segment file name; ValueError for any other name."""
    digits = name[:-len(SUFFIX)] if name.endswith(SUFFIX) else ""
    if len(digits) != NAME_DIGITS or not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"{name!r} is not a segment file name (20 digits and {SUFFIX})")
    return int(digits)


def find_segment(starts: Sequence[int], offset: int) -> int:
    """Index of the segment holding ``offset`` in the sorted start offsets; -1 before the first.

    The paper's lookup: a binary search over the in-memory start offsets, no per-message index.
    """
    return bisect.bisect_right(starts, offset) - 1


def find_segment_by_time(mtimes_ms: Sequence[int], time_ms: int) -> int | None:
    """Index of the newest segment whose first message was written at or before ``time_ms``
    (Kafka 0.7's offsets-before-time, at segment granularity); None when no message is newer.

    A segment's first write is taken to be its predecessor's last (its mtime, just before the
    roll); the oldest segment counts as written at the beginning of time:

    >>> [find_segment_by_time([100, 200, 300], t) for t in (50, 150, 250, 300)]
    [0, 1, 2, None]
    """
    if time_ms >= mtimes_ms[-1]:
        return None
    index = len(mtimes_ms) - 1
    while index > 0 and mtimes_ms[index - 1] > time_ms:
        index -= 1
    return index


def split_at_rolls(data: memoryview, set_sizes: Sequence[int] | None, used: int,
                   limit: int) -> list[memoryview]:
    """``data``, several MessageSets joined (``set_sizes``), cut where appending the sets one
    by one to an active segment holding ``used`` bytes would roll (at ``limit`` bytes, never
    for a set that is first in its segment), so that a joined write leaves the same segments.

    >>> [bytes(c) for c in split_at_rolls(memoryview(b"aabbbcc"), [2, 3, 2], used=6, limit=8)]
    [b'aa', b'bbbcc']
    """
    if set_sizes is None or len(set_sizes) == 1 or used + data.nbytes <= limit:
        return [data]
    chunks = []
    start = pos = 0
    for size in set_sizes:
        if used and used + size > limit:
            if pos > start:
                chunks.append(data[start:pos])
                start = pos
            used = 0
        used += size
        pos += size
    chunks.append(data[start:pos])
    return chunks


def describe(err: OSError) -> str:
    """``disk full: No space left on device``: the first words of a StorageError about a file
    of a partition, so a person tells a full disk from a failing one."""
    kind = "disk full" if err.errno in _DISK_FULL else "disk error"
    return f"{kind}: {err.strerror or err}"


def sync_directory(directory: Path) -> None:
    """Make a file's creation or removal in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, sync: bool = True) -> None:
    """Replace ``path`` whole with ``data``: a temp file beside it, renamed over it, so a
    crash leaves the old content or the new; ``sync``: both fsynced (the file, then the
    folder). Raises OSError."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    if sync:
        sync_directory(path.parent)


def read_replaced(path: Path, encoding: str = "utf-8") -> str | None:
    """The text of a file that replace_file writes (a checkpoint), None when there is none;
    one it cannot read raises StorageError, for its owner to say what it then assumes."""
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise StorageError(f"cannot read {path}: {err}") from err


def read_at(fd: int, pos: int, n: int) -> bytes:
    """Up to ``n`` bytes at ``pos`` of an open file, looping over short reads."""
    data = os.pread(fd, n, pos)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = os.pread(fd, n - got, pos + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class FileReader:
    """Reads a segment file through a descriptor of its own (a ``dup`` or a read-only open),
    for walks that run beside the request loop: the scrub thread, ``sluice scrub``."""

    __slots__ = ("fd",)

    def __init__(self, fd: int):
        self.fd = fd

    def read(self, pos: int, n: int) -> bytes:
        return read_at(self.fd, pos, n)


class Segment:
    """One open segment file: its start offset, file descriptor and current size in bytes."""

    __slots__ = ("path", "start", "fd", "size", "gaps")

    def __init__(self, directory: Path, start: int, gaps=None):
        self.path = Path(directory) / segment_name(start)
        self.start = start
        self.gaps = gaps
        self.fd = os.open(self.path, OPEN_FLAGS, 0o644)
        try:
            self.size = os.fstat(self.fd).st_size
        except OSError:
            os.close(self.fd)
            raise

    def __repr__(self) -> str:
        return f"Segment({self.path.name}, size={self.size})"

    @property
    def end(self) -> int:
        """The partition offset just past this segment's last byte."""
        if self.gaps is None:
            return self.start + self.size
        return self.gaps.end(self.size)

    def position(self, offset: int) -> int:
        """The file position where a read at partition ``offset`` (inside the segment) starts."""
        if self.gaps is None:
            return offset - self.start
        return self.gaps.position(offset, self.size)

    def offset_at(self, position: int) -> int:
        """The partition offset of file ``position``."""
        if self.gaps is None:
            return self.start + position
        return self.gaps.offset_at(position)

    @property
    def closed(self) -> bool:
        return self.fd < 0

    @property
    def mtime(self) -> float:
        """Last write time in seconds since the epoch (what retention and the offsets API use)."""
        return os.fstat(self.fd).st_mtime

    def append(self, data) -> None:
        """Write all of ``data`` at the end of the file, looping over short writes.

        ``size`` grows only when every byte is written. On OSError the bytes written so far stay
        in the file; the caller cuts them off with ``truncate(size)``.
        """
        view = memoryview(data).cast("B")
        total = view.nbytes
        written = 0
        while written < total:
            n = os.write(self.fd, view[written:])
            if n == 0:
                raise OSError(errno.EIO, "write made no progress")
            written += n
        self.size += total

    def read(self, pos: int, n: int) -> bytes:
        """Up to ``n`` bytes from ``pos`` inside the segment (fewer only at the end of the file)."""
        return read_at(self.fd, pos, n)

    def truncate(self, size: int) -> None:
        """Cut the file back to ``size`` bytes (recovery, or undoing a failed append)."""
        os.ftruncate(self.fd, size)
        self.size = size
        if self.gaps is not None:
            self.gaps.truncate(size + 1)

    def sync(self) -> None:
        os.fsync(self.fd)

    def dup(self) -> int:
        """A second descriptor for the file, for a flusher thread to fsync and close on its own.

        A plain fd number could be closed (retention) and reused by another file meanwhile.
        """
        return os.dup(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def delete(self) -> None:
        """Remove the file (and its gap index), then close it (a descriptor held elsewhere
        keeps the data readable)."""
        self.path.unlink()
        if self.gaps is not None:
            try:
                self.path.with_suffix(".gaps").unlink()
            except FileNotFoundError:
                pass
        self.close()
