"""The dashboard sampler: one look at the whole cluster per second, 15 minutes kept in memory.

A ``Sampler`` runs as a thread inside the supervisor (``Supervisor.start`` starts it, ``stop``
stops it). Each tick it takes three kinds of figures:

| source                       | how                                         | module    |
| ---------------------------- | ------------------------------------------- | --------- |
| every process of the cluster | psutil (``oneshot``)                        | processes |
| every registered broker      | one METADATA request each, in parallel      | brokers   |
| every consumer group         | ZooKeeper reads (members, owners, offsets)  | here      |

Per group partition: owner, committed, lag bytes/messages, consume rate, stuck, data loss,
seconds left before retention deletes unread data; per group: rebalances and their durations.
The group figures are ``cluster.observe.lag``'s with the brokers' offsets from METADATA (log
start, visible end), so they agree with ``sluice groups describe``, except:

- rates and stuck are taken over the last ``window_s`` seconds (10 by default), which spans
  several commits of a worker (one per second by default), so they do not flicker between 0
  and twice the rate;
- lag in messages divides by the partition's mean message size as the broker counted it
  (bytes in / messages in since it started), or, before any message came in, by the mean size of
  the messages after the committed offset (one fetch, remembered while the offset stays);
- retention_seconds_left: see ``cluster.observe.retention_left``;
- backlog: the partition leader's view of the group's backlog protection there (METADATA's
  ``backlog`` entry: policy, seconds_left, at_risk, refusing, warnings, forced_segments; None
  when the group has no protection on the topic; broker/backlog_guard.py).

Secured (issue 14): given the cluster's ``data_dir`` the sampler reads ZooKeeper with its
digest and the brokers with the operator's key (``keys/admin.key``); a cluster it cannot
authenticate to is one warning line (and the snapshot's ``errors``), not a traceback a tick.

The audit trail's totals (``snapshot["audit"]``) are ``cluster.observe.audit_counts``'s: the
count records of ``__audit`` summed as they come; the same module publishes the Kafka
listeners' counts (brokers with ``kafka_audit``) into ``__audit``.

History: a ring buffer of ``history_s / interval_s`` compact points (the plotted figures), plus
the latest full snapshot. ``state(since)`` is what the web page polls: the snapshot and the
points after ``since``.

    sampler = Sampler("127.0.0.1:2181", processes=lambda: [ProcessRef("broker", "0", 1234)])
    sampler.start(); ...; sampler.state(since=0)["latest"]; sampler.stop()
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from broker import protocol
from clients.brokers import BrokerPool
from cluster.observe import lag, retention_left
from cluster.observe.audit_counts import AuditTail, KafkaRelay
from cluster.observe.brokers import BrokerStats
from cluster.observe.processes import ProcessRef, ProcessStats
from cluster.observe.rebalance_tracker import RebalanceTracker
from cluster.supervision.security import admin_credentials
from coordinator import assignor, zk as zkconnect
from coordinator import consumer_registry as groups
from clients.log_offsets import open_store
from coordinator.errors import AuthenticationFailed, InvalidArgument

log = logging.getLogger(__name__)

INTERVAL_S = 1.0
HISTORY_S = 15 * 60
WINDOW_S = 10.0
ZK_ERRORS = (KazooException, KazooTimeoutError, zkconnect.NoCluster)


@dataclass(frozen=True)
class BrokerDisk:
    """Where broker ``i`` keeps its logs and how long it retains them (for retention_left)."""

    data_dir: str
    retention_ms: int


class _Groups:
    """Per-partition lag of every group from ZooKeeper plus the brokers' offsets."""

    def __init__(self, window_s: float, interval_s: float):
        self.window_s = window_s
        self._history: dict[tuple, collections.deque] = {}
        self._trackers: dict[str, RebalanceTracker] = {}
        self._mean_cache: dict[tuple[str, int], tuple[int, float | None]] = {}
        self._keep = int(window_s / interval_s) + 3
        self._looked = False

    def sample(self, pool: BrokerPool, partitions: list[dict], disks: dict[int, BrokerDisk],
               now: float, wall: float) -> list[dict]:
        served = {(p["topic"], p["partition"]): p for p in partitions}
        result, seen = [], set()
        for group in groups.groups(pool.zk):
            if group not in self._trackers:
                # A group that appears after the first look has just been joined: its first
                # assignment counts as a rebalance. One there from the start may be long settled.
                self._trackers[group] = RebalanceTracker("empty" if self._looked else "unknown")
            result.append(self._group(pool, group, served, disks, now, wall, seen))
        self._looked = True
        protected = {(p["topic"], p["partition"], b["group"]): b for p in partitions
                     if p.get("role") == "leader" for b in p.get("backlog", [])}
        for group in result:
            for row in group["partitions"]:
                row["backlog"] = protected.get((row["topic"], row["partition"], group["group"]))
        for key in set(self._history) - seen:
            del self._history[key]
        for group in set(self._trackers) - {g["group"] for g in result}:
            del self._trackers[group]
        return result

    def _group(self, pool, group, served, disks, now, wall, seen) -> dict:
        client = pool.zk
        store = open_store(pool, group, record=False, retry_s=0)
        try:
            committed_all = store.all_committed()
        except protocol.SluiceError as exc:     # the offsets log's leader away: next look
            log.debug("group %s: committed offsets not read (%s)", group, exc)
            committed_all = {}
        nodes = groups.registrations(client, group)
        members = sorted(nodes)
        subscriptions = {member: list(node.get("topics", [])) for member, node in nodes.items()}
        names = set(groups.topics_of(client, group, nodes)) | {t for t, _ in committed_all}
        rows, owners_all, counts = [], {}, {}
        for topic in sorted(names):
            try:
                count = pool.partitions(topic)
            except protocol.UnknownTopicOrPartition:
                continue
            counts[topic] = list(range(count))
            committed = {p: o for (t, p), o in committed_all.items() if t == topic}
            owners = groups.owners(client, group, topic)
            losses = store.data_loss(topic)
            for partition in range(count):
                owners_all[(topic, partition)] = owners.get(partition)
                rows.append(self._partition(pool, group, topic, partition, owners.get(partition),
                                            committed.get(partition), losses.get(partition),
                                            served.get((topic, partition)), disks, now, wall, seen))
        by_topic: dict[str, dict[int, str]] = {}
        for (topic, partition), owner in owners_all.items():
            if owner is not None:
                by_topic.setdefault(topic, {})[partition] = owner
        expected = {tp: member for member, tps in assignor.sticky_assign_all(
            counts, subscriptions, by_topic).items() for tp in tps}
        tracker = self._trackers[group]
        tracker.observe(now, set(subscriptions),
                        {tp: o for tp, o in owners_all.items() if o is not None}, expected)
        return {"group": group, "members": members, "topics": sorted(counts),
                **tracker.as_dict(now), "partitions": rows}

    def _partition(self, pool, group, topic, partition, owner, committed, loss, served, disks,
                   now, wall, seen) -> dict:
        key = (group, topic, partition)
        seen.add(key)
        entry = {"committed": committed, "time": now}
        if served is None:
            entry["error"] = "no live broker serves this partition"
        else:
            entry["log_start"] = served["start_offset"]
            entry["log_end"] = served["visible_end"]
        history = self._history.setdefault(key, collections.deque(maxlen=self._keep))
        first = next((h for h in reversed(history) if now - h["time"] >= self.window_s * 0.9),
                     None)
        if first is None and history:
            first = history[0]
        history.append(entry)
        row = lag.row(topic, partition, owner, first, entry, loss,
                      lambda position: self._mean(pool, served, topic, partition, position),
                      window_s=self.window_s)
        out = lag.as_dicts([row])[0]
        out["retention_seconds_left"] = self._retention_left(served, row, disks, wall)
        return out

    def _mean(self, pool, served, topic, partition, position) -> float | None:
        if served and served.get("messages_in"):
            return served["bytes_in"] / served["messages_in"]
        cached = self._mean_cache.get((topic, partition))
        if cached is not None and cached[0] == position:
            return cached[1]
        mean = lag.mean_message_size(pool, topic, partition, position)
        self._mean_cache[(topic, partition)] = (position, mean)
        return mean

    @staticmethod
    def _retention_left(served, row, disks, wall) -> float | None:
        if not row.lag_bytes or served is None or served["broker"] not in disks:
            return None
        disk = disks[served["broker"]]
        position = row.committed if row.committed is not None else row.log_start
        segments = retention_left.list_segments(
            retention_left.partition_dir(disk.data_dir, row.topic, row.partition))
        left = retention_left.seconds_left(segments, position, wall, disk.retention_ms)
        return None if left is None else round(left, 1)


