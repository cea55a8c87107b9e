"""Produce latency with and without the log cleaner at work: ``make bench-compaction``.

    python -m cluster.tools.compaction_bench --runs 3 --seconds 8 --rate 5000 --fill-mb 24

A fresh one-broker cluster in a temp dir (its ZooKeeper embedded, the default flush policy,
1 MiB segments, the cleaner looking every 200 ms at ``--cleaner-rate`` bytes per second). Each
run: a fresh topic ``backlog-<run>`` gets ``--fill-mb`` of keyed 200-byte messages over 1000
keys (policy delete: nothing is cleaned yet). Then, twice, an acks=1 producer sends ``--rate``
messages a second of 200 bytes (batches of 50) to a fresh topic for ``--seconds``, and every
acknowledged batch's latency is recorded (perf.Latencies, weighted by messages):

    idle       the cleaner has nothing to do
    cleaning   the backlog was switched to cleanup.policy=compact just before: the cleaner
               scans and rewrites it meanwhile (METADATA's ``cleans`` and ``cleaned_bytes``
               after the window say how far it got)

The table gives the medians over the runs of p50, p99 and max, and what the cleaner removed.
Other load on the machine moves p99 a lot: compare the two rows of one invocation.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cluster.supervision import ClusterConfig, down, up
from cluster.tools.perf import Latencies
from coordinator import paths, topics
from coordinator import zk as zkconnect

BACKLOG = "backlog"
KEYS = 1000
SIZE = 200


def _wait_hosted(client, topic: str) -> None:
    while client.exists(paths.broker_topic_partitions(topic, 0)) is None:
        time.sleep(0.02)


def _fill(zookeeper: str, topic: str, megabytes: int) -> int:
    from clients.producer import Producer
    count = megabytes * (1 << 20) // (SIZE + 20)
    value = b"v" * SIZE
    with Producer(zookeeper, acks=1, batch_size=200, linger_ms=5) as producer:
        for i in range(count):
            producer.send(topic, value, key=b"key-%04d" % (i % KEYS), partition=0)
    return count


def _steady(zookeeper: str, topic: str, seconds: float, rate: int) -> dict:
    """acks=1 sends at ``rate`` messages a second (a batch of 50 every 50/rate s)."""
    from clients.producer import Producer
    latencies = Latencies()
    value = b"x" * SIZE
    with Producer(zookeeper, acks=1, batch_size=50, linger_ms=1,
                  on_acknowledged=latencies.record) as producer:
        began = time.perf_counter()
        sent = 0
        while (now := time.perf_counter()) - began < seconds:
            due = int((now - began) * rate)
            while sent < due:
                producer.send(topic, value, partition=0)
                sent += 1
            time.sleep(0.002)
        producer.flush()
    return {"messages": sent, **(latencies.percentiles(50, 99) or {})}


def _cleaner_row(zookeeper: str, topic: str) -> dict:
    from broker import protocol
    from clients.brokers import BrokerPool
    pool = BrokerPool(zookeeper)
    try:
        frames = pool.call(topic, 0, protocol.encode_metadata)
        rows = json.loads(protocol.decode_metadata_response(frames[0].bytes)[1])["partitions"]
    finally:
        pool.close()
    return next(r for r in rows if r["topic"] == topic)


def run(runs: int, seconds: float, rate: int, fill_mb: int, cleaner_rate: int, say) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="sluice-compaction-bench-"))
    samples = []
    try:
        status = up(ClusterConfig(str(data_dir), brokers=1, dashboard_port=None, kafka_port=None,
                                  broker_settings={"cleaner_interval_ms": 200,
                                                   "cleaner_bytes_per_second": cleaner_rate,
                                                   "log": {"segment_bytes": 1 << 20}}),
                    detach=True)
        zookeeper = status["zookeeper"]
        client = zkconnect.connect(zookeeper)
        try:
            for index in range(runs):
                backlog, idle, cleaning = (f"{BACKLOG}-{index}", f"idle-{index}",
                                           f"cleaning-{index}")
                for topic in (backlog, idle, cleaning):
                    topics.create(client, topic, 1)
                    _wait_hosted(client, topic)
                filled = _fill(zookeeper, backlog, fill_mb)
                sample = {"idle": _steady(zookeeper, idle, seconds, rate)}
                topics.configure(client, backlog, {"cleanup.policy": "compact"})
                sample["cleaning"] = _steady(zookeeper, cleaning, seconds, rate)
                row = _cleaner_row(zookeeper, backlog)
                sample["cleaner"] = {k: row.get(k) for k in ("cleans", "cleaned_messages",
                                                             "cleaned_bytes")}
                say(f"run {index + 1}: backlog {filled:,} messages; idle {sample['idle']}; "
                    f"cleaning {sample['cleaning']}; cleaner {sample['cleaner']}")
                samples.append(sample)
        finally:
            client.stop()
            client.close()
    finally:
        try:
            down(str(data_dir))
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    result = {"runs": runs, "seconds": seconds, "rate": rate, "fill_mb": fill_mb,
              "cleaner_bytes_per_second": cleaner_rate, "samples": samples}
    for name in ("idle", "cleaning"):
        result[name] = {point: statistics.median(s[name][point] for s in samples)
                        for point in ("p50", "p99", "max")}
    result["cleaner"] = {key: statistics.median(s["cleaner"][key] or 0 for s in samples)
                         for key in ("cleans", "cleaned_messages", "cleaned_bytes")}
    return result


def table(result: dict) -> str:
    lines = [f"| produce, acks=1, {result['rate']} msg/s (median of {result['runs']} runs) "
             f"| p50 (ms) | p99 (ms) | max (ms) |",
             "| --- | ---: | ---: | ---: |"]
    for name in ("idle", "cleaning"):
        row = result[name]
        lines.append(f"| {name} | {row['p50']:.2f} | {row['p99']:.2f} | {row['max']:.2f} |")
    cleaner = result["cleaner"]
    lines.append(f"\ncleaner ({result['cleaner_bytes_per_second']:,} B/s) by the end of a "
                 f"cleaning window (median): {cleaner['cleans']:g} clean(s) done, "
                 f"{cleaner['cleaned_messages']:,.0f} messages ({cleaner['cleaned_bytes']:,.0f} "
                 f"bytes) removed from a {result['fill_mb']} MB backlog")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.tools.compaction_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--fill-mb", type=int, default=24)
    parser.add_argument("--cleaner-rate", type=int, default=8 << 20)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    result = run(args.runs, args.seconds, args.rate, args.fill_mb, args.cleaner_rate,
                 say=lambda line: print(line, file=sys.stderr, flush=True))
    print(table(result))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
