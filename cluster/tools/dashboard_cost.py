"""What the dashboard's sampling costs (docs/dashboard.md, "Cost").

Each process's CPU over SECONDS of wall time, for a local cluster (3 brokers, 2 group workers,
a 6-partition topic at about 500 messages/s) started with --no-dashboard, then with the
dashboard; with --poll, a client also reads /api/state and /metrics every second (a page open
and Prometheus scraping at 1 Hz).

    .venv/bin/python -m cluster.tools.dashboard_cost 60 [--poll]

Prints one JSON line per run (CPU % of one core per process; the sampler thread's own share).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from cluster.supervision.files import ClusterFiles

ROOT = Path(__file__).resolve().parents[2]
SLUICE = [sys.executable, "-m", "cluster.cli"]
TRAFFIC = """
import sys, time
from clients import Producer
with Producer(sys.argv[1], acks=0, linger_ms=20) as producer:
    i = 0
    while True:
        started = time.time()
        for _ in range(50):
            producer.send("clicks", b"click %08d " % i + b"x" * 150)
            i += 1
        time.sleep(max(0.0, 0.1 - (time.time() - started)))
"""


def run(dashboard: bool, seconds: float, poll: bool) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="sluice-cost-"))
    flags = ["--dashboard-port", "0"] if dashboard else ["--no-dashboard"]
    subprocess.run(SLUICE + ["cluster", "up", "--detach", "--data-dir", str(data_dir),
                             "--brokers", "3", "--workers", "2", "--topic", "clicks",
                             "--group", "loaders", *flags], cwd=ROOT, check=True,
                   capture_output=True)
    traffic = None
    try:
        info = ClusterFiles(data_dir).read_state()
        subprocess.run(SLUICE + ["topics", "create", "clicks", "--partitions", "6",
                                 "--zookeeper", info["zookeeper"]], cwd=ROOT, check=True,
                       capture_output=True)
        traffic = subprocess.Popen([sys.executable, "-c", TRAFFIC, info["zookeeper"]], cwd=ROOT)
        time.sleep(10)
        procs = {f"{p['role']} {p['id']}": psutil.Process(p["pid"]) for p in info["processes"]}
        procs["supervisor 0"] = psutil.Process(info["supervisor"]["pid"])
        for node in info["zookeeper_nodes"]:
            procs[f"zookeeper {node['id']}"] = psutil.Process(node["pid"])

        def cpu() -> dict:
            return {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}

        def sampler_cpu() -> float:
            if not dashboard:
                return 0.0
            url = info["dashboard"] + "api/state?since=999999999"
            return json.load(urllib.request.urlopen(url))["latest"]["sampler"]["cpu_seconds"]

        before, sampler_before, began = cpu(), sampler_cpu(), time.monotonic()
        seq = 0
        while time.monotonic() - began < seconds:
            if poll and dashboard:
                state = json.load(urllib.request.urlopen(f"{info['dashboard']}api/state?since={seq}"))
                seq = state["seq"]
                urllib.request.urlopen(info["dashboard"] + "metrics").read()
            time.sleep(1)
        after, sampler_after, wall = cpu(), sampler_cpu(), time.monotonic() - began
    finally:
        if traffic is not None:
            traffic.kill()
            traffic.wait()
        subprocess.run(SLUICE + ["cluster", "down", "--data-dir", str(data_dir)], cwd=ROOT)
        shutil.rmtree(data_dir, ignore_errors=True)
    per = {name: round((after[name] - before[name]) / wall * 100, 2) for name in before}
    return {"dashboard": dashboard, "poll": poll, "wall_s": round(wall, 1),
            "cpu_percent_of_one_core": per, "cluster_total": round(sum(per.values()), 2),
            "sampler_thread_percent": round((sampler_after - sampler_before) / wall * 100, 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cluster.tools.dashboard_cost",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("seconds", type=float, nargs="?", default=60.0,
                        help="wall time measured per run (default 60)")
    parser.add_argument("--poll", action="store_true",
                        help="also read /api/state and /metrics every second")
    args = parser.parse_args(argv)
    for dashboard in (False, True):
        print(json.dumps(run(dashboard, args.seconds, args.poll)), flush=True)


if __name__ == "__main__":
    main()
