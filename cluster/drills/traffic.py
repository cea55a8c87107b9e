"""The load a drill runs under, and its eyes on the group.

``SteadyProducer`` sends ``rate`` messages a second with unique ids (``Ledger.id``), acks=0, 1
or "all", and feeds the ledger from the producer's delivery callback; a send that raises (a
batch given up) is counted and the message sent again. ``hold()`` stops it sending and returns
once everything sent was answered (a drill that needs the logs to stand still), ``release()``
lets it go on. ``GroupWatch`` looks at ZooKeeper and the
brokers every ``interval`` seconds from its own thread (a ZooKeeper outage blocks only it) and
keeps the last looks, so the drill's main thread asks questions without doing I/O:

    states of the group, per look:
      settled   every available partition owned by a live member, no dead member registered,
                as many live members as the cluster has workers
      complete  settled, every partition available, every broker registered under a live pid,
                every partition's leader (its state node) a live broker

Each look also keeps every partition's state node (leader, epoch, ISR); the lag is asked of
each partition's leader.

A **rebalance** is a run of consecutive looks in which the group's owner nodes changed (one
released, claimed, or claimed again: each has its creation zxid), ended by a look with no
change. A rebalance that hands every partition back to its old owner still re-creates the
owner nodes, so it counts; two rebalances closer than ``interval`` count as one.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from broker import protocol
from clients.brokers import BrokerPool
from clients.producer import Producer
from cluster.drills.ledger import Ledger
from cluster.supervision.slots import process_alive
from coordinator import paths, topics, zk as zkconnect
from clients.log_offsets import open_store
from coordinator import offset_store_choice
from coordinator.partition_state import PartitionState

log = logging.getLogger(__name__)
ZK_TIMEOUT_S = 2.0


class SteadyProducer(threading.Thread):
    """Unique ids at a steady rate until ``stop()``; see the module docstring."""

    def __init__(self, zookeeper: str, topic: str, ledger: Ledger, rate: int, acks: int | str = 1,
                 retries: int = 50, request_timeout_ms: int = 2000):
        super().__init__(name="drill-producer", daemon=True)
        self.zookeeper = zookeeper
        self.topic = topic
        self.ledger = ledger
        self.rate = rate
        self.acks = acks
        self.retries = retries
        self.request_timeout_ms = request_timeout_ms
        self.send_errors: Counter = Counter()
        self.error: BaseException | None = None
        self.retried = 0
        self.dropped = 0
        self.deliveries: deque = deque(maxlen=200_000)   # (time, partition, ok, error text)
        self.acked_at: deque = deque(maxlen=500_000)     # (time, partition, base offset)
        self._seq = 0
        self._marks: list[tuple[float, int]] = []      # (time, next id) at every tick
        self._stop_event = threading.Event()
        self._hold = threading.Event()
        self._held = threading.Event()
        self._producer: Producer | None = None

    @property
    def sent(self) -> int:
        return self._seq

    def _delivered(self, topic, partition, payload, base_offset, error) -> None:
        self.ledger.on_delivery(topic, partition, payload, base_offset, error)
        now = time.monotonic()
        self.deliveries.append((now, partition, error is None,
                                None if error is None else str(error)))
        if error is None and base_offset is not None:
            self.acked_at.append((now, partition, base_offset))

    def run(self) -> None:
        tick = 0.05
        per_tick = max(1, round(self.rate * tick))
        try:
            producer = self._producer = Producer(
                self.zookeeper, batch_size=10, linger_ms=5, acks=self.acks,
                retries=self.retries, request_timeout_ms=self.request_timeout_ms,
                on_delivery=self._delivered if self.acks else None)
            next_at = time.monotonic()
            while not self._stop_event.is_set():
                if self._hold.is_set():
                    self._flush(producer)
                    self._held.set()
                    while self._hold.is_set() and not self._stop_event.is_set():
                        self._stop_event.wait(0.05)
                    self._held.clear()
                    next_at = time.monotonic()
                    continue
                self._marks.append((time.monotonic(), self._seq))
                for _ in range(per_tick):
                    if not self._send_one(producer):
                        break
                next_at += tick
                now = time.monotonic()
                if next_at < now - 1.0:
                    next_at = now
                self._stop_event.wait(max(0.0, next_at - now))
            self._finish(producer)
        except BaseException as exc:  # reported by the runner, never swallowed
            log.exception("drill producer failed")
            self.error = exc

    def _send_one(self, producer: Producer) -> bool:
        try:
            producer.send(self.topic, self.ledger.id(self._seq))
        except protocol.SluiceError as exc:
            self.send_errors[type(exc).__name__] += 1
            return False
        self.ledger.record_sent(self._seq)
        self._seq += 1
        return True

    def _flush(self, producer: Producer) -> None:
        """Flush until no batch is outstanding; errors of given-up batches are counted."""
        for _ in range(100):
            try:
                producer.flush(timeout_s=60)
                break
            except protocol.SluiceError as exc:
                self.send_errors[type(exc).__name__] += 1
        self.retried, self.dropped = producer.retried, producer.dropped

    def _finish(self, producer: Producer) -> None:
        self._flush(producer)
        try:
            producer.close()
        except protocol.SluiceError as exc:
            self.send_errors[type(exc).__name__] += 1

    def hold(self, timeout: float = 90.0) -> None:
        """Stop sending; return once every message sent so far was answered (acked or given
        up on)."""
        self._hold.set()
        if not self._held.wait(timeout):
            raise TimeoutError(f"the drill producer did not drain within {timeout:g} s")

    def release(self) -> None:
        self._hold.clear()

    def stop(self, timeout: float = 120.0) -> None:
        self._stop_event.set()
        self.join(timeout)
        if self.is_alive():
            raise RuntimeError(f"the drill producer did not finish within {timeout:g} s")

    def acked_between(self, start: float, end: float, partitions: set[int] | None = None) -> int:
        return sum(1 for t, p, ok, _ in list(self.deliveries)
                   if ok and start <= t <= end and (partitions is None or p in partitions))

    def failures_between(self, start: float, end: float,
                         partitions: set[int] | None = None) -> list[str]:
        """The error text of every batch given up on inside [start, end]."""
        return [text for t, p, ok, text in list(self.deliveries)
                if not ok and start <= t <= end and (partitions is None or p in partitions)]

    def sent_between(self, start: float, end: float) -> range:
        """The ids handed to ``send()`` inside [start, end] (to a tick of 50 ms)."""
        marks = list(self._marks)
        first = next((seq for t, seq in marks if t >= start), self._seq)
        last = next((seq for t, seq in marks if t > end), self._seq)
        return range(first, last)

    def max_ack_gap(self, start: float, end: float, partitions: set[int] | None = None) -> float:
        """The longest stretch inside [start, end] without any acknowledgement."""
        times = [t for t, p, ok, _ in list(self.deliveries)
                 if ok and start <= t <= end and (partitions is None or p in partitions)]
        edges = [start] + times + [end]
        return max(b - a for a, b in zip(edges, edges[1:]))


@dataclass
class Look:
    """One look at the cluster and the group."""

    t: float
    brokers: dict[int, int] = field(default_factory=dict)        # id -> registered pid
    broker_sessions: dict[int, int] = field(default_factory=dict)
    hosted: set[int] = field(default_factory=set)                # partitions announced
    members: dict[str, int] = field(default_factory=dict)        # member -> pid
    member_sessions: dict[str, int] = field(default_factory=dict)
    live_members: set[str] = field(default_factory=set)
    owners: dict[int, str] = field(default_factory=dict)
    owner_zxids: dict[int, int] = field(default_factory=dict)
    owners_read: tuple[float, float] = (0.0, 0.0)                # monotonic, before and after
    committed: dict[int, int] = field(default_factory=dict)     # empty when unreadable
    log_end: dict[int, int | None] = field(default_factory=dict)
    states: dict[int, PartitionState] = field(default_factory=dict)   # partition -> its state
    lag: int | None = None
    settled: bool = False
    complete: bool = False


class GroupWatch(threading.Thread):
    def __init__(self, zookeeper: str, topic: str, group: str, workers: int,
                 interval: float = 0.25):
        super().__init__(name="drill-watch", daemon=True)
        self.topic = topic
        self.group = group
        self.workers = workers
        self.interval = interval
        self.client = zkconnect.connect(zookeeper)
        self.pool = BrokerPool(zookeeper, request_timeout_ms=1000)
        self.placement = topics.get(self.client, topic)
        self.partitions = self.placement.partitions
        self.looks: deque[Look] = deque(maxlen=20_000)
        self.rebalances = 0
        self.rebalance_times: list[float] = []
        self.errors: Counter = Counter()
        self._last_zxids: dict[int, int] | None = None
        self._rebalancing = False
        self._stop_event = threading.Event()
        self._store = None      # the group's offset store, once the group recorded it

    # --- questions (main thread) ---------------------------------------------------------

    def latest(self) -> Look | None:
        return self.looks[-1] if self.looks else None

    def since(self, t: float) -> list[Look]:
        return [look for look in list(self.looks) if look.t >= t]

    def wait(self, predicate, after: float, timeout: float, what: str) -> float:
        """Monotonic time of the first look taken after ``after`` that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        seen = after
        while True:
            for look in self.since(seen):
                if look.t > after and predicate(look):
                    return look.t
                seen = look.t + 1e-9
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{what} not seen within {timeout:g} s")
            time.sleep(self.interval / 2)

    def lag_level(self, window_s: float) -> int | None:
        """The highest lag of the complete looks in the last ``window_s`` seconds."""
        start = time.monotonic() - window_s
        lags = [look.lag for look in self.since(start) if look.complete and look.lag is not None]
        return max(lags) if lags else None

    def stop(self) -> None:
        self._stop_event.set()
        self.join(30)
        try:
            self.pool.close()
        finally:
            self.client.stop()
            self.client.close()

    # --- looking (its own thread) --------------------------------------------------------

    def run(self) -> None:
        while not self._stop_event.is_set():
            started = time.monotonic()
            try:
                look = self._look()
            except (KazooException, KazooTimeoutError, protocol.SluiceError,
                    TimeoutError) as exc:
                self.errors[type(exc).__name__] += 1
            except Exception:  # a bug here must not end the drill's eyes silently
                log.exception("group watch failed to look")
                self.errors["unexpected"] += 1
            else:
                self._count_rebalance(look)
                self.looks.append(look)
            self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _children(self, path: str) -> list[str]:
        try:
            return self.client.get_children_async(path).get(timeout=ZK_TIMEOUT_S)
        except NoNodeError:
            return []

    def _committed(self) -> dict[int, int] | None:
        """The group's committed offsets of the topic, from whichever store it uses; None when
        the offsets log's broker does not answer (paused, killed, without a leader): the look
        goes on without them (no lag), so the registry is still watched while the broker that
        holds the group's offsets is the one at fault. A ZooKeeper error drops the look."""
        if self._store is None:
            if offset_store_choice.recorded(self.client, self.group) is None and \
                    not offset_store_choice.has_zookeeper_offsets(self.client, self.group):
                return {}
            self._store = open_store(self.pool, self.group, record=False, retry_s=0)
        try:
            return self._store.committed(self.topic)
        except (protocol.SluiceError, TimeoutError) as exc:
            self.errors[f"committed: {type(exc).__name__}"] += 1
            return None

    def _get(self, path: str):
        try:
            return self.client.get_async(path).get(timeout=ZK_TIMEOUT_S)
        except NoNodeError:
            return None

    def _look(self) -> Look:
        look = Look(time.monotonic())
        for child in self._children(paths.BROKER_IDS):
            got = self._get(paths.broker(int(child)))
            if got is not None:
                look.brokers[int(child)] = int(json.loads(got[0]).get("pid", 0))
                look.broker_sessions[int(child)] = got[1].ephemeralOwner
        for child in self._children(paths.broker_topic(self.topic)):
            if child == paths.PARTITIONS:
                continue
            got = self._get(paths.broker_topic_partitions(self.topic, int(child)))
            if got is not None:
                look.hosted.update(int(p) for p in json.loads(got[0]))
        for member in self._children(paths.consumer_ids(self.group)):
            got = self._get(paths.consumer(self.group, member))
            if got is not None:
                look.members[member] = int(json.loads(got[0]).get("pid", 0))
                look.member_sessions[member] = got[1].ephemeralOwner
        look.live_members = {m for m, pid in look.members.items() if _alive(pid)}
        before = time.monotonic()
        for child in self._children(paths.owners(self.group, self.topic)):
            got = self._get(paths.owner(self.group, self.topic, int(child)))
            if got is not None:
                look.owners[int(child)] = got[0].decode()
                look.owner_zxids[int(child)] = got[1].czxid
        look.owners_read = (before, time.monotonic())
        committed = self._committed()
        look.committed.update(committed or {})
        for partition in range(self.partitions):
            got = self._get(paths.partition_state(self.topic, partition))
            look.states[partition] = (PartitionState.from_json(got[0]) if got is not None else
                                      PartitionState.initial(self.placement.replicas[partition]))
        for partition in range(self.partitions):
            look.log_end[partition] = self._log_end(partition, look)
        if committed is not None and all(v is not None for v in look.log_end.values()):
            look.lag = sum(max(0, end - look.committed.get(p, 0))
                           for p, end in look.log_end.items())
        look.settled = (set(look.owners) == look.hosted
                        and set(look.owners.values()) <= look.live_members
                        and set(look.members) == look.live_members
                        and len(look.live_members) == self.workers)
        look.complete = (look.settled and look.hosted == set(range(self.partitions))
                         and all(_alive(look.brokers.get(b)) for b in set(self.placement.brokers))
                         and all(_alive(look.brokers.get(s.leader)) for s in look.states.values()))
        return look

    def _log_end(self, partition: int, look: Look) -> int | None:
        broker = look.states[partition].leader
        if not _alive(look.brokers.get(broker)):
            return None
        try:
            return self.pool.offset(self.topic, partition, protocol.LATEST, timeout_ms=1000)
        except protocol.SluiceError:
            return None

    def _count_rebalance(self, look: Look) -> None:
        changed = self._last_zxids is not None and look.owner_zxids != self._last_zxids
        if changed and not self._rebalancing:
            self.rebalances += 1
            self.rebalance_times.append(look.t)
        self._rebalancing = changed
        self._last_zxids = look.owner_zxids



def _alive(pid: int | None) -> bool:
    """Running: a SIGSTOPped process is not alive to the drills' eyes (a paused broker)."""
    return process_alive(pid, stopped_is_alive=False)
