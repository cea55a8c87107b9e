"""The dashboard sampler: one look at the whole cluster per second, 15 minutes kept in memory.

A ``Sampler`` runs as a thread inside the supervisor (``Supervisor.start`` starts it, ``stop``
stops it). Each tick it takes three kinds of figures:

| source                      | how                                   | figures                          |
| --------------------------- | ------------------------------------- | -------------------------------- |
| every process of the cluster | psutil (``oneshot``)                 | CPU %, CPU seconds, RSS, threads, open file descriptors, disk read/write bytes, context switches |
| every registered broker     | one METADATA request each, in parallel | per partition: offsets, size, segments, flushes and flush time, messages/bytes in, bytes out, fetches; errors by type |
| every consumer group        | ZooKeeper reads (members, owners, offsets) | per partition: owner, committed, lag bytes/messages, consume rate, stuck, data loss, seconds left before retention deletes unread data; rebalances and their durations |

Rates (messages/s, bytes/s, CPU %, ...) come from successive samples of the counters; a counter
that went down (a restarted broker) gives no rate for that tick. Group figures reuse
``cluster.observe.lag`` with the broker's offsets from METADATA (log start, visible end), so they agree
with ``sluice groups describe``, except:

- rates are taken over the last ``window_s`` seconds (10 by default), which spans several
  commits of a worker (one per second by default), so they do not flicker between 0 and twice
  the rate;
- stuck means: the partition has lag and its committed offset did not move for ``window_s``
  seconds, whether or not new messages arrived (``describe`` also asks that the lag grew);
- lag in messages divides by the partition's mean message size as the broker counted it
  (bytes in / messages in since it started), or, before any message came in, by the mean size of
  the messages after the committed offset (one fetch, remembered while the offset stays);
- retention_seconds_left: see ``cluster.observe.retention_left``.

History: a ring buffer of ``history_s / interval_s`` compact points (the plotted figures), plus
the latest full snapshot. ``state(since)`` is what the web page polls: the snapshot and the
points after ``since``.

    sampler = Sampler("127.0.0.1:2181", processes=lambda: [ProcessRef("broker", "0", 1234)])
    sampler.start(); ...; sampler.state(since=0)["latest"]; sampler.stop()
"""
from __future__ import annotations

import collections
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import psutil
import zmq
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from broker import protocol
from clients.brokers import BrokerPool
from clients.connection import Connection
from cluster.observe import lag, retention_left
from cluster.observe.rebalance_tracker import RebalanceTracker
from coordinator import assignor, paths, zk as zkconnect
from coordinator import group as groups
from coordinator.offsets import OffsetStore
from coordinator.errors import InvalidArgument

log = logging.getLogger("sluice.sampler")

INTERVAL_S = 1.0
HISTORY_S = 15 * 60
WINDOW_S = 10.0
BROKER_TIMEOUT_MS = 800
ZK_ERRORS = (KazooException, KazooTimeoutError, zkconnect.NoCluster)


@dataclass(frozen=True)
class ProcessRef:
    """One process to watch: its role (zookeeper|broker|worker|supervisor), id and current pid."""

    role: str
    id: str
    pid: int | None
    restarts: int = 0

    @property
    def name(self) -> str:
        return f"{self.role} {self.id}"


@dataclass(frozen=True)
class BrokerDisk:
    """Where broker ``i`` keeps its logs and how long it retains them (for retention_left)."""

    data_dir: str
    retention_ms: int


def stuck(first: dict | None, second: dict, lag_bytes: int | None, window_s: float) -> bool:
    """Lag, and the committed offset did not move over at least ``window_s`` seconds. Pure.

    ``first`` and ``second`` are samples of one partition (``time`` and ``committed``).
    """
    if not lag_bytes or first is None:
        return False
    if second["time"] - first["time"] < window_s * 0.9:
        return False
    return first.get("committed") == second.get("committed")


def rate(previous: float | None, current: float | None, elapsed: float) -> float | None:
    """Per-second change of a counter; None for the first sample or after a reset. Pure."""
    if previous is None or current is None or elapsed <= 0 or current < previous:
        return None
    return (current - previous) / elapsed


