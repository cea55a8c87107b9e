"""The Log: one partition, stored as a folder of segment files (the paper's storage layout).

    <partition folder>/
        00000000000000000000.log      sealed: messages at byte offsets 0 .. 1073741823
        00000000001073741824.log      the active segment; appends go here
        corrupt/                      files recovery moved aside (never deleted)

A message's offset is its byte position in the partition, so the segment holding an offset
is found by a binary search over the in-memory list of segment starts, and the message by a
``pread`` at ``offset - start``. There is no per-message index and no in-process cache: the
OS page cache serves reads.

Append, read, retention and close belong to the broker's request loop; ``flush`` may run on a
background flusher thread at the same time. A small lock covers the in-memory state and each
append; the fsync itself runs outside it on duplicated descriptors, so appends never wait for
the disk.

On open, recovery (as Kafka 0.7): keep the contiguous run of segments from the oldest (move
anything after a gap into ``corrupt/``), walk the last segment checking sizes and CRCs, and cut
it at the first bad entry, be it a torn tail or a flipped byte.
"""
from __future__ import annotations

import errno
import logging
import os
import struct
import threading
import time
from pathlib import Path

from broker.config import LogConfig
from broker.flush import FlushPolicy
from broker.message import SIZE_FIELD, InvalidMessage, check_entry, valid_prefix, whole_prefix
from broker.protocol import EARLIEST, LATEST, InvalidOffset, OffsetOutOfRange, StorageError
from broker.retention import segments_to_delete
from broker.segment import SUFFIX, Segment, find_segment, parse_segment_name

logger = logging.getLogger("sluice.broker.log")

RECOVERY_CHUNK = 8 << 20
CORRUPT_DIR = "corrupt"
_SIZE = struct.Struct(">I")
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


