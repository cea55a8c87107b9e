"""The Log: one partition, stored as a folder of segment files (the paper's storage layout).

    <partition folder>/
        00000000000000000000.log      sealed: messages at byte offsets 0 .. 1073741823
        00000000001073741824.log      the active segment; appends go here
        exposed-end                   the highest offset ever told to a client (20 digits)
        clean-shutdown                present only between a clean close() and the next open
        corrupt/                      files recovery moved aside (never deleted)

A message's offset is its byte position in the partition, so the segment holding an offset
is found by a binary search over the in-memory list of segment starts, and the message by a
``pread`` at ``offset - start``. There is no per-message index and no in-process cache: the
OS page cache serves reads.

Append, read, retention and close belong to the broker's request loop; ``flush`` may run on a
background flusher thread at the same time. A small lock covers the in-memory state and each
append; the fsync itself runs outside it on duplicated descriptors, so appends never wait for
the disk.

A partition never hands out an offset twice. Every offset a client is told (the next offset in
an acks=1 reply, the visible end that bounds fetches and the offsets API) is first written to
``exposed-end``: one ``pwrite`` when the value grows, fsynced by the flusher with the segments,
kept across a process crash by the page cache. When recovery cuts the log below it, the log
goes on at the exposed end in a new segment, and the offsets between are a gap: a read there
answers OFFSET_GAP with where the log resumes. Gaps between segments are legal.

On open, recovery: set aside a segment that starts inside its predecessor (into ``corrupt/``),
log each gap, and walk the last segment with ``broker.scrub`` checking sizes and CRCs. A bad
range with good messages after it is a corrupt message inside the log: kept, logged, counted,
and a fetch at it answers CORRUPT_MESSAGE with where readable data resumes. A bad range that
runs to the end is a torn tail: cut off. Sealed segments were fsynced before they rolled; after
an unclean shutdown (no clean-shutdown marker) ``scrub_sealed`` CRC-checks them too, off the
request loop.
"""
from __future__ import annotations

import errno
import logging
import os
import struct
import threading
import time
from pathlib import Path

from broker import scrub
from broker.config import LogConfig
from broker.flush import FlushPolicy
from broker.message import SIZE_FIELD, InvalidMessage, check_entry, whole_prefix
from broker.protocol import (EARLIEST, LATEST, CorruptMessage, InvalidOffset, OffsetGap,
                             OffsetOutOfRange, SluiceError, StorageError)
from broker.retention import segments_to_delete
from broker.segment import SUFFIX, FileReader, Segment, find_segment, parse_segment_name

logger = logging.getLogger("sluice.broker.log")

