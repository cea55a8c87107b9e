"""The election's rules, pure: every case of coordinator/election.py's table, and its invariants."""
from hypothesis import given, strategies as st

from coordinator.election import Election, elect, preferred
from coordinator.partition_state import NO_LEADER, PartitionState

REPLICAS = (0, 1, 2)


def run(leader, epoch, isr, live, unclean=False, restarted=()):
    return elect(PartitionState(leader, epoch, tuple(isr), 1), REPLICAS, live, unclean, 5,
                 restarted=restarted)


def test_a_live_leader_with_its_isr_alive_changes_nothing():
    assert run(0, 3, (0, 1, 2), {0, 1, 2}) is None


def test_dead_replicas_leave_the_isr_of_a_live_leader_at_the_same_epoch():
    assert run(0, 3, (0, 1, 2), {0, 2}) == Election(PartitionState(0, 3, (0, 2), 5))


def test_the_last_isr_member_stays():
    assert run(0, 3, (0,), {0}) is None
    assert run(0, 3, (0,), {0, 1}) is None


def test_a_dead_leader_is_replaced_by_the_first_live_isr_member_in_replica_order():
    assert run(0, 3, (0, 1, 2), {1, 2}) == Election(PartitionState(1, 4, (1, 2), 5))
    assert run(0, 3, (0, 2, 1), {1, 2}) == Election(PartitionState(1, 4, (2, 1), 5))


def test_a_live_replica_outside_the_isr_is_not_elected_cleanly():
    assert run(0, 3, (0, 1), {1, 2}) == Election(PartitionState(1, 4, (1,), 5))


def test_no_live_isr_member_and_unclean_off_leaves_no_leader_with_the_isr_unchanged():
    assert run(0, 3, (0, 1), {2}) == Election(PartitionState(NO_LEADER, 4, (0, 1), 5))
    assert run(NO_LEADER, 4, (0, 1), {2}) is None                 # no epoch bump on re-check
    assert run(NO_LEADER, 4, (0, 1), set()) is None


def test_an_isr_member_returning_to_a_leaderless_partition_leads():
    assert run(NO_LEADER, 4, (0, 1), {1, 2}) == Election(PartitionState(1, 5, (1,), 5))


def test_unclean_election_picks_the_first_live_replica_and_says_so():
    assert run(0, 3, (0, 1), {2}, unclean=True) == Election(PartitionState(2, 4, (2,), 5),
                                                            unclean=True)
    assert run(NO_LEADER, 4, (0,), {1, 2}, unclean=True) == Election(
        PartitionState(1, 5, (1,), 5), unclean=True)
    assert run(0, 3, (0, 1), set(), unclean=True) == Election(
        PartitionState(NO_LEADER, 4, (0, 1), 5))
    assert run(0, 3, (0, 1), {1}, unclean=True) == Election(PartitionState(1, 4, (1,), 5))


def test_a_restarted_leader_counts_as_failed_and_an_in_sync_replica_takes_over():
    assert run(0, 3, (0, 1, 2), {0, 1, 2}, restarted={0}) == Election(
        PartitionState(1, 4, (1, 2), 5))
    assert run(0, 3, (0, 2, 1), {0, 1, 2}, restarted={0, 1}) == Election(
        PartitionState(2, 4, (2,), 5))


def test_a_restarted_only_isr_member_leads_again_one_epoch_on():
    assert run(0, 3, (0,), {0, 1, 2}, restarted={0}) == Election(PartitionState(0, 4, (0,), 5))
    assert run(0, 3, (0, 1), {0, 1}, restarted={0, 1}) == Election(
        PartitionState(0, 4, (0, 1), 5))


def test_a_restarted_isr_member_is_preferred_to_an_unclean_election():
    assert run(0, 3, (0,), {0, 1, 2}, unclean=True, restarted={0}) == Election(
        PartitionState(0, 4, (0,), 5))


def test_a_restarted_follower_leaves_the_isr_at_the_same_epoch():
    assert run(0, 3, (0, 1, 2), {0, 1, 2}, restarted={1}) == Election(
        PartitionState(0, 3, (0, 2), 5))


