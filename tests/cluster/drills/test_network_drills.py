"""partition-leader, short, against real brokers on a fresh 3-broker cluster (R = 3, min ISR 2,
acks=all), both ways of cutting (cluster/drills/network_faults.py): as root, every broker in a
network namespace of its own and the leader's routes to ZooKeeper and its followers
blackholed (cluster/drills/namespaces.py); else (and always, as its own case) blocking proxies
in front of each broker's ZooKeeper connection and replica endpoint. A busy partition's leader
is cut off while its producer still reaches it, twice, every must-hold checked (0
acknowledged writes lost, the cut leader acknowledges nothing after the election, it rejoins
as a follower, its cut counted). Marked ``drill``: ``make drill-short`` runs it, ``make test``
does not."""
from __future__ import annotations

import dataclasses
import os
import shutil

import pytest

from cluster.drills import DRILLS, Settings, run
from cluster.drills import network_faults as nf
from cluster.drills.replication_faults import SETTINGS
from tests.cluster.drills.test_catalog import SHORT, judge

WAYS = {"network namespaces": nf.namespace_overrides, "blocking proxies": nf.proxy_overrides}


@pytest.mark.drill
@pytest.mark.parametrize("way", WAYS)
def test_partition_leader_drill_holds(way, zk_server):
    if way == "network namespaces" and (os.geteuid() != 0 or shutil.which("ip") is None):
        pytest.skip("network namespaces need root and iproute2's ip")
    drill = dataclasses.replace(DRILLS["partition-leader"], broker_overrides=WAYS[way])
    settings = Settings(zookeeper=zk_server.connect_string, **{**SHORT, **SETTINGS})
    result = run(drill, settings)
    judge(result)
    assert result["zombie_acks"] == 0
    assert {f["cut_by"] for f in result["fault_log"]} == {way}
