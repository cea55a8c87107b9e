"""Faults by role and id, aimed with the pids the supervisor writes to cluster.json.

``ClusterProcesses`` reads ``<data-dir>/cluster.json`` for every supervised process (brokers,
workers) and every embedded ZooKeeper node, checks a pid still belongs to the recorded
process (its create time) before signalling it, and waits for the supervisor to replace it::

    procs = ClusterProcesses(".sluice")
    pid = procs.kill("broker", "1")                    # SIGKILL, as a crash would
    new_pid = procs.wait_replaced("broker", "1", pid, timeout=30)
    pid = procs.pause("broker", "2"); ...; procs.resume(pid)   # SIGSTOP / SIGCONT

The waits for "serving again" (a broker registered under its new pid, a ZooKeeper node in a
quorum) live here too, so every drill measures "process back" the same way.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
from kazoo.exceptions import KazooException, NoNodeError

from cluster.supervision.supervisor import process_alive
from cluster.supervision.zookeeper import four_letter
from coordinator import paths
from coordinator.errors import SluiceError

CLUSTER_FILE = "cluster.json"


class FaultError(SluiceError):
    """A fault could not be aimed or a wait ran out; the message says which."""


class ClusterProcesses:
    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = Path(data_dir)

    def info(self) -> dict:
        """cluster.json as the supervisor last wrote it (retried over a replace in progress)."""
        for _ in range(50):
            try:
                return json.loads((self.data_dir / CLUSTER_FILE).read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.05)
        raise FaultError(f"no readable {self.data_dir / CLUSTER_FILE}: is a cluster running?")

    def entries(self, role: str) -> list[dict]:
        info = self.info()
        if role == "zookeeper":
            return list(info.get("zookeeper_nodes", []))
        return [p for p in info.get("processes", []) if p["role"] == role]

    def ids(self, role: str) -> list[str]:
        return [e["id"] for e in self.entries(role)]

    def entry(self, role: str, id_: str) -> dict:
        for e in self.entries(role):
            if e["id"] == str(id_):
                return e
        raise FaultError(f"cluster.json names no {role} {id_}")

    def pid(self, role: str, id_: str) -> int | None:
        """The live pid of ``role id_``, None while it is down."""
        e = self.entry(role, id_)
        return e["pid"] if process_alive(e.get("pid"), e.get("create_time")) else None

    def restarts(self, role: str) -> dict[str, int]:
        return {e["id"]: e.get("restarts", 0) for e in self.entries(role)}

    def signal(self, role: str, id_: str, sig: signal.Signals) -> int:
        pid = self.pid(role, id_)
        if pid is None:
            raise FaultError(f"{role} {id_} is not running")
        os.kill(pid, sig)
        return pid

    def kill(self, role: str, id_: str) -> int:
        """SIGKILL; returns the pid that died (waited for, so its death is complete)."""
        pid = self.signal(role, id_, signal.SIGKILL)
        _wait_gone(pid)
        return pid

    def pause(self, role: str, id_: str) -> int:
        return self.signal(role, id_, signal.SIGSTOP)

    @staticmethod
    def resume(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass

    def wait_replaced(self, role: str, id_: str, old_pid: int, timeout: float) -> int:
        """The new pid once the supervisor started ``role id_`` again."""
        deadline = time.monotonic() + timeout
        while True:
            pid = self.pid(role, id_)
            if pid is not None and pid != old_pid:
                return pid
            if time.monotonic() >= deadline:
                raise FaultError(f"the supervisor did not restart {role} {id_} within "
                                 f"{timeout:g} s")
            time.sleep(0.05)

    def wait_zookeeper_serving(self, id_: str, timeout: float) -> int:
        """A ZooKeeper node is back: running and serving (standalone, leader or follower)."""
        deadline = time.monotonic() + timeout
        while True:
            e = self.entry("zookeeper", id_)
            if process_alive(e.get("pid"), e.get("create_time")) and zookeeper_mode(e["port"]):
                return e["pid"]
            if time.monotonic() >= deadline:
                raise FaultError(f"zookeeper {id_} not serving again within {timeout:g} s")
            time.sleep(0.1)


def zookeeper_mode(port: int) -> str | None:
    """'standalone', 'leader' or 'follower' if the node on ``port`` serves, else None."""
    try:
        reply = four_letter(port, "srvr", timeout=1.0)
    except OSError:
        return None
    for line in reply.splitlines():
        if line.startswith("Mode:"):
            mode = line.split(":", 1)[1].strip()
            return mode if mode in ("standalone", "leader", "follower") else None
    return None


def registered_pid(client, broker_id: int) -> int | None:
    """The pid in broker ``broker_id``'s registration, None when it is not registered."""
    try:
        data, _ = client.get(paths.broker(broker_id))
    except NoNodeError:
        return None
    try:
        return int(json.loads(data).get("pid", 0)) or None
    except (ValueError, AttributeError):
        return None


def wait_broker_serving(client, broker_id: int, pid: int, topic: str, timeout: float) -> None:
    """Broker ``broker_id`` registered under ``pid`` and announcing its partitions of ``topic``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if (registered_pid(client, broker_id) == pid
                    and client.exists(paths.broker_topic_partitions(topic, broker_id))):
                return
        except KazooException:
            pass
        if time.monotonic() >= deadline:
            raise FaultError(f"broker {broker_id} (pid {pid}) not registered and serving {topic} "
                             f"within {timeout:g} s")
        time.sleep(0.05)


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.01)
