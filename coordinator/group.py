"""A consumer group member: registration, watches, and the paper's rebalance over ZooKeeper.

States (see rebalance.State)::

    start() -> JOINING -> REBALANCING -> STABLE --(registry change)--> REBALANCING -> ...
                              |  tries ran out
                              v
                            FAILED --(next change, or a timed retry)--> REBALANCING
    stop() -> CLOSED   (revoke, release owner nodes, delete the member node)

The member registers ephemeral ``/consumers/<group>/ids/<id>`` with its subscription and
watches the group's members, the broker registry and each topic's broker list with kazoo's
ChildrenWatch. Every change wakes one rebalance thread, which runs Algorithm 1: skip if nothing
changed; ``on_revoke`` (the consumer commits) then delete its owner nodes; compute its range
share; create an ephemeral owner node per partition; on a conflict (a member that has not
released yet) release everything, back off and retry; then ``on_assign``. Partitions taken by
a session expiry go to ``on_lost``: another member may own them already, so nothing is committed.

Usage::

    member = GroupMember(client, "loaders", ["clicks"], on_revoke=commit, on_assign=resume)
    member.start()
    ...
    member.stop()
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Callable

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.recipe.watchers import ChildrenWatch

from coordinator import paths
from coordinator.rebalance import RetryPolicy, Snapshot, State, changed, target

log = logging.getLogger("sluice.group")

Partitions = list[tuple[str, int]]


def new_consumer_id() -> str:
    """host-pid-random: unique, and readable in ``groups describe``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class GroupMember:
    def __init__(self, client: KazooClient, group: str, topics: list[str],
                 consumer_id: str | None = None, retry: RetryPolicy = RetryPolicy(),
                 on_revoke: Callable[[Partitions], None] = lambda partitions: None,
                 on_assign: Callable[[Partitions], None] = lambda partitions: None,
                 on_lost: Callable[[Partitions], None] = lambda partitions: None):
        self.client = client
        self.group = paths.check_name("group", group)
        self.topics = sorted(paths.check_name("topic", t) for t in topics)
        if not self.topics:
            raise ValueError("a group member needs at least one topic")
        self.consumer_id = consumer_id or new_consumer_id()
        self.retry = retry
        self.on_revoke = on_revoke
        self.on_assign = on_assign
        self.on_lost = on_lost
        self.state = State.JOINING
        self.rebalances = 0
        self.conflicts = 0
        self.failures = 0
        self.last_settle_s: float | None = None
        self._owned: set[tuple[str, int]] = set()
        self._last_success: Snapshot | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._session_lost = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"rebalance-{self.group}",
                                        daemon=True)

    # --- public ----------------------------------------------------------------------------

    @property
    def owned(self) -> frozenset[tuple[str, int]]:
        with self._lock:
            return frozenset(self._owned)

    def owns(self, topic: str, partition: int) -> bool:
        with self._lock:
            return (topic, partition) in self._owned

    def start(self) -> None:
        for path in (paths.consumer_ids(self.group), paths.BROKER_IDS,
                     *(paths.broker_topic(t) for t in self.topics)):
            self.client.ensure_path(path)
        self._register()
        self.client.add_listener(self._on_session)
        self._thread.start()
        for path in (paths.consumer_ids(self.group), paths.BROKER_IDS,
                     *(paths.broker_topic(t) for t in self.topics)):
            ChildrenWatch(self.client, path, self._on_change)

    def request_rebalance(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Leave the group at once: revoke, release, deregister (no session timeout to wait)."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self._revoke_and_release()
        try:
            self.client.delete(paths.consumer(self.group, self.consumer_id))
        except NoNodeError:
            pass
        self.state = State.CLOSED

    # --- registration and watches --------------------------------------------------------

    def _register(self) -> None:
        data = json.dumps({"topics": self.topics, "pid": os.getpid(),
                           "host": socket.gethostname()}).encode()
        try:
            self.client.create(paths.consumer(self.group, self.consumer_id), data,
                               ephemeral=True, makepath=True)
        except NodeExistsError:
            self.client.set(paths.consumer(self.group, self.consumer_id), data)

    def _on_change(self, children) -> bool | None:
        if self._stopping.is_set():
            return False
        self._wake.set()
        return None

    def _on_session(self, state: str) -> None:
        if state == KazooState.LOST:
            self._session_lost = True
            self._wake.set()
        elif state == KazooState.CONNECTED and self._session_lost:
            self._wake.set()

    # --- the rebalance thread ------------------------------------------------------------

    def _run(self) -> None:
        self._wake.set()
        while True:
            timeout = None if self.state is not State.FAILED else self.retry.backoff_s * self.retry.max_tries
            self._wake.wait(timeout)
            if self._stopping.is_set():
                return
            self._wake.clear()
            try:
                if self._session_lost and self.client.state == KazooState.CONNECTED:
                    self._recover_session()
                if self.client.state == KazooState.CONNECTED:
                    self._rebalance()
            except Exception:
                log.exception("rebalance of group %s failed unexpectedly; will retry",
                              self.group)
                self.state = State.FAILED
                self.failures += 1

    def _recover_session(self) -> None:
        """After session expiry our ephemeral nodes are gone: we own nothing any more."""
        log.warning("consumer %s lost its ZooKeeper session; rejoining group %s",
                    self.consumer_id, self.group)
        self._session_lost = False
        with self._lock:
            lost = sorted(self._owned)
            self._owned.clear()
        if lost:
            self.on_lost(lost)
        self._last_success = None
        self._register()

    def _rebalance(self) -> None:
        snapshot = self._snapshot()
        if self.state is State.STABLE and not changed(self._last_success, snapshot):
            return
        started = time.monotonic()
        self.state = State.REBALANCING
        self.rebalances += 1
        for attempt in range(1, self.retry.max_tries + 1):
            if self._stopping.is_set():
                return
            self._revoke_and_release()
            mine = target(snapshot, self.consumer_id)
            claimed = self._claim(mine)
            if claimed is not None:
                with self._lock:
                    self._owned = set(claimed)
                self._last_success = snapshot
                self.state = State.STABLE
                self.last_settle_s = time.monotonic() - started
                log.info("consumer %s of group %s owns %s after %.2f s (attempt %d)",
                         self.consumer_id, self.group, _fmt(claimed), self.last_settle_s, attempt)
                self.on_assign(claimed)
                return
            self.conflicts += 1
            time.sleep(self.retry.backoff_s)
            snapshot = self._snapshot()
        self.state = State.FAILED
        self.failures += 1
        log.error("REBALANCE FAILED: consumer %s of group %s could not claim its partitions "
                  "after %d tries; it owns nothing and retries on the next change",
                  self.consumer_id, self.group, self.retry.max_tries)

    def _snapshot(self) -> Snapshot:
        subscriptions = {}
        for member in self.client.get_children(paths.consumer_ids(self.group)):
            try:
                data, _ = self.client.get(paths.consumer(self.group, member))
            except NoNodeError:
                continue
            subscriptions[member] = json.loads(data).get("topics", [])
        partitions = {}
        for topic in self.topics:
            available: set[int] = set()
            try:
                brokers = self.client.get_children(paths.broker_topic(topic))
            except NoNodeError:
                brokers = []
            for broker in brokers:
                try:
                    data, _ = self.client.get(paths.broker_topic_partitions(topic, int(broker)))
                except NoNodeError:
                    continue
                available.update(int(p) for p in json.loads(data))
            partitions[topic] = sorted(available)
        return Snapshot.of(subscriptions, partitions)

    def _claim(self, mine: Partitions) -> Partitions | None:
        """Step 4: create an owner node per partition; None (all released) on a conflict."""
        claimed = []
        for topic, partition in mine:
            path = paths.owner(self.group, topic, partition)
            try:
                self.client.create(path, self.consumer_id.encode(), ephemeral=True, makepath=True)
            except NodeExistsError:
                holder = self._holder(path)
                log.info("consumer %s: %s/%d is still owned by %s; releasing and retrying",
                         self.consumer_id, topic, partition, holder)
                self._delete_owners(claimed)
                return None
            claimed.append((topic, partition))
        return claimed

    def _holder(self, path: str) -> str:
        try:
            return self.client.get(path)[0].decode()
        except NoNodeError:
            return "(gone)"

    def _revoke_and_release(self) -> None:
        """Step 2: commit (through on_revoke), then delete our owner nodes."""
        with self._lock:
            owned = sorted(self._owned)
        if not owned:
            return
        self.on_revoke(owned)
        with self._lock:
            self._owned.clear()
        self._delete_owners(owned)

    def _delete_owners(self, partitions: Partitions) -> None:
        for topic, partition in partitions:
            path = paths.owner(self.group, topic, partition)
            try:
                data, stat = self.client.get(path)
                if data.decode() == self.consumer_id:
                    self.client.delete(path, version=stat.version)
            except NoNodeError:
                continue


def _fmt(partitions: Partitions) -> str:
    return ", ".join(f"{t}/{p}" for t, p in partitions) or "nothing"


def owners(client: KazooClient, group: str, topic: str) -> dict[int, str]:
    """Who owns each partition of a topic in a group right now."""
    try:
        children = client.get_children(paths.owners(group, topic))
    except NoNodeError:
        return {}
    result = {}
    for child in children:
        try:
            result[int(child)] = client.get(paths.owner(group, topic, int(child)))[0].decode()
        except NoNodeError:
            continue
    return result


def topics_of(client: KazooClient, group: str) -> list[str]:
    """Topics a group has offsets, owners or subscribed members for."""
    found: set[str] = set()
    for path in (paths.group_offsets(group), paths.group_owners(group)):
        try:
            found.update(client.get_children(path))
        except NoNodeError:
            continue
    for member in members(client, group):
        try:
            found.update(json.loads(client.get(paths.consumer(group, member))[0]).get("topics", []))
        except NoNodeError:
            continue
    return sorted(found)


def members(client: KazooClient, group: str) -> list[str]:
    try:
        return sorted(client.get_children(paths.consumer_ids(group)))
    except NoNodeError:
        return []


def groups(client: KazooClient) -> list[str]:
    try:
        return sorted(client.get_children(paths.CONSUMERS))
    except NoNodeError:
        return []
