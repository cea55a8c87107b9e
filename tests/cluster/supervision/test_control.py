"""The control API (up, down, status) end to end: a detached supervisor with its embedded
ZooKeeper (one node or three), stand-in brokers, and what is left when it stops or is killed."""
from __future__ import annotations

import os
import signal
import sys

import psutil
import pytest

from cluster.errors import ClusterError
from cluster.supervision import ClusterConfig, down, status, up
from cluster.targets import reference
from coordinator import zk as zkconnect
from tests.cluster.supervision.standins import alive, registrations, standin_broker
from tests.helpers import wait_for


def test_down_with_nothing_running_is_a_cluster_error(tmp_path):
    with pytest.raises(ClusterError, match="no cluster running in") as err:
        down(tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(ClusterError, match="no cluster in"):
        status(tmp_path)


@pytest.mark.parametrize("zk_ensemble", [1, 3])
def test_up_detached_and_down_round_trip(tmp_path, monkeypatch, zk_ensemble):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    data_dir = tmp_path / "sluice"
    result = up(ClusterConfig(data_dir, brokers=2, zk_ensemble=zk_ensemble,
                              broker_target=reference(standin_broker)), detach=True, timeout=120)
    try:
        roles = [p["role"] for p in result["processes"]]
        assert roles == ["supervisor"] + ["zookeeper"] * zk_ensemble + ["broker", "broker"]
        assert all(p["alive"] for p in result["processes"])
        zk_nodes = [p for p in result["processes"] if p["role"] == "zookeeper"]
        assert result["zookeeper"] == ",".join(p["endpoint"][len("tcp://"):] for p in zk_nodes)
        assert all(psutil.Process(p["pid"]).name().startswith("java") for p in zk_nodes)
        assert zkconnect.resolve(data_dir=data_dir) == result["zookeeper"]
        assert sorted(registrations(result["zookeeper"])) == [0, 1]
        with pytest.raises(ClusterError, match="already running"):
            up(ClusterConfig(data_dir, brokers=2, broker_target=reference(standin_broker)),
               detach=True)
    finally:
        down(data_dir)
    pids = [p["pid"] for p in result["processes"]]
    assert not any(alive(pid) for pid in pids)
    assert not any(p["alive"] for p in status(data_dir)["processes"])
    assert not (data_dir / "zookeeper").exists()
    with pytest.raises(ClusterError, match="no cluster running in"):
        down(data_dir)


def test_sigkilled_detached_supervisor_leaves_no_orphans(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    data_dir = tmp_path / "sluice"
    result = up(ClusterConfig(data_dir, brokers=1, broker_target=reference(standin_broker)),
                detach=True, timeout=120)
    pids = {p["role"]: p["pid"] for p in result["processes"]}
    os.kill(pids["supervisor"], signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in pids.values()), 30,
             what="ZooKeeper and the broker to exit after their supervisor")
    with pytest.raises(ClusterError, match="no cluster running in"):
        down(data_dir)


def test_up_reports_a_supervisor_that_died_while_starting(tmp_path, zk):
    with pytest.raises(ClusterError, match="exited with code 1") as err:
        up(ClusterConfig(tmp_path / "sluice", brokers=1, zookeeper=zk,
                         broker_target="no_such_module_for_sluice:run"), detach=True, timeout=60)
    assert "no_such_module_for_sluice" in str(err.value)
