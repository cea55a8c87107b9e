"""The broker registry: brokers announce themselves, clients discover them.

States of a broker's registration::

    register() --> REGISTERED --(session lost)--> waiting --(new session)--> registering
                       ^                                                     |  (ephemeral nodes
                       +-------------------------(done)----------------------+   re-created)
                                     registering --(failed)--> back-off, try again, until
                                                               done or close()

A broker writes ephemeral ``/brokers/ids/<id>`` (its endpoints) and, per topic it hosts,
ephemeral ``/brokers/topics/<topic>/<id>`` (the partitions). Clients build a ``ClusterView``
from ZooKeeper alone and follow it through watches: a broker restarting on a new port shows up
as a changed endpoint, a new leader of a partition (its state node) as a changed leader.

Usage::

    view = ClusterView(client)
    info = view.leader("clicks", 3)          # BrokerInfo of the partition's leader
"""
from __future__ import annotations

import functools
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Callable

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError, NotEmptyError
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from coordinator import partition_state, paths, topics
from coordinator.errors import BrokerUnavailable, SluiceError
from coordinator.partition_state import PartitionState
from coordinator.pids import pid_alive

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5      # back-off between attempts to register again, doubling up to
RETRY_MAX_S = 10.0


class BrokerIdHeld(SluiceError):
    """A broker's node is held by another live session (is the broker id running twice?)."""


@dataclass(frozen=True)
class BrokerInfo:
    """What a broker registers: ``endpoint`` takes requests; ``produce_endpoint`` takes
    fire-and-forget (acks=0) produce requests, which need no reply path; ``replica_endpoint``
    is where followers fetch from it (the same ROUTER, perhaps through another address;
    empty: ``endpoint``, as registrations written before it read); ``kafka_endpoint`` is the
    ``host:port`` of its Kafka protocol listener (empty: none); ``max_message_bytes`` is the
    largest key plus value its logs take (0: not said, a registration from before it), so a
    producer can refuse a bigger message itself (``message_limit``)."""

    broker_id: int
    endpoint: str
    produce_endpoint: str
    host: str
    pid: int
    replica_endpoint: str = ""
    kafka_endpoint: str = ""
    max_message_bytes: int = 0

    def __post_init__(self):
        if not self.replica_endpoint:
            object.__setattr__(self, "replica_endpoint", self.endpoint)

    def to_json(self) -> bytes:
        return json.dumps({"endpoint": self.endpoint, "produce_endpoint": self.produce_endpoint,
                           "replica_endpoint": self.replica_endpoint,
                           "kafka_endpoint": self.kafka_endpoint,
                           "max_message_bytes": self.max_message_bytes,
                           "host": self.host, "pid": self.pid}).encode()

    @classmethod
    def from_json(cls, broker_id: int, data: bytes) -> "BrokerInfo":
        value = json.loads(data)
        return cls(broker_id, value["endpoint"], value.get("produce_endpoint", ""),
                   value.get("host", ""), int(value.get("pid", 0)),
                   value.get("replica_endpoint") or value["endpoint"],
                   value.get("kafka_endpoint", ""), int(value.get("max_message_bytes", 0)))


def message_limit(brokers: dict[int, BrokerInfo]) -> int | None:
    """The largest message every live broker takes (the smallest limit they register), None
    when none says. Pure.

    >>> message_limit({0: BrokerInfo(0, "e", "p", "h", 1, max_message_bytes=2048),
    ...                1: BrokerInfo(1, "e", "p", "h", 2, max_message_bytes=1024),
    ...                2: BrokerInfo(2, "e", "p", "h", 3)})
    1024
    >>> message_limit({}) is None
    True
    """
    limits = [b.max_message_bytes for b in brokers.values() if b.max_message_bytes > 0]
    return min(limits) if limits else None


