"""partition-leader, short, against real brokers on a fresh 3-broker cluster (R = 3, min ISR 2,
acks=all): each broker's ZooKeeper connection and replica endpoint go through blocking proxies
(cluster/drills/network_faults.py); a busy partition's leader is cut off from both while its
producer still reaches it, twice, every must-hold checked (0 acknowledged writes lost, the cut
leader acknowledges nothing after the election, it rejoins as a follower, its cut counted).
Marked ``drill``: ``make drill-short`` runs it, ``make test`` does not."""
from __future__ import annotations

import pytest

from cluster.drills import DRILLS, Settings, run
from cluster.drills.replication_faults import SETTINGS
from tests.cluster.drills.test_catalog import SHORT, judge


@pytest.mark.drill
def test_partition_leader_drill_holds(zk_server):
    settings = Settings(zookeeper=zk_server.connect_string, **{**SHORT, **SETTINGS})
    result = run(DRILLS["partition-leader"], settings)
    judge(result)
    assert result["zombie_acks"] == 0
