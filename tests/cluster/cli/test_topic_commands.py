"""``sluice topics create|describe`` with replicas, and ``cluster up``'s replication settings,
against a real supervised cluster."""
from __future__ import annotations

import json

from cluster.cli.cluster_commands import cluster_config
from cluster.cli.parser import build_parser
from tests.cluster.cli.test_bad_arguments import one_line_error, sluice
from tests.helpers import wait_for

INTERFACE_KEYS = {"partition", "leader", "replicas", "isr", "leader_epoch", "high_watermark",
                  "start_offset", "end_offset"}


def test_cluster_up_passes_the_replication_settings_to_the_supervisor(tmp_path):
    args = build_parser().parse_args([
        "cluster", "up", "--data-dir", str(tmp_path), "--replication-factor", "2",
        "--unclean-leader-election", "--broker-settings", '{"replica_lag_time_max_ms": 5000}'])
    config = cluster_config(args)
    assert config.replication_factor == 2
    assert config.broker_settings == {"replica_lag_time_max_ms": 5000,
                                      "unclean_leader_election": True}
    broker = config.broker_config(0, "h:1")
    assert broker.unclean_leader_election and broker.replica_lag_time_max_ms == 5000
    assert cluster_config(build_parser().parse_args(
        ["cluster", "up", "--data-dir", str(tmp_path)])).broker_settings == {}


def test_bad_replication_arguments_are_refused_by_the_parser():
    one_line_error(sluice("topics", "create", "t", "--partitions", "1", "--replication-factor",
                          "0"), 2, "--replication-factor", ">= 1")
    one_line_error(sluice("topics", "create", "t", "--partitions", "1",
                          "--min-insync-replicas", "x"), 2, "--min-insync-replicas")
    one_line_error(sluice("cluster", "up", "--replication-factor", "0"), 2,
                   "--replication-factor")
    one_line_error(sluice("cluster", "up", "--broker-settings", "[1]"), 2, "JSON object")
    one_line_error(sluice("cluster", "up", "--broker-settings",
                          '{"unclean_leader_election": 1}'), 2, "unclean_leader_election")


def test_create_with_replicas_the_cluster_default_and_describe(cluster_factory):
    cluster = cluster_factory(brokers=3, replication_factor=2,
                              broker_settings={"log": {"flush_ms": 100}})
    zk = ["--zookeeper", cluster.zookeeper]

    out = sluice("topics", "create", "dflt", "--partitions", "3", "--json", *zk)
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["replication_factor"] == 2                     # cluster up's default
    assert all(len(set(r)) == 2 for r in created["replicas"])

    out = sluice("topics", "create", "r3", "--partitions", "2", "--replication-factor", "3",
                 "--min-insync-replicas", "2", *zk)
    assert out.returncode == 0, out.stderr
    one_line_error(sluice("topics", "create", "big", "--partitions", "1",
                          "--replication-factor", "4", *zk), 1, "replication factor of 4",
                   "3 are registered")
    one_line_error(sluice("topics", "create", "m", "--partitions", "1", "--replication-factor",
                          "2", "--min-insync-replicas", "3", *zk), 1, "min_insync_replicas",
                   "1..2")

    out = sluice("produce", "r3", "--partition", "0", *zk, stdin="one\ntwo\nthree\n")
    assert out.returncode == 0, out.stderr

    def described():
        out = sluice("topics", "describe", "r3", "--json", *zk)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        first = doc["partitions"][0]
        return doc if first["high_watermark"] and first["end_offset"] else None
    doc = wait_for(described, 30, what="describe to show r3/0's messages")
    assert doc["topic"] == "r3" and (doc["replication_factor"], doc["min_insync_replicas"]) == (3, 2)
    assert [p["partition"] for p in doc["partitions"]] == [0, 1]
    for row in doc["partitions"]:
        assert INTERFACE_KEYS <= set(row)
        assert sorted(row["replicas"]) == [0, 1, 2] and row["isr"] == row["replicas"]
        assert (row["leader"], row["leader_epoch"]) == (row["replicas"][0], 0)
        assert set(row["replica_ends"]) == {"0", "1", "2"}
        assert row["unclean_elections"] == 0
    first = doc["partitions"][0]
    assert first["start_offset"] == 0 and first["end_offset"] > 0
    assert first["replica_ends"][str(first["leader"])] == first["end_offset"]
    assert first["high_watermark"] <= first["end_offset"]

    table = sluice("topics", "describe", "r3", *zk)
    assert table.returncode == 0, table.stderr
    assert "high watermark" in table.stdout and "replication factor 3" in table.stdout
