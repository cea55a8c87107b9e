"""The log cleaner: compacts the sealed segments of logs whose cleanup policy says ``compact``.

A thread of its own, beside the request loop (which only decides, every cleaner interval,
which logs are due: ``compaction.due``) and throttled to ``cleaner_bytes_per_second`` of
reading and writing together, so that produce latency stays flat while it works. A clean of
one log:

1. scan every sealed segment below the visible end (through duplicated descriptors, as the
   scrub reads) for the offset of each key's last message (``latest``);
2. decide, per sealed segment, what ``compaction.keep`` keeps, and group neighbours whose
   kept bytes fit in one segment (``compaction.groups``); for each group that changes, write
   ``<first start>.log.cleaned``: the kept messages, byte for byte, and a gap marker
   (message.py) wherever offsets jump; fsync it;
3. make the first segment's gap index sidecar pending (broker/gap_index.py), fsynced;
4. rename the cleaned file over the first segment (``Log.replace_segments``, under the log's
   lock): the commit. The log reads the new file from then on; then the group's other files
   are deleted and the complete sidecar written;
5. record where the clean ended (and the oldest tombstone it kept) in the cleaner checkpoint
   (broker/cleaner_checkpoint.py), from which a restarted broker goes on: what is clean is
   not read again until the dirty part is due.

A crash before 4 leaves the old segments and a ``.cleaned`` file that the next open deletes;
after 4, the new segment (a pending sidecar is rebuilt by a walk of the file), and any of the
group's other files still there lie wholly inside its offsets, so recovery deletes them as a
merge's leftovers (broker/recovery.py). Never a mix: one rename switches the whole group. The
active segment is never read or written here.

Fault hook for the crash test: the environment variable ``SLUICE_CLEANER_CRASH_AT`` set to
``written`` (after step 2), ``pending`` (after 3) or ``renamed`` (after the rename, before the
complete sidecar) ends the broker process there with ``os._exit``, as a kill would.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator

from broker import compaction, gap_index
from broker.cleaner_checkpoint import CleanerCheckpoint, clean_start
from broker.log import Log
from broker.message import (GAP_ENTRY, HEADER, MAGIC_GAP, SIZE_FIELD, encode_gap, entry_key,
                            gap_resume)
from broker.recovery import CLEANED_SUFFIX
from broker.segment import Segment, read_at
from coordinator.errors import SluiceError, StorageError

logger = logging.getLogger(__name__)

CHUNK = 1 << 14           # a read between GIL releases: the request loop never waits long
CRASH_ENV = "SLUICE_CLEANER_CRASH_AT"
_FILE_SHIFT = 48        # a kept entry's place in a group: file number << 48 | file position
_POSITION = (1 << _FILE_SHIFT) - 1
_crc32 = zlib.crc32


@dataclass
class CleanState:
    """What the cleaner knows of one log between cleans (``clean_end`` and the tombstone's
    time also in the cleaner checkpoint, so a restart goes on from them); the counts are this
    process's."""

    clean_end: int = 0
    oldest_tombstone_ms: float | None = None     # mtime of the oldest segment keeping one
    queued: bool = False
    cleans: int = 0
    removed_messages: int = 0
    removed_bytes: int = 0
    checks: int = 0              # due checks made (tests wait on them)
    read_bytes: int = 0          # bytes the cleans read from the log
    rewritten_segments: int = 0  # segment files the cleans replaced
    uncleanable: str | None = None   # why the log is not cleaned again (UncleanableSegment)


class UncleanableSegment(StorageError):
    """A sealed segment of a compacted log holds an entry that fails its check: the clean
    stops before it changed anything, and the log is not cleaned again until a restart
    (Kafka's uncleanable partitions); it is still served, and the scrubber and the consumers'
    CRC checks deal with the bad bytes as in any log."""


class _Stopped(Exception):
    """Raised inside a clean when the broker stops."""


_WRITE_CHECKPOINT = object()     # a queue entry: write the checkpoint (a log was forgotten)


def log_key(log: Log) -> tuple[str, int] | None:
    """The partition a log holds, from its folder (``<data dir>/<topic>/<partition>``); None
    for a folder not so named (a log opened by a tool), which has no checkpoint entry."""
    name = log.directory.name
    return (log.directory.parent.name, int(name)) if name.isdigit() else None


