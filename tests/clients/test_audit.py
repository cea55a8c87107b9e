"""The audit trail's counting: pure parts, and audited producers and group consumers against a
real broker, their records read back from ``__audit``."""
import zlib

import psutil
import pytest

from broker import message, protocol
from clients import Consumer, Producer, SimpleConsumer
from clients.audit import AUDIT_TOPIC, Tally, decode_record, encode_records, window_of
from clients.brokers import BrokerPool
from clients.config import ConsumerConfig, ProducerConfig
from cluster.observe.audit_trail import read_records, stored_counts
from coordinator import paths
from coordinator.errors import InvalidArgument
from tests.helpers import BrokerProcess, create_topic, wait_for


def test_window_of_and_tally():
    assert window_of(119_999, 60_000) == 60_000
    tally = Tally()
    tally.add("a", 0, 1)
    tally.add("a", 0, 0, 2)
    tally.add("b", 60_000, 5)
    assert tally.pop_closed(59_999, 60_000) == {}
    assert tally.pop_closed(60_000, 60_000) == {("a", 0): [1, 2]}
    tally.merge({("b", 60_000): [1, 1]})
    assert tally.pop_all() == {("b", 60_000): [6, 1]}
    assert tally.counts == {}


def test_records_round_trip_and_bad_ones_are_refused():
    source = {"source": "consumer", "group": "g", "consumer_id": "c"}
    record, = encode_records(source, {("t", 60_000): [7, 0]}, 60_000)
    assert decode_record(record) == dict(source, topic="t", window_start=60_000,
                                         window_ms=60_000, consumed=7)
    for bad in (b'[]', b'{"source": "producer", "topic": "t"}', b'{"source": "x"}'):
        with pytest.raises(ValueError):
            decode_record(bad)


def test_audit_settings_are_checked():
    assert ProducerConfig(audit=True).audit_window_ms == 60_000
    for bad in ({"audit": 1}, {"audit_window_ms": 10}, {"audit_window_ms": 1.5e3}):
        with pytest.raises(InvalidArgument):
            ProducerConfig(**bad)
        with pytest.raises(InvalidArgument):
            ConsumerConfig(**bad)


def test_stamped_messages_decode_with_their_timestamp():
    data = message.encode_stamped(b"v", None, 1234) + message.encode_stamped(b"w", b"k", 5)
    got = [(m.key, m.value, m.timestamp) for m in message.decode_set(data, "t", 0, 0)]
    assert got == [(None, b"v", 1234), (b"k", b"w", 5)]
    assert message.validate_set(data) == 2
    one = message.encode_stamped(b"v", b"k", 5)
    long_key = one[:18] + bytes([0, 0, 0, 99]) + one[22:]
    long_headers = one[:23] + bytes([0, 0, 0, 99]) + one[27:]
    for bad in (long_key, long_headers):          # lengths past the end, CRC made right again
        bad = bad[:5] + zlib.crc32(bad[9:]).to_bytes(4, "big") + bad[9:]
        with pytest.raises(message.InvalidMessage):
            message.validate_set(bad)
    headed = message.encode_record(b"v", None, 5, [("h", b"x")])
    assert message.validate_set(headed + one) == 2


@pytest.fixture
def broker(zk, tmp_path):
    proc = BrokerProcess(zk, tmp_path, 0, log={"flush_ms": 20}).start()
    yield proc
    proc.stop()


def _records(zk, **match):
    pool = BrokerPool(zk)
    try:
        records, bad = read_records(pool)
    finally:
        pool.close()
    assert bad == 0
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def _sums(records, field):
    sums = {}
    for r in records:
        sums[(r["topic"], r["window_start"])] = sums.get((r["topic"], r["window_start"]), 0) \
            + r[field]
    return sums


