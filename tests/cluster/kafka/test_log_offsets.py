"""A Kafka client in a group whose offsets are in the log store: it resumes from the native
members' commits in ``__consumer_offsets`` and commits there (OffsetCommit and OffsetFetch go to
the leader of the group's offsets partition), ZooKeeper gets no offset node; a group Kafka
clients make is a log-store group too, and one recorded ``zookeeper`` keeps that store."""
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


def _kafka_python_reads(bootstrap: str, group: str, count: int) -> tuple[list, dict]:
    """A kafka-python member of ``group`` reads ``count`` records, commits, and leaves:
    ``(values, its committed offsets read back through OffsetFetch before it left)``."""
    from kafka import KafkaConsumer, TopicPartition
    kp = KafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=group,
                       auto_offset_reset="earliest", enable_auto_commit=False,
                       session_timeout_ms=6000)
    got = []
    try:
        # before its first join (see group_member.py: kafka-python 3.0.12 can lose its own
        # assignment when it leads a join made before its metadata had the partitions)
        wait_for(lambda: kp.partitions_for_topic(TOPIC), what="kafka-python's topic metadata")
        wait_for(lambda: [got.extend(r.value.decode() for r in rs)
                          for rs in kp.poll(timeout_ms=200).values()] is not None
                 and len(got) >= count, what=f"{count} with kafka-python")
        kp.commit()
        committed = {p: kp.committed(TopicPartition(TOPIC, p)) for p in range(3)}
    finally:
        kp.close()
    return got, committed


def _offsets_log(zk: str, group: str) -> dict:
    """The group's commits as ``__consumer_offsets`` holds them: (topic, partition) -> offset
    of the last commit message, read from the group's partition with a native consumer."""
    from broker import committed_offsets
    from clients.simple_consumer import SimpleConsumer
    from coordinator.offset_store_choice import OFFSETS_PARTITIONS, OFFSETS_TOPIC, \
        offsets_partition
    found = {}
    with SimpleConsumer(OFFSETS_TOPIC, offsets_partition(group, OFFSETS_PARTITIONS), "earliest",
                        zookeeper=zk, timeout_ms=3000) as consumer:
        end = consumer.offset_of("latest")
        for m in consumer if consumer.position < end else ():
            owner, topic, partition = committed_offsets.decode_key(m.key)
            if owner == group:
                found[(topic, partition)] = committed_offsets.decode_value(m.value)[0]
            if m.next_offset >= end:
                break
    return found


def test_a_group_kafka_clients_make_commits_to_the_log(kafka_broker, zk, zk_client):
    """A new group that only kafka-python uses is recorded ``log``: its commits are keyed
    messages in ``__consumer_offsets``, ZooKeeper gets no offset node, and the next member
    after a restart of the consumer reads them back (OffsetFetch) and resumes there."""
    proc = kafka_broker(TOPIC, 3)
    bootstrap = proc.info["kafka_endpoint"]
    sent = produce_keyed(zk, 10)
    got, committed = _kafka_python_reads(bootstrap, "g-kafka", 10)
    assert sorted(got) == sorted(m.value.decode() for msgs in sent.values() for m in msgs)
    ends = {p: msgs[-1].next_offset for p, msgs in sent.items()}
    assert committed == ends
    assert zk_client.get(paths.offset_store("g-kafka"))[0] == b"log"
    assert _zookeeper_offsets(zk_client, "g-kafka") == 0
    in_log = {(TOPIC, p): end for p, end in ends.items()}
    wait_for(lambda: _offsets_log(zk, "g-kafka") == in_log,        # once flushed: visible
             what="the commits in __consumer_offsets")
    later = produce_keyed(zk, 6, 10)
    again, committed = _kafka_python_reads(bootstrap, "g-kafka", 6)     # the consumer restarted
    assert sorted(again) == sorted(f"m{i}" for i in range(10, 16)), "from its commits"
    assert committed == {p: msgs[-1].next_offset for p, msgs in later.items()}


def test_a_kafka_group_recorded_zookeeper_keeps_its_record(kafka_broker, zk, zk_client):
    """A group recorded ``zookeeper`` (one Kafka clients made before the log store was their
    default) stays there: its commits are ZooKeeper's offset nodes, none goes to the log."""
    from coordinator import offset_store_choice
    offset_store_choice.flip(zk_client, "g-old", offset_store_choice.ZOOKEEPER)
    proc = kafka_broker(TOPIC, 3)
    sent = produce_keyed(zk, 10)
    _, committed = _kafka_python_reads(proc.info["kafka_endpoint"], "g-old", 10)
    assert committed == {p: msgs[-1].next_offset for p, msgs in sent.items()}
    assert zk_client.get(paths.offset_store("g-old"))[0] == b"zookeeper"
    assert _zookeeper_offsets(zk_client, "g-old") == 3
