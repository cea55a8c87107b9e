"""Rebalance planning, kept apart from ZooKeeper I/O so that it can be tested on its own.

A ``Snapshot`` is what a consumer reads from the registries: the group's members with their
subscriptions and each subscribed topic's available partitions (those its live brokers host).
The paper's step 1 ("if nothing changed since the last success, stop") is ``changed``; the
target share of step 3 is ``target``; the retry bound of step 4 is ``RetryPolicy``. The
cooperative protocol's step is ``cooperative_plan``: what one member gives up and what it may
claim now.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable

from coordinator import assignor
from coordinator.errors import InvalidArgument


class State(str, enum.Enum):
    """Where a group member is: JOINING until its first success; REBALANCING while it
    releases and claims; STABLE owning its share; FAILED after the retries ran out (it owns
    nothing and tries again on the next change); LEFT after its handler outran the poll
    interval (it rejoins on its next poll); CLOSED after it left for good."""

    JOINING = "joining"
    REBALANCING = "rebalancing"
    STABLE = "stable"
    FAILED = "failed"
    LEFT = "left"
    CLOSED = "closed"


@dataclass(frozen=True)
class Snapshot:
    subscriptions: tuple[tuple[str, tuple[str, ...]], ...]
    partitions: tuple[tuple[str, tuple[int, ...]], ...]

    @classmethod
    def of(cls, subscriptions: dict[str, list[str]],
           partitions: dict[str, list[int]]) -> "Snapshot":
        return cls(tuple(sorted((c, tuple(sorted(t))) for c, t in subscriptions.items())),
                   tuple(sorted((t, tuple(sorted(int(p) for p in ps)))
                                for t, ps in partitions.items())))

    @property
    def consumers(self) -> list[str]:
        return [consumer for consumer, _ in self.subscriptions]


def changed(last: Snapshot | None, now: Snapshot) -> bool:
    """Step 1: a rebalance is needed only if members or partitions differ from the last success."""
    return last != now


def target(snapshot: Snapshot, me: str) -> list[tuple[str, int]]:
    """Step 3: this member's share under the range assignor."""
    shares = assignor.assign({t: list(ps) for t, ps in snapshot.partitions},
                             {c: list(ts) for c, ts in snapshot.subscriptions})
    return shares.get(me, [])


TP = tuple[str, int]


def partition_names(partitions: Iterable[TP]) -> str:
    """Partitions as a log line names them: ``t/0, t/1``, or ``nothing``."""
    return ", ".join(f"{t}/{p}" for t, p in partitions) or "nothing"


@dataclass(frozen=True)
class CooperativePlan:
    """One member's cooperative step: ``goal`` is its share of the sticky target; it gives up
    ``give_up`` (what it holds outside the goal: commit, then delete those owner nodes) and may
    claim ``claim`` now (goal partitions with no owner node, or one already its own). The rest
    of the goal waits until its owners have given it up."""

    goal: tuple[TP, ...]
    give_up: tuple[TP, ...]
    claim: tuple[TP, ...]


def cooperative_plan(snapshot: Snapshot, owners: dict[str, dict[int, str]], me: str,
                     owned: Iterable[TP] | None = None) -> CooperativePlan:
    """The cooperative protocol's step for member ``me`` (KIP-429's idea, over ZooKeeper).

    ``owners`` is every subscribed topic's owner nodes, partition -> member, as read now;
    ``owned`` what ``me`` holds (default: the owner nodes that name it). Every member computes
    the same sticky target (assignor.sticky_assign_all) from the same owner nodes, so the goals
    never overlap; a partition moves only when balance needs it, and only after its owner gave
    it up, because an owner node is created only where none exists.

    Worked example: a holds t/0..2, b holds t/3..5, and c joins; the target is a [0, 1],
    b [3, 4], c [2, 5]. a and b each give one up; c waits, then claims both:

    >>> snap = Snapshot.of({"a": ["t"], "b": ["t"], "c": ["t"]}, {"t": range(6)})
    >>> owners = {"t": {0: "a", 1: "a", 2: "a", 3: "b", 4: "b", 5: "b"}}
    >>> cooperative_plan(snap, owners, "a")
    CooperativePlan(goal=(('t', 0), ('t', 1)), give_up=(('t', 2),), claim=())
    >>> cooperative_plan(snap, owners, "c")
    CooperativePlan(goal=(('t', 2), ('t', 5)), give_up=(), claim=())
    >>> cooperative_plan(snap, {"t": {0: "a", 1: "a", 3: "b", 4: "b"}}, "c").claim
    (('t', 2), ('t', 5))

    At the target, planning again moves nothing (a fixed point):

    >>> settled = {"t": {0: "a", 1: "a", 2: "c", 3: "b", 4: "b", 5: "c"}}
    >>> plans = [cooperative_plan(snap, settled, m) for m in "abc"]
    >>> [(plan.give_up, plan.claim) for plan in plans]
    [((), ()), ((), ()), ((), ())]
    """
    shares = assignor.sticky_assign_all({t: list(ps) for t, ps in snapshot.partitions},
                                        {c: list(ts) for c, ts in snapshot.subscriptions},
                                        owners)
    goal = sorted(shares.get(me, []))
    if owned is None:
        owned = [(t, p) for t, held in owners.items() for p, m in held.items() if m == me]
    held = set(owned)
    free = [(t, p) for t, p in goal
            if (t, p) not in held and owners.get(t, {}).get(p) in (None, me)]
    return CooperativePlan(tuple(goal), tuple(sorted(held - set(goal))), tuple(free))


@dataclass(frozen=True)
class RetryPolicy:
    """Step 4's bound: Kafka 0.7 tried 4 times, 2 s apart."""

    max_tries: int = 4
    backoff_s: float = 2.0

    def __post_init__(self):
        if self.max_tries < 1 or self.backoff_s < 0:
            raise InvalidArgument("max_tries must be >= 1 and backoff_s >= 0")
