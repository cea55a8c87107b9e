"""Roles: which hosted partition this broker leads or follows, in which leader epoch (Kafka 0.8's
ReplicaManager), and the leader's view of its followers.

For every partition with a replica here the LogManager opens a Log and calls ``add``. A
single-replica partition is led here for good (ISR = this broker, high watermark = the log
end): nothing of it changes but its epoch, 0 until its state node (if any) is read, then the
state's (the controller moves it on when this broker restarts). A replicated partition's
role comes from its state node (coordinator/partition_state.py): it is read, and watched with a
kazoo DataWatch whose callback only queues the partition; ``maintain``, on the request loop's thread, reads the queued states
and applies them, as the LogManager applies placement changes. Applying a state:

- this broker is its leader: start leading at that epoch (the epoch begins at the log end);
  the followers' log ends are unknown until they fetch, so they start at the high watermark
  this broker knew (no in-sync replica has less) and count as caught up now;
- another broker leads: follow it (the replica fetcher, broker/replica_fetcher.py, fetches from
  it) after failing the acks=all requests still waiting here with NOT_LEADER;
- nobody leads (``leader`` = -1): follow nobody, answer NOT_LEADER;
- an epoch older than the one applied already is ignored: a leadership never goes back;
- this broker is its leader, but registered (its registration node's czxid) after the state was
  last written (the node's mzxid): it restarted, or its session expired, since it was made
  leader, so it lost the leader's memory and perhaps its log. It does not lead (role
  ``waiting``: NOT_LEADER to everyone, no ISR writes, no fetching) until the controller, which
  sees the same restart (coordinator/election.py), writes a new state. Its own registration is
  watched so that a re-registration re-reads every replicated partition.

The leader records each follower's fetch (``follower_fetched``), and from those the high
watermark and ISR changes (the pure rules of broker/isr.py); an in-sync follower that fetches
below the log end it had reached lost data and is shrunk out at once (the rule retries it at
every ISR check until written). An ISR change is a conditional
write of the state on the version this broker holds, and only once it succeeded does the high
watermark use the new ISR: a leader cut off from ZooKeeper cannot shrink its ISR to itself and
go on acknowledging acks=all writes (Jepsen's 2013 Kafka case). A write that finds the node
changed (``StaleState``) re-reads the state and obeys it: another leader was elected.

ZooKeeper and the loop: an ISR write (a registration check and the conditional write, two
round trips that kazoo waits on without a timeout of its own, up to two thirds of the session
timeout when a connection stops answering) is made by a thread of its own
(broker/isr_writer.py), one write in flight per partition; ``maintain`` applies its outcome
only if the replica is still at the epoch and version the write was decided on. So a stalled
ZooKeeper no longer holds produce, fetch and replica fetch while the ISR changes. The known
risk left: the state reads in ``maintain`` and the registration read before them are still
synchronous on the loop, made only while ``zk.connected``, one round trip per changed
partition (a leader change, an ISR write seen by its watch), not per request; they can hold
the loop for as long as a write could (their move would be the same: ``*_async`` reads whose
results ``maintain`` applies).
"""
from __future__ import annotations

import logging
import queue
import time
from typing import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.recipe.watchers import DataWatch

from broker import isr as rules
from broker.config import BrokerConfig
from broker.error_counts import ErrorCounts
from broker.hw_checkpoint import CHECKPOINT_INTERVAL_S, HighWatermarkCheckpoint, safe_start
from broker.isr import Follower
from broker.isr_writer import FAILED, REREGISTERED, STALE, IsrWriter, Write
from broker.log import Log
from coordinator import partition_state, paths
from coordinator.errors import NotLeader, SluiceError
from coordinator.partition_state import NO_LEADER, NOT_WRITTEN, PartitionState

logger = logging.getLogger(__name__)

LEADER, FOLLOWER, WAITING = "leader", "follower", "waiting"
_ALL = ("", -1)          # queued by the registration watch: re-read every partition
RETRY_FIRST_S = 0.2      # back-off of a failed state read or ISR write, doubling up to
RETRY_MAX_S = 5.0


