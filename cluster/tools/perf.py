"""``sluice perf produce|consume``: one producer's or one consumer's throughput, as in the paper.

In the spirit of Kafka's kafka-producer-perf-test and kafka-consumer-perf-test: a producer sends
``messages`` values of ``size`` bytes (one random value, sent again and again) through the
ordinary ``clients.Producer``; a consumer reads them back through ``clients.SimpleConsumer``.
Both print a progress bar on stderr and close with one line::

    1,000,000 records sent in 2.10 s: 476,190 records/s (95.24 MB/s); latency p50 1.3 ms, p99 4.0 ms

A produce run ends when the data is at the broker, not when ``send()`` returned: with acks=1 when
every batch is acknowledged, with acks=0 when the brokers' log ends have grown by the bytes sent
(read from the metadata API), so nothing still queued in a socket counts as done. Latency
(acks=1 only) is per message, from the ``send()`` of its batch's first message to the batch's
acknowledgement. MB/s counts message values, 10^6 bytes to the MB.

The functions return plain dicts (what ``--json`` prints); ``cluster/bench.py`` calls them.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import time
from typing import Callable

from broker import protocol
from broker.message import HEADER_SIZE
from coordinator.errors import InvalidArgument

Progress = Callable[[int], None]

#: How many messages the produce loop sends between progress updates.
CHUNK = 8192
STORED_WAIT_S = 30.0
#: How many messages the consume loop reads between progress updates.
PROGRESS_EVERY = 16384


class Latencies:
    """Per-message latencies, recorded once per acknowledged batch (count, seconds)."""

    def __init__(self):
        self.samples: list[tuple[float, int]] = []

    def record(self, count: int, seconds: float) -> None:
        self.samples.append((seconds, count))

    def percentiles(self, *points: float) -> dict[str, float] | None:
        """``{"p50": ms, ...}`` weighted by message count; None when nothing was recorded."""
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        total = sum(count for _, count in ordered)
        result = {}
        for point in points:
            rank = point / 100 * total
            seen = 0
            for seconds, count in ordered:
                seen += count
                if seen >= rank:
                    break
            result[f"p{point:g}"] = round(seconds * 1000, 3)
        result["max"] = round(ordered[-1][0] * 1000, 3)
        return result


def produce(topic: str, messages: int, size: int = 200, batch_size: int = 50, acks: int = 0,
            linger_ms: float = 5, partition: int | None = None, zookeeper: str | None = None,
            data_dir=None, on_progress: Progress | None = None,
            max_in_flight: int | None = None, credentials: str | None = None,
            audit: bool = False) -> dict:
    """Send ``messages`` values of ``size`` bytes; return the run's figures.

    ``max_in_flight`` (acks=1: unanswered requests per producer) defaults to the Producer's;
    ``credentials``: a key file for a secured cluster (else ``$SLUICE_CREDENTIALS``);
    ``audit``: an audited producer (its count records published at the final flush, inside
    the measured time).
    """
    from clients.brokers import BrokerPool
    from clients.producer import Producer
    if messages < 1 or size < 0:
        raise InvalidArgument("messages must be >= 1 and size >= 0")
    value = os.urandom(size)
    latencies = Latencies()
    pool = BrokerPool(zookeeper, data_dir, credentials=credentials)
    window = {} if max_in_flight is None else {"max_in_flight": max_in_flight}
    producer = Producer(zookeeper, batch_size=batch_size, linger_ms=linger_ms, acks=acks,
                        data_dir=data_dir, on_acknowledged=latencies.record if acks else None,
                        credentials=credentials, audit=audit, **window)
    try:
        before = stored_bytes(pool, topic)
        send = producer.send
        done = 0
        cpu = time.process_time()
        started = time.perf_counter()
        while done < messages:
            n = min(CHUNK, messages - done)
            for _ in itertools.repeat(None, n):
                send(topic, value, None, partition)
            done += n
            if on_progress is not None:
                on_progress(done)
        producer.flush()
        if acks == 0:
            _wait_stored(pool, topic, before + messages * (HEADER_SIZE + size))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        dropped, acked = producer.dropped, producer.acked
    finally:
        producer.close()
        pool.close()
    return _figures("produce", topic, messages, size, elapsed, batch_size=batch_size, acks=acks,
                    linger_ms=linger_ms, max_in_flight=producer.max_in_flight if acks else None,
                    acked=acked if acks else None, dropped=dropped,
                    latency_ms=latencies.percentiles(50, 99) if acks else None,
                    cpu_seconds=round(cpu, 3))


def consume(topic: str, partition: int = 0, messages: int = 1_000_000,
            fetch_bytes: int = 1 << 20, offset="earliest", zookeeper: str | None = None,
            data_dir=None, timeout_ms: int = 10_000,
            on_progress: Progress | None = None, credentials: str | None = None) -> dict:
    """Read ``messages`` from one partition; every one is decoded and CRC-checked by the client
    and its value length summed. Gives up when none came for ``timeout_ms``."""
    from clients.simple_consumer import SimpleConsumer
    if messages < 1:
        raise InvalidArgument("messages must be >= 1")
    consumer = SimpleConsumer(topic, partition, offset, zookeeper, max_bytes=fetch_bytes,
                              timeout_ms=timeout_ms, data_dir=data_dir, credentials=credentials)
    count = nbytes = 0
    try:
        started = time.perf_counter()
        stream = iter(consumer)
        while count < messages:     # progress between chunks: the loop per message stays bare
            before = count
            for m in itertools.islice(stream, min(PROGRESS_EVERY, messages - count)):
                nbytes += len(m.value)
                count += 1
            if count == before:
                break
            if on_progress is not None:
                on_progress(count)
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
    result = _figures("consume", topic, count, nbytes / count if count else 0, elapsed,
                      partition=partition, fetch_bytes=fetch_bytes)
    if count < messages:
        result["error"] = f"only {count} of {messages} messages arrived (none for {timeout_ms} ms)"
    return result


def _figures(mode: str, topic: str, messages: int, size: float, seconds: float, **extra) -> dict:
    seconds = max(seconds, 1e-9)
    return {"mode": mode, "topic": topic, "messages": messages, "message_bytes": round(size, 1),
            **extra, "seconds": round(seconds, 4),
            "records_per_s": round(messages / seconds, 1),
            "mb_per_s": round(messages * size / seconds / 1e6, 3)}


def stored_bytes(pool, topic: str) -> int:
    """Sum of the log end offsets of the topic's partitions, from each hosting broker."""
    total = 0
    asked = set()
    for partition in range(pool.partitions(topic)):
        conn = pool.connection(topic, partition)
        if conn.endpoint in asked:
            continue
        asked.add(conn.endpoint)
        frames = conn.call(protocol.encode_metadata, timeout_ms=pool.request_timeout_ms)
        _, text = protocol.decode_metadata_response(frames[0].buffer)
        total += sum(p["end_offset"] for p in json.loads(text)["partitions"] if p["topic"] == topic)
    return total


