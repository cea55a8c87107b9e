"""``sluice cluster up|down|status``: the local cluster's lifecycle (cluster/supervision/)."""
from __future__ import annotations

import sys

from cluster.cli.output import err, out, print_json, print_table
from cluster.errors import ClusterNotRunning
from cluster.supervision import ClusterConfig, down, settings_file, up
from cluster.supervision.control import running_status


def cluster_config(args) -> ClusterConfig:
    """``cluster up``'s settings from its arguments (a refused one is a bad argument: exit 2):
    the ``--config`` file's, then ``--set``'s over them (cluster/supervision/settings_file.py),
    then the flags that name a setting (``--topic``, ``--rebalance``, ``--broker-settings``...)
    over both."""
    entries = settings_file.read(args.config) if args.config else []
    found = settings_file.settings([*entries, *settings_file.parse_sets(args.set or [])])
    workers = found["worker"]
    workers.update({k: v for k, v in (("topic", args.topic), ("group", args.group),
                                      ("handler", args.handler), ("static", args.static))
                    if v is not None})
    if args.rebalance is not None:
        workers["consumer"] = {**workers.get("consumer", {}), "rebalance": args.rebalance}
    broker_settings = found["broker"]
    explicit = dict(args.broker_settings or {})
    if isinstance(explicit.get("log"), dict):
        explicit["log"] = {**broker_settings.get("log", {}), **explicit["log"]}
    broker_settings.update(explicit)
    if args.unclean_leader_election:
        broker_settings["unclean_leader_election"] = True
    return ClusterConfig(args.data_dir, brokers=args.brokers, zookeeper=args.zookeeper,
                         zk_ensemble=args.zk_ensemble, broker_settings=broker_settings,
                         replication_factor=args.replication_factor, workers=args.workers,
                         worker_settings=workers,
                         dashboard_port=None if args.no_dashboard else args.dashboard_port,
                         dashboard_host=args.dashboard_host,
                         dashboard_token_file=args.dashboard_token_file,
                         kafka_port=None if args.no_kafka else args.kafka_port,
                         secure=args.secure, kafka_plaintext=args.kafka_plaintext)


def cluster_up(args) -> int:
    result = up(args.settings, detach=args.detach,
                on_ready=lambda ready: print_status(ready, as_json=False))
    if args.detach:
        print_status(result, as_json=False)
    return 0


def cluster_down(args) -> int:
    """Stop the cluster; with none running there is nothing to do, which is not an error (as a
    service manager's ``stop`` of a stopped service), so ``make cluster-down`` is idempotent."""
    try:
        down(args.data_dir)
    except ClusterNotRunning as exc:
        sys.stderr.write(f"{exc}: nothing to stop\n")
        return 0
    err.print(f"cluster in {args.data_dir} stopped")
    return 0


def cluster_status(args) -> int:
    """Exit 3 when no cluster runs in the data dir (cli/exits.py), so scripts can test it."""
    print_status(running_status(args.data_dir), args.json)
    return 0


def print_status(found: dict, as_json: bool) -> None:
    if as_json:
        print_json(found)
        return
    out.print(f"zookeeper: {found['zookeeper']}")
    if found.get("dashboard"):
        out.print(f"dashboard: {found['dashboard']}  (Prometheus: {found['dashboard']}metrics;"
                  f" terminal: sluice dashboard)")
    if found.get("kafka_bootstrap"):
        out.print(f"kafka bootstrap: {found['kafka_bootstrap']}"
                  + (f"  ({found['kafka_security_protocol']}, trust {found['kafka_ca']})"
                     if found.get("kafka_ca") else ""))
    print_table("processes", ["role", "id", "pid", "endpoint", "alive"],
                [[p["role"], p["id"], p["pid"], p.get("endpoint") or "", p["alive"]]
                 for p in found["processes"]])
