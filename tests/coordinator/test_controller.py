"""The controller against a real ZooKeeper: brokers are real registrations (BrokerRegistration
ephemerals on kazoo clients of their own, whose sessions the tests close) or real broker
processes; the candidates under test run in-process on clients of their own."""
from __future__ import annotations

import json
import os

import pytest

from coordinator import paths, partition_state, topics
from coordinator import zk as zkconnect
from coordinator.controller import Controller, unclean_elections
from coordinator.partition_state import NO_LEADER, PartitionState
from coordinator.registry import BrokerInfo, BrokerRegistration
from tests.helpers import BrokerProcess, wait_for


@pytest.fixture
def sessions(zk):
    """``connect()``: a new kazoo session on the test's chroot, closed at teardown."""
    opened = []

    def connect():
        client = zkconnect.connect(zk)
        opened.append(client)
        return client
    yield connect
    for client in opened:
        client.stop()
        client.close()


@pytest.fixture
def brokers(sessions):
    """``register(*ids)``: broker registrations, each on a session of its own; returns
    {id: client} (``client.stop()`` is the broker's registration disappearing)."""
    def register(*ids):
        clients = {}
        for broker_id in ids:
            client = sessions()
            BrokerRegistration(client, BrokerInfo(broker_id, f"tcp://127.0.0.1:{1000 + broker_id}",
                                                  "", "127.0.0.1", os.getpid())).register()
            clients[broker_id] = client
        return clients
    return register


@pytest.fixture
def candidates(sessions):
    """``start(broker_id, **settings)``: a Controller on a session of its own; all closed after."""
    started = []

    def start(broker_id, **settings):
        client = sessions()
        controller = Controller(client, broker_id, **settings).start()
        started.append(controller)
        return controller
    yield start
    for controller in started:
        controller.close()


def reregister(connect, broker_id):
    """A broker's registration replaced by a new one on a new session, in one transaction
    (delete + create, moving /brokers/ids's version on as the registry does), so that no look
    at /brokers/ids can see the gap: what a restart does when the broker registers again
    before the controller looks."""
    client = connect()
    path = paths.broker(broker_id)
    data, stat = client.get(path)
    transaction = client.transaction()
    transaction.delete(path, version=stat.version)
    transaction.create(path, data, ephemeral=True)
    transaction.set_data(paths.BROKER_IDS, b"")
    results = transaction.commit()
    assert not any(isinstance(r, Exception) for r in results), results
    assert client.exists(path).czxid != stat.czxid
    return client


def looked(controller, ids):
    """The controller has read the registrations of exactly ``ids`` in a look."""
    return controller.is_controller and set(controller.registrations) == set(ids)


def state_of(client, topic, partition=0) -> PartitionState:
    return partition_state.read(client, topic, partition)[0]


def controller_epoch(client) -> int:
    return int(client.get(paths.CONTROLLER_EPOCH)[0])


def test_a_dead_leader_is_replaced_from_the_isr_with_the_next_epoch(zk_client, brokers,
                                                                    candidates):
    registered = brokers(0, 1, 2)
    placement = topics.create(zk_client, "t", 2, replication_factor=3)
    controller = candidates(9)
    wait_for(lambda: controller.is_controller, what="the only candidate to be the controller")
    first, second, third = placement.replicas[0]
    registered[first].stop()
    new = wait_for(lambda: (s := state_of(zk_client, "t")).leader != first and s,
                   what="a new leader of t/0")
    assert (new.leader, new.leader_epoch, new.isr) == (second, 1, (second, third))
    assert new.controller_epoch == controller.epoch == controller_epoch(zk_client)
    other = placement.replicas[1]
    moved = wait_for(lambda: (s := state_of(zk_client, "t", 1)).isr != other and s,
                     what="t/1 to drop the dead replica")
    expected_leader = other[0] if other[0] != first else other[1]
    assert moved.leader == expected_leader
    assert moved.isr == tuple(b for b in other if b != first)
    assert moved.leader_epoch == (0 if other[0] != first else 1)


