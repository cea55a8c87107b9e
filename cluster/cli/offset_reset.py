"""``sluice groups reset-offsets``: where a group goes in each partition, and writing it.

Shaped like kafka-consumer-groups ``--reset-offsets``: a plan of (partition, current, new) per
partition, printed, and written to the group's OffsetStore (coordinator/offsets.py) unless it is
a dry run; native and Kafka-protocol members of the group start there (both read that store).
It is refused while the group has live members, native (``/consumers/<g>/ids``) or Kafka
(``/consumers/<g>/kafka_members``): a running member would overwrite the reset with its next
commit, as Kafka refuses a group that is not empty.

Offsets are byte positions, so the targets are read from the partition's leader:

| target             | new offset                                                            |
| ------------------ | --------------------------------------------------------------------- |
| --to-earliest      | the log start (OFFSETS EARLIEST)                                      |
| --to-latest        | the consumer's end: high watermark and visible end (OFFSETS LATEST)   |
| --to-datetime ISO  | the first message stamped at or after it (OFFSET_FOR_TIME, the lookup |
|                    | of the Kafka listener's ListOffsets); none: the log end, as Kafka     |
| --to-offset N      | N, which must be a message boundary: a FETCH at N tells, and when it  |
|                    | is not the broker's INVALID_OFFSET names the boundaries around it     |
| --shift-by N       | N messages on from the current offset (back when negative), counted  |
|                    | by reading them: forward from the current offset, backward from the   |
|                    | log start up to it (no per-message index: the cost is that read)      |

As in Kafka, a target outside the readable range is clamped to the log start or end (the plan
says so in its ``note``); a partition the group never committed shifts from the log start.
"""
from __future__ import annotations

import collections
import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime

from broker import protocol
from clients.brokers import BrokerPool
from clients.simple_consumer import SimpleConsumer
from coordinator import consumer_registry, topics
from clients.log_offsets import open_store
from coordinator.errors import InvalidArgument, SluiceError
from coordinator.offsets import OffsetStore

logger = logging.getLogger(__name__)

KINDS = ("earliest", "latest", "datetime", "offset", "shift")
PROBE_BYTES = 16        # a fetch's first message comes back whole however small this is
ATTEMPTS = 25           # tries of a retriable answer (a leader moving), 0.2 s apart


class GroupHasMembers(SluiceError):
    """The group has live members: offsets are changed only while it is empty."""


class NotABoundary(SluiceError):
    """``--to-offset`` (or a current offset to shift from) starts no message."""


@dataclass(frozen=True)
class Target:
    kind: str           # one of KINDS
    value: int = 0      # datetime: ms since the epoch; offset: N; shift: messages


@dataclass(frozen=True)
class Row:
    topic: str
    partition: int
    current: int | None
    new: int
    log_start: int
    log_end: int
    note: str = ""


def parse_datetime(text: str) -> int:
    """ISO 8601 to ms since the epoch; without a zone, the local time (as Kafka's tool).

    >>> parse_datetime("2026-01-02T03:04:05.250Z")
    1767323045250
    >>> parse_datetime("2026-01-02T04:04:05+01:00")
    1767323045000
    """
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"expected an ISO 8601 time such as 2026-01-02T03:04:05Z, got "
                              f"{text!r}") from None
    return round(when.timestamp() * 1000)


def clamp(offset: int, start: int, end: int) -> tuple[int, str]:
    """An offset moved into the readable range ``[start, end]``, and the note saying so. Pure.

    >>> clamp(50, 100, 400), clamp(500, 100, 400), clamp(200, 100, 400)
    ((100, 'clamped to the log start'), (400, 'clamped to the log end'), (200, ''))
    """
    if offset < start:
        return start, "clamped to the log start"
    if offset > end:
        return end, "clamped to the log end"
    return offset, ""


def back_by(boundaries, base: int, count: int) -> tuple[int, int] | None:
    """``(boundary, messages back)``: the boundary ``count`` messages before ``base`` among
    ``boundaries`` (message starts in log order, the log start first; fewer than ``count``
    before ``base``: the first), None when ``base`` is not one of them. Keeps only the last
    ``count + 1`` it passes. Pure.

    >>> back_by([100, 115, 130, 145], 145, 2), back_by([100, 115, 130], 130, 5)
    ((115, 2), (100, 2))
    >>> back_by([100, 115, 130], 120, 1) is None
    True
    """
    window = collections.deque(maxlen=count + 1)
    for offset in boundaries:
        if offset > base:
            break
        window.append(offset)
        if offset == base:
            return window[0], len(window) - 1
    return None


def check_empty(client, group: str) -> None:
    """Raise GroupHasMembers when the group has live members, native or Kafka."""
    native = consumer_registry.members(client, group)
    kafka = consumer_registry.kafka_members(client, group)
    if native or kafka:
        who = ", ".join(native + kafka)
        raise GroupHasMembers(f"group {group} has {len(native) + len(kafka)} live member(s) "
                              f"({who}); stop them first: a group's offsets are changed only "
                              f"while it is empty")