def _wait_stored(pool, topic: str, target: int) -> None:
    """Until the brokers hold ``target`` bytes of the topic; gives up when progress stops."""
    last, last_change = -1, time.monotonic()
    while True:
        stored = stored_bytes(pool, topic)
        if stored >= target:
            return
        now = time.monotonic()
        if stored != last:
            last, last_change = stored, now
        elif now - last_change > STORED_WAIT_S:
            raise protocol.RequestTimedOut(
                f"the brokers hold {target - stored} bytes fewer than were sent to {topic} "
                f"and stopped growing {STORED_WAIT_S:g} s ago (acks=0 lost them)")
        time.sleep(0.002)


def summary_line(result: dict) -> str:
    """The closing line a person reads (Kafka's perf tools print the same figures)."""
    verb = "sent" if result["mode"] == "produce" else "read"
    line = (f"{result['messages']:,} records {verb} in {result['seconds']:.2f} s: "
            f"{result['records_per_s']:,.0f} records/s ({result['mb_per_s']:.2f} MB/s)")
    latency = result.get("latency_ms")
    if latency:
        line += f"; latency p50 {latency['p50']:.2f} ms, p99 {latency['p99']:.2f} ms"
    if result.get("dropped"):
        line += f"; {result['dropped']:,} dropped"
    return line


# --- the commands --------------------------------------------------------------------------

def _progress_bar(total: int, description: str):
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=False)
    task = bar.add_task(description, total=total, rate="")
    started = time.perf_counter()

    def update(done: int) -> None:
        rate = done / max(time.perf_counter() - started, 1e-9)
        bar.update(task, completed=done, rate=f"{rate:,.0f} msg/s")
    return bar, update


def produce_command(args) -> int:
    bar, update = _progress_bar(args.messages, f"produce {args.topic}")
    with bar:
        result = produce(args.topic, args.messages, args.size, args.batch_size, args.acks,
                         args.linger_ms, args.partition, args.zookeeper, args.data_dir,
                         on_progress=update, max_in_flight=args.max_in_flight)
    _report(result, args.json)
    return 0


def consume_command(args) -> int:
    bar, update = _progress_bar(args.messages, f"consume {args.topic}/{args.partition}")
    with bar:
        result = consume(args.topic, args.partition, args.messages, args.fetch_size,
                         args.offset, args.zookeeper, args.data_dir, args.timeout_ms,
                         on_progress=update)
    _report(result, args.json)
    return 1 if "error" in result else 0


def _report(result: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        sys.stdout.write(summary_line(result) + "\n")
    if "error" in result:
        sys.stderr.write(f"sluice: error: {result['error']}\n")
