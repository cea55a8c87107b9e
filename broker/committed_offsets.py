"""Committed offsets of the groups in the log store: the leader's memory of ``__consumer_offsets``.

A commit is one keyed magic 2 message per partition committed, appended with acks=all to the
group's partition of ``__consumer_offsets`` (coordinator/offset_store_choice.py): key = (group,
topic, partition), value = (offset, commit time in ms), the message's timestamp the commit
time; a null value (a tombstone) deletes the commit, so a compacting cleaner keeps the last
message of each key and, after its delete retention, none for a deleted one.

The leader of a partition keeps a map ``group -> {(topic, partition): (offset, time_ms)}`` of
that partition, built by replaying the log from its start up to the high watermark (only what
every in-sync replica has: a new leader never serves a commit it may not have) and kept current
by reading on from where the replay stopped, before every fetch and every second. It is rebuilt
from the start when this broker leads the partition in a new epoch (it may have been cut or
copied as a follower meanwhile) or its log was replaced, and dropped when it stops leading.

Worked example of the codec::

    >>> key = commit_key("loaders", "clicks", 3)
    >>> decode_key(key), decode_value(commit_value(4096, 1700000000000))
    (('loaders', 'clicks', 3), (4096, 1700000000000))
"""
from __future__ import annotations

import logging
import struct
import time

from broker import message
from broker.log import Log
from coordinator.errors import (CorruptMessage, MalformedRequest, OffsetGap, OffsetOutOfRange,
                                SluiceError)

logger = logging.getLogger(__name__)

VERSION = 1
_VERSION = struct.Struct(">H")
_PARTITION = struct.Struct(">I")
_VALUE = struct.Struct(">Hqq")      # version, offset, commit_time_ms
_STR = struct.Struct(">H")
REPLAY_BYTES = 1 << 20              # one read of the replay
CATCH_UP_S = 1.0                    # how often the leader reads on without a fetch asking


def _str(text: str) -> bytes:
    data = text.encode()
    return _STR.pack(len(data)) + data


def commit_key(group: str, topic: str, partition: int) -> bytes:
    return _VERSION.pack(VERSION) + _str(group) + _str(topic) + _PARTITION.pack(partition)


def commit_value(offset: int, time_ms: int) -> bytes:
    return _VALUE.pack(VERSION, offset, time_ms)


def decode_key(key: bytes) -> tuple[str, str, int]:
    """(group, topic, partition); MalformedRequest for a key this version cannot read."""
    try:
        (version,) = _VERSION.unpack_from(key, 0)
        if version != VERSION:
            raise MalformedRequest(f"offset commit key version {version} is not {VERSION}")
        pos, names = 2, []
        for _ in range(2):
            (n,) = _STR.unpack_from(key, pos)
            names.append(key[pos + 2:pos + 2 + n].decode())
            pos += 2 + n
        (partition,) = _PARTITION.unpack_from(key, pos)
    except (struct.error, UnicodeDecodeError):
        raise MalformedRequest("offset commit key cut short or not UTF-8") from None
    return names[0], names[1], partition


def decode_value(value: bytes) -> tuple[int, int]:
    try:
        version, offset, at = _VALUE.unpack(value)
    except struct.error:
        raise MalformedRequest("offset commit value is not 18 bytes") from None
    if version != VERSION:
        raise MalformedRequest(f"offset commit value version {version} is not {VERSION}")
    return offset, at


def commit_set(group: str, entries, time_ms: int) -> bytes:
    """The MessageSet of one OFFSET_COMMIT: ``entries`` ``(topic, partition, offset)``, offset
    -1 a tombstone."""
    return b"".join(message.encode_record(
        None if offset < 0 else commit_value(offset, time_ms),
        commit_key(group, topic, partition), time_ms) for topic, partition, offset in entries)