def test_a_restart_outside_the_isr_or_of_a_dead_broker_changes_nothing():
    assert run(0, 3, (0, 1), {0, 1, 2}, restarted={2}) is None
    assert run(0, 3, (0, 1), {0, 1}, restarted={2}) is None
    assert run(0, 3, (0, 1, 2), {0, 2}, restarted={1}) == run(0, 3, (0, 1, 2), {0, 2})


def test_preferred_rebalance_moves_leadership_back_when_the_preferred_replica_is_in_sync():
    state = PartitionState(1, 4, (1, 0), 2)
    assert preferred(state, REPLICAS, {0, 1}, 5) == Election(PartitionState(0, 5, (1, 0), 5))
    assert preferred(state, REPLICAS, {1}, 5) is None                     # preferred is dead
    assert preferred(PartitionState(1, 4, (1,), 2), REPLICAS, {0, 1}, 5) is None   # not in sync
    assert preferred(PartitionState(0, 4, (0, 1), 2), REPLICAS, {0, 1}, 5) is None  # leads


brokers = st.sets(st.integers(0, 4))


@st.composite
def situations(draw):
    replicas = tuple(draw(st.permutations(range(5)))[:draw(st.integers(1, 5))])
    isr = tuple(draw(st.permutations(replicas))[:draw(st.integers(1, len(replicas)))])
    leader = draw(st.sampled_from((NO_LEADER, *isr)))
    return PartitionState(leader, draw(st.integers(0, 100)), isr, 0), replicas


@given(situations(), st.lists(brokers, min_size=1, max_size=6), st.booleans())
def test_over_any_history_one_leader_a_live_replica_and_the_epoch_only_grows(start, lives,
                                                                           unclean):
    state, replicas = start
    for live in lives:
        for decide in (lambda s: elect(s, replicas, live, unclean, 1),
                       lambda s: preferred(s, replicas, live, 1)):
            election = decide(state)
            if election is None:
                continue
            new = election.state
            assert new.leader_epoch >= state.leader_epoch
            assert (new.leader_epoch > state.leader_epoch) == (new.leader != state.leader)
            if new.has_leader:
                assert new.leader in replicas and new.leader in live
                assert new.leader in new.isr
                assert election.unclean or new.leader in state.isr
            assert new.isr and set(new.isr) <= set(replicas)
            state = new
            assert elect(state, replicas, live, unclean, 1) is None      # a decision is final


@given(situations(), brokers, brokers, st.booleans())
def test_a_restart_is_one_failure_and_one_return(start, live, restarted, unclean):
    """The leader a restart leaves is what a look at the gap, then one at the return, would
    leave, at most one epoch on; a restarted leader never keeps leading at its old epoch."""
    state, replicas = start
    election = elect(state, replicas, live, unclean, 1, restarted=restarted)
    gap = elect(state, replicas, live - restarted, False, 1)
    back = elect(gap.state if gap else state, replicas, live, unclean, 1)
    expected = (back or gap).state if (back or gap) else state
    new = election.state if election else state
    assert (new.leader, new.isr) == (expected.leader, expected.isr)
    assert new.leader_epoch in (state.leader_epoch, state.leader_epoch + 1)
    if state.leader in restarted & live:
        assert new.leader_epoch == state.leader_epoch + 1
    assert bool(election and election.unclean) == bool(back and back.unclean)
    assert elect(new, replicas, live, unclean, 1) is None          # a decision is final


def test_a_member_registered_after_the_state_was_written_restarted_since():
    from coordinator.election import restarted_since
    assert restarted_since(100, {0: 40, 1: 120, 2: 100}) == {1}
    assert restarted_since(100, {0: 40, 1: 90}) == frozenset()
    assert restarted_since(None, {0: 400}) == frozenset(), "no state node: nothing to compare"


def test_the_preferred_replica_is_not_moved_to_when_it_restarted_since_the_state():
    state = PartitionState(1, 4, (1, 0), 2)
    assert preferred(state, REPLICAS, {0, 1}, 5, restarted={0}) is None
    assert preferred(state, REPLICAS, {0, 1}, 5, restarted={1}) == Election(
        PartitionState(0, 5, (1, 0), 5))