def plan(pool: BrokerPool, group: str, topic: str, partitions: list[int] | None,
         target: Target) -> list[Row]:
    """Where the group goes in each partition (all of the topic's when ``partitions`` is None)."""
    count = pool.partitions(topic)
    for p in partitions or ():
        if p >= count:
            raise topics.partition_error(topic, count, p)
    store = open_store(pool, group, record=False)
    return [_row(pool, store, topic, p, target) for p in (partitions or range(count))]


def execute(pool: BrokerPool, group: str, rows: list[Row]) -> int:
    """Write the plan to the group's store (ZooKeeper or the log); refused if a member joined
    meanwhile. Returns the offsets written (unchanged ones are not)."""
    check_empty(pool.zk, group)
    store = open_store(pool, group)
    for row in rows:
        store.fetch(row.topic, row.partition)
    writes = store.commit({(r.topic, r.partition): r.new for r in rows})
    native = consumer_registry.members(pool.zk, group)
    kafka = consumer_registry.kafka_members(pool.zk, group)
    if native or kafka:
        raise GroupHasMembers(f"member(s) {', '.join(native + kafka)} joined group {group} while "
                              f"its offsets were written and may have read the old ones: stop "
                              f"them and reset again")
    return writes


def as_dicts(rows: list[Row]) -> list[dict]:
    return [asdict(r) for r in rows]


def _row(pool: BrokerPool, store: OffsetStore, topic: str, partition: int,
         target: Target) -> Row:
    start = _retrying(lambda: pool.offset(topic, partition, protocol.EARLIEST))
    end = _retrying(lambda: pool.offset(topic, partition, protocol.LATEST))
    current = store.fetch(topic, partition)
    note = ""
    if target.kind == "earliest":
        new = start
    elif target.kind == "latest":
        new = end
    elif target.kind == "datetime":
        found, _ = _retrying(lambda: pool.offset_for_time(topic, partition, target.value))
        new, note = (found, "") if found >= 0 else (end, "no message that late: the log end")
    elif target.kind == "offset":
        new, note = clamp(target.value, start, end)
        if not note:
            _check_boundary(pool, topic, partition, new, "--to-offset")
    else:
        base, note = clamp(start if current is None else current, start, end)
        new, moved = _shifted(pool, topic, partition, base, target.value, start)
        if moved < abs(target.value):
            note = (f"only {moved} message(s) to the log "
                    f"{'end' if target.value > 0 else 'start'}")
    return Row(topic, partition, current, new, start, end, note)


def _check_boundary(pool: BrokerPool, topic: str, partition: int, offset: int,
                    what: str) -> None:
    """Ask the leader for the message at ``offset`` (a FETCH of a few bytes): an answer means a
    message starts there; INVALID_OFFSET (inside a message) names the nearest boundaries."""
    def probe():
        frames = pool.call(topic, partition, lambda corr: protocol.encode_fetch(
            corr, topic, partition, offset, PROBE_BYTES))
        protocol.decode_response(frames[0].buffer, protocol.FETCH_REPLY)
    try:
        _retrying(probe)
    except SluiceError as exc:
        if exc.retriable:
            raise
        raise NotABoundary(f"{what} {offset} is not a message boundary of {topic}/{partition}: "
                           f"{exc}") from None


def _shifted(pool: BrokerPool, topic: str, partition: int, base: int, count: int,
             start: int) -> tuple[int, int]:
    """``(offset, messages moved)`` ``count`` messages from ``base`` (back when negative)."""
    if count == 0:
        return base, 0
    if count > 0:
        moved = 0
        position = base
        for boundary in _message_ends(pool, topic, partition, base):
            position, moved = boundary, moved + 1
            if moved == count:
                break
        return position, moved
    found = back_by(_message_starts(pool, topic, partition, start, base), base, -count)
    if found is None:
        _check_boundary(pool, topic, partition, base, "the current offset")
        raise NotABoundary(f"the current offset {base} of {topic}/{partition} was not reached "
                           f"reading the log from its start")
    return found


def _message_ends(pool: BrokerPool, topic: str, partition: int, offset: int):
    """The next offset after each message from ``offset`` up to the consumer's end."""
    reader = SimpleConsumer(topic, partition, offset=offset, pool=pool, min_bytes=0,
                            max_wait_ms=0)
    while True:
        messages = _retrying(reader.fetch)
        if not messages:
            return
        for m in messages:
            yield m.next_offset


def _message_starts(pool: BrokerPool, topic: str, partition: int, offset: int, upto: int):
    """Each message's offset from ``offset`` (a boundary) on, then ``upto`` once reached."""
    reader = SimpleConsumer(topic, partition, offset=offset, pool=pool, min_bytes=0,
                            max_wait_ms=0)
    while True:
        messages = _retrying(reader.fetch)
        if not messages:
            if reader.position == upto:
                yield upto
            return
        for m in messages:
            yield m.offset
            if m.next_offset >= upto:
                yield m.next_offset
                return


def _retrying(call):
    for attempt in range(ATTEMPTS):
        try:
            return call()
        except SluiceError as exc:
            if not exc.retriable or attempt == ATTEMPTS - 1:
                raise
            time.sleep(0.2)
