"""The Kafka group state machine (broker/kafka/group_coordinator.py), without sockets."""
import doctest
import itertools

import pytest

from broker.kafka import group_coordinator
from broker.kafka.group_coordinator import (Error, Group, GroupCoordinator, GroupSettings,
                                            JoinResult, State, SyncResult)

RANGE = [("range", b"r")]


def numbered_ids():
    counter = itertools.count(1)
    return lambda client_id: f"{client_id}-{next(counter)}"


def new_group(**settings) -> Group:
    return Group("g", GroupSettings(**settings), numbered_ids())


def join(g, waiter, member_id="", client="c", now=0.0, protocols=RANGE, instance=None,
         session_ms=10000, rebalance_ms=30000, known=False):
    return g.join(waiter, member_id, instance, client, "host", session_ms, rebalance_ms,
                  "consumer", protocols, now, require_known_member=known)


def by_waiter(replies):
    return {w: r for w, r in replies}


def stable_pair(g):
    """Members a-1 (leader) and b-2 in generation 2, STABLE, assignments b'A' and b'B'."""
    join(g, "ja", client="a")
    g.sync("sa", "a-1", 1, None, {"a-1": b"A"}, 0.0)
    join(g, "jb", client="b")
    join(g, "ja", "a-1", client="a")
    g.sync("sb", "b-2", 2, None, {}, 0.0)
    g.sync("sa", "a-1", 2, None, {"a-1": b"A", "b-2": b"B"}, 0.0)
    assert g.state is State.STABLE and g.generation == 2


def test_docstring_examples():
    assert doctest.testmod(group_coordinator).failed == 0


def test_join_v4_without_a_member_id_is_handed_one_and_expected_back():
    g = new_group()
    [(waiter, result)] = join(g, "j1", known=True)
    assert (waiter, result.error, result.member_id) == ("j1", Error.MEMBER_ID_REQUIRED, "c-1")
    assert g.members == {} and g.state is State.EMPTY
    replies = join(g, "j2", "c-1", known=True)
    assert [(w, r.error, r.generation, r.leader) for w, r in replies] == [("j2", 0, 1, "c-1")]


def test_pending_member_holds_the_rebalance_until_it_rejoins_or_expires():
    g = new_group()
    join(g, "ja", client="a")
    g.sync("sa", "a-1", 1, None, {}, 0.0)
    join(g, "jb", client="b", known=True, now=1.0)
    assert g.pending == {"b-2": 11.0}
    join(g, "jx", client="x", now=1.0)                         # x-3 joins: a rebalance starts
    assert join(g, "ja2", "a-1", client="a", now=1.5) == []    # held: b-2 is expected
    assert g.next_deadline() == 11.0
    replies = by_waiter(g.tick(11.0))                          # b-2 never came back
    assert set(replies) == {"jx", "ja2"} and replies["ja2"].generation == 2
    assert g.pending == {}


def test_unknown_member_and_illegal_generation():
    g = new_group()
    stable_pair(g)
    assert join(g, "jz", "zz-9")[0][1].error == Error.UNKNOWN_MEMBER_ID
    assert g.heartbeat("zz-9", 2, None, 1.0) == Error.UNKNOWN_MEMBER_ID
    assert g.heartbeat("b-2", 1, None, 1.0) == Error.ILLEGAL_GENERATION
    assert g.sync("s", "b-2", 1, None, {}, 1.0)[0][1].error == Error.ILLEGAL_GENERATION
    assert g.heartbeat("b-2", 2, None, 1.0) == Error.NONE


def test_stable_sync_answers_the_current_assignment_at_once():
    g = new_group()
    stable_pair(g)
    assert g.sync("s", "b-2", 2, None, {}, 1.0) == [("s", SyncResult(0, "consumer", "range", b"B"))]


