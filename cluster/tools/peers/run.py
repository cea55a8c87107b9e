"""``python -m cluster.tools.peers``: run every system through the harness, one at a time,
then the ceilings; print the table, write ``.bench/peers.json``.

    python -m cluster.tools.peers --messages 1000000 --peer-messages 200000 --runs 3

Each run starts every system in turn on free ports with its data in a fresh temp dir, runs
every row on fresh streams, and stops it (and removes its dir) before the next starts, so no
two servers share the cores; then the ceilings. Systems take turns run by run (sluice, Redis,
NATS, RabbitMQ, ceilings, then again), so a drift of the machine's load favours none; the
figures are the medians over the runs. A system whose server is not installed is left out
and named in the table. Progress goes to stderr; ``--json`` prints the document on stdout in
place of the table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cluster.tools.peers import ceilings, harness, report

log = logging.getLogger(__name__)

#: module name -> the System class's module, in the order they run
SYSTEMS = ("sluice", "redis_streams", "nats_jetstream", "rabbitmq_streams")


def system_class(module: str):
    import importlib
    return importlib.import_module(f"cluster.tools.peers.{module}").System


def measure(system, messages: int, size: int, runs: int, say, first: int = 0) -> list[dict]:
    """Every run's figures for one started system (runs numbered from ``first``)."""
    value = os.urandom(size)
    samples = []
    for index in range(first, first + runs):
        seconds = {}
        for row, batch, acknowledged in harness.PRODUCE_ROWS:
            stream = f"peers-{row.replace('_', '-')}-{index}"
            seconds[row] = system.produce(stream, messages, value, batch, acknowledged)
            say(f"{system.name} run {index + 1}: {row}: {messages / seconds[row]:,.0f} msg/s")
        stream = f"peers-batch50-{index}"
        consumed = system.consume(stream, messages)
        say(f"{system.name} run {index + 1}: consumer: {messages / consumed:,.0f} msg/s")
        samples.append(report.run_figures(messages, size, seconds, consumed,
                                          system.disk_bytes(stream)))
    return samples


def run_system(module: str, messages: int, size: int, index: int, say) -> tuple[dict, str]:
    """(one run's figures, client) of one system on its own fresh server, stopped after."""
    cls = system_class(module)
    workdir = Path(tempfile.mkdtemp(prefix=f"peers-{module}-"))
    system = cls(workdir)
    try:
        started = time.monotonic()
        system.start()
        say(f"{system.name} up in {workdir} ({time.monotonic() - started:.1f} s)")
        sample = measure(system, messages, size, 1, say, first=index)[0]
    finally:
        try:
            system.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return sample, system.client


def run_ceilings(messages: int, size: int, index: int, say) -> dict:
    sample = {"pipeline_batch1_msgs_per_s": round(ceilings.pipeline_batch1(messages, size), 1),
              "consumer_decode_msgs_per_s": round(ceilings.consumer_decode(messages, size), 1)}
    say(f"ceilings run {index + 1}: pipeline batch 1 "
        f"{sample['pipeline_batch1_msgs_per_s']:,.0f} msg/s, consumer decode "
        f"{sample['consumer_decode_msgs_per_s']:,.0f} msg/s")
    return sample


def machine() -> dict:
    import psutil
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu_model": model,
            "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def run(messages: int, peer_messages: int, size: int = 200, runs: int = 3,
        systems=SYSTEMS, say=lambda line: None, command: str = "") -> dict:
    """Measure, and return the peers.json document."""
    if messages < 1 or peer_messages < 1 or runs < 1:
        raise harness.PeerError("messages, peer messages and runs must be >= 1")
    started = time.monotonic()
    at_start = machine()
    samples: dict[str, list[dict]] = {}
    clients, skipped, limits = {}, {}, []
    present = []
    for module in systems:
        cls = system_class(module)
        reason = cls.missing()
        if reason:
            skipped[cls.name] = reason
            say(f"{cls.name}: skipped, {reason}")
        else:
            present.append(module)
    for index in range(runs):     # in turns, so a drift of the machine's load favours none
        for module in present:
            n = messages if module == "sluice" else peer_messages
            sample, client = run_system(module, n, size, index, say)
            name = system_class(module).name
            samples.setdefault(name, []).append(sample)
            clients[name] = client
        limits.append(run_ceilings(messages, size, index, say))
    figures = {name: report.medians(runs_of) for name, runs_of in samples.items()}
    at_end = machine()
    at_start["load_average_end"] = at_end["load_average"]
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return report.document(
        figures, report.medians(limits), date=date, machine=at_start, command=command,
        messages={"sluice": messages, "peers": peer_messages}, size=size, runs=runs,
        skipped=skipped, clients=clients, seconds=time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.tools.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000,
                        help="messages per sluice row (and per ceiling run)")
    parser.add_argument("--peer-messages", type=int, default=200_000,
                        help="messages per peer row (the peers' Python clients are slower)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument("--output", default=".bench/peers.json")
    parser.add_argument("--json", action="store_true", help="print the document, not the table")
    args = parser.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {', '.join(sorted(unknown))}")
    from rich.console import Console
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    command = shlex.join(["python", "-m", "cluster.tools.peers", *(argv or sys.argv[1:])])
    try:
        doc = run(args.messages, args.peer_messages, args.size, args.runs, systems,
                  say=err.print, command=command)
    except harness.PeerError as exc:
        sys.stderr.write(f"bench-peers: error: {exc}\n")
        return 1
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(doc, indent=2) + "\n")
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(
            report.table(doc))
    err.print(f"wrote {output} ({doc['seconds']:.0f} s)")
    return 0
