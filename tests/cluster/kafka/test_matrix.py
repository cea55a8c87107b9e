"""The issue's test matrix with real Kafka clients against a real broker: each client
(kafka-python, confluent-kafka, kcat, kafkajs) produces MESSAGES keyed messages with acks 0, 1
and all, then reads them back with its own consumer by partition from the earliest offset and
from a timestamp (its own ListOffsets call). None lost, none changed, order kept per partition;
the judge is what each client delivers, never sluice's own encoder.

kcat and kafkajs run as subprocesses (kafkajs: tests/cluster/kafka/js/kafkajs_client.js
with the kafkajs that ``make kafkajs`` installs there)."""
from __future__ import annotations

import os

import pytest

from tests.cluster.kafka.kafka_clients import CLIENTS, check_per_partition, sent_rows

# The issue asks for 100,000 messages per client per acks. Measured on the 2-core machine at
# -n 2 (shared with other runs, load 5-9): at 100,000 the 12 produce/read cases take 262 s of
# test time, about 180 s of wall time; at 5,000 the whole Kafka matrix (these, the compressed
# cases, the native crossings, the groups and the leader changes: 42 tests) takes 80-140 s.
# The default keeps `make test` bounded; SLUICE_MATRIX_MESSAGES=100000 runs the size.
MESSAGES = int(os.environ.get("SLUICE_MATRIX_MESSAGES", "5000"))

TOPIC = "matrix"
PARTITIONS = 3
SETTINGS = {"log": {"visible_after_flush": False}}


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
    client.produce(bootstrap, TOPIC, rows, acks)
    got = client.read(bootstrap, TOPIC, PARTITIONS, len(rows))
    by_partition = check_per_partition(rows, got)
    assert set(by_partition) == set(range(PARTITIONS)), "17 keys left a partition empty"
    # from a timestamp: the middle record of partition 0's
    part0 = sorted(by_partition[0], key=lambda r: r[1])
    timestamp = part0[len(part0) // 2][4]
    expected = expected_from(by_partition, timestamp)
    assert expected, "no record at or after the chosen timestamp"
    from_time = client.read(bootstrap, TOPIC, PARTITIONS, len(expected), timestamp)
    assert sorted(from_time) == sorted(expected)
    for p in by_partition:
        mine = [r[1] for r in from_time if r[0] == p]
        assert mine == sorted(mine)


CODECS = ("gzip", "snappy", "lz4", "zstd")
COMPRESSED_MESSAGES = 2000


@pytest.mark.parametrize("client,codec", [
    pytest.param(c.values[0], codec, marks=c.marks, id=f"{c.id}-{codec}")
    for c in CLIENTS for codec in CODECS if codec in c.values[0].codecs])
def test_client_compressed_batches_are_read_back_unchanged(kafka_broker, client, codec):
    proc = kafka_broker(TOPIC, PARTITIONS, **SETTINGS)
    bootstrap = proc.info["kafka_endpoint"]
    rows = sent_rows(COMPRESSED_MESSAGES, f"{client.name}-{codec}")
    client.produce(bootstrap, TOPIC, rows, 1, compression=codec)
    check_per_partition(rows, client.read(bootstrap, TOPIC, PARTITIONS, len(rows)))
