"""The four Kafka clients of the issue's tests, each behind the same two calls, so that the
tests judge each by its own behaviour: ``produce(bootstrap, topic, rows, acks)`` and
``read(bootstrap, topic, partitions, count, timestamp=None)``, the second giving
``[(partition, offset, key, value, timestamp)]`` for ``count`` records from the earliest offset
of every partition, or from the offsets the client's own ListOffsets call gives for
``timestamp``. kcat and kafkajs run as subprocesses (kafkajs:
tests/cluster/kafka/js/kafkajs_client.js with the kafkajs that ``make kafkajs`` installs there)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

KEYS = 17
ROOT = Path(__file__).resolve().parents[3]
KAFKAJS_HOME = Path(__file__).with_name("js") / "node_modules"
KAFKAJS_SCRIPT = Path(__file__).with_name("js") / "kafkajs_client.js"
TIMEOUT = 600

needs_kcat = pytest.mark.skipif(shutil.which("kcat") is None,
                                reason="kcat is not installed (make test installs Debian's kcat)")
needs_kafkajs = pytest.mark.skipif(
    shutil.which("node") is None or not (KAFKAJS_HOME / "kafkajs").is_dir(),
    reason="kafkajs is not installed (make test installs it with npm into "
           "tests/cluster/kafka/js/ when node and npm exist)")


def sent_rows(count: int, tag: str) -> list[tuple[str, str]]:
    """What every client produces: key k<i % KEYS>, value <tag>-<i> (kafkajs_client.js
    makes the same rows)."""
    return [(f"k{i % KEYS}", f"{tag}-{i}") for i in range(count)]


class KafkaPython:
    name = "kafka-python"
    codecs = ("gzip", "snappy", "lz4", "zstd")

    @staticmethod
    def produce(bootstrap, topic, rows, acks, compression=None):
        from kafka import KafkaProducer
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks=acks, linger_ms=5,
                                 enable_idempotence=acks == "all",
                                 compression_type=compression)
        futures = [producer.send(topic, key=k.encode(), value=v.encode()) for k, v in rows]
        producer.flush(TIMEOUT)
        producer.close()
        if acks != 0:
            failed = [f.exception for f in futures if not f.succeeded()]
            assert not failed, failed[:3]

    @staticmethod
    def read(bootstrap, topic, partitions, count, timestamp=None):
        from kafka import KafkaConsumer, TopicPartition
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                 auto_offset_reset="earliest", consumer_timeout_ms=30_000)
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
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
    codecs = ("gzip", "snappy", "lz4", "zstd")

    @staticmethod
    def produce(bootstrap, topic, rows, acks, compression=None):
        from confluent_kafka import Producer
        failures = []
        producer = Producer({"bootstrap.servers": bootstrap, "acks": str(acks),
                             "linger.ms": 5, "enable.idempotence": acks == "all",
                             "compression.type": compression or "none"})

        def delivered(err, msg):
            if err is not None:
                failures.append(err)
        for k, v in rows:
            while True:
                try:
                    producer.produce(topic, key=k, value=v, on_delivery=delivered)
                    break
                except BufferError:                  # its queue is full: let it drain
                    producer.poll(0.1)
            producer.poll(0)
        assert producer.flush(TIMEOUT) == 0
        del producer                                 # its threads stop before the broker's
        assert failures == [], failures[:3]

    @staticmethod
    def read(bootstrap, topic, partitions, count, timestamp=None):
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                             "enable.auto.commit": False})
        try:
            if timestamp is None:
                start = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
            else:
                start = consumer.offsets_for_times(
                    [TopicPartition(topic, p, timestamp) for p in range(partitions)], timeout=30)
                assert all(tp.error is None for tp in start), start
                start = [TopicPartition(topic, tp.partition,
                                        tp.offset if tp.offset >= 0 else OFFSET_END)
                         for tp in start]
            consumer.assign(start)
            got = []
            while len(got) < count:
                # consume() hands over up to a batch of messages per call: poll() per message
                # cost more Python time than the broker's fetches at 100,000 messages
                batch = consumer.consume(min(count - len(got), 1000), 30)
                assert batch, f"no message after {len(got)} of {count}"
                for msg in batch:
                    assert msg.error() is None, msg.error()
                    got.append((msg.partition(), msg.offset(), _text(msg.key()),
                                _text(msg.value()), msg.timestamp()[1]))
            return got
        finally:
            consumer.close()


class Kcat:
    name = "kcat"
    codecs = ("gzip", "snappy", "lz4", "zstd")

    @staticmethod
    def produce(bootstrap, topic, rows, acks, compression=None):
        lines = "".join(f"{k}:{v}\n" for k, v in rows).encode()
        _run(["kcat", "-b", bootstrap, "-P", "-t", topic, "-K", ":", "-X", f"acks={acks}",
              "-z", compression or "none"], lines)

    @staticmethod
    def read(bootstrap, topic, partitions, count, timestamp=None):
        start = "beginning" if timestamp is None else f"s@{timestamp}"
        out = _run(["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", start, "-c", str(count),
                    "-f", "%p\t%o\t%k\t%s\t%T\n"])
        got = []
        for line in out.decode().splitlines():
            p, o, k, v, t = line.split("\t")
            got.append((int(p), int(o), k, v, int(t)))
        return got


class Kafkajs:
    name = "kafkajs"
    codecs = ("gzip",)                  # the others need plugins kafkajs does not ship
    groups = 0

    @staticmethod
    def _node(*args):
        env = dict(os.environ, KAFKAJS_HOME=str(KAFKAJS_HOME))
        return _run(["node", str(KAFKAJS_SCRIPT), *map(str, args)], env=env)

    @classmethod
    def produce(cls, bootstrap, topic, rows, acks, compression=None):
        # the script makes the same rows as sent_rows from (count, tag)
        tag = rows[0][1].rsplit("-", 1)[0]
        assert rows == sent_rows(len(rows), tag)
        out = cls._node("produce", bootstrap, topic, {"all": -1}.get(acks, acks), len(rows), tag,
                        compression or "none")
        assert json.loads(out) == {"sent": len(rows)}

    @classmethod
    def read(cls, bootstrap, topic, partitions, count, timestamp=None):
        cls.groups += 1
        args = ["consume", bootstrap, topic, f"matrix-js-{cls.groups}", count]
        out = cls._node(*args, *([] if timestamp is None else [timestamp]))
        rows = json.loads("[" + ",".join(out.decode().splitlines()) + "]")   # one parse
        return [tuple(row) for row in rows]


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
    assert Counter((k, v) for _, _, k, v, _ in got) == Counter(rows)
    by_partition: dict[int, list] = {}
    for record in got:
        by_partition.setdefault(record[0], []).append(record)
    for records in by_partition.values():
        offsets = [o for _, o, _, _, _ in records]
        assert offsets == sorted(set(offsets)), "offsets not rising within a partition"
    partition_of: dict[str, set] = {}
    read_of: dict[str, list] = {}                   # per key, its values in offset order
    for p, _, k, _, _ in got:
        partition_of.setdefault(k, set()).add(p)
    assert all(len(ps) == 1 for ps in partition_of.values()), partition_of
    for records in by_partition.values():
        for _, _, k, v, _ in records:
            read_of.setdefault(k, []).append(v)
    sent_of: dict[str, list] = {}
    for k, v in rows:
        sent_of.setdefault(k, []).append(v)
    for key in partition_of:
        assert read_of[key] == sent_of[key], key
    return by_partition