class Sampler:
    """Samples the cluster every ``interval_s`` in a thread; see the module docstring."""

    def __init__(self, zookeeper: str | None, processes: Callable[[], list[ProcessRef]] = list,
                 broker_disks: dict[int, BrokerDisk] | None = None,
                 interval_s: float = INTERVAL_S, history_s: float = HISTORY_S,
                 window_s: float = WINDOW_S, data_dir: str | None = None):
        if interval_s <= 0:
            raise InvalidArgument(f"interval_s must be positive, not {interval_s}")
        self.zookeeper = zookeeper
        self.data_dir = data_dir
        self.processes = processes
        self.broker_disks = dict(broker_disks or {})
        self.interval_s = interval_s
        self.history_s = history_s
        self.window_s = window_s
        self._points: collections.deque = collections.deque(maxlen=max(1, int(history_s /
                                                                               interval_s)))
        self._latest: dict | None = None
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: BrokerPool | None = None
        self._procs = ProcessStats()
        self._brokers = BrokerStats()
        self._groups = _Groups(window_s, interval_s)
        self._audit = AuditTail()
        self._kafka_relay = KafkaRelay(zookeeper, data_dir,
                                       admin_credentials(data_dir) if data_dir else None)
        self.cpu_seconds = 0.0
        self.ticks = 0
        self._last_zk_error = ""

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> "Sampler":
        self._thread = threading.Thread(target=self._run, name="sluice-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        else:
            self.close()

    def close(self) -> None:
        self._audit.close()
        self._kafka_relay.close()
        self._brokers.close()
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _run(self) -> None:
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                started = time.thread_time()
                try:
                    self.sample_once()
                except Exception:  # the dashboard must outlive any one bad tick; logged
                    log.exception("sampling failed")
                self.cpu_seconds += time.thread_time() - started
                next_at += self.interval_s
                now = time.monotonic()
                if next_at < now:
                    next_at = now + self.interval_s
                self._stop.wait(next_at - now)
        finally:
            self.close()

    # --- one tick -------------------------------------------------------------------------

    def sample_once(self) -> dict:
        """Take one sample now, store it, and return the snapshot."""
        began = time.perf_counter()
        now, wall = time.monotonic(), time.time()
        errors: list[str] = []
        snapshot = {"time": wall, "interval_s": self.interval_s, "zookeeper": self.zookeeper,
                    "processes": self._procs.sample(list(self.processes()), now),
                    "brokers": [], "partitions": [], "groups": [], "audit": None,
                    "errors": errors}
        pool = self._connect(errors)
        if pool is not None:
            try:
                snapshot["brokers"], snapshot["partitions"] = self._brokers.sample(pool, now)
                snapshot["groups"] = self._groups.sample(pool, snapshot["partitions"],
                                                         self.broker_disks, now, wall)
            except ZK_ERRORS as exc:
                errors.append(f"ZooKeeper: {exc!r}")
            try:
                snapshot["audit"] = self._audit.sample(pool)
                self._kafka_relay.sample(snapshot["brokers"], int(wall * 1000))
                for row in snapshot["brokers"]:
                    row.pop("kafka_audit", None)    # published; not part of the snapshot
            except ZK_ERRORS as exc:
                errors.append(f"ZooKeeper: {exc!r}")
            except protocol.SluiceError as exc:
                errors.append(f"audit: {exc}")
            self._brokers.forget(
                {("broker", b["broker"]) for b in snapshot["brokers"]}
                | {("partition", p["broker"], p["topic"], p["partition"])
                   for p in snapshot["partitions"]})
        self.ticks += 1
        snapshot["sampler"] = {"ticks": self.ticks, "cpu_seconds": round(self.cpu_seconds, 3),
                               "tick_ms": round((time.perf_counter() - began) * 1000, 2)}
        with self._lock:
            self._seq += 1
            snapshot["seq"] = self._seq
            self._latest = snapshot
            self._points.append(point(snapshot))
        return snapshot

    def _connect(self, errors: list[str]) -> BrokerPool | None:
        if self._pool is not None:
            return self._pool
        try:
            self._pool = BrokerPool(self.zookeeper, self.data_dir, request_timeout_ms=2000,
                                    credentials=admin_credentials(self.data_dir)
                                    if self.data_dir else None)
        except ZK_ERRORS + (AuthenticationFailed,) as exc:
            errors.append(f"ZooKeeper: {exc}")
            if str(exc) != self._last_zk_error:
                self._last_zk_error = str(exc)
                log.warning("sampler cannot reach ZooKeeper yet: %s", exc)
        return self._pool

    # --- reading --------------------------------------------------------------------------

    def latest(self) -> dict | None:
        with self._lock:
            return self._latest

    def state(self, since: int = 0) -> dict:
        """The latest snapshot and the history points newer than ``since`` (a ``seq``)."""
        with self._lock:
            points = [p for p in self._points if p["seq"] > since] if since < self._seq else []
            return {"seq": self._seq, "interval_s": self.interval_s,
                    "history_s": self.history_s, "latest": self._latest, "points": points}


def point(snapshot: dict) -> dict:
    """The plotted figures of one snapshot, compact, for the history ring buffer."""
    return {
        "seq": snapshot.get("seq"), "time": round(snapshot["time"], 3),
        "msgs_in": {str(b["broker"]): b.get("messages_in_per_s") for b in snapshot["brokers"]},
        "bytes_in": {str(b["broker"]): b.get("bytes_in_per_s") for b in snapshot["brokers"]},
        "bytes_out": {str(b["broker"]): b.get("bytes_out_per_s") for b in snapshot["brokers"]},
        "lag": {f"{g['group']} {r['topic']}/{r['partition']}": r["lag_messages"]
                for g in snapshot["groups"] for r in g["partitions"]},
        "consume": {f"{g['group']} {r['topic']}/{r['partition']}": r["consume_msgs_per_s"]
                    for g in snapshot["groups"] for r in g["partitions"]},
        "cpu": {f"{p['role']} {p['id']}": p.get("cpu_percent") for p in snapshot["processes"]},
        "rss": {f"{p['role']} {p['id']}": p.get("rss_bytes") for p in snapshot["processes"]},
    }
