"""Rebalance planning (coordinator.rebalance): worked examples, and properties of the
cooperative plan over random groups."""
import doctest

import pytest
from hypothesis import given, settings, strategies as st

from coordinator import rebalance
from coordinator.rebalance import (CooperativePlan, RetryPolicy, Snapshot, changed,
                                   cooperative_plan, target)


def test_snapshot_change_detection_ignores_order():
    one = Snapshot.of({"c2": ["t"], "c1": ["t"]}, {"t": [3, 1, 2]})
    two = Snapshot.of({"c1": ["t"], "c2": ["t"]}, {"t": [1, 2, 3]})
    assert not changed(one, two)
    assert changed(None, one)
    assert changed(one, Snapshot.of({"c1": ["t"]}, {"t": [1, 2, 3]}))
    assert changed(one, Snapshot.of({"c1": ["t"], "c2": ["t"]}, {"t": [1, 2]}))


def test_target_is_my_range_share():
    snap = Snapshot.of({"c1": ["t"], "c2": ["t"]}, {"t": [0, 1, 2]})
    assert target(snap, "c1") == [("t", 0), ("t", 1)]
    assert target(snap, "c2") == [("t", 2)]
    assert target(snap, "stranger") == []


def test_retry_policy_validates():
    with pytest.raises(ValueError):
        RetryPolicy(0, 1.0)
    assert RetryPolicy().max_tries == 4 and RetryPolicy().backoff_s == 2.0


def test_the_module_examples_hold():
    assert doctest.testmod(rebalance).failed == 0


def test_a_member_that_left_is_planned_without_and_its_nodes_claimed_once_gone():
    snap = Snapshot.of({"a": ["t"], "b": ["t"]}, {"t": [0, 1, 2, 3]})
    owners = {"t": {0: "a", 1: "gone", 2: "b", 3: "gone"}}
    plan = cooperative_plan(snap, owners, "a")
    assert plan == CooperativePlan(goal=(("t", 0), ("t", 1)), give_up=(), claim=())
    expired = {"t": {0: "a", 2: "b"}}  # its session expired: ZooKeeper removed its nodes
    assert cooperative_plan(snap, expired, "a").claim == (("t", 1),)
    assert cooperative_plan(snap, expired, "b").claim == (("t", 3),)


def test_only_a_free_or_own_owner_node_is_claimed():
    snap = Snapshot.of({"a": ["t"]}, {"t": [0, 1]})
    owners = {"t": {0: "a", 1: "b"}}  # b's node is still there: b has not given it up yet
    plan = cooperative_plan(snap, owners, "a", owned=[])
    assert plan.goal == (("t", 0), ("t", 1)) and plan.claim == (("t", 0),)


# --- properties over random groups ---------------------------------------------------------

@st.composite
def groups(draw):
    """A snapshot and owner nodes: 1-6 members each subscribing to some of 1-3 topics, each
    partition owned by a member, by one that left, or by nobody."""
    topics = {f"t{i}": draw(st.integers(0, 12)) for i in range(draw(st.integers(1, 3)))}
    members = [f"m{i}" for i in range(draw(st.integers(1, 6)))]
    subscriptions = {m: draw(st.lists(st.sampled_from(sorted(topics)), min_size=1, unique=True))
                     for m in members}
    owners = {}
    for topic, count in topics.items():
        held = {}
        for partition in range(count):
            owner = draw(st.sampled_from(members + ["left", None]))
            if owner is not None:
                held[partition] = owner
        owners[topic] = held
    return Snapshot.of(subscriptions, {t: range(n) for t, n in topics.items()}), owners


def plans(snapshot, owners):
    return {m: cooperative_plan(snapshot, owners, m) for m in snapshot.consumers}


def held(owners, member, topic):
    return {p for p, m in owners.get(topic, {}).items() if m == member}


@settings(deadline=None)
@given(groups())
def test_goals_are_exclusive_and_cover_every_subscribed_partition(group):
    snapshot, owners = group
    goals = [tp for plan in plans(snapshot, owners).values() for tp in plan.goal]
    assert len(goals) == len(set(goals))
    subscribed = {t for _, ts in snapshot.subscriptions for t in ts}
    assert sorted(goals) == [(t, p) for t, ps in snapshot.partitions if t in subscribed
                             for p in ps]


@settings(deadline=None)
@given(groups())
def test_goals_are_balanced_per_topic_among_its_subscribers(group):
    snapshot, owners = group
    every = plans(snapshot, owners)
    for topic, _ in snapshot.partitions:
        sizes = [sum(1 for t, _ in every[m].goal if t == topic)
                 for m, ts in snapshot.subscriptions if topic in ts]
        assert not sizes or max(sizes) - min(sizes) <= 1


@settings(deadline=None)
@given(groups())
def test_the_target_is_a_fixed_point(group):
    snapshot, owners = group
    every = plans(snapshot, owners)
    at_target = {t: {p: m for m, plan in every.items() for tt, p in plan.goal if tt == t}
                 for t, _ in snapshot.partitions}
    again = plans(snapshot, at_target)
    assert {m: plan.goal for m, plan in again.items()} == {m: p.goal for m, p in every.items()}
    assert all(plan.give_up == () and plan.claim == () for plan in again.values())


@settings(deadline=None)
@given(groups())
def test_steps_settle_on_the_target(group):
    """Once the nodes of members that left are gone (their sessions expired), everyone gives
    up, then claims, as their plans say: two rounds reach the target."""
    snapshot, owners = group
    members = set(snapshot.consumers)
    owners = {t: {p: m for p, m in held.items() if m in members} for t, held in owners.items()}
    for _ in range(2):
        for member, plan in plans(snapshot, owners).items():
            for topic, partition in plan.give_up:
                del owners[topic][partition]
        for member in snapshot.consumers:
            for topic, partition in cooperative_plan(snapshot, owners, member).claim:
                assert owners[topic].get(partition) in (None, member)
                owners[topic][partition] = member
    for member, plan in plans(snapshot, owners).items():
        assert plan.give_up == () and plan.claim == ()
        assert set(plan.goal) == {(t, p) for t, held in owners.items()
                                  for p, m in held.items() if m == member}


@settings(deadline=None)
@given(groups())
def test_no_member_gives_up_a_partition_it_could_keep(group):
    """Fewest moves: a member keeps as many of its partitions as its share holds, and one
    that gives some up gets the smaller share only if every member with the larger one held
    at least as many."""
    snapshot, owners = group
    every = plans(snapshot, owners)
    for topic, _ in snapshot.partitions:
        share = {m: {p for t, p in every[m].goal if t == topic}
                 for m, ts in snapshot.subscriptions if topic in ts}
        mine = {m: held(owners, m, topic) for m in share}
        for m in share:
            assert len(mine[m] & share[m]) == min(len(mine[m]), len(share[m]))
            gives_up = {p for t, p in every[m].give_up if t == topic}
            assert gives_up == mine[m] - share[m]
            if gives_up:
                bigger = [o for o in share if len(share[o]) > len(share[m])]
                assert all(len(mine[o]) >= len(mine[m]) for o in bigger)
