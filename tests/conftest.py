"""The shared test harness: one real ZooKeeper per xdist worker, a fresh chroot per test.

| fixture            | scope    | yields                                                        |
| ------------------ | -------- | ------------------------------------------------------------- |
| zk_server          | session  | a running ``ZooKeeperServer`` (one per xdist worker)          |
| zk                 | function | a connect string with a chroot of its own: ``h:p/t-<hex>``    |
| zk_client          | function | a started ``KazooClient`` on that chroot, stopped afterwards  |
| cluster_factory    | function | ``make(brokers=3, ...) -> SupervisedCluster``; all killed at teardown |
| supervised_cluster | function | one 3-broker ``SupervisedCluster`` running ``broker.server.run`` |

A ``SupervisedCluster`` is ``python -m cluster.supervision`` in a subprocess (the command line of
a ``ClusterConfig``) against its own chroot of the worker's ZooKeeper, so tests run in parallel
without seeing each other's brokers.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from cluster.supervision import ClusterConfig, status
from cluster.supervision.control import supervisor_command
from cluster.supervision.files import ClusterFiles
from cluster.supervision.slots import process_alive
from cluster.supervision.zookeeper import ZooKeeperServer
from coordinator import zk as zkconnect
from tests.helpers import wait_for

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def zk_server(tmp_path_factory) -> ZooKeeperServer:
    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper"), force_sync=False)
    server.start()
    try:
        server.wait_ready(timeout=60)
        yield server
    finally:
        server.stop()


@pytest.fixture
def zk(zk_server) -> str:
    return f"{zk_server.connect_string}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def zk_client(zk):
    client = zkconnect.connect(zk)
    yield client
    client.stop()
    client.close()


@dataclass
class SupervisedCluster:
    """A supervisor subprocess and the data dir it writes."""

    data_dir: Path
    zookeeper: str
    process: subprocess.Popen

    @property
    def files(self) -> ClusterFiles:
        return ClusterFiles(self.data_dir)

    def info(self) -> dict:
        """cluster.json as the supervisor last wrote it."""
        return self.files.read_state()

    def status(self) -> dict:
        return status(self.data_dir)

    def broker_pids(self) -> dict[int, int | None]:
        return {int(p["id"]): p["pid"] for p in self.info()["processes"] if p["role"] == "broker"}

    def log_text(self) -> str:
        return self.files.log_file.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the supervisor and return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the supervisor and every process cluster.json names: no orphans, no grace."""
        info = self.files.try_read_state() or {}
        recorded = info.get("processes", []) + info.get("zookeeper_nodes", [])
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for entry in recorded:
            if not process_alive(entry.get("pid"), entry.get("create_time") or 0.0):
                continue
            try:
                psutil.Process(entry["pid"]).kill()
            except psutil.NoSuchProcess:
                pass


@pytest.fixture
def cluster_factory(zk_server, tmp_path, request):
    """``make(timeout=60, env=None, **settings)``: a supervised cluster with the
    ``ClusterConfig`` settings given (``brokers=3``, ``broker_target``, ``broker_settings``,
    ``workers``, ``worker_settings``, ``dashboard_port``, ...).

    Each cluster gets its own data dir and ZooKeeper chroot; ``broker_target`` may be a
    module-level function run in place of ``broker.server.run``. The dashboard gets a free port
    unless ``dashboard_port`` says otherwise (None: no dashboard); cluster.json's "dashboard"
    has its URL.
    """
    clusters: list[SupervisedCluster] = []

    def make(timeout: float = 60.0, env: dict | None = None, **settings) -> SupervisedCluster:
        data_dir = tmp_path / f"cluster-{len(clusters)}"
        data_dir.mkdir()
        connect = f"{zk_server.connect_string}/c-{uuid.uuid4().hex[:12]}"
        config = ClusterConfig(data_dir, zookeeper=connect, **{"dashboard_port": 0, **settings})
        env = {**os.environ, **(env or {})}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in sys.path if p])
        with open(data_dir / "supervisor.out", "ab") as out:
            process = subprocess.Popen(supervisor_command(config), stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        cluster = SupervisedCluster(data_dir, connect, process)
        clusters.append(cluster)
        request.addfinalizer(lambda: _tear_down(cluster))

        def ready():
            if process.poll() is not None:
                out = (data_dir / "supervisor.out").read_text(errors="replace")
                pytest.fail(f"supervisor exited with {process.returncode}:\n{out[-3000:]}")
            info = cluster.files.try_read_state()
            return info and info.get("ready") and info["supervisor"]["pid"] == process.pid

        wait_for(ready, timeout, what=f"a {config.brokers}-broker cluster to be ready")
        return cluster

    return make


def _tear_down(cluster: SupervisedCluster) -> None:
    """Stop politely (a supervisor that ignores SIGTERM fails the test), then kill what is left."""
    try:
        if cluster.process.poll() is None:
            cluster.stop(timeout=30)
    finally:
        cluster.kill()


@pytest.fixture
def supervised_cluster(cluster_factory) -> SupervisedCluster:
    return cluster_factory(brokers=3)