class Replica:
    """This broker's replica of one partition: its log, its role and epoch, the ISR and
    version it holds, the high watermark, and (as leader) what it knows of each follower."""

    __slots__ = ("topic", "partition", "key", "log", "replicas", "min_insync_replicas",
                 "role", "leader", "epoch", "state", "version", "written", "hw", "followers")

    def __init__(self, topic: str, partition: int, log: Log, replicas: tuple[int, ...],
                 min_insync_replicas: int, state: PartitionState, version: int):
        self.topic = topic
        self.partition = partition
        self.key = (topic, partition)
        self.log = log
        self.replicas = replicas
        self.min_insync_replicas = min_insync_replicas
        self.role: str | None = None          # until its state is read
        self.leader = state.leader
        self.epoch = state.leader_epoch
        self.state = state
        self.version = version
        self.written: int | None = None      # the state node's mzxid as read (None: unknown)
        self.hw = 0
        self.followers: dict[int, Follower] = {}

    @property
    def is_leader(self) -> bool:
        return self.role == LEADER

    @property
    def isr(self) -> tuple[int, ...]:
        return self.state.isr

    def describe(self) -> dict:
        """The METADATA row's replication fields."""
        return {"role": self.role or "unknown", "leader": self.leader, "leader_epoch": self.epoch,
                "high_watermark": self.hw, "isr": list(self.isr),
                "replicas": list(self.replicas)}

    def not_leader(self, broker_id: int) -> NotLeader:
        who = (f"broker {self.leader} leads it" if self.leader >= 0 else "it has no leader now")
        return NotLeader(f"broker {broker_id} does not lead {self.topic}/{self.partition} "
                         f"({who}, epoch {self.epoch})")


