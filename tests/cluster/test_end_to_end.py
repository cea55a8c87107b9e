"""The issue's acceptance path through the CLI: a supervised 3-broker cluster, 100,000 keyed
messages in and out of a 4-partition topic, a SIGKILLed broker, and a torn segment repaired."""
import json
import os
import signal
import subprocess
import sys


from broker import message
from clients import Producer, SimpleConsumer
from tests.helpers import GroupOffsets, ROOT, BrokerProcess, wait_for

COUNT = 100_000


def sluice(cluster_zk, *args, stdin=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args, "--zookeeper", cluster_zk],
                          cwd=ROOT, input=stdin, capture_output=True, timeout=timeout)


def consume_all(zk, topic, partitions):
    rows = []
    for partition in range(partitions):
        out = sluice(zk, "consume", topic, "--partition", str(partition), "--offset", "earliest",
                     "--timeout-ms", "1500", "--json")
        assert out.returncode == 0, out.stderr
        rows += [json.loads(line) for line in out.stdout.splitlines()]
    return rows


def test_cli_moves_100k_keyed_messages_and_survives_a_broker_kill(supervised_cluster):
    zk = supervised_cluster.zookeeper
    out = sluice(zk, "topics", "create", "clicks", "--partitions", "4")
    assert out.returncode == 0, out.stderr
    lines = b"".join(b"user-%d:event-%d\n" % (i % 97, i) for i in range(COUNT))
    out = sluice(zk, "produce", "clicks", "--key-separator", ":", "--acks", "1", "--json",
                 stdin=lines)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["acked"] == COUNT

    expected = sorted(line.decode() for line in lines.splitlines())

    def all_visible():
        rows = consume_all(zk, "clicks", 4)
        return rows if len(rows) == COUNT else None

    rows = wait_for(all_visible, 60, interval=1, what="every message to be flushed and visible")
    assert sorted(f"{r['key']}:{r['value']}" for r in rows) == expected
    for partition in range(4):
        offsets = [r["offset"] for r in rows if r["partition"] == partition]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)

    victim = supervised_cluster.broker_pids()[1]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: supervised_cluster.broker_pids()[1] not in (None, victim), 30,
             what="the supervisor to restart broker 1")
    assert "died with exit code -9" in supervised_cluster.log_text()
    after = wait_for(all_visible, 60, interval=1, what="the restarted broker to serve again")
    assert sorted(f"{r['key']}:{r['value']}" for r in after) == expected

    out = sluice(zk, "topics", "describe", "clicks", "--json")
    described = json.loads(out.stdout)["partitions"]
    assert all(p["alive"] for p in described)
    assert sum(p["end_offset"] for p in described) == sum(r["next_offset"] - r["offset"] for r in rows)


def _ten_messages(zk, tmp_path, topic):
    """A broker with ``topic`` holding message-00..09 in one segment, stopped; its path."""
    broker = BrokerProcess(zk, tmp_path, 0, log={"flush_ms": 50}).start()
    from coordinator import topics, zk as zkmod
    client = zkmod.connect(zk)
    topics.create(client, topic, 1)
    client.stop()
    broker.wait_hosting(topic, 1)
    with Producer(zk, acks=1) as producer:
        for i in range(10):
            producer.send(topic, b"message-%02d" % i)
    assert broker.stop() == 0
    segment = tmp_path / "broker-0" / topic / "0" / ("0" * 20 + ".log")
    assert segment.stat().st_size == 10 * len(message.encode(b"message-00"))
    return broker, segment


def test_a_torn_tail_is_cut_at_restart(zk, tmp_path):
    broker, segment = _ten_messages(zk, tmp_path, "torn")
    try:
        size = len(message.encode(b"message-00"))
        with open(segment, "r+b") as f:
            f.truncate(10 * size - 3)
        broker.start()
        broker.wait_hosting("torn", 1)
        with SimpleConsumer("torn", 0, zookeeper=zk, timeout_ms=1000) as consumer:
            assert [m.value for m in consumer] == [b"message-%02d" % i for i in range(9)]
        assert segment.stat().st_size == 9 * size
        assert broker.log_text().count("recovery cut") == 1
    finally:
        broker.stop()


def test_a_corrupt_message_inside_the_last_segment_is_skipped_and_the_rest_kept(zk, tmp_path):
    """A flipped byte in message 6 with whole messages after it: the broker keeps them (a
    corrupt message inside the log, not a torn tail) and the consumer skips message 6 alone."""
    broker, segment = _ten_messages(zk, tmp_path, "corrupt")
    try:
        size = len(message.encode(b"message-00"))
        data = bytearray(segment.read_bytes())
        data[6 * size + 12] ^= 0x20
        segment.write_bytes(bytes(data))
        broker.start()
        broker.wait_hosting("corrupt", 1)
        with Producer(zk, acks=1) as producer:
            producer.send("corrupt", b"after-repair")
        with SimpleConsumer("corrupt", 0, zookeeper=zk, timeout_ms=1000) as consumer:
            values = [m.value for m in consumer]
            assert (consumer.data_loss_events, consumer.data_loss_bytes) == (1, size)
        assert values == [b"message-%02d" % i for i in range(10) if i != 6] + [b"after-repair"]
        assert "recovery cut" not in broker.log_text()
    finally:
        broker.stop()


def test_consume_with_a_group_commits_exactly_what_it_printed(zk, tmp_path):
    """Hole 1: 100,000 messages in one partition; each run prints the next ten, and the group's
    committed offset is the next_offset of the last message printed, never the polled batch."""
    from coordinator import topics, zk as zkmod
    broker = BrokerProcess(zk, tmp_path, 0, log={"flush_ms": 50}).start()
    client = zkmod.connect(zk)
    try:
        topics.create(client, "hundredk", 1)
        broker.wait_hosting("hundredk", 1)
        with Producer(zk, acks=1, batch_size=50) as producer:
            for i in range(COUNT):
                producer.send("hundredk", b"v%06d" % i)
        end = COUNT * (9 + 7)
        with SimpleConsumer("hundredk", 0, zookeeper=zk) as watch:
            wait_for(lambda: watch.offset_of("latest") == end, 60, what="every message visible")
        store = GroupOffsets(zk, "readers")
        for run in range(2):
            out = sluice(zk, "consume", "hundredk", "--group", "readers", "--max-messages", "10",
                         "--json")
            assert out.returncode == 0, out.stderr
            rows = [json.loads(line) for line in out.stdout.splitlines()]
            assert [r["value"] for r in rows] == [f"v{i:06d}" for i in range(10 * run,
                                                                               10 * run + 10)]
            assert store.fetch("hundredk", 0) == rows[-1]["next_offset"]
        out = sluice(zk, "consume", "hundredk", "--group", "readers", "--timeout-ms", "2000")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.split()
        assert lines[0] == b"v000020" and lines[-1] == b"v%06d" % (COUNT - 1)
        assert len(lines) == COUNT - 20
        assert store.fetch("hundredk", 0) == end
    finally:
        client.stop()
        client.close()
        broker.stop()