def test_a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_dropped():
    g = new_group()
    stable_pair(g)
    assert join(g, "jc", client="c", now=10.0, rebalance_ms=5000) == []   # c-3: rebalance
    assert g.heartbeat("a-1", 2, None, 11.0) == Error.REBALANCE_IN_PROGRESS
    assert join(g, "ja3", "a-1", client="a", now=12.0) == []              # b-2 never rejoins
    assert g.next_deadline() <= 40.0
    replies = by_waiter(g.tick(40.0))       # largest rebalance timeout: 30 s from 10.0
    assert set(replies) == {"jc", "ja3"}
    assert sorted(g.members) == ["a-1", "c-3"] and g.generation == 3
    assert [m for m, _, _ in replies["ja3"].members] == ["a-1", "c-3"]
    assert g.heartbeat("b-2", 2, None, 41.0) == Error.UNKNOWN_MEMBER_ID


def test_session_expiry_of_a_stable_member_starts_a_rebalance():
    g = new_group()
    stable_pair(g)
    assert g.heartbeat("a-1", 2, None, 5.0) == Error.NONE
    assert g.next_deadline() == 10.0                           # b-2's session, from its sync
    assert g.tick(9.9) == [] and g.state is State.STABLE
    assert g.tick(10.0) == []
    assert g.state is State.PREPARING_REBALANCE and list(g.members) == ["a-1"]
    assert g.heartbeat("a-1", 2, None, 10.5) == Error.REBALANCE_IN_PROGRESS
    [(w, r)] = join(g, "ja", "a-1", client="a", now=11.0)
    assert (r.generation, r.leader, [m for m, _, _ in r.members]) == (3, "a-1", ["a-1"])


def test_a_parked_join_keeps_its_member_alive_past_its_session():
    g = new_group()
    stable_pair(g)
    join(g, "jc", client="c", now=1.0)
    join(g, "ja", "a-1", client="a", now=1.0)
    for t in (9.0, 18.0, 27.0):          # b-2 heartbeats (and is told to rejoin) ...
        assert g.heartbeat("b-2", 2, None, t) == Error.REBALANCE_IN_PROGRESS
        assert g.tick(t) == []           # ... a-1's and c-3's sessions (11.0) pass: parked
    assert sorted(g.members) == ["a-1", "b-2", "c-3"]
    replies = by_waiter(g.tick(31.0))    # the rebalance timeout drops b-2
    assert set(replies) == {"ja", "jc"} and sorted(g.members) == ["a-1", "c-3"]


def test_the_leader_expiring_hands_leadership_on():
    g = new_group()
    stable_pair(g)
    g.heartbeat("b-2", 2, None, 9.0)
    g.tick(10.5)                          # a-1 (leader) expired at 10.0
    [(w, r)] = join(g, "jb", "b-2", client="b", now=11.0)
    assert r.leader == "b-2" and r.members


def test_leave_rebalances_and_answers_the_leavers_parked_join():
    g = new_group()
    stable_pair(g)
    assert g.leave("b-2", None, 1.0) == (Error.NONE, [])
    assert g.state is State.PREPARING_REBALANCE
    [(w, r)] = join(g, "ja", "a-1", client="a", now=1.5)
    assert r.generation == 3
    error, replies = g.leave("zz", None, 2.0)
    assert error == Error.UNKNOWN_MEMBER_ID and replies == []
    join(g, "jb", client="b", now=3.0)                     # b-4 parked
    error, replies = g.leave("b-3", None, 3.1)             # its id was b-3
    assert error == Error.NONE
    assert replies == [("jb", JoinResult(Error.UNKNOWN_MEMBER_ID, member_id="b-3"))]


def test_the_last_member_leaving_empties_the_group():
    g = new_group()
    stable_pair(g)
    g.leave("a-1", None, 1.0)
    g.leave("b-2", None, 1.0)
    assert g.state is State.EMPTY and g.members == {} and g.generation == 3
    assert g.check_commit("", -1, None) == Error.NONE
    assert g.next_deadline() is None


def test_follower_rejoin_with_the_same_metadata_keeps_the_generation():
    g = new_group()
    stable_pair(g)
    [(w, r)] = join(g, "jb", "b-2", client="b", now=1.0)
    assert (r.error, r.generation, r.members) == (0, 2, [])
    assert g.state is State.STABLE