CORRUPT_DIR = "corrupt"
EXPOSED_FILE = "exposed-end"
CLEAN_FILE = "clean-shutdown"
_EXPOSED_DIGITS = 20
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
        self.corrupt_messages = 0
        self.unclean_shutdown = False
        self.scrub_state = "not needed"
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._segments: list[Segment] = []
        self._starts: list[int] = []
        self._checkpoints: dict[int, scrub.Checkpoints] = {}
        self._unsynced: list[int] = []
        self._failed: str | None = None
        self._closed = False
        self._exposed_fd = -1
        self._exposed = 0
        self._exposed_synced = 0
        self._end = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fresh = not any(self.directory.glob("*" + SUFFIX))
            self.unclean_shutdown = not self._take_clean_marker() and not fresh
            if self.unclean_shutdown:
                self.scrub_state = "pending"
            self._open_exposed()
            self._recover()
        except StorageError:
            self._close_fds()
            raise
        except OSError as err:
            self._close_fds()
            raise StorageError(f"cannot open the log in {self.directory}: {err}") from err
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
        """Bytes stored (gaps hold none)."""
        return sum(segment.size for segment in self._segments)

    @property
    def gaps(self) -> list[tuple[int, int]]:
        """``(first, resume)`` of every gap between segments: offsets that hold no data."""
        return [(before.end, after.start) for before, after in
                zip(self._segments, self._segments[1:]) if before.end < after.start]

    @property
    def exposed_end(self) -> int:
        """The highest offset ever told to a client; the log never hands out one below it."""
        return self._exposed

    def append(self, message_set, count: int, set_sizes: list[int] | None = None,
               expose: bool = False) -> tuple[int, int]:
        """Append validated messages with one write; return (base offset, next offset).

        Rolls to a new segment first when the active one is not empty and the set would take
        it past ``segment_bytes``. ``set_sizes`` says that ``message_set`` joins several sets
        (the broker writes what many requests brought in one go): the result is the same as
        appending them one by one, each roll falling between two of them, with one write per
        segment. A failed write is cut off again, so no partial message stays on disk, and
        surfaces as StorageError (sets written to earlier segments stay).

        ``expose``: the caller will tell a client the next offset (an acks=1 reply), so it is
        recorded as exposed before the write, as it is for every append when messages are
        visible at once. A failed append takes back what it exposed and nobody saw.
        """
        data = memoryview(message_set)
        n = data.nbytes
        if n == 0:
            raise ValueError("cannot append an empty message set")
        with self._lock:
            self._check_writable()
            base = self._end
            exposed_before = self._exposed
            if expose or not self.config.visible_after_flush:
                self._expose(base + n)
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
            except SluiceError:
                self._take_back_exposure(max(exposed_before, self._end))
                raise
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
        the snapshot. Segments rolled since the last flush are synced here too, and the
        exposed-end file, which records the snapshot before it becomes visible.
        """
        with self._flush_lock:
            with self._lock:
                if self._closed:
                    return
                snapshot = self._end
                if snapshot == self._flushed_end and not self._unsynced:
                    return
                self._expose(snapshot)
                exposed = self._exposed
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
                if exposed > self._exposed_synced:
                    os.fsync(self._exposed_fd)
                    self._exposed_synced = exposed
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
        than ``max_bytes`` comes back whole, so a consumer is never stuck behind it. A read
        that reaches a sealed segment's end is cut back to whole messages too (once per
        segment: a crash can have torn a sealed tail); the visible end and the active
        segment's end are always boundaries. Only the first message's CRC is checked: a
        corrupt one further on reaches the consumer, which checks every CRC, after the good
        messages before it.

        Raises OffsetOutOfRange outside ``start_offset .. visible_end`` (below the start with
        ``resume_offset`` = the start), OffsetGap in a gap, CorruptMessage at a corrupt message
        (``resume_offset``: where readable data resumes), InvalidOffset for an offset inside a
        message (naming the boundaries around it), StorageError when the disk fails. At
        ``visible_end`` there is nothing new and the answer is ``b""``.
        """
        with self._lock:
            self._check_open()
            visible = self.visible_end
            start = self._starts[0]
            if offset < start:
                raise OffsetOutOfRange(f"offset {offset} is outside the log's range "
                                       f"{start}..{visible}; it resumes at {start}",
                                       resume_offset=start)
            if offset > visible:
                raise OffsetOutOfRange(
                    f"offset {offset} is outside the log's range {start}..{visible}")
            if offset == visible:
                return b""
            index = find_segment(self._starts, offset)
            segment = self._segments[index]
            if offset >= segment.end:
                resume = self._starts[index + 1]
                raise OffsetGap(f"offset {offset} is in a gap of the log: offsets {segment.end}"
                                f"..{resume} were handed out and lost in crash recovery; the "
                                f"log resumes at {resume}", resume_offset=resume)
            bound = min(segment.end, visible)
            available = bound - offset
            sealed_end = bound == segment.end and index + 1 < len(self._segments)
            pos = offset - segment.start
            try:
                data = segment.read(pos, min(available, max(max_bytes, SIZE_FIELD)))
                if len(data) >= SIZE_FIELD:
                    first = SIZE_FIELD + _SIZE.unpack_from(data)[0]
                    if len(data) < first <= available:
                        data += segment.read(pos + len(data), first - len(data))
            except OSError as err:
                raise StorageError(f"{_describe(err)} (reading {segment.path.name} of "
                                   f"{self.directory} at offset {offset})") from err
            try:
                first = check_entry(data)
            except InvalidMessage:
                first = 0
            if not first:
                next_start = self._starts[index + 1] if sealed_end else None
                checkpoints = self._checkpoints.setdefault(segment.start, scrub.Checkpoints())
                try:
                    reader = FileReader(segment.dup())
                except OSError as err:
                    raise StorageError(f"{_describe(err)} (reading {self.directory})") from err
        if not first:
            try:
                raise self._no_message_at(reader, segment, offset, bound, next_start,
                                          checkpoints)
            finally:
                os.close(reader.fd)
        if first < len(data) and (len(data) < available or sealed_end):
            data = memoryview(data)[:whole_prefix(data)]
        return data

    def _no_message_at(self, reader: FileReader, segment: Segment, offset: int, bound: int,
                       next_start: int | None, checkpoints: scrub.Checkpoints) -> SluiceError:
        """The error for a read at an offset whose entry does not validate: a corrupt message
        there, or an offset inside a message. Walks the segment from the nearest checkpoint
        (the error path only), without the lock: only the request loop deletes segments."""
        try:
            where = scrub.locate(reader, bound - segment.start, offset - segment.start,
                                 checkpoints)
        except OSError as err:
            return StorageError(f"{_describe(err)} (reading {segment.path.name} of "
                                f"{self.directory} at offset {offset})")
        before, after = segment.start + where.before, segment.start + where.after
        if where.kind == "corrupt":
            resume = next_start if after == segment.end and next_start is not None else after
            return CorruptMessage(f"offset {offset} holds a corrupt message ({where.reason}): "
                                  f"{after - offset} bytes up to offset {after} cannot be "
                                  f"read; readable data resumes at {resume}",
                                  resume_offset=resume)
        if where.kind == "inside_bad":
            return InvalidOffset(f"offset {offset} is not the start of a message: it lies "
                                 f"inside corrupt bytes at {before}..{after}; the nearest "
                                 f"message boundaries are {before} and {after}")
        if where.kind == "inside":
            return InvalidOffset(f"offset {offset} is not the start of a message: it lies "
                                 f"inside the message at {before}; the next one starts at "
                                 f"{after}")
        return InvalidOffset(f"offset {offset} is not the start of a message")

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
            try:
                mtimes_ms = [os.fstat(s.fd).st_mtime_ns // 1_000_000 for s in self._segments]
            except OSError as err:
                raise StorageError(f"{_describe(err)} (reading the segment times of "
                                   f"{self.directory})") from err
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
            try:
                listing = [(s.start, s.size, s.mtime) for s in self._segments]
            except OSError as err:
                raise StorageError(f"{_describe(err)} (retention could not read the segment "
                                   f"times of {self.directory})") from err
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
                self._checkpoints.pop(segment.start, None)
        if count:
            logger.info("%s: retention deleted %d segment(s); log starts at %d",
                        self.directory, count, self.start_offset)
        return count

    def close(self) -> None:
        """Flush what is unflushed, then close every file. Idempotent.

        Only a close whose final flush succeeded leaves the clean-shutdown marker, so the next
        open knows whether the sealed segments need a scrub.
        """
        if self._closed:
            return
        clean = False
        try:
            if self._failed is None:
                self.flush()
                clean = True
        finally:
            with self._flush_lock, self._lock:
                self._closed = True
                self._close_fds()
        if clean:
            self._leave_clean_marker()

    def scrub_sealed(self, on_progress=None) -> list[tuple[int, scrub.Bad]]:
        """CRC-check every sealed segment; log each bad message by offset, count them, and
        return ``(offset, bad range)`` for each. The start-up scrub after an unclean shutdown
        runs this on a thread of its own: it reads through duplicated descriptors, so
        retention may delete a segment meanwhile. ``on_progress(position)`` is called after
        each step of the walk (it may raise to stop the scrub).
        """
        with self._lock:
            self._check_open()
            self.scrub_state = "running"
            sealed = []
            try:
                for segment in self._segments[:-1]:
                    sealed.append((segment, segment.dup()))
            except OSError as err:
                for _, fd in sealed:
                    os.close(fd)
                self.scrub_state = "failed"
                raise StorageError(f"{_describe(err)} (cannot scrub {self.directory})") from err
        found = []
        finished = False
        try:
            for segment, fd in sealed:
                try:
                    report = scrub.scrub(FileReader(fd), segment.size, on_progress=on_progress)
                except OSError as err:
                    raise StorageError(f"{_describe(err)} (scrubbing {segment.path.name} of "
                                       f"{self.directory})") from err
                for bad in report.bad:
                    offset = segment.start + bad.position
                    logger.warning("%s: scrub found a corrupt message at offset %d (%d bytes, "
                                   "%s) in sealed segment %s; fetches there answer "
                                   "CORRUPT_MESSAGE", self.directory, offset, bad.size,
                                   bad.reason, segment.path.name)
                    found.append((offset, bad))
                with self._lock:
                    self.corrupt_messages += len(report.bad)
            finished = True
        finally:
            for _, fd in sealed:
                os.close(fd)
            self.scrub_state = "done" if finished else "failed"
        return found

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
        """Open the segments on disk, cut a torn tail off the last one, and continue at the
        exposed end when recovery cut below it."""
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
        overlapping = []
        for start, path in found:
            if self._segments and start < self._segments[-1].end:
                overlapping.append((start, path))
                continue
            if self._segments and start > self._segments[-1].end:
                logger.warning("%s: a gap of %d bytes at offsets %d..%d holds no data (offsets "
                               "lost in an earlier crash recovery); fetches there answer "
                               "OFFSET_GAP",
                               self.directory, start - self._segments[-1].end,
                               self._segments[-1].end, start)
            self._open_segment(start)
        if overlapping:
            self._set_aside(overlapping)
        if not self._segments:
            self._open_segment(self._exposed)
        self._recover_last()
        self._end = self._segments[-1].end
        if self._exposed > self._end:
            logger.warning("%s: the recovered log ends at offset %d, below offset %d that "
                           "clients were told of; it continues at %d in a new segment, leaving "
                           "a gap of %d bytes (fetches there answer OFFSET_GAP)", self.directory,
                           self._end, self._exposed, self._exposed, self._exposed - self._end)
            self._open_segment(self._exposed)
            self._end = self._exposed
        self._expose(self._end)
        for segment in self._segments:
            segment.sync()
        os.fsync(self._exposed_fd)
        self._exposed_synced = self._exposed

    def _recover_last(self) -> None:
        """Walk the last segment: keep corrupt messages that have good ones after them, cut a
        torn tail (the drills' torn-segment cut starts at the first bad message of the tail)."""
        last = self._segments[-1]
        checkpoints = self._checkpoints.setdefault(last.start, scrub.Checkpoints())
        report = scrub.scrub(last, last.size, last=True, checkpoints=checkpoints)
        for bad in report.bad:
            logger.warning("%s: recovery kept a corrupt message at offset %d (%d bytes, %s) in "
                           "%s: good messages follow it; fetches there answer CORRUPT_MESSAGE",
                           self.directory, last.start + bad.position, bad.size, bad.reason,
                           last.path.name)
        self.corrupt_messages += len(report.bad)
        if report.torn_at is not None:
            cut = last.size - report.torn_at
            last.truncate(report.torn_at)
            self.recovered_truncated_bytes = cut
            logger.warning("%s: recovery cut %d bytes (a torn or corrupt tail) off %s at "
                           "offset %d", self.directory, cut, last.path.name,
                           last.start + report.torn_at)

    def _open_segment(self, start: int) -> Segment:
        segment = Segment(self.directory, start)
        self._segments.append(segment)
        self._starts.append(start)
        return segment

    def _set_aside(self, overlapping: list[tuple[int, Path]]) -> None:
        """Move segments that start inside their predecessor into corrupt/: two files cannot
        both hold an offset. They are never deleted."""
        corrupt = self.directory / CORRUPT_DIR
        corrupt.mkdir(exist_ok=True)
        for _, path in overlapping:
            target = corrupt / path.name
            suffix = 0
            while target.exists():
                suffix += 1
                target = corrupt / f"{path.name}.{suffix}"
            path.rename(target)
        logger.warning("%s: %d segment(s) overlap their predecessor (%s); moved them into %s/",
                       self.directory, len(overlapping),
                       ", ".join(path.name for _, path in overlapping), CORRUPT_DIR)

    def _take_clean_marker(self) -> bool:
        """Whether the last close was clean; the marker goes now (durably), so a crash from
        here on reads as unclean."""
        marker = self.directory / CLEAN_FILE
        try:
            marker.unlink()
        except FileNotFoundError:
            return False
        _sync_directory(self.directory)
        return True

    def _leave_clean_marker(self) -> None:
        try:
            fd = os.open(self.directory / CLEAN_FILE, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC,
                         0o644)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            _sync_directory(self.directory)
        except OSError as err:
            logger.warning("%s: could not leave the clean-shutdown marker (%s); the next start "
                           "scrubs the sealed segments", self.directory, err)

    def _open_exposed(self) -> None:
        """Open (or create) the exposed-end file and read it; an unreadable value counts as 0,
        which costs nothing but the protection against reuse, and is logged."""
        path = self.directory / EXPOSED_FILE
        self._exposed_fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                                   0o644)
        text = os.pread(self._exposed_fd, _EXPOSED_DIGITS + 1, 0)
        if not text:
            return
        try:
            self._exposed = int(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            logger.warning("%s: %s holds %r, not an offset; ignoring it", self.directory,
                           EXPOSED_FILE, text[:40])
        self._exposed_synced = self._exposed

    def _expose(self, offset: int) -> None:
        """Record ``offset`` as told to a client, before it is (one pwrite, only when it grows)."""
        if offset > self._exposed:
            self._write_exposed(offset)

    def _take_back_exposure(self, offset: int) -> None:
        """After a failed append: the exposed end goes back to what clients can have seen."""
        if offset < self._exposed:
            try:
                self._write_exposed(offset)
            except StorageError as err:
                logger.warning("%s: %s", self.directory, err)

    def _write_exposed(self, offset: int) -> None:
        try:
            os.pwrite(self._exposed_fd, b"%0*d\n" % (_EXPOSED_DIGITS, offset), 0)
        except OSError as err:
            raise StorageError(f"{_describe(err)} (cannot record the exposed end in "
                               f"{self.directory})") from err
        self._exposed = offset

    def _close_fds(self) -> None:
        for segment in self._segments:
            segment.close()
        for fd in self._unsynced:
            os.close(fd)
        self._unsynced = []
        if self._exposed_fd >= 0:
            fd, self._exposed_fd = self._exposed_fd, -1
            os.close(fd)


def _sync_directory(directory: Path) -> None:
    """Make a file's creation or removal in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe(err: OSError) -> str:
    """``disk full: No space left on device``: the first words of a StorageError."""
    kind = "disk full" if err.errno in _DISK_FULL else "disk error"
    return f"{kind}: {err.strerror or err}"
