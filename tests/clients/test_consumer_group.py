"""Consumer groups over a real ZooKeeper and real brokers: ownership, commits, conflicts."""
import threading
import time


from clients import Consumer, Producer, SimpleConsumer
from coordinator import consumer_registry as groups, paths, zk as zkmod
from coordinator.rebalance import State
from tests.helpers import create_topic
from tests.helpers import BrokerProcess, GroupOffsets, wait_for

FAST = dict(rebalance_backoff_ms=200, rebalance_max_tries=20, auto_commit_ms=200,
            max_wait_ms=200, session_timeout_ms=4000)


def produce(zk, topic, count, start=0, partitions=None):
    """Send count messages; with ``partitions``, spread round robin over that many."""
    with Producer(zk, batch_size=25, acks=1) as producer:
        for i in range(start, start + count):
            partition = None if partitions is None else i % partitions
            producer.send(topic, b"%06d" % i, partition=partition)


def owners_now(zk, group, topic):
    client = zkmod.connect(zk)
    try:
        return groups.owners(client, group, topic)
    finally:
        client.stop()
        client.close()


def settled(consumers, topic, partitions):
    """Every partition owned by exactly one of the given live consumers, as ZooKeeper says."""
    owned = {}
    for c in consumers:
        if c.member.state is not State.STABLE:
            return False
        for tp in c.assignment():
            if tp in owned:
                return False
            owned[tp] = c.consumer_id
    return len(owned) == partitions


class Drain(threading.Thread):
    """Consume in a thread, recording every value processed."""

    def __init__(self, consumer):
        super().__init__(daemon=True)
        self.consumer = consumer
        self.values = []
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            for m in self.consumer.poll(200):
                self.values.append(m.value)

    def stop(self):
        self.stop_event.set()
        self.join(10)


def test_two_consumers_split_partitions_and_see_every_message(zk, brokers):
    create_topic(zk, "split", 4, brokers)
    produce(zk, "split", 400)
    a = Consumer(["split"], "g1", zookeeper=zk, **FAST)
    b = Consumer(["split"], "g1", zookeeper=zk, **FAST)
    drains = [Drain(a), Drain(b)]
    try:
        wait_for(lambda: settled([a, b], "split", 4), 30, what="the group to settle")
        assert len(a.assignment()) == 2 and len(b.assignment()) == 2
        for d in drains:
            d.start()
        wait_for(lambda: len(drains[0].values) + len(drains[1].values) >= 400, 30,
                 what="all 400 messages")
        seen = drains[0].values + drains[1].values
        assert sorted(set(seen)) == [b"%06d" % i for i in range(400)]
        owners = owners_now(zk, "g1", "split")
        assert sorted(owners) == [0, 1, 2, 3]
        assert set(owners.values()) == {a.consumer_id, b.consumer_id}
    finally:
        for d in drains:
            d.stop()
        a.close()
        b.close()
    assert owners_now(zk, "g1", "split") == {}, "close releases ownership at once"


def test_commits_resume_where_the_group_left_off(zk, brokers):
    create_topic(zk, "resume", 2, brokers)
    produce(zk, "resume", 100, partitions=2)
    with Consumer(["resume"], "g2", zookeeper=zk, **{**FAST, "auto_commit_ms": None}) as c:
        wait_for(lambda: settled([c], "resume", 2), 30, what="settle")
        got = []
        wait_for(lambda: got.extend(c.poll(200)) or len(got) >= 100, 30, what="100 messages")
        writes = c.commit()
        assert writes == 2
        assert c.commit() == 0, "offsets that did not move are not written again"
    client = zkmod.connect(zk)
    committed = GroupOffsets(zk, "g2").committed("resume")
    client.stop()
    assert sum(committed.values()) == 100 * (9 + 6)
    produce(zk, "resume", 10, start=100)
    with Consumer(["resume"], "g2", zookeeper=zk, **FAST) as c:
        wait_for(lambda: settled([c], "resume", 2), 30, what="settle")
        got = []
        wait_for(lambda: got.extend(c.poll(200)) or len(got) >= 10, 30, what="10 new messages")
        time.sleep(0.5)
        got.extend(c.poll(200))
        assert sorted(m.value for m in got) == [b"%06d" % i for i in range(100, 110)]


