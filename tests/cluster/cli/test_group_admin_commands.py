"""``sluice groups reset-offsets|delete`` against a real broker and ZooKeeper: the plan, each
target, boundaries refused with the nearest ones named, refusal while native or Kafka members
are live, and consumers of both kinds starting where the reset put the group."""
from __future__ import annotations

import json
import subprocess

import pytest

from broker import message, protocol
from clients import Consumer, Producer, SimpleConsumer
from clients.brokers import BrokerPool
from cluster.cli import main
from coordinator import consumer_registry, zk as zkconnect
from coordinator.offsets import OffsetStore
from tests.cluster.cli.test_bad_arguments import one_line_error, sluice
from tests.helpers import wait_for

STAMPS = (1000, 2000, 3000)


def _produce_records(pool: BrokerPool, topic: str, partition: int) -> None:
    """Magic 2 messages (what Kafka clients write) stamped STAMPS, in one acks=1 set."""
    body = b"".join(message.encode_record(b"at %d" % t, None, t) for t in STAMPS)
    frames = pool.call(topic, partition,
                       lambda corr: protocol.encode_produce(corr, topic, partition, 1), body)
    protocol.decode_response(frames[0].buffer, protocol.PRODUCE_REPLY)


def _boundaries(zookeeper: str, topic: str, partition: int, count: int) -> list[int]:
    with SimpleConsumer(topic, partition, zookeeper=zookeeper, timeout_ms=5000) as reader:
        got = []
        for m in reader:
            got.append(m)
            if len(got) == count:
                break
    return [m.offset for m in got] + [got[-1].next_offset]


class _Cli:
    """``sluice`` run in this process (each subprocess costs seconds on a loaded machine);
    the exit code and the one line on stderr are main()'s, as from the console script."""

    def __init__(self, capsys, zookeeper: str):
        self.capsys, self.zk = capsys, ["--zookeeper", zookeeper]

    def __call__(self, *args) -> subprocess.CompletedProcess:
        self.capsys.readouterr()
        code = main([*args, *self.zk])
        out, err = self.capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    def reset(self, *args) -> dict:
        out = self("groups", "reset-offsets", "g", "--topic", "t", *args, "--json")
        assert out.returncode == 0, out.stderr
        return {r["partition"]: r for r in json.loads(out.stdout)["partitions"]}


