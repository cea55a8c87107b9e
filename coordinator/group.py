"""A consumer group member: its watches and rebalances over ZooKeeper, eager or cooperative.

States (see rebalance.State)::

    start() -> JOINING -> REBALANCING -> STABLE --(registry change)--> REBALANCING -> ...
                              |  tries ran out (eager)
                              v
                            FAILED --(next change, or a timed retry)--> REBALANCING
    poll interval exceeded -> LEFT --(next poll: rejoin())--> JOINING
    stop() -> CLOSED   (revoke, release owner nodes, delete the member node)

Beside those, whether the member's ownership is *confirmed* (``confirmed``): a ZooKeeper
connection that goes SUSPENDED (no answer for 2/3 of the session timeout) may mean that the
session is about to expire on the server, after which another member takes the partitions. So
from SUSPENDED on, the member's partitions are unconfirmed: the consumer hands out none of
their messages and commits nothing. Back CONNECTED in the same session, the member checks that
each owner node is still there and held by its session; those are confirmed again and any
other is dropped (``on_lost``). A LOST session drops them all. The session expires on the
server only after the whole timeout, a third later than SUSPENDED, so a member that is cut off
stops before anyone else can start.

The member registers (coordinator.membership) and watches the group's members, the broker
registry and each topic's broker list with kazoo's ChildrenWatch; every change wakes one
rebalance thread.

What differs between the paper's ``eager`` protocol and ``cooperative`` (the watched paths,
one rebalance step, when to look again unprompted) is the protocol object the member holds:
coordinator.rebalance_protocols. The member gives it the ZooKeeper operations below.

Usage::

    member = GroupMember(client, "loaders", ["clicks"], protocol="cooperative",
                         on_revoke=commit, on_assign=resume)
    member.start()
    ...
    member.stop()
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Callable

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import ConnectionClosedError, NodeExistsError, NoNodeError
from kazoo.recipe.watchers import ChildrenWatch

from coordinator import consumer_registry, paths, rebalance_protocols
from coordinator.errors import InvalidArgument
from coordinator.liveness import PollTimer
from coordinator.membership import FencedInstance, Membership
from coordinator.pids import this_host
from coordinator.rebalance import RetryPolicy, Snapshot, State, partition_names
from coordinator.registry import hosted_partitions

log = logging.getLogger(__name__)

Partitions = list[tuple[str, int]]

__all__ = ["GroupMember", "FencedInstance", "new_consumer_id"]


def new_consumer_id() -> str:
    """host-pid-random: unique, and readable in ``groups describe``."""
    return f"{this_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class GroupMember:
    def __init__(self, client: KazooClient, group: str, topics: list[str],
                 consumer_id: str | None = None, retry: RetryPolicy = RetryPolicy(),
                 on_revoke: Callable[[Partitions], None] = lambda partitions: None,
                 on_assign: Callable[[Partitions], None] = lambda partitions: None,
                 on_lost: Callable[[Partitions], None] = lambda partitions: None,
                 protocol: str = "eager", instance_id: str | None = None,
                 max_poll_interval_s: float | None = None):
        self.protocol = rebalance_protocols.named(protocol)
        self.client = client
        self.group = paths.check_name("group", group)
        self.topics = sorted(paths.check_name("topic", t) for t in topics)
        if not self.topics:
            raise InvalidArgument("a group member needs at least one topic")
        if instance_id is not None:
            paths.check_name("instance id", instance_id)
        self.consumer_id = instance_id or consumer_id or new_consumer_id()
        self.membership = Membership(client, self.group, self.consumer_id, self.topics,
                                     self.protocol.name, static=instance_id is not None)
        self.retry = retry
        self.on_revoke = on_revoke
        self.on_assign = on_assign
        self.on_lost = on_lost
        self.poll_timer = PollTimer(max_poll_interval_s, time.monotonic())
        self.state = State.JOINING
        self.rebalances = 0
        self.conflicts = 0
        self.failures = 0
        self.left_for_slowness = 0
        self.last_settle_s: float | None = None
        self._owned: set[tuple[str, int]] = set()
        self._wake = threading.Event()
        self.stopping = threading.Event()
        self._session_lost = False
        self._confirmed = threading.Event()
        self._confirmed.set()
        self._check_ownership = False
        self._warned_mixed = False
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

    @property
    def confirmed(self) -> bool:
        """Whether the partitions this member owns are known to be its own right now (see the
        module docstring): False from a SUSPENDED connection until checked again."""
        return self._confirmed.is_set()

    def wait_confirmed(self, timeout_s: float) -> bool:
        return self._confirmed.wait(timeout_s)

    def start(self) -> None:
        """Register (a returning static member takes its old partitions back), watch, rebalance."""
        for path in self._watched_paths():
            self.client.ensure_path(path)
        self._adopt(self.membership.register())
        self.client.add_listener(self._on_session)
        self._thread.start()
        for path in self._watched_paths():
            ChildrenWatch(self.client, path, self._on_change)

    def polled(self) -> None:
        """The application came back for more: feeds the poll-interval timer, rejoins if left."""
        self.poll_timer.touch(time.monotonic())
        if self.state is State.LEFT:
            log.warning("consumer %s of group %s is polling again; rejoining", self.consumer_id,
                        self.group)
            self.state = State.JOINING
            self._adopt(self.membership.register())
            self._wake.set()

    def request_rebalance(self) -> None:
        self._wake.set()

    def stop(self, leave: bool = True) -> None:
        """Leave the group at once: revoke, release, deregister (no session timeout to wait).

        ``leave=False`` (a static member about to exit) only revokes, so the consumer commits;
        the owner and member nodes stay with the session until it expires or the member returns.
        """
        self.stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        if leave:
            self.release(sorted(self.owned))
            self.membership.deregister()
        else:
            owned = sorted(self.owned)
            if owned:
                self.on_revoke(owned)
        self.state = State.CLOSED

    # --- watches ---------------------------------------------------------------------------

    def _watched_paths(self) -> list[str]:
        return [paths.consumer_ids(self.group), paths.BROKER_IDS,
                *(paths.broker_topic(t) for t in self.topics),
                *self.protocol.watched(self.group, self.topics)]

    def _on_change(self, children) -> bool | None:
        if self.stopping.is_set():
            return False
        self._wake.set()
        return None

    def _on_session(self, state: str) -> None:
        """Runs on kazoo's connection thread: flags only, the rebalance thread does the I/O."""
        if state == KazooState.SUSPENDED:
            if self._confirmed.is_set():
                log.warning("consumer %s of group %s: ZooKeeper connection suspended; handing "
                            "out nothing of %s until its ownership is confirmed",
                            self.consumer_id, self.group,
                            partition_names(sorted(self.owned)))
            self._confirmed.clear()
        elif state == KazooState.LOST:
            self._confirmed.clear()
            self._session_lost = True
            self._wake.set()
        elif state == KazooState.CONNECTED:
            if not self._confirmed.is_set():
                self._check_ownership = True
            self._wake.set()

    # --- the rebalance thread ------------------------------------------------------------

    def _run(self) -> None:
        self._wake.set()
        while True:
            self._wake.wait(self._wait_timeout())
            if self.stopping.is_set():
                return
            self._wake.clear()
            try:
                if self._session_lost and self.client.state == KazooState.CONNECTED:
                    self._recover_session()
                elif self._check_ownership and self.client.state == KazooState.CONNECTED:
                    self._confirm_ownership()
                if self.poll_timer.expired(time.monotonic()) and self.state is not State.LEFT:
                    self._leave_for_slowness()
                if self.state is not State.LEFT and self.client.state == KazooState.CONNECTED:
                    self.protocol.step(self)
            except FencedInstance as exc:
                log.error("%s", exc)
                self.state = State.FAILED
            except ConnectionClosedError:
                # the ZooKeeper client was stopped under a member nobody stopped: it can never
                # serve this member again (its ephemeral nodes went with its session)
                log.warning("consumer %s of group %s: its ZooKeeper client was closed; its "
                            "rebalance thread stops", self.consumer_id, self.group)
                self.state = State.FAILED
                return
            except Exception:
                log.exception("rebalance of group %s failed unexpectedly; will retry",
                              self.group)
                self.state = State.FAILED
                self.failures += 1

    def _wait_timeout(self) -> float | None:
        waits = [self.poll_timer.remaining(time.monotonic())]
        if self.state is State.FAILED:
            waits.append(self.retry.backoff_s * self.retry.max_tries)
        waits.append(self.protocol.wait_s(self.state))
        waits = [w for w in waits if w is not None]
        return min(waits) + 0.01 if waits else None

    def _recover_session(self) -> None:
        """After session expiry our ephemeral nodes are gone: we own nothing any more."""
        log.warning("consumer %s lost its ZooKeeper session; rejoining group %s",
                    self.consumer_id, self.group)
        self._session_lost = False
        self._check_ownership = False
        with self._lock:
            lost = sorted(self._owned)
            self._owned.clear()
        if lost:
            self.on_lost(lost)
        self._confirmed.set()
        self.protocol.forget()
        if self.state is not State.LEFT:
            self._adopt(self.membership.register())

    def _confirm_ownership(self) -> None:
        """Back in the same session after a suspension: keep the owner nodes still held by this
        session, drop the rest (``on_lost``), then let the consumer hand out messages again."""
        self._check_ownership = False
        session = self.client.client_id[0]
        gone = []
        for topic, partition in sorted(self.owned):
            stat = self.client.exists(paths.owner(self.group, topic, partition))
            if stat is None or stat.ephemeralOwner != session:
                gone.append((topic, partition))
        if gone:
            with self._lock:
                self._owned.difference_update(gone)
            log.warning("consumer %s of group %s: %s no longer ours after the suspension; "
                        "dropped", self.consumer_id, self.group, partition_names(gone))
            self.on_lost(gone)
        log.info("consumer %s of group %s: ownership of %s confirmed", self.consumer_id,
                 self.group, partition_names(sorted(self.owned)))
        self._confirmed.set()

    def _leave_for_slowness(self) -> None:
        """The handler has not come back within max_poll_interval: hand the partitions over."""
        waited = time.monotonic() - self.poll_timer.last_poll
        owned = sorted(self.owned)
        log.warning("consumer %s of group %s has not polled for %.1f s (max %.1f s): giving up "
                    "%s and leaving until it polls again", self.consumer_id, self.group, waited,
                    self.poll_timer.max_interval_s, partition_names(owned))
        self.release(owned)
        self.membership.deregister()
        self.protocol.forget()
        self.left_for_slowness += 1
        self.state = State.LEFT

    def _adopt(self, partitions: Partitions) -> None:
        """Partitions a returning static member took over: resume them at their commits."""
        if not partitions:
            return
        with self._lock:
            self._owned.update(partitions)
        log.info("static member %s of group %s took back %s", self.consumer_id, self.group,
                 partition_names(partitions))
        self.on_assign(partitions)

    # --- ZooKeeper operations, for the rebalance protocols ----------------------------------

    def snapshot(self) -> Snapshot:
        """The group's members with their subscriptions, and the partitions live brokers host."""
        nodes = consumer_registry.registrations(self.client, self.group)
        ours = self.protocol.name
        mixed = sorted(m for m, node in nodes.items() if node.get("protocol", ours) != ours)
        if mixed and not self._warned_mixed:
            self._warned_mixed = True
            log.error("group %s mixes rebalance protocols: %s do not use %s; an eager member "
                      "waits for partitions a cooperative one keeps, so give the whole group "
                      "one protocol", self.group, ", ".join(mixed), ours)
        return Snapshot.of({m: node.get("topics", []) for m, node in nodes.items()},
                           {t: hosted_partitions(self.client, t) for t in self.topics})

    def claim(self, topic: str, partition: int) -> bool:
        """Create the partition's owner node; False when one exists (ZooKeeper's exclusivity)."""
        try:
            self.client.create(paths.owner(self.group, topic, partition),
                               self.consumer_id.encode(), ephemeral=True, makepath=True)
            return True
        except NodeExistsError:
            return False

    def own(self, partitions: Partitions) -> None:
        """Partitions claimed: this member owns them now (the protocol calls on_assign)."""
        with self._lock:
            self._owned.update(partitions)

    def holder(self, topic: str, partition: int) -> str:
        try:
            return self.client.get(paths.owner(self.group, topic, partition))[0].decode()
        except NoNodeError:
            return "(gone)"

    def release(self, partitions: Partitions) -> None:
        """Commit (through on_revoke), stop owning, then delete the owner nodes."""
        if not partitions:
            return
        self.on_revoke(partitions)
        with self._lock:
            self._owned.difference_update(partitions)
        self.delete_owners(partitions)

    def delete_owners(self, partitions: Partitions) -> None:
        """Delete the owner nodes that still name this member."""
        for topic, partition in partitions:
            path = paths.owner(self.group, topic, partition)
            try:
                data, stat = self.client.get(path)
                if data.decode() == self.consumer_id:
                    self.client.delete(path, version=stat.version)
            except NoNodeError:
                continue
