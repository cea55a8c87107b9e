"""The broker's CPU per produced record: the native producer (batch 50, acks=1) beside
confluent-kafka through the Kafka listener (acks=1), on one fresh 1-broker cluster.

    python -m cluster.tools.broker_cpu [--messages 300000] [--rounds 2]

Throughput on a shared machine moves with the other work on it; the CPU time the broker
process spends (user + system, every thread, from psutil) per record moves much less, so this
compares what each path costs the broker even when the cores are busy. Rounds alternate the two
clients on fresh one-partition topics, 200-byte values.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import psutil

from cluster.supervision import ClusterConfig, down, up
from cluster.tools import kafka_perf, perf
from coordinator import paths, topics
from coordinator import zk as zkconnect

CLIENTS = ("native", "confluent-kafka")


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def run(messages: int = 300_000, rounds: int = 2, size: int = 200, say=print) -> list[dict]:
    """One row per client per round: records/s and the broker's and this process's CPU µs per
    record."""
    data_dir = Path(tempfile.mkdtemp(prefix="sluice-broker-cpu-"))
    rows = []
    try:
        status = up(ClusterConfig(data_dir, brokers=1, dashboard_port=None, kafka_port=0),
                    detach=True)
        broker = psutil.Process(next(p["pid"] for p in status["processes"]
                                     if p["role"] == "broker"))
        me = psutil.Process()
        client = zkconnect.connect(status["zookeeper"])
        try:
            for index in range(rounds):
                for name in CLIENTS:
                    topic = f"broker-cpu-{name}-{index}"
                    topics.create(client, topic, 1)
                    while client.exists(paths.broker_topic_partitions(topic, 0)) is None:
                        time.sleep(0.02)
                    broker_before, mine_before = _cpu(broker), _cpu(me)
                    if name == "native":
                        result = perf.produce(topic, messages, size, 50, 1, linger_ms=5,
                                              partition=0, zookeeper=status["zookeeper"])
                    else:
                        result = kafka_perf.produce(name, status["kafka_bootstrap"], topic,
                                                    messages, size)
                    row = {"client": name, "round": index + 1,
                           "records_per_s": result["records_per_s"],
                           "broker_cpu_us_per_record":
                               round((_cpu(broker) - broker_before) / messages * 1e6, 2),
                           "client_cpu_us_per_record":
                               round((_cpu(me) - mine_before) / messages * 1e6, 2)}
                    rows.append(row)
                    say(f"{name:<16} {row['records_per_s']:>10,.0f} msg/s   broker "
                        f"{row['broker_cpu_us_per_record']:5.2f} µs CPU/record   client "
                        f"{row['client_cpu_us_per_record']:5.2f} µs CPU/record")
        finally:
            client.stop()
            client.close()
    finally:
        try:
            down(data_dir)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.tools.broker_cpu",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    run(args.messages, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