def test_reset_offsets_and_delete_a_group(cluster_factory, capsys):
    cluster = cluster_factory(brokers=1, broker_settings={"log": {"flush_ms": 20}})
    zk = ["--zookeeper", cluster.zookeeper]
    cli = _Cli(capsys, cluster.zookeeper)
    assert cli("topics", "create", "t", "--partitions", "2").returncode == 0
    with Producer(zookeeper=cluster.zookeeper, acks=1) as producer:
        for i in range(10):
            producer.send("t", b"message-%d%s" % (i, b"x" * (i % 3)), partition=0)  # sizes vary
    pool = BrokerPool(cluster.zookeeper)
    client = zkconnect.connect(cluster.zookeeper)
    try:
        _produce_records(pool, "t", 1)
        b = _boundaries(cluster.zookeeper, "t", 0, 10)          # 10 message starts + the end
        stamped = _boundaries(cluster.zookeeper, "t", 1, 3)
        store = OffsetStore(client, "g")
        store.commit({("t", 0): b[2]})

        # a live native member: refused, one line, nothing written
        with Consumer(["t"], group="g", zookeeper=cluster.zookeeper, auto_commit_ms=None):
            wait_for(lambda: consumer_registry.members(client, "g"), what="the member")
            one_line_error(cli("groups", "reset-offsets", "g", "--topic", "t", "--to-earliest"),
                           1, "group g has 1 live member")
            one_line_error(cli("groups", "delete", "g"), 1, "live member")
        wait_for(lambda: not consumer_registry.members(client, "g"), what="the member to leave")
        assert store.fetch("t", 0) == b[2]

        # the dry run prints the plan and changes nothing
        out = sluice("groups", "reset-offsets", "g", "--topic", "t", "--to-earliest",
                     "--dry-run", *zk)
        assert out.returncode == 0, out.stderr
        assert "partition" in out.stdout and "current" in out.stdout and "new" in out.stdout
        assert store.fetch("t", 0) == b[2] and store.fetch("t", 1) is None

        # each target, written
        plan = cli.reset("--to-earliest")
        assert (plan[0]["current"], plan[0]["new"]) == (b[2], 0)
        assert (plan[1]["current"], plan[1]["new"]) == (None, 0)
        assert cli.reset("--partition", "0", "--shift-by", "5")[0]["new"] == b[5]
        assert cli.reset("--partition", "0", "--shift-by", "-3")[0]["new"] == b[2]
        back = cli.reset("--partition", "0", "--shift-by", "-7")[0]
        assert (back["new"], back["note"]) == (0, "only 2 message(s) to the log start")
        assert cli.reset("--partition", "0", "--shift-by", "100")[0]["new"] == b[10]
        at = cli.reset("--partition", "1", "--to-datetime", "1970-01-01T00:00:01.500Z")[1]
        assert at["new"] == stamped[1]
        unstamped = cli.reset("--partition", "0", "--to-datetime", "1970-01-01T00:00:01Z")[0]
        assert unstamped["new"] == b[10] and "no message" in unstamped["note"]
        assert cli.reset("--to-latest")[1]["new"] == stamped[3]
        assert store.fetch("t", 1) == stamped[3]

        # an offset inside a message: refused with the boundaries around it
        one_line_error(cli("groups", "reset-offsets", "g", "--topic", "t", "--partition", "0",
                           "--to-offset", str(b[3] + 2)), 1,
                       f"--to-offset {b[3] + 2} is not a message boundary of t/0",
                       str(b[3]), str(b[4]))
        assert store.fetch("t", 0) == b[10]
        assert cli.reset("--partition", "0", "--to-offset", str(b[3]))[0]["new"] == b[3]
        cli.reset("--partition", "1", "--to-offset", str(stamped[2]))

        # both kinds of consumer start where the reset put the group
        with Consumer(["t"], group="g", zookeeper=cluster.zookeeper, auto_commit_ms=None) as c:
            first = {}
            wait_for(lambda: [first.setdefault(m.partition, m.offset) for m in c.poll(200)]
                     is not None and len(first) == 2, what="a message of each partition")
        assert first == {0: b[3], 1: stamped[2]}
        wait_for(lambda: not consumer_registry.members(client, "g"), what="the member to leave")
        cli.reset("--partition", "0", "--to-offset", str(b[3]))     # it committed what it read
        _kafka_member_starts_there_and_blocks_admin(cluster, client, cli, b[3])

        assert cli("groups", "delete", "g").returncode == 0
        assert "g" not in consumer_registry.groups(client)
        assert store.fetch("t", 0) is None
        one_line_error(sluice("groups", "delete", "g", *zk), 1, "unknown group g")
    finally:
        client.stop()
        pool.close()


def _kafka_member_starts_there_and_blocks_admin(cluster, client, cli, offset: int) -> None:
    from kafka import KafkaConsumer
    bootstrap = cluster.status()["kafka_bootstrap"]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id="g",
                             enable_auto_commit=False, session_timeout_ms=6000,
                             metadata_max_age_ms=1000)
    try:
        # the group leader assigns from its metadata: without t's it assigns nothing
        wait_for(lambda: consumer.partitions_for_topic("t"), what="kafka-python's metadata")
        consumer.subscribe(["t"])
        first = {}
        wait_for(lambda: [first.setdefault(tp.partition, rs[0].offset)
                          for tp, rs in consumer.poll(timeout_ms=200).items()] is not None
                 and 0 in first and consumer_registry.kafka_members(client, "g"),
                 30, what="the Kafka member to read partition 0 and be published")
        assert first[0] == offset
        one_line_error(cli("groups", "reset-offsets", "g", "--topic", "t", "--to-latest"), 1,
                       "live member")
        one_line_error(cli("groups", "delete", "g"), 1, "live member")
    finally:
        consumer.close()
    wait_for(lambda: not consumer_registry.kafka_members(client, "g"), 30,
             what="the Kafka member to leave")


@pytest.mark.parametrize("args, words", [
    (["--topic", "t"], ["one of the arguments --to-earliest"]),
    (["--topic", "t", "--to-earliest", "--to-latest"], ["not allowed with"]),
    (["--topic", "t", "--to-datetime", "yesterday"], ["--to-datetime", "ISO 8601"]),
    (["--topic", "t", "--shift-by", "two"], ["--shift-by", "whole number"]),
    (["--topic", "t", "--to-offset", "-4"], ["--to-offset", ">= 0"]),
    (["--to-earliest"], ["--topic"]),
])
def test_bad_reset_arguments_are_one_line_and_exit_2(capsys, args, words):
    with pytest.raises(SystemExit) as ended:
        main(["groups", "reset-offsets", "g", *args])
    out = subprocess.CompletedProcess([], ended.value.code, "", capsys.readouterr().err)
    one_line_error(out, 2, *words)


def test_the_plan_rules_worked_examples():
    import doctest
    from cluster.cli import offset_reset
    assert doctest.testmod(offset_reset).failed == 0
