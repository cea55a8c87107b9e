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

# The issue asks for 100,000 keyed messages per client with acks 0, 1 and all. Measured with
# `SLUICE_MATRIX_MESSAGES=N pytest -n 2 tests/cluster/kafka/test_matrix.py -k
# test_client_produces` on the 2-core machine, runs of the sizes alternated, load 2.3-8.3
# (session wall / summed test time of the 12 cases, medians):
#     5,000 per acks                                              35 s /  43 s   (6 runs)
#    33,334 per acks (100,000 per client split over the 3 acks)  57 s /  85 s   (5 runs)
#   100,000 per acks                                              58 s /  95 s   (3 runs)
# and 302 s / 500 s for 100,000 at load 4-10. Where it goes (py-spy at 100,000): kafka-python's
# cases are its own per-record Python (send, record decode: 60-70 %); in the confluent-kafka,
# kcat and kafkajs cases the broker's conversion (fetch about twice produce, since the records
# are read twice) and the client share it; the test's own checks are under 10 %. In `make test`
# (both workers busy) the added test time is half as much wall: +21 s for the split, +26 s for
# 100,000, and `make test` is at its 10-minute budget, so the default stays 5,000;
# SLUICE_MATRIX_MESSAGES=100000 runs the size.
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