class BrokerRegistration:
    """One broker's ephemeral nodes, re-created whenever ZooKeeper gives it a new session."""

    def __init__(self, client: KazooClient, info: BrokerInfo, stale_wait_s: float = 30.0):
        self.client = client
        self.info = info
        self.stale_wait_s = stale_wait_s
        self._hosted: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._lost = False
        self._again = False
        self._retrying = False
        self._closed = threading.Event()
        client.add_listener(self._on_state)

    def close(self) -> None:
        """Stop trying to register again (the broker is stopping)."""
        self._closed.set()

    def register(self) -> None:
        """Create /brokers/ids/<id>, first clearing a stale node left by a dead predecessor.

        The same transaction moves /brokers/ids's own version on (its data stays empty), so
        that the controller, which checks the version it read in each state write, never
        writes a decision taken before this registration (a restart the look missed)."""
        path = paths.broker(self.info.broker_id)
        self.client.ensure_path(paths.BROKER_IDS)
        self._clear_stale(path)
        transaction = self.client.transaction()
        transaction.create(path, self.info.to_json(), ephemeral=True)
        transaction.set_data(paths.BROKER_IDS, b"")
        created, _ = transaction.commit()
        if isinstance(created, Exception):
            raise created
        with self._lock:
            hosted = dict(self._hosted)
        for topic, partitions in hosted.items():
            self._write_hosted(topic, partitions)

    def publish(self, topic: str, partitions: list[int]) -> None:
        """Announce the partitions of ``topic`` this broker serves."""
        with self._lock:
            self._hosted[topic] = sorted(partitions)
        self._write_hosted(topic, sorted(partitions))

    def _write_hosted(self, topic: str, partitions: list[int]) -> None:
        path = paths.broker_topic_partitions(topic, self.info.broker_id)
        data = json.dumps(partitions).encode()
        self.client.ensure_path(paths.broker_topic(topic))
        try:
            self.client.create(path, data, ephemeral=True)
        except NodeExistsError:
            self._clear_stale(path)
            try:
                self.client.create(path, data, ephemeral=True)
            except NodeExistsError:
                self._replace_hosted(path, data)

    def _replace_hosted(self, path: str, data: bytes) -> None:
        """Our own announcement changes (partitions added): deleted and created again in one
        transaction, so the groups' ChildrenWatch on the topic sees it and rebalances (a
        plain set would change only the node's data, which no member watches)."""
        current, _ = self.client.get(path)
        if current == data:
            return
        transaction = self.client.transaction()
        transaction.delete(path)
        transaction.create(path, data, ephemeral=True)
        failed = next((r for r in transaction.commit() if isinstance(r, Exception)), None)
        if failed is not None:
            raise failed

    def unpublish(self, topic: str) -> None:
        """This broker no longer hosts ``topic`` (deleted): its announcement goes, and so does
        the topic's node when that was the last announcement and its state nodes are gone."""
        with self._lock:
            self._hosted.pop(topic, None)
        try:
            self.client.delete(paths.broker_topic_partitions(topic, self.info.broker_id))
        except NoNodeError:
            pass
        try:
            self.client.delete(paths.broker_topic(topic))
        except (NoNodeError, NotEmptyError):
            pass

    def _clear_stale(self, path: str) -> None:
        """A node owned by another session is a dead predecessor's (or a duplicate broker id).

        A predecessor on this host whose pid is gone is deleted at once, so a restarted broker
        does not wait out the old session; anything else is waited for, up to stale_wait_s.
        """
        stat = self.client.exists(path)
        if stat is None or stat.ephemeralOwner == self.client.client_id[0]:
            return
        owner_pid = self._owner_pid(path)
        if owner_pid is not None and owner_pid != os.getpid() and not pid_alive(owner_pid):
            log.info("removing stale %s left by dead pid %d", path, owner_pid)
            try:
                self.client.delete(path)
            except NoNodeError:
                pass
            return
        gone = threading.Event()
        if self.client.exists(path, watch=lambda event: gone.set()) is None:
            return
        log.warning("%s is held by another live session; waiting up to %.0f s", path,
                    self.stale_wait_s)
        if not gone.wait(self.stale_wait_s):
            raise BrokerIdHeld(f"{path} is still held by another session: is broker id "
                               f"{self.info.broker_id} running twice?")

    def _owner_pid(self, path: str) -> int | None:
        try:
            data, _ = self.client.get(path)
        except NoNodeError:
            return None
        if not data.startswith(b"{"):
            return None
        value = json.loads(data)
        if value.get("host") != self.info.host:
            return None
        return int(value.get("pid", 0)) or None

    def _on_state(self, state: str) -> None:
        if state == KazooState.LOST:
            self._lost = True
        elif state == KazooState.CONNECTED and self._lost:
            self._lost = False
            log.warning("ZooKeeper session was lost; registering broker %d again",
                        self.info.broker_id)
            with self._lock:
                self._again = True
                if self._retrying:
                    return
                self._retrying = True
            self.client.handler.spawn(self._register_again)

    def _register_again(self) -> None:
        """Register on the new session, backing off and trying again after a failure, until
        it is done or close() is called. A session lost meanwhile asks for one more round."""
        delay = RETRY_FIRST_S
        while True:
            with self._lock:
                if not self._again or self._closed.is_set():
                    self._retrying = False
                    return
                self._again = False
            try:
                self.register()
            except (KazooException, self.client.handler.timeout_exception, BrokerIdHeld) as exc:
                with self._lock:
                    self._again = True
                log.warning("registering broker %d again failed (%s: %s); retrying in %.1f s",
                            self.info.broker_id, type(exc).__name__, exc, delay)
                self._closed.wait(delay)
                delay = min(RETRY_MAX_S, 2 * delay)
                continue
            except BaseException:
                with self._lock:
                    self._retrying = False
                raise
            log.info("broker %d registered again", self.info.broker_id)
            delay = RETRY_FIRST_S


