"""Topic placement (pure) and creation against a real ZooKeeper."""
import pytest

from coordinator import paths, topics


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