def test_groups_are_independent(zk, brokers):
    create_topic(zk, "fanout", 1, brokers)
    produce(zk, "fanout", 20)
    for name in ("ga", "gb"):
        with Consumer(["fanout"], name, zookeeper=zk, **FAST) as c:
            got = []
            wait_for(lambda: got.extend(c.poll(200)) or len(got) >= 20, 30, what=name)
            assert len(got) == 20


def test_claim_conflict_is_retried_until_the_holder_lets_go(zk, brokers, zk_client):
    create_topic(zk, "race", 2, brokers)
    zk_client.create(paths.owner("g3", "race", 0), b"someone-else", ephemeral=True, makepath=True)
    c = Consumer(["race"], "g3", zookeeper=zk, rebalance="eager", **FAST)
    try:
        wait_for(lambda: c.member.conflicts >= 2, 20, what="claim conflicts")
        assert c.member.state is not State.STABLE
        assert c.assignment() == []
        zk_client.delete(paths.owner("g3", "race", 0))
        wait_for(lambda: settled([c], "race", 2), 20, what="the retry to succeed")
        assert owners_now(zk, "g3", "race") == {0: c.consumer_id, 1: c.consumer_id}
    finally:
        c.close()


def test_retries_run_out_loudly_then_recover_on_the_next_change(zk, brokers, zk_client, caplog):
    create_topic(zk, "stuck", 1, brokers)
    zk_client.create(paths.owner("g4", "stuck", 0), b"squatter", ephemeral=True, makepath=True)
    c = Consumer(["stuck"], "g4", zookeeper=zk, rebalance="eager", rebalance_max_tries=2,
                 rebalance_backoff_ms=100,
                 auto_commit_ms=200, max_wait_ms=200)
    try:
        wait_for(lambda: c.member.state is State.FAILED, 20, what="the rebalance to fail")
        assert c.member.failures >= 1 and c.stats["rebalance_failures"] >= 1
        assert "REBALANCE FAILED" in caplog.text
        zk_client.delete(paths.owner("g4", "stuck", 0))
        wait_for(lambda: c.member.state is State.STABLE, 20, what="recovery")
        assert c.assignment() == [("stuck", 0)]
    finally:
        c.close()


def test_committed_offset_deleted_by_retention_is_reported_as_data_loss(zk, tmp_path,
                                                                         caplog):
    broker = BrokerProcess(zk, tmp_path, 0, cleaner_interval_ms=300,
                           log={"segment_bytes": 1024, "retention_ms": 1500,
                                "flush_ms": 50}).start()
    try:
        create_topic(zk, "short", 1, [broker])
        produce(zk, "short", 100)
        with Consumer(["short"], "g5", zookeeper=zk, **FAST) as c:
            got = []
            wait_for(lambda: got.extend(c.poll(200)) or len(got) >= 100, 30, what="messages")
            c.seek(0, 15 * 10)
            c.commit()
        client = zkmod.connect(zk)
        store = GroupOffsets(zk, "g5")
        assert store.fetch("short", 0) == 150
        with SimpleConsumer("short", 0, zookeeper=zk) as watch:
            wait_for(lambda: watch.offset_of("earliest") > 150, 30,
                     what="retention to delete the committed position")
        produce(zk, "short", 5, start=100)
        with Consumer(["short"], "g5", zookeeper=zk, **FAST) as c:
            got = []
            wait_for(lambda: got.extend(c.poll(200)) or c.data_loss_events, 30,
                     what="the data loss to be noticed")
            wait_for(lambda: got.extend(c.poll(200)) or
                     {b"%06d" % i for i in range(100, 105)} <= {m.value for m in got}, 30,
                     what="consumption to resume at the log start")
        note = store.data_loss("short")[0]
        [event] = note["events"]
        assert event["kind"] == "retention" and event["offset"] == 150 and event["resume"] > 150
        assert event["bytes"] == note["lost_bytes"] == event["resume"] - 150
        assert event["messages"] == event["bytes"] // 15, "estimated from the mean size seen"
        assert note["totals"] == {"retention": {"events": 1, "bytes": event["bytes"],
                                                "messages": event["messages"]}}
        assert caplog.text.count("DATA LOSS") == 1
        client.stop()
        client.close()
    finally:
        broker.stop()
