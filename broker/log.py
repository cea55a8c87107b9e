"""The Log: one partition, stored as a folder of segment files (the paper's storage layout).

    <partition folder>/
        00000000000000000000.log      sealed: messages at byte offsets 0 .. 1073741823
        00000000001073741824.log      the active segment; appends go here
        <start>.gaps                  a compacted segment's gap index (broker/gap_index.py)
        exposed-end                   the highest offset ever told to a client (exposed_end.py)
        leader-epoch-checkpoint       which leader epoch wrote which offsets (leader_epochs.py)
        clean-shutdown                present only between a clean close() and the next open
        corrupt/                      files recovery moved aside (never deleted)

A message's offset is its byte position in the partition, so the segment holding an offset
is found by a binary search over the in-memory list of segment starts, and the message by a
``pread`` at ``offset - start``. There is no per-message index and no in-process cache: the
OS page cache serves reads. As Kafka 0.7's Log.scala, this module is segments, append, read,
roll, flush, retention and the offsets API; opening runs ``broker.recovery``, and a read at an
offset where no valid message starts asks ``broker.scrub`` which error it is.

Append, read, retention and close belong to the broker's request loop; ``flush`` may run on a
background flusher thread at the same time, and ``scrub_sealed`` on the start-up scrub thread.
A small lock covers the in-memory state and each append; the fsync itself runs outside it on
duplicated descriptors, so appends never wait for the disk.

A partition never hands out an offset twice: an offset is recorded in the exposed-end file
before any client is told it, and a log that recovery cut below it goes on there, leaving a
gap (a read there answers OFFSET_GAP with where the log resumes). Gaps between segments are
legal. A replica is the exception (issue 12): the leader's log decides what each offset holds,
so a follower cuts what only it wrote (``truncate_to``) or restarts at the leader's log start
(``reset_to``), lowering the exposed end with it.

About 650 lines, over the usual 450: one class, the storage engine of one partition, whose
parts share one lock, the segment list and the flush policy; what is a concept of its own
(recovery, the exposed end, leader epochs, the scrub walk, the pure segment rules) lives in
its own module.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import struct
import threading
import time
from pathlib import Path

from broker import gap_index, recovery, retention, scrub
from broker.config import LogConfig
from broker.exposed_end import ExposedEnd
from broker.flush import FlushPolicy
from broker.leader_epochs import LeaderEpochs
from broker.message import (GAP_ENTRY, SIZE_FIELD, InvalidMessage, check_entry, encode_gap,
                            gap_resume, whole_prefix)
from broker.protocol import EARLIEST, LATEST
from broker.segment import (SUFFIX, FileReader, Segment, describe, find_segment,
                            find_segment_by_time, split_at_rolls, sync_directory)
from coordinator.errors import OffsetGap, OffsetOutOfRange, SluiceError, StorageError

logger = logging.getLogger(__name__)

_SIZE = struct.Struct(">I")


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
        self.last_retention = retention.Decision(0)   # the last pass (apply_retention)
        self._starts: list[int] = []
        self._checkpoints: dict[int, scrub.Checkpoints] = {}
        self._unsynced: list[int] = []
        self._failed: str | None = None
        self._closed = False
        self.cuts = 0           # truncations and resets: a clean read before one is void
        self._exposed: ExposedEnd | None = None
        self.epochs: LeaderEpochs | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fresh = not any(self.directory.glob("*" + SUFFIX))
            self.unclean_shutdown = not recovery.take_clean_marker(self.directory) and not fresh
            if self.unclean_shutdown:
                self.scrub_state = "pending"
            self._exposed = ExposedEnd(self.directory)
            self.epochs = LeaderEpochs(self.directory)
            recovered = recovery.recover(self.directory, self._exposed)
        except OSError as err:
            self._close_fds()
            raise StorageError(f"cannot open the log in {self.directory}: {err}") from err
        except BaseException:
            self._close_fds()
            raise
        self._segments = recovered.segments
        self._starts = [segment.start for segment in self._segments]
        self._checkpoints = recovered.checkpoints
        self.corrupt_messages = recovered.corrupt_messages
        self.recovered_truncated_bytes = recovered.truncated_bytes
        self._end = self._segments[-1].end
        self._flushed_end = self._end
        try:
            self._settle_epochs()
        except BaseException:
            self._close_fds()
            raise

    def _settle_epochs(self) -> None:
        """Make the epochs agree with the recovered log. A log with messages and no checkpoint
        file was written before replication by its one broker, which led it at epoch 0 from
        its start: it gets that entry. Entries past the end cover nothing (a crash between a
        cut and the checkpoint's rewrite) and go. A replica copies the leader's entries
        before the bytes they cover, so no replicated log has messages without entries."""
        if not self.epochs.exists and self.size_bytes:
            self.epochs.assign(0, self.start_offset)
            logger.info("%s: a log from before replication: epoch 0 from offset %d",
                        self.directory, self.start_offset)
        elif self.epochs.truncate_from(self._end + 1):
            logger.warning("%s: dropped leader epoch entries past the log end %d",
                           self.directory, self._end)

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
    def data_end(self) -> int:
        """The end of the last stored message: ``end_offset`` but below a trailing gap (a log
        recovery cut goes on at its exposed end). A replica drops that gap with
        ``truncate_to(data_end)`` and fetches those offsets from the leader again."""
        for segment in reversed(self._segments):
            if segment.size:
                return segment.end
        return self._starts[0]

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
    def sealed_sizes(self) -> list[tuple[int, int]]:
        """``(start, file bytes)`` of every sealed segment (the cleaner's due check)."""
        with self._lock:
            return [(s.start, s.size) for s in self._segments[:-1]]

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
        return self._exposed.value

    def append(self, message_set, count: int, set_sizes: list[int] | None = None,
               expose: bool = False, markers: list[int] | None = None) -> tuple[int, int]:
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

        ``markers``: the positions of gap markers in the set (a follower copying a compacted
        stretch of its leader's log, ``message.validate_set(..., markers=)``): the same one
        write, and the segment's gap index learns the runs (``_append_gapped``).
        """
        data = memoryview(message_set)
        n = data.nbytes
        if n == 0:
            raise ValueError("cannot append an empty message set")
        if markers:
            return self._append_gapped(data, count, markers, expose)
        with self._lock:
            self._check_writable()
            base = self._end
            exposed_before = self._exposed.value
            if expose or not self.config.visible_after_flush:
                self._exposed.expose(base + n)
            try:
                for chunk in split_at_rolls(data, set_sizes, self._segments[-1].size,
                                            self.config.segment_bytes):
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
                self._exposed.take_back(max(exposed_before, self._end))
                raise
            finally:
                if self._end > base:
                    self.policy.record(count, time.monotonic())
        return base, self._end

    def _append_gapped(self, data: memoryview, count: int, markers: list[int],
                       expose: bool) -> tuple[int, int]:
        """Append one set holding gap markers: the segment's sidecar is made pending (durably)
        before the first marker reaches its file, so a crash never leaves markers the next
        open does not know to look for; the runs go into its gap index after the write."""
        n = data.nbytes
        with self._lock:
            self._check_writable()
            base = self._end
            segment = self._segments[-1]
            if segment.size and segment.size + n > self.config.segment_bytes:
                segment = self._roll()
            try:
                if segment.gaps is None:
                    gap_index.write_pending(self.directory, segment.start)
                    segment.gaps = gap_index.GapIndex(segment.start)
            except OSError as err:
                raise StorageError(f"{describe(err)} (cannot record gaps of "
                                   f"{segment.path.name} in {self.directory})") from err
            before = segment.size
            runs = [(gap_resume(data, m), before + m + GAP_ENTRY) for m in markers]
            last_offset, last_pos = runs[-1]
            end = last_offset + before + n - last_pos
            exposed_before = self._exposed.value
            if expose or not self.config.visible_after_flush:
                self._exposed.expose(end)
            try:
                segment.append(data)
            except OSError as err:
                self._exposed.take_back(exposed_before)
                self._undo_append(segment, before, n, err)
            for offset, pos in runs:
                segment.gaps.add(offset, pos)
            self._end = end
            self.policy.record(count, time.monotonic())
        return base, end

    def flush_due(self, now: float) -> bool:
        """Whether the flush policy wants an fsync (``now`` in monotonic seconds)."""
        return self.policy.due(now)

    def seconds_until_flush(self, now: float) -> float | None:
        """How long a flusher may sleep before the policy is due; None when all is flushed."""
        return self.policy.seconds_until_due(now)

    def reconfigure(self, config: LogConfig) -> None:
        """Take new settings (a topic's own, changed while the broker runs): the next roll,
        flush decision and retention pass use them; what is pending keeps its age."""
        with self._lock:
            self.config = config
            self.policy.messages = config.flush_messages
            self.policy.seconds = config.flush_ms / 1000.0

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
                self._exposed.expose(snapshot)
                exposed = self._exposed.value
                try:
                    active = self._segments[-1].dup()
                except OSError as err:
                    raise StorageError(f"{describe(err)} (cannot flush {self.directory})") from err
                rolled, self._unsynced = self._unsynced, []
                self.policy.begin()
            began = time.monotonic()
            try:
                for fd in rolled:
                    os.fsync(fd)
                os.fsync(active)
                self._exposed.sync_up_to(exposed)
            except OSError as err:
                with self._lock:
                    self._unsynced[:0] = rolled
                    self.policy.abort()
                raise StorageError(f"{describe(err)} (fsync in {self.directory} failed)") from err
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

    def read(self, offset: int, max_bytes: int, upto: int | None = None) -> bytes | memoryview:
        """``read_span``'s data only."""
        return self.read_span(offset, max_bytes, upto)[0]

    def read_span(self, offset: int, max_bytes: int,
                  upto: int | None = None) -> tuple[bytes | memoryview, int, bool]:
        """Whole messages from ``offset``, up to ``max_bytes`` and the visible end (a memoryview
        when the read is cut back to a message boundary, so the cut copies nothing).

        ``upto``: read up to this end instead of the visible end (at most ``end_offset``): a
        follower's replica fetch copies what the leader appended before it is flushed.

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

        Returns ``(data, end, gapped)``: ``end`` is the offset just past the data, and
        ``gapped`` says that the data comes from a compacted segment and may hold gap markers
        (message.py), so that ``end`` is not ``offset + len(data)``: a fetch at an offset whose
        messages the cleaner removed starts at the marker that says where the next one is.
        """
        with self._lock:
            self._check_open()
            visible = self.visible_end if upto is None else min(upto, self._end)
            index = self._segment_to_read(offset, visible)
            if index is None:
                return b"", offset, False
            segment = self._segments[index]
            bound = min(segment.end, visible)
            sealed_end = bound == segment.end and index + 1 < len(self._segments)
            pos = segment.position(offset)
            available = segment.position(bound) - pos
            data = self._read_from(segment, offset, pos, available, max_bytes)
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
                    raise StorageError(f"{describe(err)} (reading {self.directory})") from err
        if not first:
            raise self._no_message_at(reader, segment, offset, bound, next_start, checkpoints)
        if first < len(data) and (len(data) < available or sealed_end):
            data = memoryview(data)[:whole_prefix(data)]
        if segment.gaps is None:
            return data, offset + len(data), False
        return data, segment.offset_at(pos + len(data)), True

    def message_length_at(self, offset: int, upto: int | None = None) -> int | None:
        """The length of the valid message that starts at ``offset`` (below the visible end,
        or ``upto``), None when none starts there. Unlike ``read``, a miss costs one read of
        the bytes there, no walk to say what lies around it: the Kafka listener asks this of
        two candidate offsets for every commit and fetch (broker/kafka/records.py).

        Raises what ``read`` raises outside the log (OffsetOutOfRange, OffsetGap)."""
        with self._lock:
            self._check_open()
            visible = self.visible_end if upto is None else min(upto, self._end)
            index = self._segment_to_read(offset, visible)
            if index is None:
                return None
            segment = self._segments[index]
            pos = segment.position(offset)
            if segment.gaps is not None and segment.offset_at(pos) != offset:
                return None         # inside a gap the cleaner left: no message starts here
            data = self._read_from(segment, offset, pos,
                                   segment.position(min(segment.end, visible)) - pos, SIZE_FIELD)
        try:
            return check_entry(data)
        except InvalidMessage:
            return None

    def _segment_to_read(self, offset: int, visible: int) -> int | None:
        """The index of the segment a read at ``offset`` starts in; None at the visible end.
        Raises OffsetOutOfRange outside the log, OffsetGap in a gap."""
        start = self._starts[0]
        if offset < start:
            raise OffsetOutOfRange(f"offset {offset} is outside the log's range {start}.."
                                   f"{visible}; it resumes at {start}", resume_offset=start)
        if offset > visible:
            raise OffsetOutOfRange(f"offset {offset} is outside the log's range {start}..{visible}")
        if offset == visible:
            return None
        index = find_segment(self._starts, offset)
        segment = self._segments[index]
        if offset >= segment.end:
            resume = self._starts[index + 1]
            raise OffsetGap(f"offset {offset} is in a gap of the log: offsets {segment.end}.."
                            f"{resume} were handed out and lost in crash recovery; the log "
                            f"resumes at {resume}", resume_offset=resume)
        return index

    def _read_from(self, segment: Segment, offset: int, pos: int, available: int,
                   max_bytes: int) -> bytes:
        """Up to ``max_bytes`` (at least a size field) of the ``available`` bytes at ``offset``
        (file position ``pos``), extended to the whole first message when it is bigger."""
        try:
            data = segment.read(pos, min(available, max(max_bytes, SIZE_FIELD)))
            if len(data) >= SIZE_FIELD:
                first = SIZE_FIELD + _SIZE.unpack_from(data)[0]
                if len(data) < first <= available:
                    data += segment.read(pos + len(data), first - len(data))
        except OSError as err:
            raise StorageError(f"{describe(err)} (reading {segment.path.name} of "
                               f"{self.directory} at offset {offset})") from err
        return data

    def _no_message_at(self, reader: FileReader, segment: Segment, offset: int, bound: int,
                       next_start: int | None, checkpoints: scrub.Checkpoints) -> SluiceError:
        """The error for a read at an offset whose entry does not validate (``scrub.read_error``
        says which). Walks the segment from the nearest checkpoint (the error path only),
        without the lock: only the request loop deletes segments or appends, and ``reader``
        has a descriptor of its own, which this closes."""
        try:
            where = scrub.locate(reader, segment.position(bound), segment.position(offset),
                                 checkpoints)
        except OSError as err:
            return StorageError(f"{describe(err)} (reading {segment.path.name} of "
                                f"{self.directory} at offset {offset})")
        finally:
            os.close(reader.fd)
        if segment.gaps is not None:        # file positions to offsets past the gaps
            where = where._replace(before=segment.offset_at(where.before) - segment.start,
                                   after=segment.offset_at(where.after) - segment.start)
        return scrub.read_error(where, offset, segment.start, segment.end, next_start)

    def offset_before(self, time_ms: int, upto: int | None = None) -> int:
        """The offsets API: where a consumer starts to read messages written after ``time_ms``.

        ``-1`` (LATEST) is the visible end and ``-2`` (EARLIEST) the start offset. Any other
        time has segment granularity, as in Kafka 0.7 (``segment.find_segment_by_time``): the
        start of the newest segment whose first message was written at or before ``time_ms``,
        so a time before everything gives the start offset, and a time at or after the last
        write the visible end. No answer lies beyond the visible end, nor beyond ``upto`` (a
        replicated partition's high watermark: a position past it may be cut by a leader
        change and then hold other messages).
        """
        with self._lock:
            self._check_open()
            visible = self.visible_end if upto is None else min(self.visible_end, upto)
            if time_ms == LATEST:
                return visible
            if time_ms == EARLIEST:
                return self._starts[0]
            try:
                mtimes_ms = [os.fstat(s.fd).st_mtime_ns // 1_000_000 for s in self._segments]
            except OSError as err:
                raise StorageError(f"{describe(err)} (reading the segment times of "
                                   f"{self.directory})") from err
            index = find_segment_by_time(mtimes_ms, time_ms)
            return visible if index is None else min(self._starts[index], visible)

    def segment_listing(self) -> list[tuple[int, int, float]]:
        """``(start, size, mtime)`` of every segment, oldest first: what retention judges."""
        with self._lock:
            self._check_open()
            return self._listing()

    def _listing(self) -> list[tuple[int, int, float]]:
        try:
            return [(s.start, s.size, s.mtime) for s in self._segments]
        except OSError as err:
            raise StorageError(f"{describe(err)} (retention could not read the segment "
                               f"times of {self.directory})") from err

    def apply_retention(self, now: float | None = None, holds=()) -> int:
        """Delete whole old segments by the retention rules; return how many went.

        ``now`` is wall-clock seconds (mtimes are). The active segment is never deleted, so
        offsets keep counting from where they were, and neither is a segment holding messages
        not yet visible (a lagging flush), so the log start never passes the visible end.
        ``holds``: backlog protections' ``(offset, max_hold_bytes)`` (broker/retention.py);
        the pass's ``retention.Decision`` is kept as ``last_retention``.
        """
        if now is None:
            now = time.time()
        with self._lock:
            self._check_open()
            decision = retention.decide(self._listing(), now, self.config.retention_ms,
                                        self.config.retention_bytes, holds)
            count = decision.delete
            visible = self.visible_end
            while count and self._segments[count - 1].end > visible:
                count -= 1
            self.last_retention = dataclasses.replace(decision, delete=count)
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

    def sealed_for_cleaning(self) -> tuple[list[tuple[Segment, int]], int]:
        """The sealed segments below the visible end, each with a duplicated descriptor (the
        caller closes them), for the log cleaner's thread: it reads them without the lock,
        as the scrub does, while retention may delete them meanwhile; and ``cuts`` now."""
        with self._lock:
            self._check_open()
            visible = self.visible_end
            out = []
            try:
                for segment in self._segments[:-1]:
                    if segment.end > visible:
                        break
                    out.append((segment, segment.dup()))
            except OSError as err:
                for _, fd in out:
                    os.close(fd)
                raise StorageError(f"{describe(err)} (cannot clean {self.directory})") from err
            return out, self.cuts

    def replace_segments(self, olds: list[Segment], cleaned: Path, index: gap_index.GapIndex,
                         cuts: int, after_rename=None) -> bool:
        """Commit a clean of neighbouring sealed segments ``olds``: ``cleaned`` (fsynced,
        their kept entries and gap markers) is renamed over the first one's file, the one
        step that makes it the segment for all their offsets, and the log reads the new file
        from then on; the others' files are deleted after. The caller wrote the sidecar
        pending before (so a crash from here on rebuilds the index from whichever file is
        there, and recovery deletes a leftover that lies inside the new file's offsets); the
        complete one is written last, unsynced (lost or torn in a crash, it fails its check
        and the file is walked): one fsync fewer for the disk the produce path shares.

        False, with nothing changed, when ``olds`` are no longer neighbouring sealed segments
        of this log (deleted meanwhile) or the log was cut since ``cuts`` was read
        (``sealed_for_cleaning``): what was cleaned may not be what the segments hold now.
        Raises StorageError."""
        with self._lock:
            self._check_writable()
            first = olds[0]
            if first not in self._segments or self.cuts != cuts:
                return False
            at = self._segments.index(first)
            if (self._segments[at:at + len(olds)] != olds or at + len(olds) >= len(self._segments)
                    or any(old.fd < 0 for old in olds)):
                return False
            try:
                stat = os.fstat(olds[-1].fd)     # the newest member's last write: the
                os.utime(cleaned, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # retention clock
                os.replace(cleaned, first.path)
                fresh = Segment(self.directory, first.start, index)
            except OSError as err:
                raise StorageError(f"{describe(err)} (committing the clean of "
                                   f"{first.path.name} in {self.directory})") from err
            self._segments[at:at + len(olds)] = [fresh]
            self._starts[at:at + len(olds)] = [fresh.start]
            for old in olds:
                self._checkpoints.pop(old.start, None)
                old.close()
        if after_rename is not None:
            after_rename()
        try:
            for old in olds[1:]:
                old.path.unlink()
                gap_index.remove(self.directory, old.start)
            sync_directory(self.directory)      # the rename is durable before the index says
            gap_index.write(self.directory, fresh.start, index, fresh.size, sync=False)
        except OSError as err:
            raise StorageError(f"{describe(err)} (after the clean of {fresh.path.name} in "
                               f"{self.directory}; the next open finishes it)") from err
        return True

    def truncate_to(self, offset: int) -> tuple[int, int]:
        """Cut the log at ``offset``, a message boundary; return ``(messages, bytes)`` cut.

        A replica's log: a follower cuts what it wrote that the leader does not have
        (``leader_epochs.truncation_offset`` says where) and appends from ``offset`` what it
        fetches. Later segments are deleted (newest first, so a crash leaves a prefix of the
        log), the segment holding ``offset`` is cut and fsynced, gaps at or after ``offset``
        go, the exposed end is lowered to ``offset`` and the epochs lose their entries from
        ``offset`` on (after the data, so a crash never leaves bytes under a wrong epoch).

        Lowering the exposed end breaks the single-broker rule that no offset is handed out
        twice, and it is right for a replica: once a partition is replicated, the leader's log
        decides what each offset holds, and every replica must hold the same bytes there.
        What the cut drops was never in every in-sync replica (the high watermark stays below
        it), so no acks=all write is lost; an acks=1 write the old leader alone had is, and it
        is counted by the caller from the returned numbers, never silent.

        ``offset`` at or past the end cuts nothing: ``(0, 0)`` (entries from there still go).
        Below the start nothing the log holds is kept: as ``reset_to(offset)``, as Kafka does.
        Inside a gap, the log keeps the data before it and goes on at ``offset``. Raises
        InvalidOffset when ``offset`` is inside a message, StorageError when the disk fails
        (the log then takes no appends until reopened; recovery brings it back consistent).
        Counting walks the cut bytes once (not the hot path).
        """
        with self._flush_lock, self._lock:
            self._check_writable()
            if offset >= self._end:
                self.epochs.truncate_from(offset)
                return 0, 0
            self.cuts += 1
            if offset < self._starts[0]:
                cut = self._count_cut(0, 0)
                self._reset(offset)
                return cut
            index = find_segment(self._starts, offset)
            segment = self._segments[index]
            pos = segment.position(offset) if offset < segment.end else offset - segment.start
            if 0 < pos < segment.size and segment.offset_at(pos) == offset:
                checkpoints = self._checkpoints.setdefault(segment.start, scrub.Checkpoints())
                where = scrub.locate(segment, segment.size, pos, checkpoints)
                if where.kind not in ("message", "corrupt"):
                    raise scrub.read_error(where, offset, segment.start, segment.end)
            cut = self._count_cut(index, min(pos, segment.size))
            try:
                while len(self._segments) > index + 1:
                    later = self._segments[-1]
                    later.delete()
                    del self._segments[-1], self._starts[-1]
                    self._checkpoints.pop(later.start, None)
                if pos < segment.size:
                    segment.truncate(pos)
                    if segment.gaps is not None and segment.end < offset:
                        segment.append(encode_gap(offset))      # the cut was inside a gap
                        segment.gaps.add(offset, segment.size)
                    segment.sync()
                    if segment.gaps is not None:
                        gap_index.write(self.directory, segment.start, segment.gaps,
                                        segment.size)
                    self._checkpoints[segment.start] = _checkpoints_below(
                        self._checkpoints.get(segment.start), pos)
                elif pos > segment.size:
                    self._segments.append(Segment(self.directory, offset))
                    self._starts.append(offset)
                sync_directory(self.directory)
                self._end = offset
                self._flushed_end = min(self._flushed_end, offset)
                self._exposed.lower_to(offset)
            except (OSError, StorageError) as err:
                self._end = self._segments[-1].end
                self._flushed_end = min(self._flushed_end, self._end)
                self._failed = (f"{err} (cutting {self.directory} at offset {offset} failed; "
                                f"the log takes no more appends until it is reopened)")
                raise StorageError(self._failed) from err
            self.epochs.truncate_from(offset)
        logger.info("%s: cut at offset %d: %d messages, %d bytes", self.directory, offset, *cut)
        return cut

    def reset_to(self, offset: int) -> None:
        """Delete every segment and start empty at ``offset``, epochs cleared.

        For a follower whose log is behind the leader's log start (or lost with its disk
        while the leader's starts past 0): the offsets below ``offset`` are not the leader's
        to give any more, so the log restarts where the leader's does and appends go on from
        there. The exposed end becomes ``offset`` (see ``truncate_to`` for why a replica may
        lower it). Raises StorageError as ``truncate_to``.
        """
        with self._flush_lock, self._lock:
            self._check_writable()
            self._reset(offset)
        logger.info("%s: reset to start empty at offset %d", self.directory, offset)

    def _reset(self, offset: int) -> None:
        """``reset_to`` under the locks: the new empty segment first (an old one that starts at
        ``offset`` is emptied instead), then the old ones newest first, then the epochs."""
        self.cuts += 1
        try:
            fresh = next((s for s in self._segments if s.start == offset), None)
            if fresh is None:
                fresh = Segment(self.directory, offset)
                self._segments.append(fresh)
            else:
                fresh.truncate(0)
            for old in reversed([s for s in self._segments if s is not fresh]):
                old.delete()
                self._segments.remove(old)
            self._segments = [fresh]
            self._starts = [offset]
            self._checkpoints = {}
            fresh.sync()
            sync_directory(self.directory)
            self._end = self._flushed_end = offset
            self.epochs.clear()
            self._exposed.lower_to(offset)
        except (OSError, StorageError) as err:
            self._starts = [s.start for s in self._segments]
            self._end = self._segments[-1].end if self._segments else offset
            self._failed = (f"{err} (resetting {self.directory} to offset {offset} failed; "
                            f"the log takes no more appends until it is reopened)")
            raise StorageError(self._failed) from err

    def _count_cut(self, index: int, pos: int) -> tuple[int, int]:
        """Messages and bytes from ``pos`` of segment ``index`` to the end (one walk)."""
        messages = nbytes = 0
        for number, segment in enumerate(self._segments[index:]):
            start = pos if number == 0 else 0
            try:
                messages += sum(piece.messages for piece in
                                scrub.pieces(segment, segment.size, start))
            except OSError as err:
                raise StorageError(f"{describe(err)} (reading {segment.path.name} of "
                                   f"{self.directory} to count a cut)") from err
            nbytes += segment.size - start
        return messages, nbytes

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
            recovery.leave_clean_marker(self.directory)

    def scrub_sealed(self, on_progress=None) -> list[tuple[int, scrub.Bad]]:
        """CRC-check every sealed segment (``recovery.check_sealed`` logs each bad message by
        offset); count them and return ``(offset, bad range)`` for each. The start-up scrub
        after an unclean shutdown runs this on a thread of its own: it reads through duplicated
        descriptors, so retention may delete a segment meanwhile. ``on_progress(position)`` is
        called after each step of the walk (it may raise to stop the scrub).
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
                raise StorageError(f"{describe(err)} (cannot scrub {self.directory})") from err
        found = []
        finished = False
        try:
            for segment, fd in sealed:
                try:
                    bad = recovery.check_sealed(self.directory, segment, FileReader(fd),
                                                on_progress)
                except OSError as err:
                    raise StorageError(f"{describe(err)} (scrubbing {segment.path.name} of "
                                       f"{self.directory})") from err
                with self._lock:
                    self.corrupt_messages += len(bad)
                found += bad
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
            raise StorageError(f"{describe(err)} (cannot roll to a new segment at offset "
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
            self._failed = (f"{describe(err)} (a failed append left a partial message in "
                            f"{segment.path} that could not be cut off: {cut_err}; the log "
                            f"takes no more appends until it is reopened and recovered)")
            raise StorageError(self._failed) from err
        raise StorageError(f"{describe(err)} (appending {n} bytes to {segment.path}; "
                           f"nothing was written)") from err

    def _close_fds(self) -> None:
        for segment in self._segments:
            segment.close()
        for fd in self._unsynced:
            os.close(fd)
        self._unsynced = []
        if self._exposed is not None:
            self._exposed.close()


def _checkpoints_below(old: scrub.Checkpoints | None, pos: int) -> scrub.Checkpoints:
    """The known boundaries of a segment cut at ``pos``: those before the cut stay true."""
    kept = scrub.Checkpoints(old.spacing if old is not None else None)
    for point in old or ():
        if point < pos:
            kept.add(point)
    return kept