class _Processes:
    """psutil figures of a changing set of processes; keeps what rates need between ticks."""

    def __init__(self):
        self._known: dict[tuple[str, str], tuple[psutil.Process, dict]] = {}

    def sample(self, refs: list[ProcessRef], now: float) -> list[dict]:
        rows, seen = [], set()
        for ref in refs:
            key = (ref.role, ref.id)
            seen.add(key)
            rows.append(self._one(key, ref, now))
        for key in set(self._known) - seen:
            del self._known[key]
        return rows

    def _one(self, key, ref: ProcessRef, now: float) -> dict:
        row = {"role": ref.role, "id": ref.id, "pid": ref.pid, "alive": False,
               "restarts": ref.restarts}
        if not ref.pid:
            self._known.pop(key, None)
            return row
        known = self._known.get(key)
        try:
            if known is None or known[0].pid != ref.pid:
                known = (psutil.Process(ref.pid), {})
                self._known[key] = known
            proc, before = known
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    self._known.pop(key, None)
                    return row
                cpu = proc.cpu_times()
                memory = proc.memory_info()
                threads = proc.num_threads()
                fds = proc.num_fds()
                ctx = proc.num_ctx_switches()
                try:
                    io = proc.io_counters()
                except (psutil.AccessDenied, AttributeError):
                    io = None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            self._known.pop(key, None)
            return row
        now_counters = {"time": now, "cpu": cpu.user + cpu.system,
                        "read": io.read_bytes if io else None,
                        "write": io.write_bytes if io else None,
                        "ctx": ctx.voluntary + ctx.involuntary}
        elapsed = now - before.get("time", now)
        cpu_rate = rate(before.get("cpu"), now_counters["cpu"], elapsed)
        row.update(alive=True, cpu_seconds=round(now_counters["cpu"], 3),
                   cpu_percent=None if cpu_rate is None else round(cpu_rate * 100, 1),
                   rss_bytes=memory.rss, threads=threads, open_files=fds,
                   read_bytes=now_counters["read"], write_bytes=now_counters["write"],
                   read_bytes_per_s=_round(rate(before.get("read"), now_counters["read"], elapsed)),
                   write_bytes_per_s=_round(rate(before.get("write"), now_counters["write"],
                                                 elapsed)),
                   ctx_switches=now_counters["ctx"],
                   ctx_switches_per_s=_round(rate(before.get("ctx"), now_counters["ctx"], elapsed)))
        before.clear()
        before.update(now_counters)
        return row


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


