"""Group offsets in the log store (``__consumer_offsets``) against real brokers and ZooKeeper:
commit and fetch, a broker restart rebuilding the leader's map from the log, tombstones, a
group's store chosen once, a consumer group resuming from its log commits after a member died,
and ZooKeeper getting no offset write for such a group."""
from __future__ import annotations

from kazoo.exceptions import NoNodeError

from broker import protocol
from clients import Consumer, Producer
from clients.brokers import BrokerPool
from clients.log_offsets import LogOffsetStore, open_store
from coordinator import offset_store_choice as choice, paths, topics
from coordinator.offsets import OffsetStore
from tests.helpers import BrokerProcess, create_topic, wait_for

FAST = dict(rebalance_backoff_ms=200, rebalance_max_tries=20, max_wait_ms=200,
            session_timeout_ms=4000)


def _zookeeper_offsets(client, group: str) -> int:
    """How many offset nodes ZooKeeper holds for ``group``."""
    try:
        names = client.get_children(paths.group_offsets(group))
    except NoNodeError:
        return 0
    return sum(len(client.get_children(paths.offsets(group, t))) for t in names)


def test_commit_fetch_and_a_restart_rebuilds_the_map_from_the_log(zk, zk_client, tmp_path):
    broker = BrokerProcess(zk, tmp_path).start()
    pool = BrokerPool(zk)
    try:
        store = LogOffsetStore(pool, "g")
        assert store.fetch("t", 0) is None
        assert store.commit({("t", 0): 100, ("t", 1): 200, ("u", 0): 7}) == 3
        assert store.commit({("t", 0): 100}) == 0, "an offset that did not move is not sent"
        assert store.commit({("t", 0): 150}) == 1
        assert LogOffsetStore(pool, "g").fetch("t", 0) == 150
        assert LogOffsetStore(pool, "g").committed("t") == {0: 150, 1: 200}
        assert LogOffsetStore(pool, "other").all_committed() == {}
        assert store.remove([("u", 0)]) == 1
        assert LogOffsetStore(pool, "g").all_committed() == {("t", 0): 150, ("t", 1): 200}
        placement = topics.get(zk_client, choice.OFFSETS_TOPIC)
        assert placement.partitions == choice.OFFSETS_PARTITIONS
        assert placement.config["cleanup.policy"] == "compact"
        assert placement.config["retention.ms"] == choice.FOREVER
    finally:
        pool.close()
    broker.kill()       # no clean shutdown: the map comes back from the log alone
    broker.start()
    pool = BrokerPool(zk)
    try:
        store = LogOffsetStore(pool, "g")
        assert store.all_committed() == {("t", 0): 150, ("t", 1): 200}
        assert store.commit({("t", 1): 250}) == 1
        assert LogOffsetStore(pool, "g").fetch("t", 1) == 250
    finally:
        pool.close()
        broker.stop()
    assert _zookeeper_offsets(zk_client, "g") == 0


def test_a_broker_not_leading_the_partition_answers_not_coordinator(zk, zk_client, tmp_path):
    brokers = [BrokerProcess(zk, tmp_path, i).start() for i in range(2)]
    pool = BrokerPool(zk)
    try:
        LogOffsetStore(pool, "g").commit({("t", 0): 10})
        partition = choice.offsets_partition("g", choice.OFFSETS_PARTITIONS)
        leader = pool.leader(choice.OFFSETS_TOPIC, partition).broker_id
        other = next(b for b in brokers if b.broker_id != leader)
        conn = pool.open_connection(other.endpoint)
        try:
            frames = conn.call(lambda corr: protocol.encode_offset_fetch(corr, "g", [("t", 0)]))
        finally:
            conn.close()
        try:
            protocol.decode_response(frames[0].buffer)
        except protocol.SluiceError as exc:
            assert exc.code is protocol.ErrorCode.NOT_COORDINATOR and exc.retriable, exc
        else:
            raise AssertionError("a broker that does not lead the group's partition answered")
    finally:
        pool.close()
        for b in brokers:
            b.stop()


