"""Real ZooKeeper servers: start, serve kazoo, crash, come back, and leave nothing behind."""
from __future__ import annotations

import socket
import uuid

import psutil
import pytest
from kazoo.retry import KazooRetry

from cluster.supervision.zookeeper import (NOT_FOUND, ZooKeeperEnsemble, ZooKeeperError, ZooKeeperServer,
                               find_install, four_letter)
from coordinator import zk as zkconnect


def java_processes_under(directory) -> list[psutil.Process]:
    """Live java processes whose command line names ``directory`` (our zoo.cfg lives there)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(str(directory) in a for a in cmdline):
            found.append(proc)
    return found


def test_missing_jars_give_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SLUICE_ZK_JARS", str(tmp_path))
    with pytest.raises(ZooKeeperError) as err:
        find_install()
    assert str(err.value) == NOT_FOUND
    assert "\n" not in str(err.value)


def test_install_is_found_on_this_machine():
    install = find_install()
    assert any(path.endswith("zookeeper.jar") for path in install.classpath)
    assert install.java


def test_server_serves_kazoo_and_stop_leaves_no_java(tmp_path):
    server = ZooKeeperServer(tmp_path / "zk", force_sync=False)
    server.start()
    try:
        server.wait_ready(timeout=60)
        assert server.mode() == "standalone"
        assert four_letter(server.client_port, "ruok") == "imok"
        assert psutil.Process(server.pid).name().startswith("java")
        client = zkconnect.connect(server.connect_string + "/app")
        try:
            client.create("/hello", b"world")
            assert client.get("/hello")[0] == b"world"
        finally:
            client.stop()
            client.close()
        assert server.log_path.exists()
    finally:
        pid = server.pid
        server.stop()
    assert server.pid is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert java_processes_under(server.directory) == []


def test_wait_ready_names_the_log_file_when_the_port_is_taken(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        server = ZooKeeperServer(tmp_path / "zk", client_port=blocker.getsockname()[1])
        server.start()
        try:
            with pytest.raises(ZooKeeperError) as err:
                server.wait_ready(timeout=30)
        finally:
            server.stop()
    assert str(server.log_path) in str(err.value)
    assert java_processes_under(server.directory) == []


def test_killed_server_restarts_with_its_data_and_port(tmp_path):
    server = ZooKeeperServer(tmp_path / "zk", force_sync=True)
    with server:
        client = zkconnect.connect(server.connect_string)
        try:
            client.create("/kept", b"1")
        finally:
            client.stop()
            client.close()
        port, old_pid = server.client_port, server.pid
        server.kill()
        assert server.pid is None
        assert not server.is_ready()
        server.start()
        server.wait_ready(timeout=60)
        assert server.client_port == port
        assert server.pid != old_pid
        client = zkconnect.connect(server.connect_string)
        try:
            assert client.get("/kept")[0] == b"1"
        finally:
            client.stop()
            client.close()
    assert java_processes_under(server.directory) == []


def test_ensemble_of_other_sizes_is_refused(tmp_path):
    with pytest.raises(ValueError):
        ZooKeeperEnsemble(tmp_path, size=2)


def test_single_node_ensemble_is_standalone(tmp_path):
    with ZooKeeperEnsemble(tmp_path / "one", size=1, force_sync=False) as ensemble:
        assert ensemble.node(1).mode() == "standalone"
        assert ensemble.connect_string == ensemble.node(1).connect_string
        assert list(ensemble.pids) == [1] and ensemble.pids[1]
    assert java_processes_under(ensemble.directory) == []


def test_three_node_ensemble_survives_a_lost_node_which_then_rejoins(tmp_path):
    ensemble = ZooKeeperEnsemble(tmp_path / "three", size=3, force_sync=False)
    ensemble.start()
    try:
        modes = ensemble.wait_ready(timeout=60)
        hosts = ensemble.connect_string.split(",")
        assert len(hosts) == 3 and len(set(hosts)) == 3
        assert sorted(modes.values()) == ["follower", "follower", "leader"]
        assert len(set(ensemble.pids.values())) == 3
        for node in ensemble.nodes:
            assert (node.directory / "data" / "myid").read_text().strip() == str(node.myid)

        client = zkconnect.connect(ensemble.connect_string)
        retry = KazooRetry(max_tries=-1, delay=0.1, max_delay=1, deadline=60)
        try:
            client.create("/before", b"1")
            leader = ensemble.node(next(myid for myid, mode in ensemble.wait_ready(timeout=60).items()
                                        if mode == "leader"))
            ensemble.kill(leader.myid)
            assert leader.pid is None and not leader.started
            assert leader.last_exit_code == -9
            modes = ensemble.wait_ready(timeout=60)
            assert leader.myid not in modes and sorted(modes.values()) == ["follower", "leader"]
            path = f"/during-{uuid.uuid4().hex[:6]}"
            retry(client.create, path, b"2")
            assert retry(client.get, "/before")[0] == b"1"

            ensemble.start_node(leader.myid)
            modes = ensemble.wait_ready(timeout=60)
            assert modes[leader.myid] in ("leader", "follower")
            assert list(modes.values()).count("leader") == 1
        finally:
            client.stop()
            client.close()

        direct = zkconnect.connect(leader.connect_string)
        try:
            direct.sync(path)
            assert direct.get(path)[0] == b"2"
        finally:
            direct.stop()
            direct.close()
    finally:
        ensemble.stop()
    assert all(pid is None for pid in ensemble.pids.values())
    assert java_processes_under(ensemble.directory) == []
