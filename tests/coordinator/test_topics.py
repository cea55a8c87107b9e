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
    placement = topics.Placement("t", (2, 0, 1))
    assert topics.Placement.from_json("t", placement.to_json()) == placement


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
