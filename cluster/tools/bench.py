"""The paper's benchmark (section 5) on a fresh local cluster: ``make bench``.

    python -m cluster.tools.bench --messages 1000000 --runs 3     # what make bench runs

One broker with its embedded ZooKeeper in a temp dir, the default flush policy on (fsync every
500 messages or 3 s, a message visible once flushed), 200-byte values, one producer then one
consumer, every process on this host. Each run, on fresh single-partition topics:

    producer  batch 1,  acks=0        the paper's "batch 1"
    producer  batch 50, acks=0        the paper's "batch 50"
    producer  batch 50, acks=1        windowed (the Producer's 32 requests in flight), latency
    consumer  ~200 KB per fetch       the paper's 1000 messages per pull, over the batch-50 topic
    consumer  sluice's default fetch  (1 MiB, SimpleConsumer's default)

plus the bytes on disk per message (segment file sizes over messages, minus the value) and the
broker's RSS, sampled by psutil every 0.1 s through every run. The figures are medians over the
runs; the table sets them beside the paper's and the targets, and ``.bench/results.json`` gets
them in the shape the issue gave (``--samples`` adds every run's raw figures in another file).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from broker.message import HEADER_SIZE
from cluster.errors import ClusterError
from cluster.supervision import ClusterConfig, down, up
from cluster.tools import perf
from coordinator import paths, topics
from coordinator import zk as zkconnect
from coordinator.errors import InvalidArgument, SluiceError

DEFAULT_FETCH_BYTES = 1 << 20
PAPER_FETCH_MESSAGES = 1000

# (result key, label, paper's Kafka, best peer measured here, target, higher is better)
FIGURES = [
    ("producer_batch1_msgs_per_s", "producer, batch 1, acks=0 (msg/s)", 50_000,
     "384,000 (NATS JetStream)", 400_000, True),
    ("producer_batch50_msgs_per_s", "producer, batch 50, acks=0 (msg/s)", 400_000,
     "118,000 (Redis Streams)", 1_000_000, True),
    ("producer_acks1_batch50_msgs_per_s", "producer, batch 50, acks=1 (msg/s)", None,
     "27,600 (Redis Streams)", 700_000, True),
    ("consumer_200kb_msgs_per_s", "consumer, ~200 KB per fetch (msg/s)", 22_000,
     "194,000 (Redis Streams)", 1_000_000, True),
    ("consumer_msgs_per_s", "consumer, default fetch size (msg/s)", 22_000,
     "194,000 (Redis Streams)", 1_000_000, True),
    ("storage_overhead_bytes_per_msg", "storage overhead (bytes/msg)", 9,
     "35 (NATS JetStream)", 9, False),
    ("broker_peak_rss_mb", "broker peak RSS (MB)", None, "", 150, False),
]


class RssSampler(threading.Thread):
    """The peak resident set size of one process, sampled until stopped."""

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(name="rss-sampler", daemon=True)
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.last = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.interval)

    def sample(self) -> int:
        try:
            self.last = self.process.memory_info().rss
        except psutil.Error:
            return self.peak
        self.peak = max(self.peak, self.last)
        return self.last

    def stop(self) -> int:
        self._done.set()
        self.join()
        self.sample()
        return self.peak


def run(messages: int = 1_000_000, runs: int = 3, size: int = 200,
        say=lambda line: None) -> tuple[dict, list[dict]]:
    """Run the benchmark on a fresh cluster; return (medians in the issue's shape, every run)."""
    if messages < 1 or runs < 1:
        raise InvalidArgument("messages and runs must be >= 1")
    data_dir = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    try:
        status = up(ClusterConfig(data_dir, brokers=1, dashboard_port=None), detach=True)
        zookeeper = status["zookeeper"]
        broker_pid = next(p["pid"] for p in status["processes"] if p["role"] == "broker")
        rss = RssSampler(broker_pid)
        rss.start()
        say(f"cluster up in {data_dir} (broker pid {broker_pid}, RSS {rss.sample() / 1e6:.0f} MB)")
        samples = []
        try:
            for index in range(runs):
                samples.append(_one_run(zookeeper, data_dir, index, messages, size, rss, say))
        finally:
            peak = rss.stop()
    finally:
        try:
            down(data_dir)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    result = _medians(samples, messages, size, runs)
    result["broker_peak_rss_mb"] = round(peak / 1e6, 1)
    return result, samples


def _one_run(zookeeper: str, data_dir: Path, index: int, messages: int, size: int,
             rss: RssSampler, say) -> dict:
    client = zkconnect.connect(zookeeper)
    try:
        def fresh_topic(name: str) -> str:
            topic = f"bench-{name}-{index}"
            topics.create(client, topic, 1)
            while client.exists(paths.broker_topic_partitions(topic, 0)) is None:
                time.sleep(0.02)
            return topic

        sample: dict = {"run": index + 1}
        produced = {}
        for key, batch, acks in (("batch1", 1, 0), ("batch50", 50, 0), ("acks1_batch50", 50, 1)):
            topic = produced[key] = fresh_topic(key.replace("_", "-"))
            result = perf.produce(topic, messages, size, batch, acks, linger_ms=5, partition=0,
                                  zookeeper=zookeeper)
            sample[f"producer_{key}"] = result
            say(f"run {index + 1}: producer batch {batch} acks={acks}: "
                f"{perf.summary_line(result)} (broker RSS {rss.sample() / 1e6:.0f} MB)")
        topic = produced["batch50"]
        _wait_flushed(zookeeper, topic)
        for key, fetch_bytes in (("200kb", PAPER_FETCH_MESSAGES * (HEADER_SIZE + size)),
                                 ("default", DEFAULT_FETCH_BYTES)):
            result = perf.consume(topic, 0, messages, fetch_bytes, zookeeper=zookeeper)
            if "error" in result:
                raise ClusterError(result["error"])
            sample[f"consumer_{key}"] = result
            say(f"run {index + 1}: consumer {fetch_bytes:,} bytes per fetch: "
                f"{perf.summary_line(result)}")
        stored = sum(f.stat().st_size for f in
                     (data_dir / "broker-0" / topic / "0").glob("*.log"))
        sample["storage_overhead_bytes_per_msg"] = round(stored / messages - size, 3)
        sample["broker_rss_mb"] = round(rss.sample() / 1e6, 1)
        return sample
    finally:
        client.stop()
        client.close()


def _wait_flushed(zookeeper: str, topic: str, timeout: float = 30.0) -> None:
    """Until everything appended to the topic is flushed, hence visible: the consumer runs
    measure reading stored data, not waiting for the flusher."""
    from clients.brokers import BrokerPool
    from clients.simple_consumer import SimpleConsumer
    pool = BrokerPool(zookeeper)
    try:
        consumer = SimpleConsumer(topic, 0, "earliest", pool=pool)
        end = perf.stored_bytes(pool, topic)
        deadline = time.monotonic() + timeout
        while consumer.offset_of("latest") < end:
            if time.monotonic() > deadline:
                raise ClusterError(f"{topic} was not flushed within {timeout:g} s")
            time.sleep(0.05)
    finally:
        pool.close()


def _medians(samples: list[dict], messages: int, size: int, runs: int) -> dict:
    def median(get):
        return round(statistics.median(get(s) for s in samples), 1)
    return {
        "messages": messages, "message_bytes": size, "runs": runs,
        "producer_batch1_msgs_per_s": median(lambda s: s["producer_batch1"]["records_per_s"]),
        "producer_batch50_msgs_per_s": median(lambda s: s["producer_batch50"]["records_per_s"]),
        "producer_acks1_batch50_msgs_per_s":
            median(lambda s: s["producer_acks1_batch50"]["records_per_s"]),
        "acks1_latency_ms": {
            point: round(statistics.median(
                s["producer_acks1_batch50"]["latency_ms"][point] for s in samples), 3)
            for point in ("p50", "p99")},
        "consumer_200kb_msgs_per_s": median(lambda s: s["consumer_200kb"]["records_per_s"]),
        "consumer_msgs_per_s": median(lambda s: s["consumer_default"]["records_per_s"]),
        "storage_overhead_bytes_per_msg":
            round(statistics.median(s["storage_overhead_bytes_per_msg"] for s in samples), 3),
        "broker_peak_rss_mb": 0.0,
        "machine": {"cpus": os.cpu_count(),
                    "python": ".".join(platform.python_version_tuple()[:2])},
    }


def table(result: dict):
    """The figures beside the paper's Kafka and the targets, as a rich Table."""
    from rich.table import Table
    grid = Table(title=f"sluice vs the paper: {result['messages']:,} messages of "
                       f"{result['message_bytes']} bytes, median of {result['runs']} run(s), "
                       f"{result['machine']['cpus']} CPUs, Python {result['machine']['python']}",
                 title_justify="left")
    for column in ("figure", "paper's Kafka", "best peer here", "target", "sluice", "met"):
        grid.add_column(column, justify="left" if column in ("figure", "best peer here")
                        else "right")
    for key, label, paper, peer, target, higher in FIGURES:
        value = result[key]
        met = value >= target if higher else value <= target
        grid.add_row(label, _number(paper), peer, ("≥ " if higher else "≤ ") + _number(target),
                     _number(value), "yes" if met else "NO")
    latency = result["acks1_latency_ms"]
    grid.caption = (f"acks=1 latency: p50 {latency['p50']:.2f} ms, p99 {latency['p99']:.2f} ms "
                    "(send() of a batch's first message to its acknowledgement)")
    return grid


def _number(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.tools.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--output", default=".bench/results.json")
    parser.add_argument("--samples", help="also write every run's raw figures to this file")
    args = parser.parse_args(argv)
    from rich.console import Console
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        result, samples = run(args.messages, args.runs, args.size, say=err.print)
    except SluiceError as exc:
        if not exc.user_error:
            raise
        sys.stderr.write(f"bench: error: {exc}\n")
        return 1
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    if args.samples:
        Path(args.samples).write_text(json.dumps(samples, indent=2) + "\n")
    Console(highlight=False, width=None if sys.stdout.isatty() else 130).print(table(result))
    err.print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
