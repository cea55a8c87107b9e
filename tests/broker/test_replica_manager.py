"""Roles from the state nodes (broker/replica_manager.py) against a real ZooKeeper, without a
broker process: the ReplicaManager is driven as the request loop drives it (``maintain``), and
state nodes are written with ``partition_state.write``, as the controller writes them."""
import time

import pytest

from broker.config import BrokerConfig, LogConfig
from broker.error_counts import ErrorCounts
from broker.log import Log
from broker.message import encode_set
from broker.replica_manager import ReplicaManager
from cluster.drills.netproxy import BlackholeProxy
from coordinator import partition_state, paths
from coordinator import zk as zkconnect
from coordinator.errors import NotLeader
from coordinator.partition_state import NOT_WRITTEN, PartitionState
from tests.helpers import wait_for

TOPIC = "roles"


class Calls:
    """What the manager told the broker: high watermarks, lost leaderships, follows."""

    def __init__(self, manager: ReplicaManager):
        self.hw, self.lost, self.follows = [], [], []
        manager.on_high_watermark = lambda r: self.hw.append(r.hw)
        manager.on_lost_leadership = lambda r: self.lost.append(r.epoch)
        manager.on_follow = lambda r: self.follows.append((r.role, r.leader, r.epoch))


@pytest.fixture
def manager_of(zk, zk_client, tmp_path):
    made = []

    def make(broker_id=0, lag_ms=60_000):
        config = BrokerConfig(broker_id, str(tmp_path / f"b{broker_id}"), zk,
                              replica_lag_time_max_ms=lag_ms)
        manager = ReplicaManager(config, zk_client, ErrorCounts())
        made.append(manager)
        return manager, Calls(manager)

    yield make
    for manager in made:
        manager.close()
        for replica in manager.partitions.values():
            replica.log.close()


def open_log(tmp_path, name="log") -> Log:
    return Log(tmp_path / name, LogConfig(visible_after_flush=False))


def settle(manager, until, what):
    """Run the loop's ``maintain`` until ``until()`` holds (the DataWatch is asynchronous)."""
    return wait_for(lambda: manager.maintain(time.monotonic()) or until(), what=what)


def lead(manager, zk_client, tmp_path, min_insync=1):
    """Partition 0 of TOPIC on replicas (0, 1), written with 0 as leader in epoch 0, added to
    ``manager`` (broker 0) and settled into its leadership: the log and the replica."""
    partition_state.write(zk_client, TOPIC, 0, PartitionState(0, 0, (0, 1)), NOT_WRITTEN)
    log = open_log(tmp_path)
    manager.add(TOPIC, 0, (0, 1), min_insync, log)
    replica = manager.get(TOPIC, 0)
    settle(manager, lambda: replica.role == "leader", "the leadership")
    return log, replica


def test_a_single_replica_partition_is_led_at_once_and_its_hw_is_the_log_end(manager_of,
                                                                             tmp_path):
    manager, calls = manager_of()
    log = open_log(tmp_path)
    manager.add(TOPIC, 0, (0,), 1, log)
    replica = manager.get(TOPIC, 0)
    assert (replica.role, replica.epoch, replica.isr, replica.hw) == ("leader", 0, (0,), 0)
    log.append(encode_set([(None, b"x")]), 1)
    manager.appended(replica)
    assert replica.hw == log.end_offset and calls.hw == [log.end_offset]
    assert log.epochs.entries == [(0, 0)]


def test_a_single_replica_partition_takes_its_state_nodes_epoch(manager_of, zk_client,
                                                                tmp_path):
    """Led at once (as before), but in the epoch its state node says: the controller moves an
    R = 1 partition's epoch on when its broker restarts, and METADATA must show that one."""
    manager, calls = manager_of(broker_id=0)
    partition_state.write(zk_client, TOPIC, 0, PartitionState(0, 3, (0,)), NOT_WRITTEN)
    log = open_log(tmp_path)
    log.append(encode_set([(None, b"x")]), 1)
    manager.add(TOPIC, 0, (0,), 1, log)
    replica = manager.get(TOPIC, 0)
    assert replica.role == "leader"
    settle(manager, lambda: replica.epoch == 3, "the state node's epoch")
    assert replica.describe()["leader_epoch"] == 3 and replica.role == "leader"
    assert log.epochs.entries[-1] == (3, log.end_offset)
    state, version = partition_state.read(zk_client, TOPIC, 0)
    version = partition_state.write(zk_client, TOPIC, 0, state.elected(-1, (0,), 1), version)
    partition_state.write(zk_client, TOPIC, 0, PartitionState(0, 5, (0,), 1), version)
    settle(manager, lambda: replica.epoch == 5, "the next epoch")
    assert (replica.role, replica.isr, replica.hw) == ("leader", (0,), log.end_offset)
    assert calls.lost == []

