"""partition-leader, short, against real brokers on a fresh 3-broker cluster (R = 3, min ISR 2,
acks=all): each broker's ZooKeeper connection and replica endpoint go through blocking proxies
(cluster/drills/network_faults.py); a busy partition's leader is cut off from both while its
producer still reaches it, twice, every must-hold checked (0 acknowledged writes lost, the cut
leader acknowledges nothing after the election, it rejoins as a follower, its cut counted).

The catalogue's row (cluster/drills/catalog.py) still points at the placeholder that reports the
drill unsupported; the drill is built here from the network hooks until the row is switched."""
from __future__ import annotations

import dataclasses

from cluster.drills import DRILLS, Settings, network_faults as nf, run
from cluster.drills.replication_faults import SETTINGS
from tests.cluster.drills.test_catalog import SHORT, judge

PARTITION_LEADER = dataclasses.replace(
    DRILLS["partition-leader"], inject=nf.partition_leader, checks=nf.partition_leader_checks,
    prepare=None, broker_overrides=nf.broker_overrides, cleanup=nf.cleanup)


def test_partition_leader_drill_holds(zk_server):
    settings = Settings(zookeeper=zk_server.connect_string, **{**SHORT, **SETTINGS})
    result = run(PARTITION_LEADER, settings)
    judge(result)
    assert result["zombie_acks"] == 0
