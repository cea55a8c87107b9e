"""Rebalances of a consumer group as an outside observer sees them in ZooKeeper. Pure: no I/O.

Each consumer's GroupMember counts its own rebalances, but only inside its process. The dashboard
sampler instead looks at the group's ZooKeeper nodes once a second: the members (and the topics
each subscribes to) and the owner of each partition. Whichever protocol the group runs, a
rebalance ends with every partition owned by a current subscriber and the shares balanced (the
range assignor's answer for ``eager``, the sticky planner's for ``cooperative``); such an
ownership is the fixed point of ``coordinator.assignor.sticky_assign_all``, so the sampler passes
that function's answer for the current owners as ``expected``, and the group is settled exactly
when the owners equal it. A ``RebalanceTracker`` turns those looks into counts:

    unknown     --first look: owners == expected------------------------> settled (counts nothing)
    settled     --members or owners changed, or owners != expected------> rebalancing
    rebalancing --owners == expected------------------------------------> settled (+1 rebalance)
    any         --no members left---------------------------------------> empty (an unfinished
                                                                           rebalance is dropped)
    empty / unknown --members, owners != expected-----------------------> rebalancing

A rebalance counts when it settles. Its duration runs from the first look that differed from
the settled state to the first look that found the new assignment complete, so it is exact to
one sampling interval; a whole rebalance inside one interval counts with duration 0, and two
inside one interval count as one.

Worked example, topic t with partitions 0 and 1, looks one second apart::

    t  members   owners          expected        state        rebalances  last
    0  {a}       {0: a, 1: a}    {0: a, 1: a}    settled      0           -
    1  {a, b}    {0: a, 1: a}    {0: a, 1: b}    rebalancing  0           -      (b joined)
    2  {a, b}    {0: a}          {0: a, 1: b}    rebalancing  0           -      (a released 1)
    3  {a, b}    {0: a, 1: b}    {0: a, 1: b}    settled      1           2.0 s
    4  {b}       {0: a, 1: b}    {0: b, 1: b}    rebalancing  1           -      (a died)
"""
from __future__ import annotations

from dataclasses import dataclass, field

Partition = tuple[str, int]


@dataclass
class RebalanceTracker:
    """Feed ``observe`` with what ZooKeeper shows; read the counters and ``state``."""

    state: str = "unknown"
    rebalances: int = 0
    seconds_total: float = 0.0
    last_seconds: float | None = None
    started_at: float | None = None
    _settled: tuple | None = field(default=None, repr=False)

    def observe(self, now: float, members: set[str] | frozenset[str],
                owners: dict[Partition, str], expected: dict[Partition, str]) -> str:
        """One look at the group at ``now`` (seconds); returns the new state."""
        view = (frozenset(members), tuple(sorted(owners.items())))
        complete = owners == expected
        if not members:
            self.state, self.started_at, self._settled = "empty", None, None
        elif self.state == "settled":
            if view != self._settled:
                self.rebalances += complete
                self.last_seconds = 0.0 if complete else self.last_seconds
                self.state = "settled" if complete else "rebalancing"
                self.started_at = None if complete else now
                self._settled = view if complete else None
        elif self.state == "rebalancing":
            if complete:
                self.last_seconds = max(0.0, now - self.started_at)
                self.seconds_total += self.last_seconds
                self.rebalances += 1
                self.state, self.started_at, self._settled = "settled", None, view
        elif complete and self.state == "unknown":
            self.state, self._settled = "settled", view
        elif complete:  # from empty: a member came and took everything in one interval
            self.rebalances += 1
            self.last_seconds = 0.0
            self.state, self._settled = "settled", view
        else:
            self.state, self.started_at = "rebalancing", now
        return self.state

    def as_dict(self, now: float) -> dict:
        return {"state": self.state, "rebalances": self.rebalances,
                "rebalance_seconds_total": round(self.seconds_total, 3),
                "last_rebalance_s": None if self.last_seconds is None
                else round(self.last_seconds, 3),
                "rebalancing_for_s": None if self.started_at is None
                else round(now - self.started_at, 3)}
