"""The supervisor against a real ZooKeeper, with a stand-in broker that registers like the real one."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import threading

import psutil
import pytest
from kazoo.exceptions import NodeExistsError, NoNodeError

from broker.config import BrokerConfig
from cluster.supervision import supervisor
from cluster.supervision.supervisor import Backoff, ClusterError, Supervisor, down, status, up
from coordinator import paths
from coordinator import zk as zkconnect
from tests.conftest import target_ref
from tests.helpers import wait_for

PROCESS_KEYS = {"role", "id", "pid", "endpoint", "alive"}


def standin_broker(config: BrokerConfig) -> None:
    """Registers at /brokers/ids/<id> as broker.server.run does, then idles until SIGTERM/SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    listener = socket.create_server((config.host, config.port))
    port = listener.getsockname()[1]
    registration = json.dumps({"endpoint": f"tcp://{config.endpoint_host}:{port}",
                               "host": config.endpoint_host, "port": port,
                               "pid": os.getpid()}).encode()
    client = zkconnect.connect(config.zookeeper, session_timeout=config.session_timeout_ms / 1000)
    try:
        while not stop.is_set():
            try:
                client.create(paths.broker(config.broker_id), registration, ephemeral=True,
                              makepath=True)
                break
            except NodeExistsError:
                stop.wait(0.2)
        stop.wait()
    finally:
        client.stop()
        client.close()
        listener.close()


def crashing_broker(config: BrokerConfig) -> None:
    """Dies at once, to drive the restart back-off."""
    sys.exit(3)


def registrations(connect: str) -> dict[int, dict]:
    client = zkconnect.connect(connect)
    try:
        try:
            ids = client.get_children(paths.BROKER_IDS)
        except NoNodeError:
            return {}
        return {int(i): json.loads(client.get(paths.broker(int(i)))[0]) for i in ids}
    finally:
        client.stop()
        client.close()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_backoff_doubles_up_to_the_cap():
    backoff = Backoff()
    delays, previous = [], None
    for _ in range(7):
        previous = backoff.next_delay(previous, lived_s=0.1)
        delays.append(previous)
    assert delays == [0.5, 1, 2, 4, 8, 10, 10]


def test_backoff_starts_over_after_a_healthy_life():
    backoff = Backoff(initial_s=0.5, max_s=10, reset_after_s=30)
    assert backoff.next_delay(8, lived_s=29.9) == 10
    assert backoff.next_delay(8, lived_s=30) == 0.5
    assert backoff.next_delay(None, lived_s=0) == 0.5


def test_broker_settings_are_validated(tmp_path, zk):
    with pytest.raises(ClusterError, match="bogus"):
        Supervisor(tmp_path, brokers=1, zookeeper=zk, broker_settings={"bogus": 1})
    with pytest.raises(ClusterError, match="broker_id"):
        Supervisor(tmp_path, brokers=1, zookeeper=zk, broker_settings={"broker_id": 7})
    with pytest.raises(ClusterError, match="--brokers"):
        Supervisor(tmp_path, brokers=0, zookeeper=zk)
    with pytest.raises(ClusterError, match="exclude"):
        Supervisor(tmp_path, brokers=1, zookeeper=zk, zk_ensemble=3)


def test_broker_config_gets_id_dir_zookeeper_and_consecutive_ports(tmp_path):
    config = supervisor.broker_config(2, tmp_path, "h:1/x", {"port": 9000, "log": {"flush_ms": 50}})
    assert (config.broker_id, config.zookeeper, config.port) == (2, "h:1/x", 9002)
    assert config.data_dir == str(tmp_path / "broker-2")
    assert config.log.flush_ms == 50


def test_in_process_supervisor_runs_a_callable_target(tmp_path, zk, zk_client):
    sup = Supervisor(tmp_path, brokers=2, zookeeper=zk, broker_target=standin_broker)
    sup.start()
    try:
        wait_for(lambda: sup.poll(0.1) or sup.ready, 60, what="brokers to register")
        pids = {int(s.spec.id): s.pid for s in sup.slots}
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
    sup = Supervisor(tmp_path, brokers=1, zookeeper=zk, broker_target=crashing_broker)
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
    assert set(result) == {"zookeeper", "dashboard", "processes"}
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
    with pytest.raises(ClusterError, match="no cluster is running"):
        down(cluster.data_dir)


def test_sigkilled_supervisor_takes_its_brokers_along(cluster_factory):
    cluster = cluster_factory(brokers=2, broker_target=standin_broker)
    pids = list(cluster.broker_pids().values())
    cluster.process.kill()
    cluster.process.wait()
    wait_for(lambda: not any(alive(pid) for pid in pids), 30, what="orphaned brokers to exit")


def test_down_with_nothing_running_is_a_cluster_error(tmp_path):
    with pytest.raises(ClusterError, match="no cluster is running") as err:
        down(tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(ClusterError, match="no cluster in"):
        status(tmp_path)


@pytest.mark.parametrize("zk_ensemble", [1, 3])
def test_up_detached_and_down_round_trip(tmp_path, monkeypatch, zk_ensemble):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    data_dir = tmp_path / "sluice"
    result = up(data_dir, brokers=2, zk_ensemble=zk_ensemble, detach=True, timeout=120,
                broker_target=target_ref(standin_broker))
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
            up(data_dir, brokers=2, detach=True, broker_target=target_ref(standin_broker))
    finally:
        down(data_dir)
    pids = [p["pid"] for p in result["processes"]]
    assert not any(alive(pid) for pid in pids)
    assert not any(p["alive"] for p in status(data_dir)["processes"])
    assert not (data_dir / "zookeeper").exists()
    with pytest.raises(ClusterError, match="no cluster is running"):
        down(data_dir)


def test_sigkilled_detached_supervisor_leaves_no_orphans(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    data_dir = tmp_path / "sluice"
    result = up(data_dir, brokers=1, detach=True, timeout=120,
                broker_target=target_ref(standin_broker))
    pids = {p["role"]: p["pid"] for p in result["processes"]}
    os.kill(pids["supervisor"], signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in pids.values()), 30,
             what="ZooKeeper and the broker to exit after their supervisor")
    with pytest.raises(ClusterError, match="no cluster is running"):
        down(data_dir)


def test_up_reports_a_supervisor_that_died_while_starting(tmp_path, zk):
    with pytest.raises(ClusterError, match="exited with code 1") as err:
        up(tmp_path / "sluice", brokers=1, zookeeper=zk, detach=True, timeout=60,
           broker_target="no_such_module_for_sluice:run")
    assert "no_such_module_for_sluice" in str(err.value)


def test_default_target_runs_real_brokers(supervised_cluster):
    pids = supervised_cluster.broker_pids()
    registered = registrations(supervised_cluster.zookeeper)
    assert {i: r["pid"] for i, r in registered.items()} == pids
    brokers = [p for p in supervised_cluster.status()["processes"] if p["role"] == "broker"]
    assert [p["endpoint"] for p in brokers] == [registered[i]["endpoint"] for i in sorted(pids)]
    assert all(p["alive"] for p in brokers)
    assert supervised_cluster.stop() == 0
    assert registrations(supervised_cluster.zookeeper) == {}
