"""A Kafka client in a group whose offsets are in the log store: it resumes from the native
members' commits in ``__consumer_offsets`` and commits there (OffsetCommit and OffsetFetch go to
the leader of the group's offsets partition), ZooKeeper gets no offset node, and a group Kafka
clients make is recorded in ZooKeeper's store."""
from kazoo.exceptions import NoNodeError

from coordinator import paths
from tests.cluster.kafka.test_groups import TOPIC, produce_keyed
from tests.helpers import GroupOffsets, wait_for


def _zookeeper_offsets(client, group):
    try:
        return sum(len(client.get_children(paths.offsets(group, t)))
                   for t in client.get_children(paths.group_offsets(group)))
    except NoNodeError:
        return 0


def test_kafka_and_native_members_share_a_log_store_group(kafka_broker, zk, zk_client):
    from clients.consumer import Consumer as NativeConsumer
    from kafka import KafkaConsumer
    proc = kafka_broker(TOPIC, 3)
    bootstrap = proc.info["kafka_endpoint"]

    def values(sent):
        return {m.value.decode() for msgs in sent.values() for m in msgs}

    first = values(produce_keyed(zk, 30))
    native = NativeConsumer([TOPIC], "g-log", zk, auto_commit_ms=None)
    got = []
    try:
        wait_for(lambda: got.extend(m.value.decode() for m in native.poll(200)) or
                 len(got) >= 30, what="30 natively")
        native.commit()
    finally:
        native.close()
    assert set(got) == first and zk_client.get(paths.offset_store("g-log"))[0] == b"log"
    committed = GroupOffsets(zk, "g-log").committed(TOPIC)

    second = values(produce_keyed(zk, 20, 30)) - first
    kp = KafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id="g-log",
                       auto_offset_reset="earliest", enable_auto_commit=False,
                       session_timeout_ms=6000)
    got = []
    try:
        # before its first join (see group_member.py: kafka-python 3.0.12 can lose its own
        # assignment when it leads a join made before its metadata had the partitions)
        wait_for(lambda: kp.partitions_for_topic(TOPIC), what="kafka-python's topic metadata")
        wait_for(lambda: [got.extend(r.value.decode() for r in rs)
                          for rs in kp.poll(timeout_ms=200).values()] is not None
                 and len(got) >= 20, what="the next 20 with kafka-python")
        kp.commit()
    finally:
        kp.close()
    assert set(got) == second and len(got) == 20, "from the native members' log commits"
    moved = GroupOffsets(zk, "g-log").committed(TOPIC)
    assert sum(moved.values()) > sum(committed.values()), "kafka-python committed to the log"

    third = values(produce_keyed(zk, 10, 50)) - first - second
    native = NativeConsumer([TOPIC], "g-log", zk, auto_commit_ms=None)
    got = []
    try:
        wait_for(lambda: got.extend(m.value.decode() for m in native.poll(200)) or
                 len(got) >= 10, what="the last 10 natively")
    finally:
        native.close()
    assert set(got) == third and len(got) == 10
    assert _zookeeper_offsets(zk_client, "g-log") == 0


def test_a_group_kafka_clients_make_keeps_zookeeper(kafka_broker, zk, zk_client):
    from kafka import KafkaConsumer
    proc = kafka_broker(TOPIC, 3)
    produce_keyed(zk, 10)
    kp = KafkaConsumer(TOPIC, bootstrap_servers=proc.info["kafka_endpoint"], group_id="g-kafka",
                       auto_offset_reset="earliest", enable_auto_commit=False,
                       session_timeout_ms=6000)
    got = []
    try:
        # before its first join (see group_member.py: kafka-python 3.0.12 can lose its own
        # assignment when it leads a join made before its metadata had the partitions)
        wait_for(lambda: kp.partitions_for_topic(TOPIC), what="kafka-python's topic metadata")
        wait_for(lambda: [got.extend(rs) for rs in kp.poll(timeout_ms=200).values()] is not None
                 and len(got) >= 10, what="10 with kafka-python")
        kp.commit()
    finally:
        kp.close()
    assert zk_client.get(paths.offset_store("g-kafka"))[0] == b"zookeeper"
    assert _zookeeper_offsets(zk_client, "g-kafka") == 3
