"""Per-partition lag of a consumer group, the way a person needs to read it.

A total lag hides the one partition that is stuck, so every figure here is per partition:
owner, committed offset, log-end offset, lag in bytes, lag in messages, the consume rate, and a
stuck flag. Two samples of a partition give the rates:

- lag in messages is estimated as lag bytes / the mean size of the messages right after the
  committed offset (one fetch of up to 64 KiB there; exact when the lag fits in that fetch);
- consume rate is how fast the committed offset moved between the samples, in messages/s by
  the mean size of the messages it moved past (or of those ahead of it, when it lags);
- stuck: a consumer owns the partition, it has lag, and its committed offset did not move
  between two samples at least the stuck window apart (``sluice groups describe``: its
  ``--interval``, 2 s by default; the dashboards: 10 s), whether or not new messages arrived.
  Choose a window longer than the group's commit interval (a worker commits every second), or a
  healthy partition between two commits looks stuck. A partition nobody owns is not stuck,
  since nobody is there to be: its state is ``unowned`` while the group has members (a
  rebalance between owners), ``idle`` when it has none (a group whose consumers have all left,
  as ``sluice consume --group`` leaves one: its lag waits for the next consumer).

Data loss is the partition's note in ZooKeeper (what consumers skipped, by kind: retention,
gap, corrupt, past_end, skipped by the handler; see coordinator/offsets.py) plus, when the
committed offset is below the log start, the unread bytes retention deleted that no consumer
has noted yet (``unread_deleted``); ``lost_bytes`` is their sum.

The parts are reusable by a sampler that keeps its own successive samples (the dashboard's):
``sample`` takes one look at a group's partitions, ``row`` turns two looks at one partition
into its ``PartitionLag``, with the mean message size from a function of your choice.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

from broker import message, protocol
from clients.brokers import BrokerPool
from coordinator import consumer_registry as groups
from clients.log_offsets import open_store
from coordinator.offsets import OffsetStore

SAMPLE_BYTES = 64 * 1024
REQUEST_TIMEOUT_MS = 2000


@dataclass
class PartitionLag:
    topic: str
    partition: int
    owner: str | None
    committed: int | None
    log_start: int | None
    log_end: int | None
    lag_bytes: int | None
    lag_messages: int | None
    consume_bytes_per_s: float | None
    consume_msgs_per_s: float | None
    stuck: bool
    data_loss: dict | None
    error: str | None = None


def describe(pool: BrokerPool, group: str, interval_s: float = 2.0) -> list[PartitionLag]:
    """Sample the group twice, ``interval_s`` apart, and report every partition."""
    store = open_store(pool, group, record=False)
    topics = sorted(set(groups.topics_of(pool.zk, group))
                    | {topic for topic, _ in store.all_committed()})
    first = sample(pool, store, topics)
    if interval_s > 0:
        time.sleep(interval_s)
    second = sample(pool, store, topics)
    rows = []
    for topic in topics:
        owners = groups.owners(pool.zk, group, topic)
        losses = store.data_loss(topic)
        for partition in range(pool.partitions(topic)):
            rows.append(row(topic, partition, owners.get(partition),
                            first.get((topic, partition)) if interval_s > 0 else None,
                            second.get((topic, partition)), losses.get(partition),
                            lambda offset, t=topic, p=partition:
                            mean_message_size(pool, t, p, offset), window_s=interval_s))
    return rows


def sample(pool: BrokerPool, store: OffsetStore, topics: list[str]) -> dict:
    """One look at every partition of ``topics``: ``{(topic, partition): {"committed", "time",
    "log_start", "log_end"}}`` (``"error"`` instead of the offsets when the broker failed)."""
    sample = {}
    for topic in topics:
        committed = store.committed(topic)
        for partition in range(pool.partitions(topic)):
            entry = {"committed": committed.get(partition), "time": time.monotonic()}
            try:
                entry["log_start"] = pool.offset(topic, partition, protocol.EARLIEST,
                                                 timeout_ms=REQUEST_TIMEOUT_MS)
                entry["log_end"] = pool.offset(topic, partition, protocol.LATEST,
                                               timeout_ms=REQUEST_TIMEOUT_MS)
            except protocol.SluiceError as exc:
                entry["error"] = str(exc)
            sample[(topic, partition)] = entry
    return sample


def stuck(first: dict | None, second: dict, lag_bytes: int | None, window_s: float) -> bool:
    """Lag, and the committed offset did not move over at least ``window_s`` seconds. Pure.

    ``first`` and ``second`` are samples of one partition (``time`` and ``committed``); they
    count as far enough apart from 90% of the window on (samples are taken on a clock tick)::

        stuck({"time": 0, "committed": 100}, {"time": 5, "committed": 100}, 50, 5.0)  # True
        stuck({"time": 0, "committed": 100}, {"time": 5, "committed": 120}, 50, 5.0)  # moving
        stuck({"time": 0, "committed": 100}, {"time": 5, "committed": 100}, 0, 5.0)   # caught up
        stuck({"time": 0, "committed": 100}, {"time": 2, "committed": 100}, 50, 5.0)  # too soon
    """
    if not lag_bytes or first is None:
        return False
    if second["time"] - first["time"] < window_s * 0.9:
        return False
    return first.get("committed") == second.get("committed")


def row(topic: str, partition: int, owner: str | None, first: dict | None, second: dict,
        loss: dict | None, mean_size: Callable[[int], float | None],
        window_s: float = 0.0) -> PartitionLag:
    """One partition's figures from two samples of it (``first`` None: no rates, not stuck;
    without a log end in ``first``: no rates). ``window_s`` is the stuck window.

    ``mean_size(offset)`` is the mean size of the messages from ``offset`` on (None: unknown).
    """
    committed = second.get("committed")
    log_start, log_end = second.get("log_start"), second.get("log_end")
    row = PartitionLag(topic, partition, owner, committed, log_start, log_end, None, None, None,
                       None, False, loss, second.get("error"))
    if log_end is None:
        return row
    position = committed if committed is not None else log_start
    if committed is not None and log_start is not None and committed < log_start:
        row.data_loss = dict(loss or {})
        row.data_loss["unread_deleted"] = {"committed": committed, "log_start": log_start,
                                           "bytes": log_start - committed}
        row.data_loss["lost_bytes"] = row.data_loss.get("lost_bytes", 0) + log_start - committed
        position = log_start
    row.lag_bytes = max(0, log_end - position)
    before = first.get("committed") if first is not None else None
    moved = committed - before if committed is not None and before is not None else 0
    sample_at = position if row.lag_bytes else (before if moved else None)
    mean = mean_size(sample_at) if sample_at is not None else None
    row.lag_messages = 0 if not row.lag_bytes else (round(row.lag_bytes / mean) if mean else None)
    if first is not None and first.get("log_end") is not None:
        elapsed = max(second["time"] - first["time"], 1e-6)
        row.consume_bytes_per_s = round(moved / elapsed, 1)
        row.consume_msgs_per_s = round(moved / elapsed / mean, 1) if mean and moved else 0.0
    row.stuck = owner is not None and stuck(first, second, row.lag_bytes, window_s)
    return row


def state(row: dict, members: int) -> str:
    """What a partition's row says, first match wins (``row`` as ``as_dicts`` gives it, in a
    group of ``members`` members). Pure::

        error  DATA LOSS  STUCK  unowned (members, no owner)  idle (no members)  ok

    >>> [state({"owner": o, "stuck": s}, m) for o, s, m in [("c1", True, 1), (None, False, 2),
    ...                                                     (None, False, 0), ("c1", False, 1)]]
    ['STUCK', 'unowned', 'idle', 'ok']
    """
    if row.get("error"):
        return "error"
    if row.get("data_loss"):
        return "DATA LOSS"
    if row.get("stuck"):
        return "STUCK"
    if not row.get("owner"):
        return "unowned" if members else "idle"
    return "ok"


def mean_message_size(pool: BrokerPool, topic: str, partition: int, offset: int) -> float | None:
    """Mean size of the messages in one fetch of up to SAMPLE_BYTES at ``offset``."""
    try:
        frames = pool.call(topic, partition, lambda corr: protocol.encode_fetch(
            corr, topic, partition, offset, SAMPLE_BYTES), timeout_ms=REQUEST_TIMEOUT_MS)
        protocol.decode_response(frames[0].buffer, protocol.FETCH_REPLY)
    except protocol.SluiceError:
        return None
    if len(frames) < 2 or not len(frames[1]):
        return None
    sizes = [m.next_offset - m.offset
             for m in message.decode_set(frames[1].buffer, topic, partition, offset)]
    return sum(sizes) / len(sizes) if sizes else None


def as_dicts(rows: list[PartitionLag]) -> list[dict]:
    return [asdict(row) for row in rows]
