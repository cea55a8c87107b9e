"""Topic administration in ZooKeeper: partitions added with their state nodes, a topic's own
settings, deletion with the groups' offsets; and the ClusterView following all three."""
import threading

import pytest

from coordinator import partition_state, paths, topic_config, topics
from coordinator.errors import InvalidArgument
from coordinator.registry import BrokerInfo, ClusterView
from tests.helpers import wait_for


def _brokers(zk_client, *ids):
    zk_client.ensure_path(paths.BROKER_IDS)
    for broker_id in ids:
        zk_client.create(paths.broker(broker_id), BrokerInfo(
            broker_id, f"tcp://127.0.0.1:{5000 + broker_id}", "", "127.0.0.1", 1).to_json(),
            ephemeral=True)


def test_added_partitions_keep_the_old_replicas_and_continue_the_rule():
    old = topics.place("t", 3, [0, 1, 2], replication_factor=2, min_insync_replicas=2)
    grown = topics.place_added(old, 5, [0, 1, 2])
    assert grown.replicas[:3] == old.replicas
    assert grown.replicas[3:] == topics.place("t", 5, [0, 1, 2], 2).replicas[3:]
    assert grown.min_insync_replicas == 2 and grown.replication_factor == 2
    for fewer in (3, 2):
        with pytest.raises(topics.PartitionsOnlyGrow, match="only grow"):
            topics.place_added(old, fewer, [0, 1, 2])
    with pytest.raises(topics.BadReplicationFactor):
        topics.place_added(old, 4, [0])           # R = 2 needs two live brokers


def test_topic_settings_are_checked_by_name():
    assert topic_config.parse_assignments(["segment.bytes=1024", "cleanup.policy=delete,compact",
                                           "flush.ms = 50"]) == {
        "segment.bytes": 1024, "cleanup.policy": "compact,delete", "flush.ms": 50}
    for bad, words in [("retention.ms=0", "retention.ms must be an integer >= 1"),
                       ("retention.ms=soon", "retention.ms must be"),
                       ("cleanup.policy=keep", "cleanup.policy must be one of"),
                       ("segment_bytes=10", "unknown topic setting 'segment_bytes'"),
                       ("retention.ms", "expected name=value"),
                       ("min.cleanable.dirty.ratio=1.5", "must be a number 0..1, not '1.5'"),
                       ("min.cleanable.dirty.ratio=-0.1", "must be a number 0..1"),
                       ("min.cleanable.dirty.ratio=nan", "must be a number 0..1"),
                       ("min.cleanable.dirty.ratio=half", "must be a number 0..1")]:
        with pytest.raises(InvalidArgument, match=words):
            topic_config.parse_assignments([bad])
    assert topic_config.log_overrides({"flush.messages": 7, "cleanup.policy": "compact",
                                       "min.cleanable.dirty.ratio": 0.2}) == {
        "flush_messages": 7, "cleanup_policy": "compact", "min_cleanable_dirty_ratio": 0.2}
    assert topic_config.parse_assignments(["min.cleanable.dirty.ratio=0"]) == {
        "min.cleanable.dirty.ratio": 0.0}


def test_add_partitions_writes_the_count_and_the_state_nodes_together(zk_client):
    _brokers(zk_client, 0, 1)
    topics.create(zk_client, "t", 2, replication_factor=2)
    grown = topics.add_partitions(zk_client, "t", 4)
    assert topics.get(zk_client, "t") == grown and grown.partitions == 4
    for p in (2, 3):
        state, _ = partition_state.read(zk_client, "t", p)
        assert state.leader == grown.replicas[p][0] and state.isr == grown.replicas[p]
    with pytest.raises(topics.PartitionsOnlyGrow):
        topics.add_partitions(zk_client, "t", 4)
    with pytest.raises(topics.UnknownTopic):
        topics.add_partitions(zk_client, "nope", 4)


def test_configure_stores_settings_and_min_isr_within_r(zk_client):
    _brokers(zk_client, 0, 1)
    topics.create(zk_client, "t", 1, replication_factor=2)
    changed = topics.configure(zk_client, "t", {"retention.ms": "60000", "min.insync.replicas": 2,
                                                "cleanup.policy": "compact"})
    stored = topics.get(zk_client, "t")
    assert stored == changed
    assert stored.config == {"retention.ms": 60000, "cleanup.policy": "compact"}
    assert stored.min_insync_replicas == 2
    with pytest.raises(topics.BadReplicationFactor, match=r"1\.\.2"):
        topics.configure(zk_client, "t", {"min.insync.replicas": 3})
    back = topics.configure(zk_client, "t", {}, removed=("retention.ms", "min.insync.replicas"))
    assert back.config == {"cleanup.policy": "compact"} and back.min_insync_replicas == 1
    with pytest.raises(InvalidArgument, match="unknown topic setting"):
        topics.configure(zk_client, "t", {}, removed=("retention",))


def test_delete_removes_the_config_states_and_every_groups_offsets(zk_client):
    _brokers(zk_client, 0)
    topics.create(zk_client, "t", 2)
    topics.create(zk_client, "other", 1)
    for group in ("a", "b"):
        zk_client.create(paths.offset(group, "t", 0), b"100", makepath=True)
        zk_client.create(paths.offset(group, "other", 0), b"7", makepath=True)
    zk_client.create(paths.data_loss("a", "t", 1), b"{}", makepath=True)
    zk_client.ensure_path(paths.group("idle"))
    assert topics.delete(zk_client, "t") == ["a", "b"]
    assert topics.names(zk_client) == ["other"]
    assert not zk_client.exists(paths.broker_topic("t"))
    for group in ("a", "b"):
        assert not zk_client.exists(paths.offsets(group, "t"))
        assert zk_client.get(paths.offset(group, "other", 0))[0] == b"7"
    assert not zk_client.exists(paths.data_losses("a", "t"))
    with pytest.raises(topics.UnknownTopic):
        topics.delete(zk_client, "t")


def test_the_view_follows_added_partitions_settings_and_deletion(zk_client):
    _brokers(zk_client, 0)
    topics.create(zk_client, "t", 1)
    view = ClusterView(zk_client)
    changes = threading.Semaphore(0)
    view.add_listener(changes.release)
    assert view.partitions("t") == 1 and view.state("t", 0).leader == 0
    topics.add_partitions(zk_client, "t", 3)
    wait_for(lambda: view.partitions("t") == 3, what="the view to see 3 partitions")
    assert changes.acquire(timeout=10)
    assert view.state("t", 2).leader == topics.get(zk_client, "t").replicas[2][0]
    topics.configure(zk_client, "t", {"segment.bytes": 4096})
    wait_for(lambda: view.placement("t").config == {"segment.bytes": 4096},
             what="the view to see the topic's settings")
    topics.delete(zk_client, "t")
    wait_for(lambda: "t" not in view._placements, what="the view to forget the topic")
    with pytest.raises(topics.UnknownTopic):
        view.placement("t")
