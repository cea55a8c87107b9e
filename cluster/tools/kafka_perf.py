"""One Kafka client's producer or consumer throughput against sluice's Kafka listener.

The clients are unmodified kafka-python and confluent-kafka (librdkafka), configured as their
own perf tools would be, each sending ``messages`` values of ``size`` bytes (one random value,
again and again) to partition 0 with acks=1 (the native acks=1 row's promise), or reading a
partition from its beginning. A produce run ends when the client's ``flush()`` returns, i.e.
when every record is acknowledged; a consume run when ``messages`` records arrived (or none
came for ``timeout_s``). The figures are the shape of cluster/tools/perf.py's, which
cluster/tools/bench.py prints beside the native client's.
"""
from __future__ import annotations

import os
import time

from cluster.tools.perf import _figures
from coordinator.errors import InvalidArgument

CLIENTS = ("confluent-kafka", "kafka-python")
LINGER_MS = 5
CONFLUENT_GROUP = "sluice-bench"   # confluent-kafka needs a group.id, though it only assigns


def produce(client: str, bootstrap: str, topic: str, messages: int, size: int = 200,
            settings: dict | None = None) -> dict:
    """Produce with ``client`` (one of CLIENTS); the run's figures, ``error`` set when a
    record was not acknowledged. ``settings``: more of the client's own configuration (its
    names), e.g. SASL_SSL's (cluster/tools/kafka_tls_bench.py)."""
    if messages < 1 or size < 0:
        raise InvalidArgument("messages must be >= 1 and size >= 0")
    value = os.urandom(size)
    run = _confluent_produce if client == "confluent-kafka" else _kafka_python_produce
    elapsed, failed = run(bootstrap, topic, messages, value, settings or {})
    result = _figures("produce", topic, messages, size, elapsed, client=client, acks=1,
                      linger_ms=LINGER_MS)
    if failed:
        result["error"] = f"{failed} of {messages} records were not acknowledged"
    return result


def consume(client: str, bootstrap: str, topic: str, messages: int,
            timeout_s: float = 10.0, settings: dict | None = None) -> dict:
    """Read partition 0 of ``topic`` from its beginning with ``client``; the run's figures."""
    if messages < 1:
        raise InvalidArgument("messages must be >= 1")
    run = _confluent_consume if client == "confluent-kafka" else _kafka_python_consume
    elapsed, count, nbytes = run(bootstrap, topic, messages, timeout_s, settings or {})
    result = _figures("consume", topic, count, nbytes / count if count else 0, elapsed,
                      client=client, partition=0)
    if count < messages:
        result["error"] = (f"{client}: only {count} of {messages} records arrived (none for "
                           f"{timeout_s:g} s)")
    return result


def _flush_timeout(messages: int) -> float:
    """Seconds a producer's flush may take: what the client still holds (librdkafka queues
    every record of a run before the broker has taken much) at no less than 5,000 records/s."""
    return max(60.0, messages / 5000)


def _confluent_produce(bootstrap: str, topic: str, messages: int, value: bytes,
                       settings: dict):
    from confluent_kafka import Producer
    failed = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": LINGER_MS,
                         "delivery.report.only.error": True,
                         "queue.buffering.max.messages": 1_000_000, **settings})
    produce = producer.produce
    on_error = lambda err, msg: failed.append(err)   # noqa: E731
    started = time.perf_counter()
    for _ in range(messages):
        while True:
            try:
                produce(topic, value, partition=0, on_delivery=on_error)
                break
            except BufferError:                      # the client's queue is full: serve it
                producer.poll(0.01)
    left = producer.flush(_flush_timeout(messages))
    elapsed = time.perf_counter() - started
    return elapsed, len(failed) + left


def _kafka_python_produce(bootstrap: str, topic: str, messages: int, value: bytes,
                         settings: dict):
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=LINGER_MS,
                             enable_idempotence=False, batch_size=1 << 20, **settings)
    try:
        send = producer.send
        started = time.perf_counter()
        futures = [send(topic, value, partition=0) for _ in range(messages)]
        producer.flush(_flush_timeout(messages))
        elapsed = time.perf_counter() - started
        failed = sum(1 for f in futures if not f.succeeded())
    finally:
        producer.close(5)
    return elapsed, failed


def _confluent_consume(bootstrap: str, topic: str, messages: int, timeout_s: float,
                       settings: dict):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": CONFLUENT_GROUP,
                         "enable.auto.commit": False, "enable.partition.eof": False,
                         **settings})
    count = nbytes = 0
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        started = time.perf_counter()
        last = started
        while count < messages:
            batch = consumer.consume(10_000, 1.0)
            now = time.perf_counter()
            if not batch:
                if now - last > timeout_s:
                    break
                continue
            last = now
            for m in batch:
                if m.error():
                    raise KafkaException(m.error())
                nbytes += len(m.value())
            count += len(batch)
        elapsed = last - started
    finally:
        consumer.close()
    return elapsed, count, nbytes


def _kafka_python_consume(bootstrap: str, topic: str, messages: int, timeout_s: float,
                          settings: dict):
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest", **settings)
    count = nbytes = 0
    try:
        consumer.assign([TopicPartition(topic, 0)])
        started = time.perf_counter()
        last = started
        while count < messages:
            polled = consumer.poll(timeout_ms=1000, max_records=10_000)
            now = time.perf_counter()
            if not polled:
                if now - last > timeout_s:
                    break
                continue
            last = now
            for batch in polled.values():
                count += len(batch)
                nbytes += sum(len(r.value) for r in batch)
        elapsed = last - started
    finally:
        consumer.close()
    return elapsed, count, nbytes