class LogCleaner(threading.Thread):
    """Cleans the logs submitted to it, one at a time, throttled."""

    def __init__(self, bytes_per_second: int, on_error: Callable[[str, Exception], None],
                 checkpoint: CleanerCheckpoint | None = None,
                 on_gave_up: Callable[[str, str, Exception], None] | None = None):
        super().__init__(name="log-cleaner", daemon=True)
        self.bytes_per_second = bytes_per_second
        self.on_error = on_error
        self.on_gave_up = on_gave_up or _log_gave_up
        self.pending: queue.Queue = queue.Queue()
        self.states: dict[int, CleanState] = {}
        self.checkpoint = checkpoint
        self._checkpointed: dict[tuple[str, int], tuple[int, float | None]] = {}
        if checkpoint is not None:
            try:
                self._checkpointed = checkpoint.read()
            except StorageError as exc:
                on_error("cleaner_checkpoint", exc)     # every compacted log counts as dirty
        self._keys: dict[int, tuple[str, int]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._began = time.monotonic()
        self._done = 0
        self._read = 0

    def state(self, log: Log) -> CleanState:
        """The log's state; the first time, from its checkpoint entry (``clean_start``)."""
        with self._lock:
            state = self.states.get(id(log))
            if state is None:
                key = self._keys[id(log)] = log_key(log)
                end, oldest = self._checkpointed.get(key, (None, None)) if key else (None, None)
                start = clean_start(end, log.start_offset, log.end_offset)
                state = self.states[id(log)] = CleanState(
                    start, oldest if end is not None and start == end else None)
            return state

    def forget(self, log: Log) -> None:
        """The log is gone (its topic deleted, its replica moved): its entry leaves the
        checkpoint, written by the cleaner's thread."""
        with self._lock:
            self.states.pop(id(log), None)
            key = self._keys.pop(id(log), None)
            if key is None or self._checkpointed.pop(key, None) is None:
                return
        self.pending.put(_WRITE_CHECKPOINT)

    def submit_if_due(self, log: Log, now_ms: float) -> bool:
        """The loop's check: queue ``log`` when ``compaction.due`` says so (not twice)."""
        state = self.state(log)
        if state.queued or state.uncleanable:
            return False
        state.checks += 1
        oldest = state.oldest_tombstone_ms
        tombstones_due = None if oldest is None else oldest + log.config.delete_retention_ms
        if not compaction.due(log.sealed_sizes, state.clean_end,
                              log.config.min_cleanable_dirty_ratio, tombstones_due, now_ms):
            return False
        state.queued = True
        self.pending.put(log)
        return True

    def stop(self) -> None:
        self._stopping.set()
        self.pending.put(None)

    def run(self) -> None:
        while (log := self.pending.get()) is not None and not self._stopping.is_set():
            if log is _WRITE_CHECKPOINT:
                self.write_checkpoint()
                continue
            state = self.state(log)
            try:
                self.clean(log, state)
            except _Stopped:
                return
            except UncleanableSegment as exc:
                state.uncleanable = str(exc)
                self.on_gave_up("uncleanable_log", str(log.directory), exc)
            except (SluiceError, OSError) as exc:
                self.on_error("clean", exc)
            else:
                self.write_checkpoint(log, state)
            finally:
                state.queued = False

    def write_checkpoint(self, log: Log | None = None, state: CleanState | None = None) -> None:
        """Record ``log``'s clean end (and drop forgotten logs) in the checkpoint file."""
        if self.checkpoint is None:
            return
        with self._lock:
            key = self._keys.get(id(log)) if log is not None else None
            if key is not None and id(log) in self.states:
                self._checkpointed[key] = (state.clean_end, state.oldest_tombstone_ms)
            entries = dict(self._checkpointed)
        try:
            self.checkpoint.write(entries)
        except StorageError as exc:
            self.on_error("cleaner_checkpoint", exc)

    def clean(self, log: Log, state: CleanState) -> None:
        """One clean of ``log`` (the module docstring's steps)."""
        self._began, self._done, self._read = time.monotonic(), 0, 0
        sealed, cuts = log.sealed_for_cleaning()
        try:
            if not sealed:
                return
            latest: dict[bytes, int] = {}
            for segment, fd in sealed:
                for offset, _, _, key, _ in self._entries(segment, fd):
                    if key is not None:
                        latest[key] = offset
            now = time.time()
            oldest = None
            plans = []
            for segment, fd in sealed:
                mtime_ms = os.fstat(fd).st_mtime * 1000
                kept, removed, removed_bytes = [], 0, 0
                complete = [False]
                for offset, pos, length, key, tombstone in self._entries(segment, fd, complete):
                    if compaction.keep(offset, key, tombstone, latest, now * 1000 - mtime_ms,
                                       log.config.delete_retention_ms):
                        kept.append((offset, pos, length))
                        if tombstone:
                            oldest = mtime_ms if oldest is None else min(oldest, mtime_ms)
                    else:
                        removed += 1
                        removed_bytes += length
                size = compaction.cleaned_size(compaction.layout(kept, segment.start,
                                                                 segment.end))
                plans.append((segment, fd, kept, removed, removed_bytes, complete[0], size))
            for group in compaction.groups(
                    [(p[0].start, p[0].end, p[6], p[3] > 0, p[5]) for p in plans],
                    log.config.segment_bytes):
                members = [plans[i] for i in group]
                kept = [(offset, number << _FILE_SHIFT | pos, length)
                        for number, member in enumerate(members)
                        for offset, pos, length in member[2]]
                pieces = compaction.layout(kept, members[0][0].start, members[-1][0].end)
                if self._rewrite(log, [(m[0], m[1]) for m in members], cuts, pieces):
                    state.rewritten_segments += len(members)
                    removed = sum(m[3] for m in members)
                    removed_bytes = sum(m[4] for m in members)
                    state.removed_messages += removed
                    state.removed_bytes += removed_bytes
                    logger.info("%s: cleaned %s: removed %d message(s), %d byte(s)",
                                log.directory,
                                " + ".join(m[0].path.name for m in members), removed,
                                removed_bytes)
            state.clean_end = sealed[-1][0].end
            state.oldest_tombstone_ms = oldest
            state.cleans += 1
        finally:
            state.read_bytes += self._read
            for _, fd in sealed:
                os.close(fd)

    def _rewrite(self, log: Log, members: list[tuple[Segment, int]], cuts: int,
                 pieces: list[tuple]) -> bool:
        """Steps 2-4 for a group of neighbouring segments (one file named by the first);
        False when the log no longer has them as they were (nothing changed)."""
        first = members[0][0]
        cleaned = first.path.with_name(first.path.name + CLEANED_SUFFIX)
        index = gap_index.GapIndex(first.start)
        out = os.open(cleaned, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            written = 0
            for piece in pieces:
                if piece[0] == "gap":
                    data = encode_gap(piece[1])
                    _write_all(out, data)
                    written += len(data)
                    index.add(piece[1], written)
                    continue
                _, where, length = piece
                segment, fd = members[where >> _FILE_SHIFT]
                pos = where & _POSITION
                done = 0
                while done < length:
                    data = read_at(fd, pos + done, min(CHUNK, length - done))
                    self._read += len(data)
                    if not data:
                        raise StorageError(f"{segment.path} ended while cleaning it")
                    _write_all(out, data)
                    done += len(data)
                    self._throttle(2 * len(data))
                written += length
            os.fsync(out)
        except BaseException:
            os.close(out)
            cleaned.unlink(missing_ok=True)
            raise
        os.close(out)
        _crash_point("written")
        gap_index.write_pending(log.directory, first.start)
        _crash_point("pending")
        if log.replace_segments([segment for segment, _ in members], cleaned, index, cuts,
                                after_rename=lambda: _crash_point("renamed")):
            return True
        cleaned.unlink(missing_ok=True)
        return False

    def _entries(self, segment: Segment, fd: int,
                 complete: list | None = None) -> Iterator[tuple]:
        """``(offset, position, length, key, tombstone)`` of every message of a sealed
        segment, read a chunk at a time (throttled); gap markers move the offsets on. A walk
        that meets an entry that does not fit stops there, and ``complete`` stays false. Each
        entry's CRC is checked: a corrupt one raises UncleanableSegment, since copying it
        would pass it on as good, and its key (if that is what is damaged) could make the
        clean drop a good message it seems to supersede."""
        size = os.fstat(fd).st_size
        base = segment.start
        pos = 0
        while pos < size:
            if self._stopping.is_set():
                raise _Stopped()
            buf = read_at(fd, pos, min(CHUNK, size - pos))
            self._read += len(buf)
            self._throttle(len(buf))
            at = 0
            view = memoryview(buf)
            while len(buf) - at >= HEADER.size:
                length, magic, crc = HEADER.unpack_from(buf, at)
                length += SIZE_FIELD
                if length < HEADER.size:
                    return
                if at + length > len(buf):
                    break
                if magic > MAGIC_GAP or (magic == MAGIC_GAP and length != GAP_ENTRY) \
                        or _crc32(view[at + HEADER.size:at + length]) != crc:
                    raise _corrupt(segment, pos + at, base + pos + at, magic)
                if magic == MAGIC_GAP:
                    base = gap_resume(buf, at) - (pos + at + length)
                else:
                    key, tombstone = entry_key(buf, at)
                    yield base + pos + at, pos + at, length, key, tombstone
                at += length
            if at == 0:
                if size - pos < HEADER.size:
                    return
                length = SIZE_FIELD + HEADER.unpack_from(read_at(fd, pos, HEADER.size))[0]
                if length < HEADER.size or pos + length > size:
                    return
                buf = read_at(fd, pos, length)
                self._read += len(buf)
                magic, crc = HEADER.unpack_from(buf)[1:]
                if magic >= MAGIC_GAP or _crc32(memoryview(buf)[HEADER.size:]) != crc:
                    raise _corrupt(segment, pos, base + pos, magic)
                key, tombstone = entry_key(buf, 0)
                yield base + pos, pos, length, key, tombstone
                at = length
            pos += at
        if complete is not None:
            complete[0] = True

    def _throttle(self, nbytes: int) -> None:
        self._done += nbytes
        delay = compaction.throttle_delay(self._done, time.monotonic() - self._began,
                                          self.bytes_per_second)
        if delay > 0 and self._stopping.wait(delay):
            raise _Stopped()


def _corrupt(segment: Segment, position: int, offset: int, magic: int) -> UncleanableSegment:
    what = f"unknown magic {magic}" if magic > MAGIC_GAP else "a CRC mismatch"
    return UncleanableSegment(f"{segment.path.name} has {what} at byte {position} (offset "
                              f"{offset}); its log is left as it is")


def _log_gave_up(name: str, what: str, exc: Exception) -> None:
    logger.error("%s: %s: %s", name.replace("_", " "), what, exc)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        logger.error("cleaner fault hook: the broker ends at %r as a crash would", name)
        os._exit(70)