def test_audited_producer_counts_acknowledged_and_unacknowledged_per_window(zk, broker):
    create_topic(zk, "clicks", 2, [broker])
    with Producer(zk, acks=1, audit=True, audit_window_ms=1000, batch_size=20) as producer:
        for i in range(300):
            producer.send("clicks", b"%d" % i)
        producer.flush()
        ids = {"producer_id": f"{producer.producer_id:016x}"}
    with Producer(zk, acks=0, audit=True, audit_window_ms=1000, batch_size=20) as fire:
        for i in range(120):
            fire.send("clicks", b"f%d" % i)
    wait_for(lambda: sum(r["acknowledged"] + r["unacknowledged"]
                         for r in _records(zk, source="producer")) == 420,
             what="the producers' records to be visible")
    records = _records(zk, source="producer")
    acked = [r for r in records if r["producer_id"] == ids["producer_id"]]
    assert sum(r["acknowledged"] for r in acked) == 300
    assert sum(r["unacknowledged"] for r in acked) == 0
    fired = [r for r in records if r["producer_id"] != ids["producer_id"]]
    assert sum(r["unacknowledged"] for r in fired) == 120
    assert sum(r["acknowledged"] for r in fired) == 0
    assert all(r["window_start"] % 1000 == 0 and r["host"] and r["pid"] for r in records)
    # what the log holds per window of the messages' own timestamps is what was counted
    per_window = {}
    for r in records:
        key = ("clicks", r["window_start"])
        per_window[key] = per_window.get(key, 0) + r["acknowledged"] + r["unacknowledged"]
    pool = BrokerPool(zk)
    try:
        wait_for(lambda: dict(stored_counts(pool, "clicks", 1000)) == per_window,
                 what="the log's counts by timestamp to match the producers' records")
    finally:
        pool.close()


def test_group_consumer_counts_what_it_committed_by_the_messages_windows(zk, broker):
    create_topic(zk, "views", 2, [broker])
    with Producer(zk, acks=1, audit=True, audit_window_ms=1000) as producer:
        for i in range(400):
            producer.send("views", b"%d" % i)
    wait_for(lambda: sum(_sums(_records(zk, source="producer"), "acknowledged").values())
             == 400, what="the producer's records to be visible")
    produced = _sums(_records(zk, source="producer"), "acknowledged")
    seen = 0
    with Consumer(["views"], "readers", zk, audit=True, audit_window_ms=1000,
                  auto_commit_ms=100) as consumer:
        for m in consumer:
            seen += 1
            if seen == 400:
                break
        consumer.commit()
    assert seen == 400
    wait_for(lambda: _sums(_records(zk, source="consumer", group="readers"), "consumed")
             == produced, what="the group's records to match the producer's")


def _zookeeper_ports(connect: str) -> set[int]:
    """The local ports of this process's connections to the ZooKeeper server of ``connect``."""
    port = int(connect.split("/", 1)[0].rsplit(":", 1)[1])
    return {c.laddr.port for c in psutil.Process().net_connections("tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED}


def test_an_audited_producer_sets_its_publisher_up_at_start_on_its_own_session(
        zk, zk_client, broker):
    """The publisher shares the producer's ZooKeeper session and cluster view (a session of its
    own would watch every topic's config node again), and makes __audit, its route and its
    connection while the producer starts: a flush's publish is then one round trip."""
    create_topic(zk, "clicks", 1, [broker])
    before = _zookeeper_ports(zk)
    with Producer(zk, acks=1, audit=True, audit_window_ms=1000) as producer:
        wait_for(lambda: producer._publisher.ready, what="the audit publisher to be set up")
        assert zk_client.exists(paths.topic_config(AUDIT_TOPIC)) is not None
        for i in range(30):
            producer.send("clicks", b"%d" % i)
        producer.flush()
        assert len(_zookeeper_ports(zk) - before) == 1
        ids = f"{producer.producer_id:016x}"
    wait_for(lambda: sum(r["acknowledged"] for r in _records(zk, producer_id=ids)) == 30,
             what="the producer's records to be visible")


def test_a_pool_on_another_pools_session_has_sockets_of_its_own_and_leaves_the_session(
        zk, broker):
    create_topic(zk, "clicks", 1, [broker])
    pool = BrokerPool(zk)
    try:
        sibling = BrokerPool(session_of=pool)
        assert sibling.zk is pool.zk and sibling.partitions("clicks") == 1
        assert sibling.connection("clicks", 0) is not pool.connection("clicks", 0)
        sibling.close()
        assert pool.zk.connected and pool.offset("clicks", 0, protocol.LATEST) == 0
    finally:
        pool.close()