def test_roles_follow_the_state_node_and_never_go_back_an_epoch(manager_of, zk_client,
                                                                tmp_path):
    manager, calls = manager_of(broker_id=0)
    partition_state.write(zk_client, TOPIC, 0, PartitionState(0, 0, (0, 1, 2)), NOT_WRITTEN)
    log = open_log(tmp_path)
    manager.add(TOPIC, 0, (0, 1, 2), 2, log)
    replica = manager.get(TOPIC, 0)
    settle(manager, lambda: replica.role == "leader", "the initial leadership")
    state, version = partition_state.read(zk_client, TOPIC, 0)
    partition_state.write(zk_client, TOPIC, 0, state.elected(1, (1, 2), 1), version)
    settle(manager, lambda: replica.role == "follower", "following the new leader")
    assert (replica.leader, replica.epoch) == (1, 1) and calls.lost == [1]
    assert calls.follows[-1] == ("follower", 1, 1)
    manager.apply(replica, PartitionState(0, 0, (0, 1, 2)), 0)
    assert (replica.role, replica.leader, replica.epoch) == ("follower", 1, 1), "a stale state"
    state, version = partition_state.read(zk_client, TOPIC, 0)
    partition_state.write(zk_client, TOPIC, 0, state.elected(0, (1, 2, 0), 1), version)
    settle(manager, lambda: replica.role == "leader", "leading again")
    assert replica.epoch == 2 and log.epochs.latest_epoch == 2


def test_the_hw_uses_a_shrunk_isr_only_once_it_is_written(manager_of, zk_client, tmp_path):
    manager, calls = manager_of(broker_id=0, lag_ms=1)
    log, replica = lead(manager, zk_client, tmp_path, min_insync=1)
    log.append(encode_set([(None, b"m")]), 1)
    manager.appended(replica)
    assert replica.hw == 0, "follower 1 has not fetched it"
    zk_client.stop()                 # cut off from ZooKeeper: the shrink cannot be written
    try:
        manager.maintain(time.monotonic() + 1)      # a second on: past the 1 ms lag time
        assert replica.isr == (0, 1) and replica.hw == 0, "shrunk in memory only: no HW move"
    finally:
        zk_client.start()
    settle(manager, lambda: replica.isr == (0,), "the shrink, written once connected")
    assert partition_state.read(zk_client, TOPIC, 0)[0].isr == (0,)
    assert replica.hw == log.end_offset and calls.hw[-1] == log.end_offset


def test_acks_all_is_judged_by_a_shrink_in_flight_before_it_is_applied(manager_of, zk_client,
                                                                       tmp_path):
    """The shrink reaches ZooKeeper before ``maintain`` applies it; a produce judged by the old
    ISR in between was accepted, then acknowledged by the leader alone once the shrink landed
    (test_replication's stopped-follower test caught it in a full run)."""
    manager, _ = manager_of(broker_id=0, lag_ms=1)
    log, replica = lead(manager, zk_client, tmp_path, min_insync=2)
    assert manager.in_sync_for_acks(replica) == (0, 1)
    manager.maintain(time.monotonic() + 1)      # past the lag time: the shrink is handed over
    assert replica.isr == (0, 1), "not applied before a later maintain collects its outcome"
    assert manager.in_sync_for_acks(replica) == (0,), "acks=all sees the shrink at once"
    settle(manager, lambda: replica.isr == (0,), "the shrink applied")
    assert manager.in_sync_for_acks(replica) == (0,)


def test_a_stale_isr_write_rereads_the_state_and_obeys_it(manager_of, zk_client, tmp_path):
    manager, calls = manager_of(broker_id=0, lag_ms=1)
    log, replica = lead(manager, zk_client, tmp_path, min_insync=1)
    manager.stop_watching()          # no more watch events: only the failed write tells
    state, version = partition_state.read(zk_client, TOPIC, 0)
    partition_state.write(zk_client, TOPIC, 0, state.elected(1, (1,), 1), version)
    log.append(encode_set([(None, b"m")]), 1)
    settle(manager, lambda: replica.role == "follower", "the stale write to re-read")
    assert (replica.leader, replica.epoch) == (1, 1) and calls.lost == [1]
    assert replica.hw == 0, "the leader never acknowledged past its followers"
    assert partition_state.read(zk_client, TOPIC, 0)[0] == state.elected(1, (1,), 1)