def test_the_store_is_chosen_once_per_group(zk, zk_client, tmp_path):
    broker = BrokerProcess(zk, tmp_path).start()
    pool = BrokerPool(zk)
    try:
        OffsetStore(zk_client, "old").commit({("t", 0): 5})     # a group from before the choice
        assert isinstance(open_store(pool, "old"), OffsetStore)
        assert open_store(pool, "old").store == choice.ZOOKEEPER
        assert open_store(pool, "new").store == choice.LOG
        assert open_store(pool, "new", default=choice.ZOOKEEPER).store == choice.LOG, \
            "a recorded choice wins over the default"
        assert open_store(pool, "paper", default=choice.ZOOKEEPER).store == choice.ZOOKEEPER
        assert zk_client.get(paths.offset_store("new"))[0] == b"log"
        assert zk_client.get(paths.offset_store("old"))[0] == b"zookeeper"
    finally:
        pool.close()
        broker.stop()


def test_a_group_resumes_from_its_log_commits_after_a_member_died(zk, zk_client, tmp_path):
    broker = BrokerProcess(zk, tmp_path, log={"flush_ms": 50}).start()
    create_topic(zk, "clicks", 2, [broker])
    with Producer(zk, acks=1) as producer:
        for i in range(200):
            producer.send("clicks", b"%04d" % i, partition=i % 2)
    first = Consumer(["clicks"], "loaders", zookeeper=zk, auto_commit_ms=None, **FAST)
    try:
        got = []
        wait_for(lambda: got.extend(first.poll(200)) or len(got) >= 120, 30, what="120 messages")
        done = got[:120]
        first.commit({(m.topic, m.partition): m.next_offset
                      for m in sorted(done, key=lambda m: m.offset)})
        committed = first.offsets.all_committed()
    finally:
        first._pool.zk.stop()       # the member dies: its session ends, nothing more is written
        first._pool.zk.close()
    assert first.offsets.store == choice.LOG
    with Consumer(["clicks"], "loaders", zookeeper=zk, **FAST) as second:
        rest = []
        left = 200 - len({m.value for m in done})
        wait_for(lambda: rest.extend(second.poll(200)) or len(rest) >= left, 30,
                 what="the rest of the messages")
        starts = {}
        for m in rest:
            starts.setdefault((m.topic, m.partition), m.offset)
        assert starts == {tp: committed[tp] for tp in starts}, "resumed at the commits"
        assert sorted({m.value for m in done} | {m.value for m in rest}) == \
            [b"%04d" % i for i in range(200)]
    assert _zookeeper_offsets(zk_client, "loaders") == 0, "a log-store group writes no offset node"
    broker.stop()


def _move_leadership(client, partition: int, to: int) -> None:
    """Elect ``to`` for the offsets partition by a state write (as the controller would)."""
    from coordinator import partition_state
    state, version = partition_state.read(client, choice.OFFSETS_TOPIC, partition)
    partition_state.write(client, choice.OFFSETS_TOPIC, partition,
                          state.elected(to, state.isr, state.controller_epoch), version)


def test_a_new_leader_of_the_offsets_partition_serves_the_commits_replicated_to_it(
        zk, zk_client, tmp_path):
    topics.set_cluster_defaults(zk_client, {"default_replication_factor": 3})
    brokers = [BrokerProcess(zk, tmp_path, i, leader_imbalance_check_ms=600_000).start()
               for i in range(3)]
    pool = BrokerPool(zk)
    try:
        assert LogOffsetStore(pool, "g").commit({("t", 0): 100}) == 1    # acks=all: on all 3
        placement = topics.get(zk_client, choice.OFFSETS_TOPIC)
        assert placement.replication_factor == 3, "the cluster's default replication factor"
        partition = choice.offsets_partition("g", placement.partitions)
        first = pool.leader(choice.OFFSETS_TOPIC, partition).broker_id
        second = next(b for b in placement.replicas[partition] if b != first)
        _move_leadership(zk_client, partition, second)
        wait_for(lambda: pool.leader(choice.OFFSETS_TOPIC, partition).broker_id == second,
                 what="the view to name the new leader")
        assert LogOffsetStore(pool, "g").fetch("t", 0) == 100, "replayed by the new leader"
        assert LogOffsetStore(pool, "g").commit({("t", 0): 200}) == 1
        _move_leadership(zk_client, partition, first)
        wait_for(lambda: pool.leader(choice.OFFSETS_TOPIC, partition).broker_id == first,
                 what="the view to name the first leader again")
        assert LogOffsetStore(pool, "g").fetch("t", 0) == 200, \
            "back in the lead in a new epoch, the first leader rebuilt its map from the log"
    finally:
        pool.close()
        for b in brokers:
            b.stop()