def hosted_partitions(client: KazooClient, topic: str) -> list[int]:
    """The partitions of ``topic`` that live brokers announce (a rebalance's available
    partitions: a broker's announcement goes with its session)."""
    try:
        brokers = client.get_children(paths.broker_topic(topic))
    except NoNodeError:
        return []
    available: set[int] = set()
    for broker in brokers:
        if broker == paths.PARTITIONS:
            continue
        try:
            data, _ = client.get(paths.broker_topic_partitions(topic, int(broker)))
        except NoNodeError:
            continue
        available.update(int(p) for p in json.loads(data))
    return sorted(available)


class ClusterView:
    """Live brokers, topic placements and partition leaders, kept current by ZooKeeper watches.

    A partition's leader is its state node's (coordinator/partition_state.py); a topic created
    before replication has none and reads as ``PartitionState.initial(replicas)``, its one
    broker leading. State nodes are watched only for the topics whose leaders were asked for
    (one DataWatch per partition, stopped when the topic goes), so a client's watches are
    bounded by the topics it uses, not by the cluster's.

    ``on_change`` callbacks run on kazoo's thread after every change (a broker, a topic, a
    watched partition's leadership), without arguments.
    """

    def __init__(self, client: KazooClient):
        self.client = client
        self._lock = threading.Lock()
        self._watch_lock = threading.Lock()
        self._brokers: dict[int, BrokerInfo] = {}
        self._placements: dict[str, topics.Placement] = {}
        self._states: dict[str, dict[int, PartitionState]] = {}
        self._watches: dict[str, object] = {}      # topic -> the token its DataWatches carry
        self._config_watches: dict[str, object] = {}   # topic -> its config DataWatch's token
        self._listeners: list[Callable[[], None]] = []
        client.ensure_path(paths.BROKER_IDS)
        client.ensure_path(paths.TOPIC_CONFIG)
        ChildrenWatch(client, paths.BROKER_IDS, self._on_brokers)
        ChildrenWatch(client, paths.TOPIC_CONFIG, self._on_topics)

    def add_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def brokers(self) -> dict[int, BrokerInfo]:
        with self._lock:
            return dict(self._brokers)

    def placement(self, topic: str) -> topics.Placement:
        with self._lock:
            placement = self._placements.get(topic)
        if placement is None:
            placement = topics.get(self.client, topic)
            with self._lock:
                self._placements[topic] = placement
        return placement

    def partitions(self, topic: str) -> int:
        return self.placement(topic).partitions

    def state(self, topic: str, partition: int) -> PartitionState:
        """The partition's leadership as last seen (its state node, watched from the first
        call on); raises topics.UnknownTopic or topics.UnknownPartition."""
        placement = self.placement(topic)
        if not 0 <= partition < placement.partitions:
            raise topics.partition_error(topic, placement.partitions, partition)
        with self._lock:
            states = self._states.get(topic)
            state = None if states is None else states.get(partition)
        if state is None:
            self._watch_states(topic, placement)
            with self._lock:
                state = self._states.get(topic, {}).get(partition)
        return state if state is not None else PartitionState.initial(placement.replicas[partition])

    def leader(self, topic: str, partition: int) -> BrokerInfo:
        """The broker leading (topic, partition); raises topics.UnknownTopic,
        topics.UnknownPartition or BrokerUnavailable with a line a person can act on."""
        state = self.state(topic, partition)
        if not state.has_leader:
            raise BrokerUnavailable(f"no leader for {topic}/{partition}: its in-sync replicas "
                                    f"{list(state.isr)} are down")
        with self._lock:
            info = self._brokers.get(state.leader)
        if info is None:
            raise BrokerUnavailable(f"broker {state.leader}, the leader of {topic}/{partition}, "
                                    f"is not registered (down?); its in-sync replicas are "
                                    f"{list(state.isr)}")
        return info

    def refresh(self) -> None:
        """Re-read the broker registry and the watched partitions' states now (after a request
        timed out, or a broker said it does not lead: the watches may not have fired yet)."""
        self._on_brokers(self.client.get_children(paths.BROKER_IDS))
        with self._lock:
            watched = {topic: self._placements.get(topic) for topic in self._states}
        changed = False
        for topic, placement in watched.items():
            if placement is None:
                continue
            for p in range(placement.partitions):
                found = partition_state.read(self.client, topic, p)
                changed |= self._set_state(topic, p, placement,
                                           None if found is None else found[0])
        if changed:
            self._notify()

    def _watch_states(self, topic: str, placement: topics.Placement) -> None:
        """A DataWatch per state node of ``topic`` (once); each first answer comes before this
        returns. The watches stop when the topic leaves the view (their token is dropped)."""
        with self._watch_lock:
            with self._lock:
                if topic in self._watches:
                    return
                token = self._watches[topic] = object()
                self._states[topic] = {}
            for p in range(placement.partitions):
                DataWatch(self.client, paths.partition_state(topic, p),
                          functools.partial(self._on_state, topic, p, placement, token))

    def _on_state(self, topic: str, partition: int, placement: topics.Placement, token,
                  data: bytes | None, stat) -> bool | None:
        with self._lock:
            if self._watches.get(topic) is not token:
                return False
        try:
            state = PartitionState.from_json(data) if data else None
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s/%d: unreadable partition state %r (%s); keeping the last one",
                        topic, partition, data, exc)
            return None
        with self._lock:
            first = partition not in self._states.get(topic, {})
        if self._set_state(topic, partition, placement, state) and not first:
            self._notify()
        return None

    def _set_state(self, topic: str, partition: int, placement: topics.Placement,
                   state: PartitionState | None) -> bool:
        """Record a partition's state (None: no node, the pre-replication topic); whether its
        leadership changed."""
        if state is None:
            state = PartitionState.initial(placement.replicas[partition])
        with self._lock:
            states = self._states.get(topic)
            if states is None:
                return False
            before = states.get(partition)
            states[partition] = state
        return before != state

    def _on_brokers(self, children: list[str]) -> None:
        brokers = {}
        for child in children:
            try:
                data, _ = self.client.get(paths.broker(int(child)))
            except (NoNodeError, ValueError):
                continue
            brokers[int(child)] = BrokerInfo.from_json(int(child), data)
        with self._lock:
            changed = brokers != self._brokers
            self._brokers = brokers
        if changed:
            self._notify()

    def _on_topics(self, children: list[str]) -> None:
        """New topics get a DataWatch on their config node (its first answer comes before
        this returns); gone ones leave the view, and listeners hear of both."""
        with self._lock:
            known = set(self._config_watches)
            for topic in set(children) - known:
                self._config_watches[topic] = object()
            tokens = {t: self._config_watches[t] for t in set(children) - known}
        for topic, token in tokens.items():
            DataWatch(self.client, paths.topic_config(topic),
                      functools.partial(self._on_topic_config, topic, token))
        gone = known - set(children)
        for topic in gone:
            self._forget_topic(topic)
        if tokens or gone:
            self._notify()

    def _on_topic_config(self, topic: str, token, data: bytes | None, stat) -> bool | None:
        """kazoo's thread: a topic's config node was written (partitions added, settings
        changed) or deleted; False ends the watch of a topic that left the view."""
        with self._lock:
            if self._config_watches.get(topic) is not token:
                return False
        if stat is None:
            if self._forget_topic(topic, token):
                self._notify()
            return False
        try:
            placement = topics.Placement.from_json(topic, data)
        except (topics.TopicError, ValueError, KeyError, TypeError) as exc:
            log.warning("topic %s: unreadable config node (%s); keeping the last one", topic, exc)
            return None
        with self._lock:
            before = self._placements.get(topic)
            self._placements[topic] = placement
            grown = (before is not None and topic in self._watches
                     and placement.partitions > before.partitions)
        if grown:
            with self._watch_lock:
                with self._lock:
                    watching = self._watches.get(topic)
                for p in range(before.partitions, placement.partitions):
                    DataWatch(self.client, paths.partition_state(topic, p),
                              functools.partial(self._on_state, topic, p, placement, watching))
        if before is not None and before != placement:
            self._notify()
        return None

    def _forget_topic(self, topic: str, token=None) -> bool:
        """Drop a topic from the view (its watches stop at their next event); whether it was
        there (with ``token``: only if its config watch still carries that token)."""
        with self._lock:
            if token is not None and self._config_watches.get(topic) is not token:
                return False
            self._config_watches.pop(topic, None)
            self._states.pop(topic, None)
            self._watches.pop(topic, None)
            return self._placements.pop(topic, None) is not None

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:
                log.exception("cluster view listener failed")