class OffsetsPartition:
    """The committed offsets one ``__consumer_offsets`` partition holds, replayed from its log
    as this broker's leadership of it in ``epoch`` saw it."""

    def __init__(self, log: Log, epoch: int):
        self.log = log
        self.epoch = epoch
        self.position = log.start_offset
        self.groups: dict[str, dict[tuple[str, int], tuple[int, int]]] = {}
        self.replayed = 0             # messages applied
        self.skipped: list[tuple[int, int]] = []     # unreadable ranges jumped

    def catch_up(self, upto: int) -> int:
        """Apply the messages from where the replay stopped up to ``upto`` (the high
        watermark); returns how many. A gap or a corrupt message is jumped (and remembered);
        a log start past the position (the log was reset under it) replays from the start."""
        applied = 0
        log = self.log
        while self.position < upto:
            try:
                data = log.read(self.position, REPLAY_BYTES, upto=upto)
            except (OffsetGap, CorruptMessage) as exc:
                if exc.resume_offset is None or exc.resume_offset <= self.position:
                    raise
                logger.warning("%s: commits at %d..%d unreadable (%s); replay goes on",
                               log, self.position, exc.resume_offset, exc)
                self.skipped.append((self.position, exc.resume_offset))
                self.position = exc.resume_offset
                continue
            except OffsetOutOfRange:
                if self.position >= log.start_offset:
                    raise
                self.groups.clear()
                self.position = log.start_offset
                continue
            if not data:
                break
            start = self.position
            try:
                for m in message.decode_set(data, "", 0, start):
                    self._apply(m.key, m.value)
                    applied += 1
                    self.position = m.next_offset
            except message.InvalidMessage:
                if self.position == start:
                    raise
                # the next read starts at the bad message, where the log says where to resume
        self.replayed += applied
        return applied

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        try:
            group, topic, partition = decode_key(key)
            entry = None if value is None else decode_value(value)
        except MalformedRequest as exc:
            logger.warning("%s: a message that is no offset commit was skipped: %s", self.log, exc)
            return
        offsets = self.groups.get(group)
        if entry is None:
            if offsets is not None:
                offsets.pop((topic, partition), None)
                if not offsets:
                    del self.groups[group]
            return
        if offsets is None:
            offsets = self.groups[group] = {}
        offsets[(topic, partition)] = entry

    def committed(self, group: str, wanted=()) -> list[tuple[str, int, int, int]]:
        """``(topic, partition, offset, time_ms)`` of ``wanted`` ``(topic, partition)``s that
        have a commit (all of the group's when none is named)."""
        offsets = self.groups.get(group, {})
        keys = sorted(offsets) if not wanted else [tp for tp in wanted if tp in offsets]
        return [(t, p, *offsets[(t, p)]) for t, p in keys]


class CommittedOffsets:
    """This broker's OffsetsPartitions, one per ``__consumer_offsets`` partition it leads."""

    def __init__(self, on_error=None):
        self.partitions: dict[int, OffsetsPartition] = {}
        self.on_error = on_error         # (task, exc): a replay that failed, counted
        self._next_catch_up = 0.0

    def current(self, partition: int, log: Log, epoch: int, hw: int) -> OffsetsPartition:
        """The partition's map, caught up to ``hw``; rebuilt for a new epoch or log."""
        held = self.partitions.get(partition)
        if held is None or held.epoch != epoch or held.log is not log:
            started = time.monotonic()
            held = self.partitions[partition] = OffsetsPartition(log, epoch)
            held.catch_up(hw)
            logger.info("__consumer_offsets/%d: replayed %d commit(s) of %d group(s) in %.3f s "
                        "(epoch %d)", partition, held.replayed, len(held.groups),
                        time.monotonic() - started, epoch)
            return held
        held.catch_up(hw)
        return held

    def due(self, now: float) -> bool:
        """Whether ``maintain`` is due (every CATCH_UP_S); when it is, the next is timed."""
        if now < self._next_catch_up:
            return False
        self._next_catch_up = now + CATCH_UP_S
        return True

    def maintain(self, led: dict[int, tuple[Log, int, int]]) -> None:
        """Read on in every led partition (``led``: partition -> (log, epoch, hw)), build the
        map of one just led, drop the ones no longer led."""
        for partition in set(self.partitions) - set(led):
            del self.partitions[partition]
        for partition, (log, epoch, hw) in led.items():
            try:
                self.current(partition, log, epoch, hw)
            except SluiceError as exc:
                self.partitions.pop(partition, None)
                if self.on_error is not None:
                    self.on_error("offsets_replay", exc)
