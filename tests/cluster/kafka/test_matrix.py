"""The issue's test matrix with real Kafka clients against a real broker: each client
(kafka-python, confluent-kafka, kcat, kafkajs) produces MESSAGES keyed messages with acks 0, 1
and all, then reads them back with its own consumer by partition from the earliest offset and
from a timestamp (its own ListOffsets call). None lost, none changed, order kept per partition;
the judge is what each client delivers, never sluice's own encoder.

kcat and kafkajs run as subprocesses (kafkajs: tests/cluster/kafka/clients/kafkajs_client.js
with the .node/ that ``make kafkajs`` installs)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

# The issue asks for 100,000 messages per client per acks. Measured on the 2-core machine
# (pytest --durations, -n 2): see the report of the matrix helper / docs; the default here is
# the size proposed to keep `make test` bounded, SLUICE_MATRIX_MESSAGES=100000 runs the full one.
MESSAGES = int(os.environ.get("SLUICE_MATRIX_MESSAGES", "5000"))

TOPIC = "matrix"
PARTITIONS = 3
KEYS = 17
SETTINGS = {"log": {"visible_after_flush": False}}
ROOT = Path(__file__).resolve().parents[3]
KAFKAJS_HOME = ROOT / ".node" / "node_modules"
KAFKAJS_SCRIPT = Path(__file__).with_name("clients") / "kafkajs_client.js"
TIMEOUT = 600

needs_kcat = pytest.mark.skipif(shutil.which("kcat") is None,
                                reason="kcat is not installed (make test installs Debian's kcat)")
needs_kafkajs = pytest.mark.skipif(
    shutil.which("node") is None or not (KAFKAJS_HOME / "kafkajs").is_dir(),
    reason="kafkajs is not installed (make test installs it from npm into .node/ when node "
           "and npm exist)")


def sent_rows(count: int, tag: str) -> list[tuple[str, str]]:
    """What every client produces: key k<i % KEYS>, value <tag>-<i> (kafkajs_client.js
    makes the same rows)."""
    return [(f"k{i % KEYS}", f"{tag}-{i}") for i in range(count)]


# --- the clients: produce(bootstrap, rows, acks), read(bootstrap, count, timestamp=None) ------
# read returns [(partition, offset, key, value, timestamp)] for `count` records from the
# earliest offset of every partition, or from the offsets the client's ListOffsets gives for
# `timestamp` (the first record at or after it).

class KafkaPython:
    name = "kafka-python"

    @staticmethod
    def produce(bootstrap, rows, acks):
        from kafka import KafkaProducer
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks=acks, linger_ms=5,
                                 enable_idempotence=acks == "all")
        futures = [producer.send(TOPIC, key=k.encode(), value=v.encode()) for k, v in rows]
        producer.flush(TIMEOUT)
        producer.close()
        if acks != 0:
            failed = [f.exception for f in futures if not f.succeeded()]
            assert not failed, failed[:3]

    @staticmethod
    def read(bootstrap, count, timestamp=None):
        from kafka import KafkaConsumer, TopicPartition
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                 auto_offset_reset="earliest", consumer_timeout_ms=30_000)
        try:
            tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            if timestamp is None:
                consumer.seek_to_beginning()
            else:
                found = consumer.offsets_for_times({tp: timestamp for tp in tps})
                for tp in tps:
                    if found[tp] is None:
                        consumer.seek_to_end(tp)
                    else:
                        consumer.seek(tp, found[tp].offset)
            got = []
            for r in consumer:
                got.append((r.partition, r.offset, _text(r.key), _text(r.value), r.timestamp))
                if len(got) >= count:
                    break
            return got
        finally:
            consumer.close()


class ConfluentKafka:
    name = "confluent-kafka"

    @staticmethod
    def produce(bootstrap, rows, acks):
        from confluent_kafka import Producer
        failures = []
        producer = Producer({"bootstrap.servers": bootstrap, "acks": str(acks),
                             "linger.ms": 5, "enable.idempotence": acks == "all"})

        def delivered(err, msg):
            if err is not None:
                failures.append(err)
        for k, v in rows:
            while True:
                try:
                    producer.produce(TOPIC, key=k, value=v, on_delivery=delivered)
                    break
                except BufferError:                  # its queue is full: let it drain
                    producer.poll(0.1)
            producer.poll(0)
        assert producer.flush(TIMEOUT) == 0
        del producer                                 # its threads stop before the broker's
        assert failures == [], failures[:3]

    @staticmethod
    def read(bootstrap, count, timestamp=None):
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                             "enable.auto.commit": False})
        try:
            if timestamp is None:
                start = [TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(PARTITIONS)]
            else:
                start = consumer.offsets_for_times(
                    [TopicPartition(TOPIC, p, timestamp) for p in range(PARTITIONS)], timeout=30)
                assert all(tp.error is None for tp in start), start
                start = [TopicPartition(TOPIC, tp.partition,
                                        tp.offset if tp.offset >= 0 else OFFSET_END)
                         for tp in start]
            consumer.assign(start)
            got = []
            while len(got) < count:
                msg = consumer.poll(30)
                assert msg is not None, f"no message after {len(got)} of {count}"
                assert msg.error() is None, msg.error()
                got.append((msg.partition(), msg.offset(), _text(msg.key()),
                            _text(msg.value()), msg.timestamp()[1]))
            return got
        finally:
            consumer.close()


class Kcat:
    name = "kcat"

    @staticmethod
    def produce(bootstrap, rows, acks):
        lines = "".join(f"{k}:{v}\n" for k, v in rows).encode()
        _run(["kcat", "-b", bootstrap, "-P", "-t", TOPIC, "-K", ":", "-X", f"acks={acks}"],
             lines)

    @staticmethod
    def read(bootstrap, count, timestamp=None):
        start = "beginning" if timestamp is None else f"s@{timestamp}"
        out = _run(["kcat", "-b", bootstrap, "-C", "-t", TOPIC, "-o", start, "-c", str(count),
                    "-f", "%p\t%o\t%k\t%s\t%T\n"])
        got = []
        for line in out.decode().splitlines():
            p, o, k, v, t = line.split("\t")
            got.append((int(p), int(o), k, v, int(t)))
        return got


class Kafkajs:
    name = "kafkajs"
    groups = 0

    @staticmethod
    def _node(*args):
        env = dict(os.environ, KAFKAJS_HOME=str(KAFKAJS_HOME))
        return _run(["node", str(KAFKAJS_SCRIPT), *map(str, args)], env=env)

    @classmethod
    def produce(cls, bootstrap, rows, acks):
        # the script makes the same rows as sent_rows from (count, tag)
        tag = rows[0][1].rsplit("-", 1)[0]
        assert rows == sent_rows(len(rows), tag)
        out = cls._node("produce", bootstrap, TOPIC, {"all": -1}.get(acks, acks), len(rows), tag)
        assert json.loads(out) == {"sent": len(rows)}

    @classmethod
    def read(cls, bootstrap, count, timestamp=None):
        cls.groups += 1
        args = ["consume", bootstrap, TOPIC, f"matrix-js-{cls.groups}", count]
        out = cls._node(*args, *([] if timestamp is None else [timestamp]))
        return [tuple(json.loads(line)) for line in out.decode().splitlines()]


def _text(b: bytes | None) -> str | None:
    return None if b is None else b.decode()


def _run(argv, stdin: bytes | None = None, env=None) -> bytes:
    done = subprocess.run(argv, input=stdin, capture_output=True, timeout=TIMEOUT, env=env)
    assert done.returncode == 0, (argv[:4], done.returncode, done.stderr.decode()[-3000:])
    return done.stdout


CLIENTS = [pytest.param(KafkaPython, id="kafka-python"),
           pytest.param(ConfluentKafka, id="confluent-kafka"),
           pytest.param(Kcat, id="kcat", marks=needs_kcat),
           pytest.param(Kafkajs, id="kafkajs", marks=needs_kafkajs)]


def check_per_partition(rows, got):
    """None lost, none changed or duplicated, offsets rising per partition, one key in one
    partition and in the order it was sent."""
    assert len(got) == len(rows), f"{len(got)} records read of {len(rows)} sent"
    assert sorted((k, v) for _, _, k, v, _ in got) == sorted(rows)
    by_partition: dict[int, list] = {}
    for record in got:
        by_partition.setdefault(record[0], []).append(record)
    for records in by_partition.values():
        offsets = [o for _, o, _, _, _ in records]
        assert offsets == sorted(set(offsets)), "offsets not rising within a partition"
    partition_of: dict[str, set] = {}
    for p, _, k, _, _ in got:
        partition_of.setdefault(k, set()).add(p)
    assert all(len(ps) == 1 for ps in partition_of.values()), partition_of
    for key in partition_of:
        sent = [v for k, v in rows if k == key]
        (p,) = partition_of[key]
        assert [v for _, _, k, v, _ in by_partition[p] if k == key] == sent, key
    return by_partition


def expected_from(by_partition: dict, timestamp: int) -> list:
    """Per partition, the records from the first one (in offset order) whose timestamp is at
    or after ``timestamp``: what a read from that timestamp must give."""
    expected = []
    for records in by_partition.values():
        ordered = sorted(records, key=lambda r: r[1])
        first = next((i for i, r in enumerate(ordered) if r[4] >= timestamp), len(ordered))
        expected += ordered[first:]
    return expected


@pytest.mark.parametrize("acks", [0, 1, "all"], ids=["acks0", "acks1", "acksall"])
@pytest.mark.parametrize("client", CLIENTS)
def test_client_produces_keyed_messages_and_reads_them_back(kafka_broker, client, acks):
    proc = kafka_broker(TOPIC, PARTITIONS, **SETTINGS)
    bootstrap = proc.info["kafka_endpoint"]
    rows = sent_rows(MESSAGES, f"{client.name}-acks{acks}")
    client.produce(bootstrap, rows, acks)
    got = client.read(bootstrap, len(rows))
    by_partition = check_per_partition(rows, got)
    assert set(by_partition) == set(range(PARTITIONS)), "17 keys left a partition empty"
    # from a timestamp: the middle record of partition 0's
    part0 = sorted(by_partition[0], key=lambda r: r[1])
    timestamp = part0[len(part0) // 2][4]
    expected = expected_from(by_partition, timestamp)
    assert expected, "no record at or after the chosen timestamp"
    from_time = client.read(bootstrap, len(expected), timestamp)
    assert sorted(from_time) == sorted(expected)
    for p in by_partition:
        mine = [r[1] for r in from_time if r[0] == p]
        assert mine == sorted(mine)
