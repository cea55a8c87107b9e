"""Rebalance planning, kept apart from ZooKeeper I/O so that it can be tested on its own.

A ``Snapshot`` is what a consumer reads from the registries: the group's members with their
subscriptions and each subscribed topic's available partitions (those its live brokers host).
The paper's step 1 ("if nothing changed since the last success, stop") is ``changed``; the
target share of step 3 is ``target``; the retry bound of step 4 is ``RetryPolicy``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from coordinator import assignor


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


@dataclass(frozen=True)
class RetryPolicy:
    """Step 4's bound: Kafka 0.7 tried 4 times, 2 s apart."""

    max_tries: int = 4
    backoff_s: float = 2.0

    def __post_init__(self):
        if self.max_tries < 1 or self.backoff_s < 0:
            raise ValueError("max_tries must be >= 1 and backoff_s >= 0")
