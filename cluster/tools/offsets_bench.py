"""Commits per second of each offset store, and what ZooKeeper pays meanwhile: ``make bench``'s
offsets rows (issue 15), or alone:

    python -m cluster.tools.offsets_bench --groups 100 --partitions 10 --seconds 10

A fresh one-broker cluster with its embedded ZooKeeper in a temp dir. For each store in turn,
``--groups`` groups of ``--partitions`` partitions commit as fast as they can: ``--threads``
committer threads (each with its own ZooKeeper session and broker sockets) take the groups
round robin, and every commit of a group moves all its partitions' offsets (so the ZooKeeper
store writes every one: it skips only offsets that did not move). Counted: offsets committed
per second (one group-partition each) and group commits per second. Meanwhile a probe client
reads one node every 20 ms (``get`` latency, p50 and p99), psutil samples the ZooKeeper
process's CPU (percent of one core over the phase), and ZooKeeper's ``mntr`` gives its packet
count and average latency over the phase (the four-letter words the embedded server enables).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from kazoo.exceptions import KazooException

from clients.brokers import BrokerPool
from clients.log_offsets import LogOffsetStore
from cluster.supervision import ClusterConfig, down, up
from cluster.supervision.zookeeper import four_letter
from coordinator import offset_store_choice as choice
from coordinator import zk as zkconnect
from coordinator.errors import SluiceError
from coordinator.offsets import OffsetStore

PROBE_S = 0.02


def _mntr(port: int) -> dict:
    values = {}
    for line in four_letter(port, "mntr").splitlines():
        name, _, value = line.partition("\t")
        try:
            values[name] = float(value)
        except ValueError:
            pass
    return values


class _Probe(threading.Thread):
    """``get`` latency of one node, every PROBE_S, until stopped."""

    def __init__(self, zookeeper: str):
        super().__init__(name="zk-probe", daemon=True)
        self.client = zkconnect.connect(zookeeper)
        self.client.ensure_path("/bench-probe")
        self.latencies: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            started = time.perf_counter()
            self.client.get("/bench-probe")
            self.latencies.append(time.perf_counter() - started)
            self.done.wait(PROBE_S)

    def stop(self) -> dict:
        self.done.set()
        self.join()
        self.client.stop()
        self.client.close()
        ordered = sorted(self.latencies) or [0.0]
        return {"probe_get_p50_ms": round(statistics.median(ordered) * 1000, 2),
                "probe_get_p99_ms": round(ordered[min(len(ordered) - 1,
                                                      int(len(ordered) * 0.99))] * 1000, 2),
                "probe_gets": len(self.latencies)}


def _phase(store: str, zookeeper: str, zk_pid: int, zk_port: int, groups: int,
           partitions: int, threads: int, seconds: float) -> dict:
    """One store's row: every group commits as fast as the committers can for ``seconds``."""
    names = [f"bench-{store}-{g}" for g in range(groups)]
    pools = [BrokerPool(zookeeper) for _ in range(threads)]
    counts = [0] * threads
    failures = [0] * threads
    stop = threading.Event()

    def stores_of(i: int, pool: BrokerPool) -> list:
        mine = names[i::threads]
        if store == choice.LOG:
            return [LogOffsetStore(pool, g) for g in mine]
        return [OffsetStore(pool.zk, g) for g in mine]

    per_thread = [stores_of(i, pool) for i, pool in enumerate(pools)]
    for stores in per_thread:       # warm: the topic exists, the leader's map is built
        for s in stores:
            s.commit({("t", p): 0 for p in range(partitions)})

    def commit(i: int) -> None:
        offset = 1
        while not stop.is_set():
            for s in per_thread[i]:
                try:
                    s.commit({("t", p): offset for p in range(partitions)})
                    counts[i] += 1
                except (SluiceError, KazooException):     # counted in the row
                    failures[i] += 1
                if stop.is_set():
                    break
            offset += 1

    zk_process = psutil.Process(zk_pid)
    before_mntr = _mntr(zk_port)
    probe = _Probe(zookeeper)
    workers = [threading.Thread(target=commit, args=(i,), daemon=True) for i in range(threads)]
    cpu_before = sum(zk_process.cpu_times()[:2])
    started = time.monotonic()
    probe.start()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - started
    cpu = sum(zk_process.cpu_times()[:2]) - cpu_before
    row = probe.stop()
    after_mntr = _mntr(zk_port)
    for pool in pools:
        pool.close()
    packets = after_mntr.get("zk_packets_received", 0) - before_mntr.get("zk_packets_received", 0)
    group_commits = sum(counts)
    row.update({
        "store": store, "groups": groups, "partitions": partitions, "threads": threads,
        "seconds": round(elapsed, 1),
        "offsets_committed_per_s": round(group_commits * partitions / elapsed),
        "group_commits_per_s": round(group_commits / elapsed),
        "failed_commits": sum(failures),
        "zookeeper_cpu_pct_of_one_core": round(100 * cpu / elapsed, 1),
        "zookeeper_requests_per_s": round(packets / elapsed),
        "zookeeper_mntr_avg_latency_ms": after_mntr.get("zk_avg_latency"),
    })
    return row


def run(groups: int = 100, partitions: int = 10, threads: int = 8, seconds: float = 10.0,
        say=lambda line: None) -> list[dict]:
    """Both stores' rows on one fresh one-broker cluster."""
    data_dir = Path(tempfile.mkdtemp(prefix="sluice-offsets-bench-"))
    try:
        status = up(ClusterConfig(data_dir, brokers=1, dashboard_port=None, kafka_port=None),
                    detach=True)
        zookeeper = status["zookeeper"]
        zk_proc = next(p for p in status["processes"] if p["role"] == "zookeeper")
        zk_port = int(zookeeper.split(",")[0].split("/")[0].rsplit(":", 1)[1])
        rows = []
        for store in (choice.ZOOKEEPER, choice.LOG):
            say(f"offsets bench: {store} store, {groups} groups x {partitions} partitions, "
                f"{threads} committer threads, {seconds:g} s")
            rows.append(_phase(store, zookeeper, zk_proc["pid"], zk_port, groups, partitions,
                               threads, seconds))
            say(json.dumps(rows[-1]))
        return rows
    finally:
        try:
            down(data_dir)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


def table(rows: list[dict]):
    from rich.table import Table
    out = Table(title="group offsets: commits per second per store, and ZooKeeper meanwhile")
    for name in ("store", "offsets/s", "group commits/s", "ZooKeeper CPU (% of a core)",
                 "ZooKeeper requests/s", "probe get p50 / p99 (ms)", "mntr avg latency (ms)"):
        out.add_column(name, justify="left" if name == "store" else "right")
    for r in rows:
        out.add_row(r["store"], f"{r['offsets_committed_per_s']:,}",
                    f"{r['group_commits_per_s']:,}", f"{r['zookeeper_cpu_pct_of_one_core']}",
                    f"{r['zookeeper_requests_per_s']:,}",
                    f"{r['probe_get_p50_ms']} / {r['probe_get_p99_ms']}",
                    f"{r['zookeeper_mntr_avg_latency_ms']}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.tools.offsets_bench",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=10)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--output", help="write the rows as JSON here too")
    args = parser.parse_args(argv)
    from rich.console import Console
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    rows = run(args.groups, args.partitions, args.threads, args.seconds, say=err.print)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(rows, indent=2) + "\n")
    Console(highlight=False, width=None if sys.stdout.isatty() else 130).print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
