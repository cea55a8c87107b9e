"""``sluice topics config|alter|delete`` against a real supervised cluster: the brokers apply a
topic's settings, open added partitions and remove a deleted topic's logs, all without a
restart; clients and groups follow."""
from __future__ import annotations

import json

from kazoo.exceptions import NoNodeError

from clients import Consumer, Producer
from coordinator import paths, zk as zkconnect
from tests.cluster.cli.test_bad_arguments import one_line_error, sluice
from tests.helpers import wait_for


def _segments(cluster, topic: str, partition: int) -> int:
    return sum(len(list((cluster.data_dir / f"broker-{b}" / topic / str(partition)).glob("*.log")))
               for b in range(2))


def test_config_alter_and_delete_a_topic_on_running_brokers(cluster_factory):
    cluster = cluster_factory(brokers=2, broker_settings={"log": {"flush_ms": 50}})
    zk = ["--zookeeper", cluster.zookeeper]
    assert sluice("topics", "create", "t", "--partitions", "2", "--replication-factor", "2",
                  *zk).returncode == 0

    # config: stored, shown, refused in one line, applied by the running brokers
    out = sluice("topics", "config", "t", "--set", "segment.bytes=300", "--set",
                 "cleanup.policy=compact", "--set", "min.insync.replicas=2", "--set",
                 "min.cleanable.dirty.ratio=0.2", "--json", *zk)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["config"] == {"segment.bytes": 300, "cleanup.policy": "compact",
                                                "min.insync.replicas": 2,
                                                "min.cleanable.dirty.ratio": 0.2}
    described = json.loads(sluice("topics", "describe", "t", "--json", *zk).stdout)
    assert described["config"]["segment.bytes"] == 300 and described["min_insync_replicas"] == 2
    one_line_error(sluice("topics", "config", "t", "--set", "retention.hours=1", *zk), 1,
                   "unknown topic setting 'retention.hours'")
    one_line_error(sluice("topics", "config", "t", "--set", "min.cleanable.dirty.ratio=2", *zk),
                   1, "min.cleanable.dirty.ratio must be a number 0..1, not '2'")
    one_line_error(sluice("topics", "config", "t", "--set", "min.insync.replicas=3", *zk), 1,
                   "min.insync.replicas must be 1..2")
    one_line_error(sluice("topics", "config", "nope", "--set", "flush.ms=5", *zk), 1,
                   "unknown topic nope")
    one_line_error(sluice("produce", "t", "--partition", "0", *zk, stdin="no key\n"), 1,
                   "t is compacted", "every message needs a key")
    lines = "".join(f"k{i % 3}:message-{i:04d}-{'x' * 40}\n" for i in range(40))
    assert sluice("produce", "t", "--partition", "0", "--acks", "all", "--batch-size", "1",
                  "--key-separator", ":", *zk, stdin=lines).returncode == 0
    wait_for(lambda: _segments(cluster, "t", 0) >= 2 * 3, 30,
             what="both replicas to roll segments of 300 bytes")

    # alter: the warning first, then new partitions opened, a running producer and group follow
    with Producer(zookeeper=cluster.zookeeper, acks=1) as producer, \
            Consumer(["t"], group="g", zookeeper=cluster.zookeeper,
                     offset_store="zookeeper") as consumer:     # the ZooKeeper store's delete
        wait_for(lambda: _owned(cluster, "g", "t") == [0, 1], 30, what="the group to own 0, 1")
        one_line_error(sluice("topics", "alter", "t", "--partitions", "2", *zk), 1,
                       "can only be added", "more than 2")
        out = sluice("topics", "alter", "t", "--partitions", "4", "--json", *zk)
        assert out.returncode == 0, out.stderr
        assert "per-key order across the change is not kept" in out.stderr
        altered = json.loads(out.stdout)
        assert (altered["previous_partitions"], altered["partitions"]) == (2, 4)
        assert all(sorted(r) == [0, 1] for r in altered["added_replicas"])
        for p in (2, 3):
            wait_for(lambda: all((cluster.data_dir / f"broker-{b}" / "t" / str(p)).is_dir()
                                 for b in range(2)), 30, what=f"both brokers to open t/{p}")

        def sent():
            try:
                producer.send("t", b"on-a-new-partition", key=b"k", partition=3)
            except Exception as exc:
                return None if "partitions 0..1" in str(exc) else exc
            return True
        assert wait_for(sent, 30, what="the producer to see partition 3") is True
        producer.flush()
        wait_for(lambda: _owned(cluster, "g", "t") == [0, 1, 2, 3], 60,
                 what="the group to own the new partitions")
        got = wait_for(lambda: _poll_for(consumer, 3), 60, what="the group to read t/3")
        assert got.value == b"on-a-new-partition"
        consumer.commit()

    # delete: refused while produced to, --force deletes; brokers drop the logs; offsets go
    assert sluice("produce", "t", "--partition", "1", "--key-separator", ":", *zk,
                  stdin="k:late\n").returncode == 0
    one_line_error(sluice("topics", "delete", "t", *zk), 1, "not deleting topic t",
                   "producers are connected", "--force")
    client = zkconnect.connect(cluster.zookeeper)
    try:
        assert client.exists(paths.offsets("g", "t"))
        out = sluice("topics", "delete", "t", "--force", "--json", *zk)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["groups_offsets_deleted"] == ["g"]
        assert not client.exists(paths.topic_config("t"))
        assert not client.exists(paths.offsets("g", "t"))
        wait_for(lambda: not any((cluster.data_dir / f"broker-{b}" / "t").exists()
                                 for b in range(2)), 30, what="both brokers to remove t's logs")
        wait_for(lambda: not client.exists(paths.broker_topic("t")), 30,
                 what="the brokers to withdraw their announcements")
    finally:
        client.stop()
    one_line_error(sluice("topics", "describe", "t", *zk), 1, "unknown topic t")
    one_line_error(sluice("topics", "delete", "t", *zk), 1, "unknown topic t")
    assert all(p["alive"] for p in cluster.status()["processes"])
    assert "died" not in (cluster.data_dir / "supervisor.log").read_text()   # no broker restarted

    # the name is free again: a new topic starts empty
    assert sluice("topics", "create", "t", "--partitions", "1", *zk).returncode == 0
    assert sluice("produce", "t", *zk, stdin="fresh\n").returncode == 0
    out = sluice("consume", "t", "--partition", "0", "--max-messages", "1", "--timeout-ms",
                 "20000", "--json", *zk)
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout.splitlines()[0])
    assert (first["offset"], first["value"]) == (0, "fresh")
    # a topic never produced to since its brokers started is deleted without --force
    assert sluice("topics", "create", "quiet", "--partitions", "1", *zk).returncode == 0
    assert sluice("topics", "delete", "quiet", *zk).returncode == 0


def _owned(cluster, group: str, topic: str) -> list[int]:
    client = zkconnect.connect(cluster.zookeeper)
    try:
        return sorted(int(p) for p in client.get_children(paths.owners(group, topic)))
    except NoNodeError:
        return []
    finally:
        client.stop()


def _poll_for(consumer, partition: int):
    for message in consumer.poll(500):
        if message.partition == partition:
            return message
    return None


def test_bad_admin_arguments_are_one_line_before_any_cluster_is_asked(tmp_path):
    one_line_error(sluice("topics", "alter", "t", "--partitions", "0"), 2, "--partitions", ">= 1")
    one_line_error(sluice("topics", "delete", "t", "--idle-seconds", "-1"), 2, "--idle-seconds")
    one_line_error(sluice("topics", "config", "t", "--set", "retention.ms",
                          "--data-dir", str(tmp_path)), 1, "expected name=value")
    one_line_error(sluice("topics", "config", "t", "--set", "flush.ms=0",
                          "--data-dir", str(tmp_path)), 1, "flush.ms must be an integer >= 1")