def test_cooperative_rejoin_pattern():
    """cooperative-sticky: a member joins, the leader's first assignment only revokes, the
    members that gave partitions up rejoin at once with their new owned partitions in their
    metadata, and a second rebalance hands the revoked partitions out."""
    g = new_group()
    coop = lambda owned: [("cooperative-sticky", owned)]
    join(g, "ja", client="a", protocols=coop(b""))
    g.sync("sa", "a-1", 1, None, {"a-1": b"p0p1"}, 0.0)
    assert join(g, "jb", client="b", protocols=coop(b""), now=1.0) == []
    replies = by_waiter(join(g, "ja", "a-1", client="a", protocols=coop(b"p0p1"), now=1.1))
    assert replies["ja"].protocol == "cooperative-sticky" and replies["ja"].generation == 2
    g.sync("sb", "b-2", 2, None, {}, 1.2)
    synced = by_waiter(g.sync("sa", "a-1", 2, None, {"a-1": b"p0", "b-2": b""}, 1.2))
    assert synced["sa"].assignment == b"p0" and synced["sb"].assignment == b""
    # a-1 revoked p1: it rejoins with changed metadata; the group rebalances again.
    assert join(g, "ja", "a-1", client="a", protocols=coop(b"p0"), now=1.3) == []
    assert g.heartbeat("b-2", 2, None, 1.4) == Error.REBALANCE_IN_PROGRESS
    assert g.check_commit("b-2", 2, None) == Error.NONE      # may still commit what it read
    replies = by_waiter(join(g, "jb", "b-2", client="b", protocols=coop(b""), now=1.5))
    assert {r.generation for r in replies.values()} == {3}
    assert g.check_commit("b-2", 3, None) == Error.REBALANCE_IN_PROGRESS
    g.sync("sb", "b-2", 3, None, {}, 1.6)
    synced = by_waiter(g.sync("sa", "a-1", 3, None, {"a-1": b"p0", "b-2": b"p1"}, 1.6))
    assert synced["sb"].assignment == b"p1" and g.state is State.STABLE
    assert g.check_commit("b-2", 3, None) == Error.NONE
    assert g.check_commit("b-2", 2, None) == Error.ILLEGAL_GENERATION


def test_protocol_selection_and_inconsistent_protocols():
    g = new_group()
    join(g, "ja", client="a", protocols=[("cooperative-sticky", b"1"), ("range", b"2")])
    g.sync("sa", "a-1", 1, None, {}, 0.0)
    assert g.protocol == "cooperative-sticky"
    [(w, r)] = join(g, "jx", client="x", protocols=[("roundrobin", b"")])
    assert r.error == Error.INCONSISTENT_GROUP_PROTOCOL
    join(g, "jb", client="b", protocols=[("range", b"3")])
    replies = by_waiter(join(g, "ja", "a-1", client="a",
                             protocols=[("cooperative-sticky", b"1"), ("range", b"2")]))
    assert replies["ja"].protocol == "range"
    assert [md for _, _, md in replies["ja"].members] == [b"2", b"3"]
    other_type = g.join("jt", "", None, "t", "h", 10000, 30000, "connect", RANGE, 0.0, False)
    assert other_type[0][1].error == Error.INCONSISTENT_GROUP_PROTOCOL


def test_session_timeout_bounds():
    g = new_group(min_session_timeout_ms=6000)
    assert join(g, "j", session_ms=5999)[0][1].error == Error.INVALID_SESSION_TIMEOUT
    assert join(g, "j", session_ms=6000)[0][1].error == Error.NONE


