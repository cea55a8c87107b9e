"""Topic placement (pure) and creation against a real ZooKeeper."""
import pytest

from coordinator import paths, topics
from coordinator.errors import InvalidArgument, UnknownTopicOrPartition


def test_place_round_robin_over_sorted_integer_ids():
    placement = topics.place("t", 5, [10, 2, 1])
    assert sorted(set(placement.brokers)) == [1, 2, 10]
    order = [1, 2, 10]
    first = order.index(placement.brokers[0])
    assert list(placement.brokers) == [order[(first + p) % 3] for p in range(5)]
    assert placement.hosted_by(placement.brokers[0]) == [0, 3]


def test_place_rejects_no_brokers_and_no_partitions():
    with pytest.raises(topics.TopicError, match="no live brokers"):
        topics.place("t", 3, [])
    with pytest.raises(topics.TopicError, match="at least 1"):
        topics.place("t", 0, [1])


def test_placement_json_round_trip():
    placement = topics.Placement("t", ((2,), (0,), (1,)))
    assert topics.Placement.from_json("t", placement.to_json()) == placement
    replicated = topics.Placement("t", ((2, 0), (0, 1)), min_insync_replicas=2)
    assert topics.Placement.from_json("t", replicated.to_json()) == replicated


def test_a_placement_written_before_replication_reads_as_one_replica():
    old = topics.Placement.from_json("t", b'{"partitions": 2, "placement": [1, 0]}')
    assert old.replicas == ((1,), (0,)) and old.brokers == (1, 0)
    assert old.replication_factor == 1 and old.min_insync_replicas == 1


def test_replicas_spread_over_distinct_brokers_leaders_round_robin():
    placement = topics.place("t", 4, [2, 0, 1], replication_factor=2)
    order = [0, 1, 2]
    first = order.index(placement.replicas[0][0])
    assert placement.replicas == tuple((order[(first + p) % 3], order[(first + p + 1) % 3])
                                       for p in range(4))
    assert all(len(set(r)) == 2 for r in placement.replicas)
    assert placement.brokers == tuple(r[0] for r in placement.replicas)
    assert placement.hosted_by(order[first]) == [0, 2, 3]
    with pytest.raises(topics.BadReplicationFactor, match="3 are registered"):
        topics.place("t", 1, [0, 1, 2], replication_factor=4)
    with pytest.raises(topics.BadReplicationFactor, match="min_insync_replicas"):
        topics.place("t", 1, [0, 1, 2], replication_factor=2, min_insync_replicas=3)


def test_creation_writes_each_partitions_initial_state(zk_client):
    from coordinator import partition_state
    zk_client.ensure_path(paths.BROKER_IDS)
    for broker_id in (0, 1, 2):
        zk_client.create(paths.broker(broker_id), b"{}", ephemeral=True)
    topics.set_cluster_defaults(zk_client, {"default_replication_factor": 3})
    placement = topics.create(zk_client, "replicated", 2, min_insync_replicas=2)
    assert placement.replication_factor == 3 and placement.min_insync_replicas == 2
    for p in range(2):
        state, version = partition_state.read(zk_client, "replicated", p)
        assert (state.leader, state.leader_epoch, state.isr) == (
            placement.replicas[p][0], 0, placement.replicas[p])
    assert topics.live_brokers(zk_client) == [0, 1, 2]


@pytest.mark.parametrize("name", ["", "a/b", "..", "x" * 250, "sp ace", "ü"])
def test_bad_names_are_rejected(name):
    with pytest.raises(ValueError, match="invalid topic name"):
        paths.check_name("topic", name)


def test_paths_name_partitions_as_integers():
    assert paths.owner("g", "t", 10) == "/consumers/g/owners/t/10"
    assert paths.offset("g", "t", 2) == "/consumers/g/offsets/t/2"
    assert paths.broker_topic_partitions("t", 3) == "/brokers/topics/t/3"


def test_create_on_live_brokers_and_reject_duplicates(zk_client):
    zk_client.ensure_path(paths.BROKER_IDS)
    for broker_id in (0, 1):
        zk_client.create(paths.broker(broker_id), b"{}", ephemeral=True)
    placement = topics.create(zk_client, "clicks", 4)
    assert set(placement.brokers) == {0, 1}
    assert topics.get(zk_client, "clicks") == placement
    assert topics.names(zk_client) == ["clicks"]
    with pytest.raises(topics.TopicError, match="already exists"):
        topics.create(zk_client, "clicks", 2)
    with pytest.raises(topics.TopicError, match="unknown topic"):
        topics.get(zk_client, "nope")


def test_create_without_brokers_fails(zk_client):
    with pytest.raises(topics.TopicError, match="no live brokers"):
        topics.create(zk_client, "lonely", 1)


def test_each_refusal_has_its_own_class(zk_client):
    """One meaning per class; a lookup of what does not exist is also the wire's
    UnknownTopicOrPartition (so one except serves both) but says it is not worth retrying."""
    with pytest.raises(topics.NoLiveBrokers):
        topics.place("t", 1, [])
    with pytest.raises(topics.BadPartitionCount) as bad_count:
        topics.place("t", 0, [1])
    assert isinstance(bad_count.value, InvalidArgument)
    with pytest.raises(topics.UnknownTopic) as unknown:
        topics.get(zk_client, "nope")
    assert isinstance(unknown.value, UnknownTopicOrPartition) and not unknown.value.retriable
    error = topics.partition_error("t", 2, 5)
    assert isinstance(error, UnknownTopicOrPartition) and not error.retriable
    assert str(error) == "topic t has partitions 0..1, not 5"
    with pytest.raises(topics.CorruptPlacement):
        topics.Placement.from_json("t", b'{"partitions": 3, "placement": [0]}')
    zk_client.ensure_path(paths.BROKER_IDS)
    zk_client.create(paths.broker(0), b"{}", ephemeral=True)
    topics.create(zk_client, "once", 1)
    with pytest.raises(topics.TopicExists):
        topics.create(zk_client, "once", 1)