def test_an_isr_member_fetching_below_the_end_it_reached_leaves_the_isr_at_once(manager_of,
                                                                                zk_client,
                                                                                tmp_path):
    manager, calls = manager_of(broker_id=0)          # a lag time of a minute
    partition_state.write(zk_client, TOPIC, 0, PartitionState(0, 0, (0, 1, 2)), NOT_WRITTEN)
    log = open_log(tmp_path)
    manager.add(TOPIC, 0, (0, 1, 2), 1, log)
    replica = manager.get(TOPIC, 0)
    settle(manager, lambda: replica.role == "leader", "the leadership")
    log.append(encode_set([(None, b"m")]), 1)
    end = log.end_offset
    manager.follower_fetched(replica, 1, end, end)
    manager.follower_fetched(replica, 2, end, end)
    assert replica.hw == end
    manager.follower_fetched(replica, 1, 0, end)      # 1 lost its disk and came back at once
    settle(manager, lambda: replica.isr == (0, 2), "the shrink's outcome")
    assert partition_state.read(zk_client, TOPIC, 0)[0].isr == (0, 2), "one write, at once"
    assert replica.hw == end, "the high watermark never goes back"
    manager.follower_fetched(replica, 1, end, end)    # rebuilt: it rejoins the normal way
    settle(manager, lambda: replica.isr == (0, 2, 1), "the expansion's outcome")
    assert partition_state.read(zk_client, TOPIC, 0)[0].isr == (0, 2, 1)


def register(zk_client, broker_id):
    """This broker's registration node, created now (a restart's new registration)."""
    path = paths.broker(broker_id)
    if zk_client.exists(path):
        zk_client.delete(path)
    zk_client.create(path, b"{}", makepath=True)


def test_a_broker_registered_after_its_leader_state_was_written_waits_for_a_new_one(
        manager_of, zk_client, tmp_path):
    partition_state.write(zk_client, TOPIC, 0, PartitionState(0, 3, (0, 1, 2)), NOT_WRITTEN)
    register(zk_client, 0)                   # it restarted (its log may be empty) after that
    manager, calls = manager_of(broker_id=0)
    log = open_log(tmp_path)
    manager.add(TOPIC, 0, (0, 1, 2), 2, log)
    replica = manager.get(TOPIC, 0)
    settle(manager, lambda: replica.role is not None, "the state to be read")
    assert replica.role != "leader" and replica.epoch == 3
    with pytest.raises(NotLeader):
        manager.leader_of(TOPIC, 0)
    state, version = partition_state.read(zk_client, TOPIC, 0)
    partition_state.write(zk_client, TOPIC, 0, state.elected(0, (0,), 1), version)
    settle(manager, lambda: replica.role == "leader", "the controller's new state")
    assert replica.epoch == 4 and log.epochs.latest_epoch == 4


def test_a_leader_that_registered_again_stops_leading_until_a_new_state(manager_of, zk_client,
                                                                        tmp_path):
    register(zk_client, 0)
    partition_state.write(zk_client, TOPIC, 0, PartitionState(0, 0, (0, 1)), NOT_WRITTEN)
    manager, calls = manager_of(broker_id=0)
    log = open_log(tmp_path)
    manager.add(TOPIC, 0, (0, 1), 1, log)
    replica = manager.get(TOPIC, 0)
    settle(manager, lambda: replica.role == "leader", "the leadership")
    register(zk_client, 0)                   # its session expired; it registered again
    settle(manager, lambda: replica.role != "leader", "the leader to stand down")
    assert calls.lost == [0]
    manager.maintain(time.monotonic() + 120)  # past the lag time: no ISR write while waiting
    assert partition_state.read(zk_client, TOPIC, 0)[0] == PartitionState(0, 0, (0, 1))
    state, version = partition_state.read(zk_client, TOPIC, 0)
    partition_state.write(zk_client, TOPIC, 0, state.elected(1, (1,), 1), version)
    settle(manager, lambda: replica.role == "follower", "following the new leader")
    assert (replica.leader, replica.epoch) == (1, 1)


def test_a_restarted_leader_starts_at_its_checkpointed_high_watermark(manager_of, zk_client,
                                                                     tmp_path):
    """Every replica restarted and this one leads again at once: consumers see what was
    committed before (not 0 until every follower fetched), and nothing more."""
    manager, _ = manager_of(broker_id=0)
    log, replica = lead(manager, zk_client, tmp_path, min_insync=1)
    log.append(encode_set([(None, b"a"), (None, b"b")]), 2)
    committed = log.end_offset
    manager.follower_fetched(replica, 1, committed, committed)
    log.append(encode_set([(None, b"c")]), 1)                  # not in the follower yet
    assert replica.hw == committed
    manager.close()
    log.close()
    state, version = partition_state.read(zk_client, TOPIC, 0)
    partition_state.write(zk_client, TOPIC, 0, state.elected(0, (0, 1), 1), version)

    again, _ = manager_of(broker_id=0)
    log = open_log(tmp_path)
    again.add(TOPIC, 0, (0, 1), 1, log)
    replica = again.get(TOPIC, 0)
    settle(again, lambda: replica.role == "leader" and replica.epoch == 1, "leading again")
    assert replica.hw == committed < log.end_offset
    assert again.consumer_end(log) == committed