def test_a_leader_that_registered_again_is_replaced_from_the_isr_with_the_next_epoch(
        zk_client, sessions, brokers, candidates):
    brokers(0, 1, 2)
    placement = topics.create(zk_client, "t", 2, replication_factor=3)
    controller = candidates(9)
    wait_for(lambda: looked(controller, (0, 1, 2)), what="the controller's first look")
    first, second, third = placement.replicas[0]
    reregister(sessions, first)
    new = wait_for(lambda: (s := state_of(zk_client, "t")).leader != first and s,
                   what="a new leader of t/0")
    assert (new.leader, new.leader_epoch, new.isr) == (second, 1, (second, third))
    other = placement.replicas[1]
    moved = wait_for(lambda: first not in (s := state_of(zk_client, "t", 1)).isr and s,
                     what="t/1 to drop the restarted replica from its ISR")
    expected_leader = other[0] if other[0] != first else other[1]
    assert moved.leader == expected_leader
    assert moved.isr == tuple(b for b in other if b != first)
    assert moved.leader_epoch == (0 if other[0] != first else 1)


def test_the_only_isr_member_that_registered_again_leads_at_the_next_epoch(zk_client, sessions,
                                                                          brokers, candidates):
    brokers(0, 1)
    placement = topics.create(zk_client, "t", 1, replication_factor=2)
    leader, follower = placement.replicas[0]
    state, version = partition_state.read(zk_client, "t", 0)
    partition_state.write(zk_client, "t", 0, state.with_isr((leader,)), version)  # follower lags
    controller = candidates(5, unclean_leader_election=True)
    wait_for(lambda: looked(controller, (0, 1)), what="the controller's first look")
    reregister(sessions, leader)
    again = wait_for(lambda: (s := state_of(zk_client, "t")).leader_epoch > 0 and s,
                     what="t/0 to be led at a new epoch")
    assert (again.leader, again.leader_epoch, again.isr) == (leader, 1, (leader,))
    assert unclean_elections(zk_client, "t", 0) is None


def test_a_new_controller_takes_no_first_sighting_for_a_restart(zk_client, sessions, brokers,
                                                               candidates):
    brokers(0, 1, 2)
    placement = topics.create(zk_client, "t", 2, replication_factor=3)
    a = candidates(8)
    wait_for(lambda: looked(a, (0, 1, 2)), what="the first controller's first look")
    b = candidates(9)
    a.client.stop()
    wait_for(lambda: looked(b, (0, 1, 2)), what="the new controller's first look")
    first, second, third = placement.replicas[0]
    reregister(sessions, first)                 # the new controller does see a restart ...
    new = wait_for(lambda: (s := state_of(zk_client, "t")).leader != first and s,
                   what="a new leader of t/0")
    assert (new.leader, new.leader_epoch) == (second, 1)     # ... and took over with no other
    other = state_of(zk_client, "t", 1)
    assert other.leader_epoch == (0 if placement.replicas[1][0] != first else 1)


def test_a_restart_no_controller_saw_is_found_by_the_next_one_from_the_state(zk_client, sessions,
                                                                         brokers, candidates):
    """The restarted broker was the controller, say: the one that takes office never saw its
    old registration, but the state node was written before the new one was created."""
    brokers(0, 1, 2)
    placement = topics.create(zk_client, "t", 2, replication_factor=3)
    a = candidates(8)
    wait_for(lambda: looked(a, (0, 1, 2)), what="the first controller's first look")
    a.close()
    first, second, third = placement.replicas[0]
    reregister(sessions, first)
    b = candidates(9)
    new = wait_for(lambda: (s := state_of(zk_client, "t")).leader != first and s,
                   what="the new controller to replace the restarted leader of t/0")
    assert (new.leader, new.leader_epoch, new.isr) == (second, 1, (second, third))
    moved = wait_for(lambda: first not in (s := state_of(zk_client, "t", 1)).isr and s,
                     what="t/1 to drop the restarted replica from its ISR")
    assert moved.isr == tuple(r for r in placement.replicas[1] if r != first)
    wait_for(lambda: looked(b, (0, 1, 2)), what="the new controller's look")
    b.close()
    c = candidates(10)
    wait_for(lambda: looked(c, (0, 1, 2)), what="a later controller's look")
    assert state_of(zk_client, "t") == new, "once written, the restart is not decided again"


