"""The two rebalance protocols a group member runs, as strategy objects: eager and cooperative.

A GroupMember holds one and asks it only what differs between them:

| protocol    | also watches        | one rebalance step                 | wakes itself          |
| ----------- | ------------------- | ---------------------------------- | --------------------- |
| eager       | nothing             | Algorithm 1: release all, claim    | never                 |
|             |                     | the range share, retry on conflict |                       |
| cooperative | its topics' owner   | ``cooperative_plan``: give up what | each SETTLE_RECHECK_S |
|             | nodes               | must move, claim what is free      | short of its goal     |

``eager`` is Algorithm 1 unchanged: skip if nothing changed since the last success; release
every partition (``on_revoke``, the consumer commits, then delete the owner nodes); take the
range share; create an owner node per partition; on a conflict release everything, back off
(on the member's stop event, so ``stop()`` is not held up) and retry, up to the retry policy's
tries; then REBALANCE FAILED.

``cooperative`` (KIP-429's idea over ZooKeeper): every member computes the same sticky,
balanced target from the current owner nodes; a member gives up only the partitions that must
move and claims a partition once its owner node is gone (hence the watch on the owner nodes,
and a re-check while it waits). Everything else is consumed throughout. Ownership stays
exclusive at every instant because an owner node is created only where none exists: ZooKeeper
enforces it, not timing.

The member's node records the protocol's ``name``. A step uses the member's ZooKeeper
operations (``snapshot``, ``claim``, ``release``, ``own``...) and moves its state and counters.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from coordinator import consumer_registry, paths, settings
from coordinator.rebalance import (TP, Snapshot, State, changed, cooperative_plan,
                                   partition_names, target)

if TYPE_CHECKING:
    from coordinator.group import GroupMember

log = logging.getLogger(__name__)

SETTLE_RECHECK_S = 1.0


class Eager:
    """The paper's protocol (see the module docstring); remembers its last success."""

    name = "eager"

    def __init__(self):
        self.last_success: Snapshot | None = None

    def watched(self, group: str, topics: list[str]) -> list[str]:
        return []

    def wait_s(self, state: State) -> float | None:
        return None

    def forget(self) -> None:
        """The member lost its session or left: the next step rebalances whatever changed."""
        self.last_success = None

    def step(self, member: GroupMember) -> None:
        snapshot = member.snapshot()
        if member.state is State.STABLE and not changed(self.last_success, snapshot):
            return
        started = time.monotonic()
        member.state = State.REBALANCING
        member.rebalances += 1
        for attempt in range(1, member.retry.max_tries + 1):
            if member.stopping.is_set():
                return
            member.release(sorted(member.owned))
            claimed = self._claim_all(member, target(snapshot, member.consumer_id))
            if claimed is not None:
                member.own(claimed)
                self.last_success = snapshot
                member.state = State.STABLE
                member.last_settle_s = time.monotonic() - started
                log.info("consumer %s of group %s owns %s after %.2f s (attempt %d)",
                         member.consumer_id, member.group, partition_names(claimed),
                         member.last_settle_s, attempt)
                member.on_assign(claimed)
                return
            member.conflicts += 1
            if member.stopping.wait(member.retry.backoff_s):
                return
            snapshot = member.snapshot()
        member.state = State.FAILED
        member.failures += 1
        log.error("REBALANCE FAILED: consumer %s of group %s could not claim its partitions "
                  "after %d tries; it owns nothing and retries on the next change",
                  member.consumer_id, member.group, member.retry.max_tries)

    @staticmethod
    def _claim_all(member: GroupMember, mine: list[TP]) -> list[TP] | None:
        """Create an owner node per partition; None (all released) on a conflict."""
        claimed = []
        for topic, partition in mine:
            if not member.claim(topic, partition):
                log.info("consumer %s: %s/%d is still owned by %s; releasing and retrying",
                         member.consumer_id, topic, partition, member.holder(topic, partition))
                member.delete_owners(claimed)
                return None
            claimed.append((topic, partition))
        return claimed


class Cooperative:
    """Move only what must move (see the module docstring); times how long it was unsettled."""

    name = "cooperative"

    def __init__(self):
        self.unsettled_since: float | None = None

    def watched(self, group: str, topics: list[str]) -> list[str]:
        return [paths.owners(group, t) for t in topics]

    def wait_s(self, state: State) -> float | None:
        """While short of its goal, look again: a partition it waits for may be free by now."""
        return SETTLE_RECHECK_S if state is State.REBALANCING else None

    def forget(self) -> None:
        """Nothing to forget: every step plans from the owner nodes as they are."""

    def step(self, member: GroupMember) -> None:
        snapshot = member.snapshot()
        owners = {t: consumer_registry.owners(member.client, member.group, t)
                  for t in member.topics}
        plan = cooperative_plan(snapshot, owners, member.consumer_id, member.owned)
        give_up = list(plan.give_up)
        if give_up:
            member.release(give_up)
        claimed = [tp for tp in plan.claim if member.claim(*tp)]
        if claimed:
            member.own(claimed)
            member.on_assign(claimed)
        if give_up or claimed:
            member.rebalances += 1
            log.info("consumer %s of group %s gave up %s, claimed %s", member.consumer_id,
                     member.group, partition_names(give_up), partition_names(claimed))
        if member.owned == set(plan.goal):
            if member.state is not State.STABLE and self.unsettled_since is not None:
                member.last_settle_s = time.monotonic() - self.unsettled_since
            self.unsettled_since = None
            member.state = State.STABLE
        else:
            if self.unsettled_since is None:
                self.unsettled_since = time.monotonic()
            member.state = State.REBALANCING


PROTOCOLS = {protocol.name: protocol for protocol in (Eager, Cooperative)}


def named(name: str) -> Eager | Cooperative:
    """A fresh protocol object for the member that runs it (each keeps its own memory)."""
    settings.one_of("rebalance", name, PROTOCOLS)
    return PROTOCOLS[name]()