def test_a_checkpoint_that_is_not_one_starts_at_zero_and_is_counted(manager_of, tmp_path):
    data_dir = tmp_path / "b0"
    data_dir.mkdir()
    (data_dir / "replication-offset-checkpoint").write_text("garbage\n")
    manager, _ = manager_of(broker_id=0)
    log = open_log(tmp_path)
    log.append(encode_set([(None, b"a")]), 1)
    manager.add(TOPIC, 0, (0, 1), 1, log)
    assert manager.get(TOPIC, 0).hw == 0
    assert manager.errors.snapshot()["hw_checkpoint_failed"] == 1


def test_an_isr_write_to_a_silent_zookeeper_does_not_hold_the_loop(zk, zk_server, zk_client,
                                                                    tmp_path):
    """The shrink's write waits on a ZooKeeper that stopped answering (a black-holed
    connection with a 20 s session, so kazoo gives up only after about 13 s), while the loop
    goes on: ``maintain`` returns with the write still pending (nothing failed, nothing
    written), and a replica fetch is served meanwhile on the ISR held. With the write on the
    loop, ``maintain`` returned only once kazoo gave up, with the failure counted."""
    proxy = BlackholeProxy("127.0.0.1", zk_server.client_port).start()
    client = zkconnect.connect(zk.replace(zk_server.connect_string, proxy.address),
                               session_timeout=20.0)
    errors = ErrorCounts()
    manager = ReplicaManager(BrokerConfig(0, str(tmp_path / "b0"), zk,
                                          replica_lag_time_max_ms=1), client, errors)
    log = open_log(tmp_path)
    try:
        partition_state.write(zk_client, TOPIC, 0, PartitionState(0, 0, (0, 1)), NOT_WRITTEN)
        manager.add(TOPIC, 0, (0, 1), 1, log)
        replica = manager.get(TOPIC, 0)
        settle(manager, lambda: replica.role == "leader", "the leadership")
        log.append(encode_set([(None, b"m")]), 1)
        manager.appended(replica)
        proxy.cut()
        try:
            manager.maintain(time.monotonic() + 1)        # past the 1 ms lag: shrink 1 out
            assert "isr_update_failed" not in errors.snapshot(), "the loop waited on the write"
            assert manager.writing and replica.isr == (0, 1), "the write is still in flight"
            end = log.end_offset
            manager.follower_fetched(replica, 1, end, end)      # the loop serves meanwhile
            assert replica.hw == end, "follower 1 is in the ISR held until a write lands"
            assert partition_state.read(zk_client, TOPIC, 0)[0].isr == (0, 1)
        finally:
            proxy.restore()
        settle(manager, lambda: not manager.writing and replica.isr == (0,),
               "the shrink, written once ZooKeeper answers again")
        assert partition_state.read(zk_client, TOPIC, 0)[0].isr == (0,)
    finally:
        manager.close()
        log.close()
        client.stop()
        client.close()
        proxy.stop()


def test_the_outcome_of_an_isr_write_is_dropped_if_a_newer_state_was_taken_meanwhile(
        manager_of, zk_client, tmp_path):
    """The shrink lands in ZooKeeper, then the controller elects broker 1 on top of it and
    the loop takes that state before it collects the write's outcome: the outcome (epoch 0,
    the version the write was decided on) must not bring back the old leadership."""
    manager, calls = manager_of(broker_id=0, lag_ms=1)
    log, replica = lead(manager, zk_client, tmp_path, min_insync=1)
    manager.stop_watching()
    manager.maintain(time.monotonic() + 1)                # the shrink goes to the writer
    wait_for(lambda: partition_state.read(zk_client, TOPIC, 0)[0].isr == (0,),
             what="the shrink in ZooKeeper")
    state, version = partition_state.read(zk_client, TOPIC, 0)
    elected = state.elected(1, (1,), 1)
    newer = partition_state.write(zk_client, TOPIC, 0, elected, version)
    manager.apply(replica, elected, newer)                # as a read in maintain would
    assert replica.role == "follower"
    settle(manager, lambda: not manager.writing, "the write's outcome collected")
    assert (replica.role, replica.leader, replica.epoch, replica.isr) == ("follower", 1, 1, (1,))
    assert replica.version == newer and calls.lost == [1]
