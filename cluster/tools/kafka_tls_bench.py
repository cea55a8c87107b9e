"""What SASL_SSL costs the Kafka listener: confluent-kafka's producer and consumer throughput
against a plaintext cluster and a ``--secure`` one (SASL_SSL, SCRAM-SHA-256), in one run.

    python -m cluster.tools.kafka_tls_bench --messages 200000 --runs 3

Each cluster has one broker; both are up for the whole run, and the runs alternate (plaintext,
SASL_SSL, plaintext, ...) so that the machine's load falls on both alike. Each run produces
``messages`` values of ``size`` bytes to a fresh one-partition topic with acks=1 (the
cluster/tools/kafka_perf.py rows), then reads them back from the beginning; the brokers make
appends visible before their flush (``visible_after_flush`` false), so the reads never wait
for the flusher. Printed: the median of each row and the ratio SASL_SSL / plaintext (target
>= 0.7 for both, issue 14). ``make bench`` runs it too, after its own rows (``--no-kafka-tls``
or ``--no-kafka`` there leave it out), and shows ``table``.
"""
from __future__ import annotations

import argparse
import json
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from cluster.supervision import ClusterConfig, down, up
from cluster.tools import kafka_perf
from coordinator import paths, topics, zk as zkconnect
from coordinator.acl_store import AclStore
from coordinator.authorizer import Rule
from coordinator.sasl_users import SaslUsers
from coordinator.scram import ScramCredential

TARGET = 0.7          # SASL_SSL / plaintext, producer and consumer (issue 14)
CLIENT = "confluent-kafka"
USER = "bench"
PREFIX = "tls-bench-"


def _prepare(status: dict, data_dir: Path, secure: bool) -> dict:
    """The client settings for the cluster; on the secure one a user allowed the topics."""
    if not secure:
        return {}
    password = secrets.token_urlsafe(16)
    client = zkconnect.connect(status["zookeeper"], data_dir)
    try:
        SaslUsers(client).put(USER, ScramCredential.from_password(password))
        AclStore(client).add(USER, [Rule("produce", "topic-prefix", PREFIX),
                                    Rule("consume", "topic-prefix", PREFIX),
                                    Rule("consume", "group", kafka_perf.CONFLUENT_GROUP)])
    finally:
        client.stop()
        client.close()
    return {"security.protocol": "SASL_SSL", "ssl.ca.location": status["kafka_ca"],
            "sasl.mechanisms": "SCRAM-SHA-256", "sasl.username": USER,
            "sasl.password": password}


def _topic(status: dict, data_dir: Path, name: str) -> str:
    client = zkconnect.connect(status["zookeeper"], data_dir)
    try:
        topics.create(client, name, 1)
        while client.exists(paths.broker_topic_partitions(name, 0)) is None:
            time.sleep(0.02)
    finally:
        client.stop()
        client.close()
    return name


def run(messages: int, runs: int, size: int, say=print) -> dict:
    roots = {kind: Path(tempfile.mkdtemp(prefix=f"sluice-{kind}-bench-"))
             for kind in ("plaintext", "sasl_ssl")}
    rows: dict[str, list[dict]] = {f"{kind}_{mode}": [] for kind in roots
                                   for mode in ("producer", "consumer")}
    try:
        clusters = {}
        for kind, root in roots.items():
            status = up(ClusterConfig(root, brokers=1, dashboard_port=None,
                                      secure=kind == "sasl_ssl",
                                      broker_settings={"log": {"visible_after_flush": False}}),
                        detach=True)
            clusters[kind] = (status, root, _prepare(status, root, kind == "sasl_ssl"))
        for index in range(runs):
            for kind, (status, root, settings) in clusters.items():
                topic = _topic(status, root, f"{PREFIX}{kind}-{index}")
                produced = kafka_perf.produce(CLIENT, status["kafka_bootstrap"], topic, messages,
                                              size, settings)
                consumed = kafka_perf.consume(CLIENT, status["kafka_bootstrap"], topic,
                                              messages, settings=settings)
                for mode, result in (("producer", produced), ("consumer", consumed)):
                    if "error" in result:
                        raise RuntimeError(f"{kind} {mode}: {result['error']}")
                    rows[f"{kind}_{mode}"].append(result)
                    say(f"run {index + 1} {kind:9} {mode}: "
                        f"{result['records_per_s']:>10,.0f} records/s "
                        f"({result['mb_per_s']:.2f} MB/s)")
    finally:
        for root in roots.values():
            try:
                down(root)
            finally:
                shutil.rmtree(root, ignore_errors=True)
    medians = {key: statistics.median(r["records_per_s"] for r in results)
               for key, results in rows.items()}
    for mode in ("producer", "consumer"):
        medians[f"{mode}_ratio"] = round(medians[f"sasl_ssl_{mode}"]
                                         / medians[f"plaintext_{mode}"], 3)
    return {"client": CLIENT, "messages": messages, "size": size, "runs": runs,
            "records_per_s_median": medians}


def table(result: dict):
    """The pair's medians and ratios as a rich Table (``make bench`` prints it)."""
    from rich.table import Table
    medians = result["records_per_s_median"]
    out = Table(title=f"Kafka listener, SASL_SSL against plaintext ({result['client']}, "
                      f"acks=1, {result['messages']:,} x {result['size']} B, median of "
                      f"{result['runs']} alternating run(s))", title_justify="left")
    for name in ("rows", "plaintext (records/s)", "SASL_SSL (records/s)", "ratio", "target",
                 "met"):
        out.add_column(name, justify="left" if name == "rows" else "right")
    for mode in ("producer", "consumer"):
        ratio = medians[f"{mode}_ratio"]
        out.add_row(mode, f"{medians[f'plaintext_{mode}']:,.0f}",
                    f"{medians[f'sasl_ssl_{mode}']:,.0f}", f"{ratio:g}", f"≥ {TARGET:g}",
                    "yes" if ratio >= TARGET else "NO")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.tools.kafka_tls_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=200)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.messages, args.runs, args.size), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