def test_leader_that_never_syncs_is_dropped_after_the_rebalance_timeout():
    g = new_group()
    stable_pair(g)
    join(g, "jb", "b-2", client="b", protocols=[("range", b"new")], now=1.0, rebalance_ms=5000)
    replies = by_waiter(join(g, "ja", "a-1", client="a", now=1.0, rebalance_ms=5000))
    assert g.state is State.COMPLETING_REBALANCE
    assert g.sync("sb", "b-2", 3, None, {}, 2.0) == []
    assert g.heartbeat("b-2", 3, None, 3.0) == Error.NONE
    assert g.next_deadline() == 6.0     # the sync deadline: 5 s after the join completed
    replies = g.tick(6.0)
    assert replies == [("sb", SyncResult(Error.REBALANCE_IN_PROGRESS))]
    assert list(g.members) == ["b-2"] and g.state is State.PREPARING_REBALANCE


def test_a_second_leader_sync_does_not_override_the_stable_assignment():
    g = new_group()
    stable_pair(g)
    assert g.sync("s", "a-1", 2, None, {"a-1": b"X"}, 1.0)[0][1].assignment == b"A"
    assert g.assignments() == {"a-1": b"A", "b-2": b"B"}


def test_static_member_restart_takes_its_place_without_a_rebalance():
    g = new_group()
    join(g, "ja", client="a", instance="ia")
    join(g, "ja", "a-1", client="a", instance="ia")
    g.sync("sa", "a-1", 1, None, {"a-1": b"A"}, 0.0)
    join(g, "jb", client="b", instance="ib", known=True)     # static: no MEMBER_ID_REQUIRED
    by_waiter(join(g, "ja", "a-1", client="a", instance="ia"))
    g.sync("sb", "b-2", 2, None, {}, 0.0)
    g.sync("sa", "a-1", 2, None, {"a-1": b"A", "b-2": b"B"}, 0.0)
    # b restarts: a new member id, the same generation and assignment, no rebalance.
    [(w, r)] = join(g, "jb2", client="b", instance="ib", now=5.0)
    assert (r.error, r.generation, r.member_id) == (0, 2, "b-3")
    assert g.state is State.STABLE
    assert g.sync("sb2", "b-3", 2, "ib", {}, 5.1)[0][1].assignment == b"B"
    assert g.heartbeat("b-2", 2, "ib", 5.2) == Error.FENCED_INSTANCE_ID
    assert g.heartbeat("b-2", 2, None, 5.2) == Error.UNKNOWN_MEMBER_ID
    assert g.check_commit("b-2", 2, "ib") == Error.FENCED_INSTANCE_ID
    # a LeaveGroup v3+ may name the static member by its instance id alone.
    assert g.leave("", "ib", 6.0) == (Error.NONE, [])
    assert list(g.members) == ["a-1"] and g.state is State.PREPARING_REBALANCE


def test_commits_outside_the_group_protocol():
    g = new_group()
    assert g.check_commit("", -1, None) == Error.NONE
    stable_pair(g)
    assert g.check_commit("", -1, None) == Error.UNKNOWN_MEMBER_ID
    assert g.check_commit("a-1", 2, None) == Error.NONE


def test_initial_rebalance_delay_gathers_the_first_members():
    g = new_group(initial_rebalance_delay_s=3.0)
    assert join(g, "ja", client="a", now=0.0) == []
    assert join(g, "jb", client="b", now=1.0) == []
    assert g.next_deadline() == 3.0
    replies = by_waiter(g.tick(3.0))
    assert set(replies) == {"ja", "jb"} and replies["ja"].generation == 1


def test_coordinator_forget_answers_parked_requests_not_coordinator():
    c = GroupCoordinator(GroupSettings(), numbered_ids())
    g = c.group("g")
    join(g, "ja", client="a")
    join(g, "jb", client="b")
    assert c.next_deadline() is not None
    replies = c.forget("g")
    assert replies == [("jb", JoinResult(Error.NOT_COORDINATOR, member_id="b-2"))]
    assert c.groups == {}


def test_settings_are_validated():
    with pytest.raises(ValueError):
        GroupSettings(min_session_timeout_ms=10, max_session_timeout_ms=5)
    with pytest.raises(ValueError):
        GroupSettings(initial_rebalance_delay_s=-1)