class _Brokers:
    """One METADATA request to every registered broker per tick, all in flight at once."""

    COUNTERS = ("messages_in", "bytes_in", "bytes_out")

    def __init__(self, timeout_ms: int = BROKER_TIMEOUT_MS):
        self.timeout_ms = timeout_ms
        self._connections: dict[str, Connection] = {}
        self._previous: dict = {}

    def sample(self, pool: BrokerPool, now: float) -> tuple[list[dict], list[dict]]:
        infos = pool.view.brokers()
        pending = {}
        for broker_id, info in sorted(infos.items()):
            conn = self._connections.get(info.endpoint)
            if conn is None:
                conn = self._connections[info.endpoint] = Connection(pool.context, info.endpoint)
            corr = conn.next_id()
            conn.send([protocol.encode_metadata(corr)])
            pending[broker_id] = (conn, corr)
        for endpoint in set(self._connections) - {i.endpoint for i in infos.values()}:
            self._connections.pop(endpoint).close()
        replies = self._collect(pending)
        brokers, partitions = [], []
        for broker_id, info in sorted(infos.items()):
            reply = replies.get(broker_id)
            if isinstance(reply, str) or reply is None:
                brokers.append({"broker": broker_id, "endpoint": info.endpoint, "up": False,
                                "error": reply or "no reply", "errors": {}})
                continue
            brokers.append(self._broker_row(broker_id, info.endpoint, reply, now))
            for entry in reply.get("partitions", []):
                partitions.append(self._partition_row(broker_id, entry, now))
        return brokers, partitions

    def _collect(self, pending: dict) -> dict:
        replies: dict[int, dict | str] = {}
        poller = zmq.Poller()
        by_socket = {}
        for broker_id, (conn, _) in pending.items():
            poller.register(conn.socket, zmq.POLLIN)
            by_socket[conn.socket] = broker_id
        deadline = time.monotonic() + self.timeout_ms / 1000
        waiting = dict(pending)
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for sock, _ in poller.poll(left * 1000):
                broker_id = by_socket[sock]
                conn, corr = pending[broker_id]
                frames = sock.recv_multipart()
                if protocol.RESPONSE.unpack_from(frames[0])[0] != corr:
                    continue  # a late reply to an earlier tick
                try:
                    replies[broker_id] = json.loads(protocol.decode_metadata_response(frames[0])[1])
                except (protocol.SluiceError, ValueError) as exc:
                    replies[broker_id] = f"bad metadata reply: {exc}"
                waiting.pop(broker_id, None)
                poller.unregister(sock)
        for broker_id, (conn, _) in waiting.items():
            replies[broker_id] = f"no reply within {self.timeout_ms} ms"
            conn.reset()
        return replies

    def _broker_row(self, broker_id: int, endpoint: str, reply: dict, now: float) -> dict:
        stats = reply.get("stats", {})
        row = {"broker": broker_id, "endpoint": endpoint, "up": True, "error": None,
               "errors": dict(reply.get("errors", {}))}
        row.update(self._with_rates(("broker", broker_id), stats, now))
        return row

    def _partition_row(self, broker_id: int, entry: dict, now: float) -> dict:
        row = {"broker": broker_id, **{k: v for k, v in entry.items()}}
        for name in self.COUNTERS + ("fetches",):
            row.setdefault(name, 0)
        row.update(self._with_rates(("partition", broker_id, entry["topic"], entry["partition"]),
                                    entry, now))
        return row

    def _with_rates(self, key, counters: dict, now: float) -> dict:
        previous = self._previous.get(key)
        values = {name: int(counters.get(name, 0)) for name in self.COUNTERS}
        out = dict(values)
        for name in self.COUNTERS:
            out[f"{name}_per_s"] = _round(rate(previous[name] if previous else None, values[name],
                                               now - previous["time"] if previous else 0))
        self._previous[key] = {"time": now, **values}
        return out

    def forget(self, keep: set) -> None:
        for key in set(self._previous) - keep:
            del self._previous[key]

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()


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
        for key in set(self._history) - seen:
            del self._history[key]
        for group in set(self._trackers) - {g["group"] for g in result}:
            del self._trackers[group]
        return result

    def _group(self, pool, group, served, disks, now, wall, seen) -> dict:
        client = pool.zk
        store = OffsetStore(client, group)
        members = groups.members(client, group)
        subscriptions = {}
        for member in members:
            try:
                data, _ = client.get(paths.consumer(group, member))
                subscriptions[member] = list(json.loads(data).get("topics", []))
            except (NoNodeError, ValueError):
                continue
        names = set(t for ts in subscriptions.values() for t in ts)
        for path in (paths.group_offsets(group), paths.group_owners(group)):
            try:
                names.update(client.get_children(path))
            except NoNodeError:
                pass
        rows, owners_all, counts = [], {}, {}
        for topic in sorted(names):
            try:
                count = pool.partitions(topic)
            except protocol.UnknownTopicOrPartition:
                continue
            counts[topic] = list(range(count))
            committed = store.committed(topic)
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
        row = lag.row(topic, partition, owner, first if first and "log_end" in first else None,
                      entry, loss, lambda position: self._mean(pool, served, topic, partition,
                                                               position))
        row.stuck = stuck(first, entry, row.lag_bytes, self.window_s)
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
        self._procs = _Processes()
        self._brokers = _Brokers()
        self._groups = _Groups(window_s, interval_s)
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
                    "brokers": [], "partitions": [], "groups": [], "errors": errors}
        pool = self._connect(errors)
        if pool is not None:
            try:
                snapshot["brokers"], snapshot["partitions"] = self._brokers.sample(pool, now)
                snapshot["groups"] = self._groups.sample(pool, snapshot["partitions"],
                                                         self.broker_disks, now, wall)
            except ZK_ERRORS as exc:
                errors.append(f"ZooKeeper: {exc!r}")
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
            self._pool = BrokerPool(self.zookeeper, self.data_dir, request_timeout_ms=2000)
        except ZK_ERRORS as exc:
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
