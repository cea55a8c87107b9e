"""A partition's state node: conditional writes are the fence (real ZooKeeper)."""
import pytest

from coordinator import partition_state, paths
from coordinator.partition_state import NOT_WRITTEN, PartitionState, StaleState


def test_state_round_trips_and_elections_bump_the_epoch():
    state = PartitionState.initial((2, 0, 1))
    assert (state.leader, state.leader_epoch, state.isr) == (2, 0, (2, 0, 1))
    assert PartitionState.from_json(state.to_json()) == state
    shrunk = state.with_isr((2, 1))
    assert (shrunk.leader, shrunk.leader_epoch, shrunk.isr) == (2, 0, (2, 1))
    moved = shrunk.elected(1, (1,), controller_epoch=4)
    assert (moved.leader, moved.leader_epoch, moved.isr, moved.controller_epoch) == (1, 1, (1,), 4)
    assert not PartitionState(partition_state.NO_LEADER, 2, ()).has_leader


def test_a_stale_writer_is_refused(zk_client):
    assert partition_state.read(zk_client, "t", 0) is None
    first = PartitionState.initial((0, 1))
    version = partition_state.write(zk_client, "t", 0, first, NOT_WRITTEN)
    with pytest.raises(StaleState):
        partition_state.write(zk_client, "t", 0, first, NOT_WRITTEN)
    state, read_version = partition_state.read(zk_client, "t", 0)
    assert (state, read_version) == (first, version)
    controller = partition_state.write(zk_client, "t", 0, state.elected(1, (1,), 1), version)
    with pytest.raises(StaleState) as stale:               # the old leader shrinking its ISR
        partition_state.write(zk_client, "t", 0, state.with_isr((0,)), version)
    assert stale.value.retriable
    assert partition_state.read(zk_client, "t", 0) == (state.elected(1, (1,), 1), controller)
    assert zk_client.exists(paths.partition_state("t", 0))


def test_a_fenced_write_fails_once_the_fence_moved(zk_client):
    zk_client.create(paths.CONTROLLER_EPOCH, b"1")
    fence = (paths.CONTROLLER_EPOCH, 0)
    first = PartitionState.initial((0, 1))
    version = partition_state.write(zk_client, "t", 0, first, NOT_WRITTEN, fence=fence)
    assert partition_state.read(zk_client, "t", 0) == (first, version)
    with pytest.raises(StaleState) as stale:                # the version check still counts
        partition_state.write(zk_client, "t", 0, first.with_isr((0,)), version + 1, fence=fence)
    assert not isinstance(stale.value, partition_state.FencedWriter)
    moved = partition_state.write(zk_client, "t", 0, first.elected(1, (1,), 1), version,
                                  fence=fence)
    zk_client.set(paths.CONTROLLER_EPOCH, b"2")               # a new controller was elected
    with pytest.raises(partition_state.FencedWriter) as fenced:
        partition_state.write(zk_client, "t", 0, first.elected(0, (0,), 1), moved, fence=fence)
    assert not fenced.value.retriable
    assert partition_state.read(zk_client, "t", 0) == (first.elected(1, (1,), 1), moved)


def test_checks_and_added_operations_commit_with_the_state_or_not_at_all(zk_client):
    """``checks`` fail as RegistrationsChanged, a failing added operation as StaleState; in
    both cases neither the state nor the added node is written."""
    zk_client.ensure_path(paths.BROKER_IDS)
    version = partition_state.write(zk_client, "t", 0, PartitionState.initial((0, 1)),
                                    NOT_WRITTEN)
    registry = zk_client.exists(paths.BROKER_IDS).version
    side = paths.partition_unclean("t", 0)
    moved = PartitionState.initial((0, 1)).elected(1, (1,), 1)
    zk_client.set(paths.BROKER_IDS, b"")                       # a broker registered since
    with pytest.raises(partition_state.RegistrationsChanged):
        partition_state.write(zk_client, "t", 0, moved, version,
                              checks=[(paths.BROKER_IDS, registry)],
                              also=lambda tx: tx.create(side, b"1"))
    assert zk_client.exists(side) is None
    assert partition_state.read(zk_client, "t", 0)[1] == version
    zk_client.create(side, b"0")
    with pytest.raises(StaleState) as stale:                   # the added create collides
        partition_state.write(zk_client, "t", 0, moved, version,
                              checks=[(paths.BROKER_IDS, registry + 1)],
                              also=lambda tx: tx.create(side, b"1"))
    assert type(stale.value) is StaleState
    assert partition_state.read(zk_client, "t", 0)[1] == version
    written = partition_state.write(zk_client, "t", 0, moved, version,
                                    checks=[(paths.BROKER_IDS, registry + 1)],
                                    also=lambda tx: tx.set_data(side, b"1", version=0))
    assert written == version + 1 and zk_client.get(side)[0] == b"1"