def test_one_controller_at_a_time_and_the_other_takes_over_with_a_new_epoch(zk_client, brokers,
                                                                            candidates):
    brokers(0)
    a, b = candidates(0), candidates(1)
    winner = wait_for(lambda: [c for c in (a, b) if c.is_controller], what="a controller")
    assert len(winner) == 1
    winner, loser = winner[0], (b if winner[0] is a else a)
    node = json.loads(zk_client.get(paths.CONTROLLER)[0])
    assert node == {"broker": winner.broker_id, "epoch": winner.epoch}
    assert controller_epoch(zk_client) == winner.epoch
    before = winner.epoch
    winner.client.stop()                                   # its session ends
    wait_for(lambda: loser.is_controller, what="the other candidate to take over")
    assert loser.epoch == before + 1 == controller_epoch(zk_client)
    assert json.loads(zk_client.get(paths.CONTROLLER)[0]) == {"broker": loser.broker_id,
                                                              "epoch": before + 1}


def test_unclean_election_off_leaves_no_leader_and_on_elects_an_out_of_sync_replica_counted(
        zk_client, brokers, candidates, caplog):
    registered = brokers(0, 1)
    placement = topics.create(zk_client, "t", 1, replication_factor=2)
    leader, follower = placement.replicas[0]
    state, version = partition_state.read(zk_client, "t", 0)
    partition_state.write(zk_client, "t", 0, state.with_isr((leader,)), version)  # follower lags
    clean = candidates(5, unclean_leader_election=False)
    wait_for(lambda: clean.is_controller, what="the controller")
    registered[leader].stop()
    none = wait_for(lambda: (s := state_of(zk_client, "t")).leader != leader and s,
                    what="t/0 to lose its leader")
    assert (none.leader, none.leader_epoch, none.isr) == (NO_LEADER, 1, (leader,))
    assert unclean_elections(zk_client, "t", 0) is None
    clean.close()
    with caplog.at_level("WARNING", logger="coordinator.controller"):
        unclean = candidates(6, unclean_leader_election=True)
        elected = wait_for(lambda: (s := state_of(zk_client, "t")).has_leader and s,
                           what="an unclean leader of t/0")
    assert (elected.leader, elected.leader_epoch, elected.isr) == (follower, 2, (follower,))
    assert elected.controller_epoch == unclean.epoch == 2
    record = unclean_elections(zk_client, "t", 0)
    assert (record["count"], record["elected"], record["isr_before"]) == (1, follower, [leader])
    assert any("UNCLEAN" in r.getMessage() and "t/0" in r.getMessage() for r in caplog.records)


def test_a_leaderless_partition_is_led_by_its_isr_member_when_it_returns(zk_client, brokers,
                                                                        candidates):
    registered = brokers(0, 1)
    placement = topics.create(zk_client, "t", 1, replication_factor=2)
    leader, follower = placement.replicas[0]
    state, version = partition_state.read(zk_client, "t", 0)
    partition_state.write(zk_client, "t", 0, state.with_isr((leader,)), version)
    controller = candidates(5)
    wait_for(lambda: controller.is_controller, what="the controller")
    registered[leader].stop()
    wait_for(lambda: not state_of(zk_client, "t").has_leader, what="t/0 to lose its leader")
    brokers(leader)                                          # it registers again
    back = wait_for(lambda: (s := state_of(zk_client, "t")).has_leader and s,
                    what="the returning ISR member to lead")
    assert (back.leader, back.leader_epoch, back.isr) == (leader, 2, (leader,))
    assert unclean_elections(zk_client, "t", 0) is None


def test_preferred_leader_rebalance_moves_leadership_back_once_in_sync(zk_client, brokers,
                                                                       candidates):
    brokers(0, 1)
    placement = topics.create(zk_client, "t", 1, replication_factor=2)
    first, second = placement.replicas[0]
    state, version = partition_state.read(zk_client, "t", 0)
    partition_state.write(zk_client, "t", 0, state.elected(second, (second,), 0), version)
    controller = candidates(5, leader_imbalance_check_ms=100)
    wait_for(lambda: controller.is_controller, what="the controller")
    _, version = partition_state.read(zk_client, "t", 0)
    assert state_of(zk_client, "t").leader == second           # not in sync: it stays
    partition_state.write(zk_client, "t", 0, PartitionState(second, 1, (second, first)), version)
    moved = wait_for(lambda: (s := state_of(zk_client, "t")).leader == first and s,
                     what="the preferred replica to lead again")
    assert (moved.leader_epoch, moved.isr) == (2, (second, first))


