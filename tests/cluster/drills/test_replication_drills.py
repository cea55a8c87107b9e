"""The replication drills, short: each on a fresh 3-broker cluster (R = 3, min ISR 2, acks=all)
with two faults, every must-hold checked. They need the controller, the broker's replication
path, leader epochs and leader-following clients (issue 12): nothing here is marked xfail.
partition-leader is reported unsupported (skipped) with its reason where it cannot run.
``make test`` runs kill-leader; the others are marked ``drill`` (``make drill-short``)."""
from __future__ import annotations

import pytest

from cluster.drills import DRILLS, Settings, run
from cluster.drills.replication_faults import SETTINGS
from tests.cluster.drills.test_catalog import SHORT, judge


MARKED = ("pause-leader", "lose-disk", "rolling-restart-brokers", "unclean-election")


@pytest.mark.parametrize("name", ["kill-leader",
                                  *(pytest.param(n, marks=pytest.mark.drill) for n in MARKED)])
def test_replication_drill_holds(name, zk_server):
    settings = Settings(zookeeper=zk_server.connect_string, **{**SHORT, **SETTINGS})
    judge(run(DRILLS[name], settings))
