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

A replica that *restarted* since the controller's last look (its registration was replaced:
it registered again before the controller could see it gone) lost its in-memory leader and
follower state, so it counts as one that failed and returned (Kafka's broker epochs, KIP-380):
the decision is that of a look at the gap (it dead; clean election only, as it is back) followed
by one at its return, written as one change, so the epoch moves by one at most. A restarted
leader is replaced from the rest of the ISR; when it was the only ISR member it leads again,
epoch + 1, so that it takes up its role anew; a restarted follower leaves the ISR (the leader
lets it back in once it has caught up).

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

    restarted                    live        restarted result
    (0, 3, (0, 1, 2))            {0, 1, 2}   {0}       (1, 4, (1, 2))        it rejoins later
    (0, 3, (0,))                 {0, 1, 2}   {0}       (0, 4, (0,))          leads anew
    (0, 3, (0, 1, 2))            {0, 1, 2}   {1}       (0, 3, (0, 2))        follower leaves ISR
    (0, 3, (0, 1))               {0, 1, 2}   {2}       None                  not in the ISR
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from coordinator.partition_state import NO_LEADER, PartitionState


@dataclass(frozen=True)
class Election:
    """A decided change: the state to write, and whether it elected an out-of-sync replica."""

    state: PartitionState
    unclean: bool = False


def elect(state: PartitionState, replicas, live, unclean_allowed: bool, controller_epoch: int,
          restarted=()) -> Election | None:
    """The election's result for one partition (the module's rules), or None: no change.
    ``restarted``: brokers whose registration was replaced since the last look."""
    replicas, live = tuple(replicas), frozenset(live)
    restarted = frozenset(restarted) & live & {state.leader, *state.isr}
    if not restarted:
        return _elect(state, replicas, live, unclean_allowed, controller_epoch)
    gap = _elect(state, replicas, live - restarted, False, controller_epoch)
    back = _elect(gap.state if gap else state, replicas, live, unclean_allowed, controller_epoch)
    if back is None:
        return gap
    if back.state.leader_epoch > state.leader_epoch + 1:
        return Election(replace(back.state, leader_epoch=state.leader_epoch + 1), back.unclean)
    return back


def _elect(state: PartitionState, replicas: tuple, live: frozenset, unclean_allowed: bool,
           controller_epoch: int) -> Election | None:
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