class Log:
    """One partition's append-only log of MessageSets."""

    def __init__(self, directory: Path, config: LogConfig):
        self.directory = Path(directory)
        self.config = config
        self.policy = FlushPolicy(config.flush_messages, config.flush_ms)
        self.flush_count = 0
        self.flush_seconds = 0.0
        self.recovered_truncated_bytes = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._segments: list[Segment] = []
        self._starts: list[int] = []
        self._unsynced: list[int] = []
        self._failed: str | None = None
        self._closed = False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._recover()
        except OSError as err:
            self._close_fds()
            raise StorageError(f"cannot open the log in {self.directory}: {err}") from err
        self._end = self._segments[-1].end
        self._flushed_end = self._end

    def __repr__(self) -> str:
        return (f"Log({str(self.directory)!r}, {self.start_offset}..{self._end}, "
                f"{len(self._segments)} segments)")

    @property
    def start_offset(self) -> int:
        """The first offset still stored; moves forward as retention deletes segments."""
        return self._starts[0]

    @property
    def end_offset(self) -> int:
        """The offset the next appended message gets."""
        return self._end

    @property
    def flushed_end(self) -> int:
        return self._flushed_end

    @property
    def visible_end(self) -> int:
        """The end a consumer may read to: the flushed end if the paper's rule is on."""
        return self._flushed_end if self.config.visible_after_flush else self._end

    @property
    def segment_starts(self) -> list[int]:
        return list(self._starts)

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def size_bytes(self) -> int:
        return self._end - self._starts[0]

    def append(self, message_set, count: int,
               set_sizes: list[int] | None = None) -> tuple[int, int]:
        """Append validated messages with one write; return (base offset, next offset).

        Rolls to a new segment first when the active one is not empty and the set would take
        it past ``segment_bytes``. ``set_sizes`` says that ``message_set`` joins several sets
        (the broker writes what many requests brought in one go): the result is the same as
        appending them one by one, each roll falling between two of them, with one write per
        segment. A failed write is cut off again, so no partial message stays on disk, and
        surfaces as StorageError (sets written to earlier segments stay).
        """
        data = memoryview(message_set)
        n = data.nbytes
        if n == 0:
            raise ValueError("cannot append an empty message set")
        with self._lock:
            self._check_writable()
            base = self._end
            try:
                for chunk in self._chunks(data, set_sizes):
                    segment = self._segments[-1]
                    if segment.size and segment.size + chunk.nbytes > self.config.segment_bytes:
                        segment = self._roll()
                    before = segment.size
                    try:
                        segment.append(chunk)
                    except OSError as err:
                        self._undo_append(segment, before, chunk.nbytes, err)
                    self._end += chunk.nbytes
            finally:
                if self._end > base:
                    self.policy.record(count, time.monotonic())
        return base, self._end

    def _chunks(self, data: memoryview, set_sizes: list[int] | None) -> list[memoryview]:
        """``data`` cut where appending its sets one by one would roll to a new segment."""
        limit = self.config.segment_bytes
        used = self._segments[-1].size
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

    def flush_due(self, now: float) -> bool:
        """Whether the flush policy wants an fsync (``now`` in monotonic seconds)."""
        return self.policy.due(now)

    def seconds_until_flush(self, now: float) -> float | None:
        """How long a flusher may sleep before the policy is due; None when all is flushed."""
        return self.policy.seconds_until_due(now)

    def flush(self) -> None:
        """Fsync everything appended so far; safe to call from a flusher thread.

        The end offset and duplicated descriptors are taken under the lock, the fsyncs run
        without it (appends and rolls go on meanwhile), and the flushed end then moves up to
        the snapshot. Segments rolled since the last flush are synced here too.
        """
        with self._flush_lock:
            with self._lock:
                if self._closed:
                    return
                snapshot = self._end
                if snapshot == self._flushed_end and not self._unsynced:
                    return
                try:
                    active = self._segments[-1].dup()
                except OSError as err:
                    raise StorageError(f"{_describe(err)} (cannot flush {self.directory})") from err
                rolled, self._unsynced = self._unsynced, []
                self.policy.begin()
            began = time.monotonic()
            try:
                for fd in rolled:
                    os.fsync(fd)
                os.fsync(active)
            except OSError as err:
                with self._lock:
                    self._unsynced[:0] = rolled
                    self.policy.abort()
                raise StorageError(f"{_describe(err)} (fsync in {self.directory} failed)") from err
            finally:
                os.close(active)
            for fd in rolled:
                os.close(fd)
            elapsed = time.monotonic() - began
            with self._lock:
                self._flushed_end = max(self._flushed_end, snapshot)
                self.policy.done()
                self.flush_count += 1
                self.flush_seconds += elapsed

    def read(self, offset: int, max_bytes: int) -> bytes | memoryview:
        """Whole messages from ``offset``, up to ``max_bytes`` and the visible end (a memoryview
        when the read is cut back to a message boundary, so the cut copies nothing).

        A read stays inside one segment: at a segment's end it returns what that segment has,
        and the next fetch, at the next segment's start, continues. A first message bigger
        than ``max_bytes`` comes back whole, so a consumer is never stuck behind it.

        Raises OffsetOutOfRange outside ``start_offset .. visible_end`` and InvalidOffset for
        an offset that is inside but not at the start of a message; at ``visible_end`` there
        is nothing new and the answer is ``b""``.
        """
        with self._lock:
            self._check_open()
            visible = self.visible_end
            start = self._starts[0]
            if not start <= offset <= visible:
                raise OffsetOutOfRange(
                    f"offset {offset} is outside the log's range {start}..{visible}")
            if offset == visible:
                return b""
            segment = self._segments[find_segment(self._starts, offset)]
            available = min(segment.end, visible) - offset
            pos = offset - segment.start
            data = segment.read(pos, min(available, max(max_bytes, SIZE_FIELD)))
            if len(data) >= SIZE_FIELD:
                first = SIZE_FIELD + _SIZE.unpack_from(data)[0]
                if len(data) < first <= available:
                    data += segment.read(pos + len(data), first - len(data))
            try:
                first = check_entry(data)
            except InvalidMessage:
                raise InvalidOffset(f"offset {offset} is not the start of a message "
                                    f"(the log holds {start}..{visible})") from None
        if first < len(data) < available:
            data = memoryview(data)[:whole_prefix(data)]
        return data

    def offset_before(self, time_ms: int) -> int:
        """The offsets API: where a consumer starts to read messages written after ``time_ms``.

        ``-1`` (LATEST) is the visible end and ``-2`` (EARLIEST) the start offset. Any other
        time has segment granularity, as in Kafka 0.7: the answer is the start of the newest
        segment whose first message was written at or before ``time_ms``. A segment's first
        write is taken to be the previous segment's mtime (its last write, just before the
        roll); the oldest segment counts as written at the beginning of time, so a time
        before everything gives the start offset. A time at or after the active segment's
        mtime (no message is newer) gives the visible end, and no answer lies beyond it.
        """
        with self._lock:
            self._check_open()
            visible = self.visible_end
            if time_ms == LATEST:
                return visible
            if time_ms == EARLIEST:
                return self._starts[0]
            mtimes_ms = [os.fstat(s.fd).st_mtime_ns // 1_000_000 for s in self._segments]
            if time_ms >= mtimes_ms[-1]:
                return visible
            index = len(self._segments) - 1
            while index > 0 and mtimes_ms[index - 1] > time_ms:
                index -= 1
            return min(self._starts[index], visible)

    def apply_retention(self, now: float | None = None) -> int:
        """Delete whole old segments by the retention rules; return how many went.

        ``now`` is wall-clock seconds (mtimes are). The active segment is never deleted, so
        offsets keep counting from where they were, and neither is a segment holding messages
        not yet visible (a lagging flush), so the log start never passes the visible end.
        """
        if now is None:
            now = time.time()
        with self._lock:
            self._check_open()
            listing = [(s.start, s.size, s.mtime) for s in self._segments]
            count = segments_to_delete(listing, now, self.config.retention_ms,
                                       self.config.retention_bytes)
            visible = self.visible_end
            while count and self._segments[count - 1].end > visible:
                count -= 1
            for deleted in range(count):
                segment = self._segments[0]
                try:
                    segment.delete()
                except OSError as err:
                    raise StorageError(f"retention could not delete {segment.path}: {err} "
                                       f"({deleted} of {count} segments deleted)") from err
                del self._segments[0]
                del self._starts[0]
        if count:
            logger.info("%s: retention deleted %d segment(s); log starts at %d",
                        self.directory, count, self.start_offset)
        return count

    def close(self) -> None:
        """Flush what is unflushed, then close every file. Idempotent."""
        if self._closed:
            return
        try:
            if self._failed is None:
                self.flush()
        finally:
            with self._flush_lock, self._lock:
                self._closed = True
                self._close_fds()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"the log in {self.directory} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._failed is not None:
            raise StorageError(self._failed)

    def _roll(self) -> Segment:
        """Start a new active segment named by the end offset; the old one's fsync is handed
        to the next flush (its duplicated descriptor), so the append does not wait for it."""
        old = self._segments[-1]
        try:
            pending = old.dup()
            try:
                segment = Segment(self.directory, self._end)
            except OSError:
                os.close(pending)
                raise
        except OSError as err:
            raise StorageError(f"{_describe(err)} (cannot roll to a new segment at offset "
                               f"{self._end} in {self.directory})") from err
        self._unsynced.append(pending)
        self._segments.append(segment)
        self._starts.append(segment.start)
        return segment

    def _undo_append(self, segment: Segment, before: int, n: int, err: OSError) -> None:
        """Cut a failed append off the segment and raise StorageError."""
        try:
            segment.truncate(before)
        except OSError as cut_err:
            self._failed = (f"{_describe(err)} (a failed append left a partial message in "
                            f"{segment.path} that could not be cut off: {cut_err}; the log "
                            f"takes no more appends until it is reopened and recovered)")
            raise StorageError(self._failed) from err
        raise StorageError(f"{_describe(err)} (appending {n} bytes to {segment.path}; "
                           f"nothing was written)") from err

    def _recover(self) -> None:
        """Open the segments on disk, keeping a contiguous run and a valid last segment."""
        found = []
        for path in self.directory.glob("*" + SUFFIX):
            if not path.is_file():
                continue
            try:
                found.append((parse_segment_name(path.name), path))
            except ValueError:
                logger.warning("%s: ignoring %s, not a segment file name", self.directory,
                               path.name)
        found.sort()
        if not found:
            self._open_segment(0)
            return
        expected = found[0][0]
        for index, (start, path) in enumerate(found):
            if start != expected:
                self._set_aside(found[index:], expected)
                break
            expected = self._open_segment(start).end
        last = self._segments[-1]
        valid = _valid_length(last)
        if valid < last.size:
            cut = last.size - valid
            last.truncate(valid)
            self.recovered_truncated_bytes = cut
            logger.warning("%s: recovery cut %d bytes (a torn or corrupt tail) off %s at "
                           "offset %d", self.directory, cut, last.path.name, last.start + valid)
        for segment in self._segments:
            segment.sync()

    def _open_segment(self, start: int) -> Segment:
        segment = Segment(self.directory, start)
        self._segments.append(segment)
        self._starts.append(start)
        return segment

    def _set_aside(self, rest: list[tuple[int, Path]], expected: int) -> None:
        """Move segments after a gap into corrupt/: not reachable by offset, never deleted."""
        corrupt = self.directory / CORRUPT_DIR
        corrupt.mkdir(exist_ok=True)
        for _, path in rest:
            target = corrupt / path.name
            suffix = 0
            while target.exists():
                suffix += 1
                target = corrupt / f"{path.name}.{suffix}"
            path.rename(target)
        logger.warning("%s: segments are not contiguous (expected one at offset %d, found %s); "
                       "moved %d file(s) into %s/", self.directory, expected, rest[0][1].name,
                       len(rest), CORRUPT_DIR)

    def _close_fds(self) -> None:
        for segment in self._segments:
            segment.close()
        for fd in self._unsynced:
            os.close(fd)
        self._unsynced = []


def _valid_length(segment: Segment) -> int:
    """Bytes of whole valid messages at the start of a segment, read a chunk at a time.

    A message cut by the chunk edge is read again from its start in the next chunk; one longer
    than a chunk is read whole (it must fit in the file to be valid at all).
    """
    size = segment.size
    pos = 0
    while pos < size:
        buf = segment.read(pos, min(RECOVERY_CHUNK, size - pos))
        good, _ = valid_prefix(buf)
        if good == 0:
            if len(buf) < SIZE_FIELD:
                break
            length = SIZE_FIELD + _SIZE.unpack_from(buf)[0]
            if length <= len(buf) or pos + length > size:
                break
            good, _ = valid_prefix(segment.read(pos, length))
            if good == 0:
                break
        pos += good
    return pos


def _describe(err: OSError) -> str:
    """``disk full: No space left on device``: the first words of a StorageError."""
    kind = "disk full" if err.errno in _DISK_FULL else "disk error"
    return f"{kind}: {err.strerror or err}"