class ReplicaManager:
    """The roles of this broker's hosted partitions, kept from their state nodes.

    ``on_high_watermark(replica)`` runs when a leader's high watermark moved up,
    ``on_lost_leadership(replica)`` when this broker stopped leading a partition,
    ``on_follow(replica)`` when it (re)starts following one (or stops: ``replica.leader`` is
    then -1 or this broker); all on the request loop's thread.
    """

    def __init__(self, config: BrokerConfig, zk: KazooClient, errors: ErrorCounts):
        self.config = config
        self.broker_id = config.broker_id
        self.zk = zk
        self.errors = errors
        self.partitions: dict[tuple[str, int], Replica] = {}
        self.by_log: dict[Log, Replica] = {}
        self.on_high_watermark: Callable[[Replica], None] = lambda replica: None
        self.on_lost_leadership: Callable[[Replica], None] = lambda replica: None
        self.on_follow: Callable[[Replica], None] = lambda replica: None
        self._changes: queue.Queue = queue.Queue()
        self._retry: dict[tuple[str, int], float] = {}
        self._backoff = 0.0
        self._watches: dict[tuple[str, int], DataWatch] = {}
        self._closed = False
        self._lag_s = config.replica_lag_time_max_ms / 1000
        self._next_isr_check = 0.0
        self._outside_errors = (KazooException, zk.handler.timeout_exception)
        self._registered: int | None = None     # this broker's registration czxid, last read
        self.checkpoint = HighWatermarkCheckpoint(config.data_dir)
        try:
            self._checkpointed = self.checkpoint.read()
        except SluiceError as exc:
            self.errors.task_failed("hw_checkpoint", exc)
            self._checkpointed = {}
        self._next_checkpoint = 0.0
        self.on_checkpoint: Callable[[HighWatermarkCheckpoint], None] = lambda c: c.flush()
        self.writer = IsrWriter(zk, self.broker_id, self._outside_errors)
        self._registration_watch = DataWatch(zk, paths.broker(self.broker_id),
                                             self._on_registration)

    # --- hosting ---------------------------------------------------------------------------

    def add(self, topic: str, partition: int, replicas: tuple[int, ...], min_insync: int,
            log: Log) -> None:
        """A newly opened log: led here if it is the one replica, else watched."""
        key = (topic, partition)
        replica = Replica(topic, partition, log, tuple(replicas), min_insync,
                          PartitionState.initial(tuple(replicas)), NOT_WRITTEN)
        if len(replicas) > 1:
            replica.hw = safe_start(self._checkpointed.get(key), log.epochs.entries,
                                    log.end_offset)
        self.partitions[key] = replica
        self.by_log[log] = replica
        if len(replicas) == 1:
            self._lead(replica, replica.state, NOT_WRITTEN)
        self._changes.put(key)
        self._watches[key] = DataWatch(self.zk, paths.partition_state(topic, partition),
                                       self._state_watch(key))

    def remove(self, topic: str, partition: int, log: Log) -> None:
        """The partition's topic was deleted: forget it. While it is still known (with no
        role), what waits on it hears NOT_LEADER (acks=all produce, parked fetches: their
        clients look again and find the topic gone), and the fetcher stops following it."""
        replica = self.partitions.get((topic, partition))
        if replica is not None:
            was_leader = replica.role == LEADER
            replica.role, replica.leader = None, NO_LEADER
            if was_leader:
                self.on_lost_leadership(replica)
            self.on_follow(replica)
        self.partitions.pop((topic, partition), None)
        self.by_log.pop(log, None)
        self._watches.pop((topic, partition), None)
        self._retry.pop((topic, partition), None)

    def configure(self, topic: str, partition: int, min_insync: int) -> None:
        """A topic's min ISR changed (``topics config``): acks=all produce checks the new one."""
        replica = self.partitions.get((topic, partition))
        if replica is not None:
            replica.min_insync_replicas = min_insync

    def _state_watch(self, key):
        """The DataWatch callback of ``key`` (kazoo's thread): queue the partition; False
        ends the watch once the broker closes. Two parameters exactly: kazoo passes a third,
        the event, to a function that takes three."""
        def changed(data, stat):
            if self._closed or key not in self.partitions:
                return False
            self._changes.put(key)
            return None
        return changed

    def _on_registration(self, data, stat):
        """kazoo's thread: a new registration of this broker (another czxid) makes every
        replicated partition's state be read again (and compared with it)."""
        if self._closed:
            return False
        if stat is not None and stat.czxid != self._registered:
            self._changes.put(_ALL)
        return None

    def get(self, topic: str, partition: int) -> Replica | None:
        return self.partitions.get((topic, partition))

    def leader_of(self, topic: str, partition: int) -> Replica | None:
        """The replica if this broker leads it; raises NotLeader if it only follows it (None:
        not hosted here, the caller's usual error applies)."""
        replica = self.partitions.get((topic, partition))
        if replica is not None and replica.role != LEADER:
            raise replica.not_leader(self.broker_id)
        return replica

    def consumer_end(self, log: Log) -> int:
        """How far a consumer may read ``log``: below the high watermark and the visible end."""
        replica = self.by_log.get(log)
        if replica is None:
            return log.visible_end
        return min(log.visible_end, replica.hw)

    def reread(self, key: tuple[str, int]) -> None:
        """Read the partition's state again at the next ``maintain`` (a peer said this
        broker's view is stale)."""
        self._changes.put(key)

    # --- the loop's work -------------------------------------------------------------------

    def maintain(self, now: float) -> None:
        """Apply the queued state changes (each read now), then, every half lag time, shrink
        the ISRs of led partitions whose followers fell behind."""
        self._apply_outcomes(now)
        pending = set()
        while not self._changes.empty():
            pending.add(self._changes.get_nowait())
        if _ALL in pending:
            pending.discard(_ALL)
            pending.update(k for k, r in self.partitions.items() if len(r.replicas) > 1)
        for key, at in list(self._retry.items()):
            if at <= now:
                del self._retry[key]
                pending.add(key)
            else:
                pending.discard(key)
        if pending and not self.zk.connected:
            for key in pending:    # a read would block the loop until ZooKeeper is back
                self._retry_later(key, now, "partition_state",
                                  SluiceError("not connected to ZooKeeper"))
            pending = ()
        if pending:
            try:
                registration = self.zk.exists(paths.broker(self.broker_id))
            except self._outside_errors as exc:
                for key in pending:
                    self._retry_later(key, now, "partition_state", exc)
                pending = ()
            else:
                if registration is not None:
                    self._registered = registration.czxid
        for key in pending:
            replica = self.partitions.get(key)
            if replica is None:
                continue
            try:
                found = partition_state.read_with_zxid(self.zk, replica.topic, replica.partition)
            except self._outside_errors as exc:
                self._retry_later(key, now, "partition_state", exc)
                continue
            self._backoff = 0.0
            state, version, written = found or (PartitionState.initial(replica.replicas),
                                                NOT_WRITTEN, None)
            self.apply(replica, state, version, written)
        if now >= self._next_checkpoint:
            self._next_checkpoint = now + CHECKPOINT_INTERVAL_S
            self.checkpoint_high_watermarks()
        if now >= self._next_isr_check:
            self._next_isr_check = now + min(self._lag_s / 2, 1.0)
            for replica in self.partitions.values():
                if replica.role == LEADER and len(replica.replicas) > 1:
                    gone = rules.to_shrink(replica.isr, self.broker_id, replica.followers, now,
                                           self._lag_s)
                    if gone:
                        self._write_isr(replica, [b for b in replica.isr if b not in gone], now)

    def apply(self, replica: Replica, state: PartitionState, version: int,
              written: int | None = None) -> None:
        """Take the role ``state`` gives this broker (see the module docstring); ``written``:
        the state node's mzxid (None: unknown, no restart check)."""
        if state.leader_epoch < replica.epoch:
            return
        if len(replica.replicas) == 1:
            self._single_epoch(replica, state, version)
            return
        if (state.leader == self.broker_id and len(replica.replicas) > 1
                and written is not None and self._registered is not None
                and self._registered > written):
            self._wait_for_new_state(replica, state, version)
            return
        replica.written = written
        if state.leader == self.broker_id:
            if replica.role == LEADER and state.leader_epoch == replica.epoch:
                replica.state, replica.version = state, version   # an ISR write, ours or not
                self._advance(replica)
            else:
                self._lead(replica, state, version)
            return
        if (replica.role == FOLLOWER and replica.leader == state.leader
                and replica.epoch == state.leader_epoch):
            replica.state, replica.version = state, version
            return
        was_leader = replica.role == LEADER
        replica.role = FOLLOWER
        replica.leader, replica.epoch = state.leader, state.leader_epoch
        replica.state, replica.version = state, version
        replica.followers = {}
        replica.hw = min(replica.hw, replica.log.end_offset)
        logger.info("%s/%d: following broker %d in epoch %d", replica.topic, replica.partition,
                    state.leader, state.leader_epoch)
        if was_leader:
            self.on_lost_leadership(replica)
        self.on_follow(replica)

    def _single_epoch(self, replica: Replica, state: PartitionState, version: int) -> None:
        """A single-replica partition stays led here whatever its state says; it only takes
        the epoch of a state that names this broker (the controller moves it on when this
        broker restarts), so METADATA and the log's epochs show the state's. A state with no
        leader (this broker was gone) is followed by the election that brings it back."""
        if state.leader != self.broker_id or state.leader_epoch == replica.epoch:
            return
        replica.epoch, replica.version = state.leader_epoch, version
        replica.state = PartitionState(self.broker_id, state.leader_epoch, (self.broker_id,),
                                       state.controller_epoch)
        self._start_epoch(replica)

    def _wait_for_new_state(self, replica: Replica, state: PartitionState, version: int) -> None:
        """Neither lead nor follow: the state that makes this broker leader predates its
        registration (the module docstring)."""
        was = replica.role
        replica.state, replica.version = state, version
        if was == WAITING and replica.epoch == state.leader_epoch:
            return
        replica.role = WAITING
        replica.leader, replica.epoch = NO_LEADER, state.leader_epoch
        replica.followers = {}
        replica.hw = min(replica.hw, replica.log.end_offset)
        logger.warning("%s/%d: the state (leader %d, epoch %d) was written before this broker "
                       "registered (a restart or a new session): not leading until the "
                       "controller writes a new one", replica.topic, replica.partition,
                       state.leader, state.leader_epoch)
        if was == LEADER:
            self.on_lost_leadership(replica)
        self.on_follow(replica)

    def _lead(self, replica: Replica, state: PartitionState, version: int) -> None:
        now = time.monotonic()
        replica.role = LEADER
        replica.leader, replica.epoch = self.broker_id, state.leader_epoch
        replica.state, replica.version = state, version
        start = min(replica.hw, replica.log.end_offset)
        replica.followers = {b: Follower(start, caught_up_at=now)
                             for b in replica.replicas if b != self.broker_id}
        self._start_epoch(replica)
        if len(replica.replicas) > 1:
            logger.info("%s/%d: leading in epoch %d, ISR %s", replica.topic, replica.partition,
                        replica.epoch, list(replica.isr))
        self.on_follow(replica)
        self._advance(replica)

    def _start_epoch(self, replica: Replica) -> None:
        """A leader's epoch starts at its log end (broker/leader_epochs.py): what it appends
        from there was written in that epoch. A log whose latest epoch is newer than the state's
        is refused loudly (counted) and keeps its entries."""
        try:
            replica.log.epochs.assign(replica.epoch, replica.log.end_offset)
        except SluiceError as exc:
            self.errors.task_failed("leader_epoch", exc)

    # --- the leader's side -----------------------------------------------------------------

    def appended(self, replica: Replica) -> None:
        """The leader appended: alone in the ISR, that moves its high watermark."""
        if len(replica.state.isr) == 1:
            self._advance(replica)

    def follower_fetched(self, replica: Replica, broker_id: int, offset: int,
                         leader_end: int) -> None:
        """A replica fetch of ``broker_id`` at ``offset`` (its log end) reached the leader,
        whose log a follower may read up to ``leader_end``."""
        follower = replica.followers.get(broker_id)
        if follower is None:
            raise NotLeader(f"broker {broker_id} is no replica of {replica.topic}/"
                            f"{replica.partition} (replicas {list(replica.replicas)})")
        now = time.monotonic()
        lost = follower.fetched(offset, leader_end, now)
        if lost and broker_id in replica.isr:
            logger.warning("%s/%d: in-sync replica %d fetches at %d, below the log end it had "
                           "reached: it lost data; out of the ISR at once", replica.topic,
                           replica.partition, broker_id, offset)
            self._write_isr(replica, [b for b in replica.isr if b != broker_id], now)
        elif broker_id in replica.isr:
            self._advance(replica)
        elif rules.to_expand(replica.isr, replica.replicas, self.broker_id,
                             {broker_id: follower}, replica.hw, self._epoch_start(replica)):
            self._write_isr(replica, list(replica.isr) + [broker_id], now)

    @staticmethod
    def _epoch_start(replica: Replica) -> int:
        """Where the leader's current epoch began in its log (0 if it has no entry for it)."""
        entries = replica.log.epochs.entries
        return entries[-1][1] if entries and entries[-1][0] == replica.epoch else 0

    def _advance(self, replica: Replica) -> None:
        """Recompute a leader's high watermark from the ISR it holds; it only moves up."""
        if replica.role != LEADER:
            return
        hw = rules.high_watermark(replica.log.end_offset,
                                  {b: f.log_end for b, f in replica.followers.items()},
                                  replica.isr, self.broker_id)
        if hw > replica.hw:
            replica.hw = hw
            self.on_high_watermark(replica)

    def _write_isr(self, replica: Replica, isr: list[int], now: float) -> None:
        """Hand a new ISR, on the version held, to the writer thread (broker/isr_writer.py);
        it is used only once ``maintain`` applies the written outcome."""
        if replica.key in self._retry or replica.key in self.writer.in_flight:
            return
        if not self.zk.connected:
            self._retry_later(replica.key, now, "isr_update",
                              SluiceError("not connected to ZooKeeper"))
            return
        self.writer.submit(Write(replica.key, replica.state.with_isr(isr), replica.version,
                                 replica.epoch, replica.written))

    def in_sync_for_acks(self, replica: Replica) -> tuple[int, ...]:
        """The ISR an acks=all produce is judged by against ``min_insync_replicas``: the
        replica's, or the smaller one a write in flight proposes. A shrink is decided before
        ZooKeeper has it; until ``maintain`` applies the written outcome the old ISR still
        holds the high watermark back, and a produce judged by it meanwhile would be
        accepted, then acknowledged once the shrink lands, by fewer replicas than promised."""
        proposed = self.writer.in_flight.get(replica.key)
        return proposed if proposed is not None and len(proposed) < len(replica.isr) else replica.isr

    @property
    def writing(self) -> bool:
        """An ISR write is in flight (the loop then polls more often for its outcome)."""
        return bool(self.writer.in_flight)

    def _apply_outcomes(self, now: float) -> None:
        """The writer thread's outcomes, each applied only to a replica still at the epoch and
        version its write was decided on (``isr.outcome_applies``); others are dropped."""
        for outcome in self.writer.collect():
            write = outcome.write
            replica = self.partitions.get(write.key)
            if replica is None or not rules.outcome_applies(
                    write.epoch, write.version, replica.epoch, replica.version,
                    replica.role == LEADER):
                logger.info("%s/%d: dropped the outcome (%s) of an ISR write decided in epoch "
                            "%d on version %d: the replica moved on since", *write.key,
                            outcome.kind, write.epoch, write.version)
                self._changes.put(write.key)
                continue
            if outcome.kind == REREGISTERED:
                logger.warning("%s/%d: this broker registered again since its leadership was "
                               "written; no ISR write, reading the state again", *write.key)
                self._registered = outcome.registered
                self._changes.put(write.key)
            elif outcome.kind == STALE:
                logger.info("%s/%d: the state changed under the ISR write; reading it again",
                            *write.key)
                self._changes.put(write.key)
            elif outcome.kind == FAILED:
                self._retry_later(write.key, now, "isr_update", outcome.error)
            else:
                logger.info("%s/%d: ISR %s -> %s (epoch %d)", *write.key, list(replica.isr),
                            list(write.state.isr), replica.epoch)
                replica.state, replica.version, replica.written = (write.state, outcome.version,
                                                                   None)
                self._advance(replica)

    def _retry_later(self, key, now: float, task: str, exc: Exception) -> None:
        self._backoff = min(RETRY_MAX_S, 2 * self._backoff or RETRY_FIRST_S)
        self._retry[key] = now + self._backoff
        self.errors.task_failed(task, exc, self._backoff)

    def checkpoint_high_watermarks(self) -> None:
        """Snapshot every replicated partition's high watermark with its log's latest epoch
        (broker/hw_checkpoint.py) and hand it to ``on_checkpoint`` (the flusher) if it
        changed."""
        if self.checkpoint.offer(self._high_watermarks()):
            self.on_checkpoint(self.checkpoint)

    def _high_watermarks(self) -> dict[tuple[str, int], tuple[int, int]]:
        return {key: (replica.hw, replica.log.epochs.latest_epoch)
                for key, replica in self.partitions.items() if len(replica.replicas) > 1}

    def stop_watching(self) -> None:
        """End the state and registration watches (each ends at its next event)."""
        self._closed = True

    def close(self) -> None:
        """Stop the watches and the ISR writer; write the high watermarks a last time, here
        (the flusher may be gone)."""
        self.stop_watching()
        self.writer.close()
        try:
            self.checkpoint.offer(self._high_watermarks())
            self.checkpoint.flush()
        except SluiceError as exc:
            self.errors.task_failed("hw_checkpoint", exc)