def test_a_stale_controllers_write_fails_and_it_steps_down(zk_client, brokers, candidates):
    registered = brokers(0, 1)
    placement = topics.create(zk_client, "t", 1, replication_factor=2)
    leader, follower = placement.replicas[0]
    stale = candidates(5)
    wait_for(lambda: stale.is_controller, what="the controller")
    old = stale.epoch
    zk_client.set(paths.CONTROLLER_EPOCH, str(old + 5).encode())   # another was elected since
    registered[leader].stop()
    wait_for(lambda: controller_epoch(zk_client) == old + 6 and stale.is_controller,
             what="the fenced controller to step down and win a new epoch")
    new = wait_for(lambda: (s := state_of(zk_client, "t")).leader == follower and s,
                   what="the new leader")
    assert new.controller_epoch == old + 6      # the decision of epoch `old` was never written
    assert partition_state.read(zk_client, "t", 0)[1] == 1


def test_brokers_run_the_controller_and_elect_a_new_leader_when_one_stops(zk, zk_client,
                                                                          tmp_path):
    procs = [BrokerProcess(zk, tmp_path, i).start() for i in (0, 1)]
    try:
        wait_for(lambda: zk_client.exists(paths.CONTROLLER), what="a broker to be the controller")
        placement = topics.create(zk_client, "t", 1, replication_factor=2)
        leader, follower = placement.replicas[0]
        procs[leader].stop()
        new = wait_for(lambda: (s := state_of(zk_client, "t")).leader == follower and s,
                       what="the other broker to lead t/0")
        assert (new.leader_epoch, new.isr) == (1, (follower,))
        controller = json.loads(zk_client.get(paths.CONTROLLER)[0])
        assert controller["broker"] == follower
    finally:
        for proc in procs:
            proc.stop()


def test_the_unclean_count_is_written_in_the_electing_transaction(zk_client, brokers,
                                                                  candidates):
    """One transaction: the state node that elects uncleanly and the count carry one zxid, so no
    crash between two writes can leave an unclean election uncounted."""
    registered = brokers(0, 1)
    placement = topics.create(zk_client, "t", 1, replication_factor=2)
    leader, follower = placement.replicas[0]
    state, version = partition_state.read(zk_client, "t", 0)
    partition_state.write(zk_client, "t", 0, state.with_isr((leader,)), version)
    controller = candidates(5, unclean_leader_election=True)
    wait_for(lambda: controller.is_controller, what="the controller")
    registered[leader].stop()
    wait_for(lambda: state_of(zk_client, "t").leader == follower, what="the unclean election")
    counted = wait_for(lambda: zk_client.exists(paths.partition_unclean("t", 0)),
                       what="the unclean count")
    assert counted.mzxid == zk_client.exists(paths.partition_state("t", 0)).mzxid
    assert unclean_elections(zk_client, "t", 0)["count"] == 1


class _RestartInTheWindow(Controller):
    """A controller whose look is followed, once armed, by a broker's restart (its registration
    replaced, as the registry registers) before it writes what it decided on that look."""

    armed: tuple | None = None

    def _read_registrations(self):
        found = super()._read_registrations()
        if self.armed is not None:
            connect, broker_id, restarted = self.armed
            self.armed = None
            restarted.append(reregister(connect, broker_id))
        return found


def test_a_restart_between_the_look_and_the_write_is_not_elected(zk, zk_client, sessions,
                                                                 brokers):
    """The leader goes; in the window between the controller's look and its write, the next ISR
    member restarts (a new registration, maybe an empty disk). The write must not go through on
    that look: the restarted one counts as failed and returned, and the third leads."""
    registered = brokers(0, 1, 2)
    placement = topics.create(zk_client, "t", 1, replication_factor=3)
    leader, second, third = replicas = placement.replicas[0]
    state, version = partition_state.read(zk_client, "t", 0)
    partition_state.write(zk_client, "t", 0, PartitionState(leader, 3, replicas), version)
    controller = _RestartInTheWindow(sessions(), 9)
    try:
        controller.start()
        wait_for(lambda: looked(controller, {0, 1, 2}), what="the controller's first look")
        restarted = []
        controller.armed = (sessions, second, restarted)
        registered[leader].stop()
        new = wait_for(lambda: (s := state_of(zk_client, "t")).leader == third and s,
                       what="the third replica to lead t/0")
        assert restarted
        assert (new.leader_epoch, new.isr) == (4, (third,))      # one election, no detour
    finally:
        controller.close()
