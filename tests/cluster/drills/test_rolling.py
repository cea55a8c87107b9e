"""The rolling-restart drill, short: 4 workers, 8 partitions, 2 of them restarted in turn.

The figures' arithmetic is tested first (pure). Then the drill runs end to end for eager,
cooperative and cooperative+static on a fresh supervised cluster (1 broker, this xdist
worker's ZooKeeper in its own chroot) and the issue's properties are asserted from what it
recorded: ownership exclusive (ZooKeeper samples: every owner a registered member; the
consumption log: no partition consumed by two processes at overlapping times), every
partition's offsets processed in order, nothing skipped or lost, and for cooperative no group
blackout. Nothing about speed is asserted.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cluster.drills import DRILLS, Settings, run
from cluster.drills.handlers import Consumption
from cluster.drills.rolling import _gaps, _waits, exclusive_violations
from cluster.drills.traffic import Look
from tests.helpers import ROOT

SHORT = dict(count=2, workers=4, partitions=8, brokers=1, flush_ms=100, rate=500, interval=0.5,
             warmup_s=1.0, recovery_timeout_s=60.0, drain_timeout_s=60.0)


def test_gaps_count_the_edges_of_the_phase():
    assert _gaps([], 10.0, 12.0) == [2.0]
    assert _gaps([9.0, 10.5, 11.0, 13.0], 10.0, 12.0) == [0.5, 0.5, 1.0]


def test_a_partition_waits_only_while_a_message_is_there():
    rows = [Consumption(1.0, 7, "t", 0, 0), Consumption(5.0, 7, "t", 0, 10)]
    assert _waits(rows, [(0, 0.9), (10, 4.0)], 0.0, 10.0) == pytest.approx([0.1, 1.0])
    assert _waits(rows, [(0, 0.9), (10, 4.0), (20, 8.0)], 0.0, 10.0) == \
        pytest.approx([0.1, 1.0, 2.0])
    assert _waits([], [], 0.0, 10.0) == []


def look(t, owner, zxid, pid, reads_s=0.0):
    """A look whose owner reads began at t and took reads_s."""
    return Look(t, members={owner: pid}, owners={0: owner}, owner_zxids={0: zxid},
                owners_read=(t, t + reads_s))


def test_only_the_owner_of_record_may_consume():
    looks = [look(0.0, "a", 1, 7), look(0.25, "a", 1, 7), look(0.5, "a", 1, 7),
             look(0.75, "b", 2, 8), look(1.0, "b", 2, 8), look(1.25, "b", 2, 8),
             look(1.5, "b", 2, 8)]
    owner_consumes = [Consumption(100.3, 7, "t", 0, 0), Consumption(101.0, 8, "t", 0, 10)]
    assert exclusive_violations(owner_consumes, looks, to_wall=100.0) == []
    handover = [Consumption(100.6, 7, "t", 0, 5)]     # near the change: not judged
    assert exclusive_violations(handover, looks, to_wall=100.0) == []
    intruder = [Consumption(101.1, 7, "t", 0, 20)]    # b's node all around it
    assert len(exclusive_violations(intruder, looks, to_wall=100.0)) == 1


def test_a_slow_look_is_timed_by_its_owner_reads():
    """Under load a look's reads take long: one that began before a consumption but read the
    owners after it says nothing about before (seen: a drill counted a handover as a breach)."""
    looks = [look(0.0, "a", 1, 7), look(0.5, "b", 2, 8, reads_s=0.7), look(1.5, "b", 2, 8)]
    last_of_a = [Consumption(100.9, 7, "t", 0, 5)]   # b's reads began at 100.5, ended at 101.2
    assert exclusive_violations(last_of_a, looks, to_wall=100.0) == []
    late = [Consumption(101.5 + 0.0, 7, "t", 0, 9)]
    assert exclusive_violations(late, [*looks, look(2.0, "b", 2, 8)], to_wall=100.0) != []


@pytest.mark.drill
@pytest.mark.parametrize("protocol,static", [("eager", False), ("cooperative", False),
                                             ("cooperative", True)])
def test_rolling_restart_short(protocol, static, zk_server):
    drill = DRILLS["rolling-restart"]
    settings = Settings(**{**drill.defaults, **SHORT, "rebalance": protocol, "static": static,
                           "zookeeper": zk_server.connect_string})
    result = run(drill, settings)
    assert result["status"] in ("ok", "failed"), result.get("reason")
    for key in ("protocol", "static", "workers", "partitions", "blackout_s",
                "max_partition_gap_s", "unowned_partition_s", "rebalances", "peak_lag",
                "skipped", "duplicates"):
        assert key in result, key
    assert (result["protocol"], result["static"]) == (protocol, static)
    assert result["faults"] == SHORT["count"] and result["restarts"] == SHORT["count"]
    assert all(f["recovered"] for f in result["fault_log"]), result["fault_log"]
    # exclusivity and order, from the consumption log; no skip, no loss
    assert result["exclusive_violations"] == 0, json.dumps(result["checks"], indent=1)
    assert result["order_violations"] == 0, result["ledger"]["violation_sample"]
    assert result["skipped"] == 0, result["ledger"]["skipped_sample"]
    assert result["lost"] == 0, result["ledger"]["lost_sample"]
    assert not result["read_back_problems"]
    if protocol == "cooperative":
        assert result["blackout_s"] == 0
    if static:
        assert result["untouched_reassignments"] == 0


def test_rolling_restart_through_the_cli():
    """--json: one object with the issue's keys (a cooperative run of 3 workers, 1 restart)."""
    out = subprocess.run([sys.executable, "-m", "cluster.cli", "drill", "rolling-restart",
                          "--workers", "3", "--partitions", "6", "--count", "1",
                          "--interval", "0.5", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    result = json.loads(out.stdout.splitlines()[0])
    for key in ("protocol", "static", "workers", "partitions", "blackout_s",
                "max_partition_gap_s", "unowned_partition_s", "rebalances", "peak_lag",
                "skipped", "duplicates"):
        assert key in result, key
    assert (result["protocol"], result["static"], result["workers"], result["partitions"]) == \
        ("cooperative", False, 3, 6)
    assert result["skipped"] == 0 and result["exclusive_violations"] == 0
