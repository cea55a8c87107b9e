"""The supervisor against a real ZooKeeper, with a stand-in broker that registers like the real one."""
from __future__ import annotations

import json
import os
import re
import signal

import psutil
import pytest

from cluster.errors import ClusterError
from cluster.supervision import ClusterConfig
from cluster.supervision.control import down
from cluster.supervision.supervisor import Supervisor
from coordinator import paths
from tests.cluster.supervision.standins import alive, crashing_broker, registrations, standin_broker
from tests.helpers import wait_for

PROCESS_KEYS = {"role", "id", "pid", "endpoint", "alive"}


def test_in_process_supervisor_runs_a_callable_target(tmp_path, zk, zk_client):
    sup = Supervisor(ClusterConfig(tmp_path, brokers=2, zookeeper=zk,
                                  broker_target=standin_broker))
    sup.start()
    try:
        wait_for(lambda: sup.poll(0.1) or sup.ready, 60, what="brokers to register")
        pids = {int(s.spec.id): s.restart.pid for s in sup.slots}
        assert sorted(zk_client.get_children(paths.BROKER_IDS)) == ["0", "1"]
        for broker_id, pid in pids.items():
            assert json.loads(zk_client.get(paths.broker(broker_id))[0])["pid"] == pid
        info = json.loads((tmp_path / "cluster.json").read_text())
        assert info["ready"] is True and info["supervisor"]["pid"] == os.getpid()
        assert (tmp_path / "zookeeper").read_text().strip() == zk
    finally:
        sup.stop()
    assert not any(alive(pid) for pid in pids.values())
    assert not (tmp_path / "zookeeper").exists()


def test_crashing_broker_is_restarted_with_growing_delays(tmp_path, zk):
    sup = Supervisor(ClusterConfig(tmp_path, brokers=1, zookeeper=zk,
                                  broker_target=crashing_broker))
    log_file = tmp_path / "supervisor.log"
    sup.start()
    try:
        wait_for(lambda: sup.poll(0.1) or log_file.read_text().count("died with exit code 3") >= 3,
                 60, what="three crashes")
    finally:
        sup.stop()
    delays = re.findall(r"broker 0 \(pid \d+\) died with exit code 3; restarting in ([\d.]+) s",
                        log_file.read_text())
    assert delays[:3] == ["0.5", "1", "2"]
    assert not sup.ready


def test_supervisor_starts_brokers_visible_in_zookeeper(cluster_factory):
    cluster = cluster_factory(brokers=3, broker_target=standin_broker)
    pids = cluster.broker_pids()
    assert sorted(pids) == [0, 1, 2]
    registered = registrations(cluster.zookeeper)
    assert {i: r["pid"] for i, r in registered.items()} == pids
    assert (cluster.data_dir / "zookeeper").read_text().strip() == cluster.zookeeper
    for broker_id in pids:
        assert (cluster.data_dir / f"broker-{broker_id}").is_dir()


def test_status_has_the_interface_shape(cluster_factory):
    cluster = cluster_factory(brokers=2, broker_target=standin_broker)
    result = cluster.status()
    json.dumps(result)
    assert set(result) == {"zookeeper", "dashboard", "kafka_bootstrap", "processes", "settings"}
    assert result["zookeeper"] == cluster.zookeeper
    assert result["dashboard"].startswith("http://127.0.0.1:") and result["dashboard"] == \
        cluster.info()["dashboard"]
    assert all(set(p) == PROCESS_KEYS for p in result["processes"])
    by_role = {}
    for proc in result["processes"]:
        by_role.setdefault(proc["role"], []).append(proc)
    assert set(by_role) == {"supervisor", "broker"}
    assert by_role["supervisor"] == [{"role": "supervisor", "id": "0", "pid": cluster.process.pid,
                                      "endpoint": None, "alive": True}]
    registered = registrations(cluster.zookeeper)
    for proc in by_role["broker"]:
        assert isinstance(proc["id"], str) and proc["alive"] is True
        assert proc["endpoint"] == registered[int(proc["id"])]["endpoint"]
        assert proc["endpoint"].startswith("tcp://127.0.0.1:")


def test_sigkilled_broker_is_restarted_with_a_new_pid(cluster_factory):
    cluster = cluster_factory(brokers=3, broker_target=standin_broker)
    before = cluster.broker_pids()
    os.kill(before[1], signal.SIGKILL)

    def reregistered():
        pid = cluster.broker_pids()[1]
        if pid in (None, before[1]):
            return None
        return pid if registrations(cluster.zookeeper).get(1, {}).get("pid") == pid else None

    new_pid = wait_for(reregistered, 60, interval=0.2, what="broker 1 to come back")
    assert alive(new_pid) and not alive(before[1])
    after = cluster.broker_pids()
    assert (after[0], after[2]) == (before[0], before[2])
    assert (f"broker 1 (pid {before[1]}) died with exit code -9; restarting in 0.5 s"
            in cluster.log_text())
    restarted = next(p for p in cluster.info()["processes"] if p["id"] == "1")
    assert restarted["restarts"] == 1 and restarted["last_exit_code"] == -9
    assert next(p for p in cluster.status()["processes"]
                if p["role"] == "broker" and p["id"] == "1")["pid"] == new_pid


def test_sigterm_stops_everything(cluster_factory):
    cluster = cluster_factory(brokers=3, broker_target=standin_broker)
    children = psutil.Process(cluster.process.pid).children(recursive=True)
    assert set(cluster.broker_pids().values()) <= {c.pid for c in children}
    assert cluster.stop() == 0
    gone, still = psutil.wait_procs(children, timeout=30)
    assert still == []
    assert registrations(cluster.zookeeper) == {}
    assert not (cluster.data_dir / "zookeeper").exists()
    info = cluster.info()
    assert info["phase"] == "stopped" and info["ready"] is False
    assert not any(p["alive"] for p in cluster.status()["processes"])
    with pytest.raises(ClusterError, match="no cluster running in"):
        down(cluster.data_dir)


def test_sigkilled_supervisor_takes_its_brokers_along(cluster_factory):
    cluster = cluster_factory(brokers=2, broker_target=standin_broker)
    pids = list(cluster.broker_pids().values())
    cluster.process.kill()
    cluster.process.wait()
    wait_for(lambda: not any(alive(pid) for pid in pids), 30, what="orphaned brokers to exit")


def test_default_target_runs_real_brokers(supervised_cluster):
    pids = supervised_cluster.broker_pids()
    registered = registrations(supervised_cluster.zookeeper)
    assert {i: r["pid"] for i, r in registered.items()} == pids
    brokers = [p for p in supervised_cluster.status()["processes"] if p["role"] == "broker"]
    assert [p["endpoint"] for p in brokers] == [registered[i]["endpoint"] for i in sorted(pids)]
    assert all(p["alive"] for p in brokers)
    assert supervised_cluster.stop() == 0
    assert registrations(supervised_cluster.zookeeper) == {}
