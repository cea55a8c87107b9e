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

Which replicas restarted needs no memory of past looks (``restarted_since``): a member of the
ISR whose registration node was created (``czxid``) after the state node was last written
(``mzxid``) registered after it was put in the ISR, so it restarted, or its session expired,
since: whatever it held in memory then, and maybe its log, is gone. Any controller, one that
just took office too, reads the same answer from ZooKeeper; once the decision is written the
state's ``mzxid`` is past the ``czxid``, so it is decided once. A leader that lets a caught-up
replica back into the ISR writes the state after that replica registered: it counts again.

``preferred`` is the preferred-leader rebalance: the preferred replica is alive, in the ISR, not
leading and did not restart since the state was written -> it leads, epoch + 1, ISR unchanged.

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

    restarted_since(written_zxid=100, registrations={0: 40, 1: 120, 2: 100})  -> {1}
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


def restarted_since(written_zxid: int | None, registrations: dict[int, int]) -> frozenset[int]:
    """The brokers whose registration (id -> czxid) was created after the state was last
    written (``written_zxid``, its node's mzxid; None: no state node, nothing to compare)."""
    if written_zxid is None:
        return frozenset()
    return frozenset(b for b, czxid in registrations.items() if czxid > written_zxid)


def preferred(state: PartitionState, replicas, live, controller_epoch: int,
              restarted=()) -> Election | None:
    """Move leadership back to the preferred replica when it is alive, in sync and did not
    restart since (``restarted``: its log may be empty); else None."""
    first = tuple(replicas)[0]
    if (state.leader == first or first not in live or first not in state.isr
            or first in restarted):
        return None
    return Election(state.elected(first, state.isr, controller_epoch))
