"""Leader election for one partition, pure: the controller's decision, Kafka 0.8's rules.

Given a partition's state, its replicas (preferred leader first), the live brokers and whether
unclean election is allowed, ``elect`` answers the state to write, or None for "no change":

- the leader is alive: it stays; dead replicas leave the ISR, but the ISR never empties (its
  last member stays, as in Kafka, so that it can come back and lead cleanly); same epoch;
- the leader is dead (or there is none): the first live ISR member in replica order leads,
  epoch + 1, ISR = the live ISR members;
- no ISR member is alive: with unclean election allowed, the first live replica leads with
  ISR = [it], epoch + 1, flagged unclean (what only the ISR had is lost); otherwise the
  partition has NO_LEADER (-1), epoch + 1, ISR unchanged, until an ISR member returns.

``preferred`` is the preferred-leader rebalance: the preferred replica is alive, in the ISR and
not leading -> it leads, epoch + 1, ISR unchanged.

Worked examples, replicas (0, 1, 2), controller epoch 5::

    state (leader, epoch, isr)   live        unclean   result
    (0, 3, (0, 1, 2))            {0, 1, 2}   off       None
    (0, 3, (0, 1, 2))            {0, 2}      off       (0, 3, (0, 2))        ISR shrinks
    (0, 3, (0,))                 {0}         off       None                  last member stays
    (0, 3, (0, 1, 2))            {1, 2}      off       (1, 4, (1, 2))
    (0, 3, (0, 1))               {2}         off       (-1, 4, (0, 1))       no leader
    (-1, 4, (0, 1))              {1, 2}      off       (1, 5, (1,))          ISR member back
    (0, 3, (0, 1))               {2}         on        (2, 4, (2,)) unclean
    preferred: (1, 4, (1, 0))    {0, 1}                (0, 5, (1, 0))
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from coordinator.partition_state import NO_LEADER, PartitionState


@dataclass(frozen=True)
class Election:
    """A decided change: the state to write, and whether it elected an out-of-sync replica."""

    state: PartitionState
    unclean: bool = False


def elect(state: PartitionState, replicas, live, unclean_allowed: bool,
          controller_epoch: int) -> Election | None:
    """The election's result for one partition (the module's rules), or None: no change."""
    replicas, live = tuple(replicas), frozenset(live)
    live_isr = tuple(b for b in state.isr if b in live)
    if state.leader != NO_LEADER and state.leader in live:
        isr = live_isr or state.isr
        if isr == state.isr:
            return None
        return Election(replace(state, isr=isr, controller_epoch=controller_epoch))
    in_sync = [r for r in replicas if r in live_isr]
    if in_sync:
        return Election(state.elected(in_sync[0], live_isr, controller_epoch))
    if unclean_allowed:
        alive = [r for r in replicas if r in live]
        if alive:
            return Election(state.elected(alive[0], (alive[0],), controller_epoch), unclean=True)
    if state.leader == NO_LEADER:
        return None
    return Election(state.elected(NO_LEADER, state.isr, controller_epoch))


def preferred(state: PartitionState, replicas, live, controller_epoch: int) -> Election | None:
    """Move leadership back to the preferred replica when it is alive and in sync; else None."""
    first = tuple(replicas)[0]
    if state.leader == first or first not in live or first not in state.isr:
        return None
    return Election(state.elected(first, state.isr, controller_epoch))
