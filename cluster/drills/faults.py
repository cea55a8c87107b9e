"""Faults by role and id, aimed with the pids the supervisor writes to cluster.json.

``ClusterProcesses`` reads ``<data-dir>/cluster.json`` for every supervised process (brokers,
workers) and every embedded ZooKeeper node, checks a pid still belongs to the recorded
process (its create time) before signalling it, and waits for the supervisor to replace it::

    procs = ClusterProcesses(".sluice")
    pid = procs.kill("broker", "1")                    # SIGKILL, as a crash would
    new_pid = procs.wait_replaced("broker", "1", pid, timeout=30)
    pid = procs.pause("broker", "2"); ...; procs.resume(pid)   # SIGSTOP / SIGCONT

The waits for "serving again" (a broker registered under its new pid and hosting its
partitions, a ZooKeeper node in a quorum) live here too, with the steps several drills share
(``kill_and_replace``), so every drill measures "process back" the same way.
"""
from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING

import psutil

from cluster.supervision.files import ClusterFiles
from cluster.supervision.slots import process_alive
from cluster.supervision.zookeeper import SERVING_MODES, server_mode
from coordinator.errors import SluiceError

if TYPE_CHECKING:
    from cluster.drills.context import Context


class FaultError(SluiceError):
    """A fault could not be aimed or a wait ran out; the message says which."""


class ClusterProcesses:
    def __init__(self, data_dir: str | os.PathLike):
        self.files = ClusterFiles(data_dir)

    def info(self) -> dict:
        """cluster.json as the supervisor last wrote it (waiting a little for a first one)."""
        for _ in range(50):
            info = self.files.try_read_state()
            if info is not None:
                return info
            time.sleep(0.05)
        raise FaultError(f"no readable {self.files.state_file}: is a cluster running?")

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


def kill_and_replace(ctx: Context, record: dict, role: str) -> tuple[str, float, int]:
    """SIGKILL a random ``role``; returns (id, fault time, new pid) once the supervisor
    started it again."""
    target = ctx.rng.choice(ctx.procs.ids(role))
    fault_t = time.monotonic()
    pid = ctx.procs.kill(role, target)
    record.update(target=f"{role} {target}", pid=pid)
    ctx.emit("fault", detail=f"SIGKILLed {role} {target} (pid {pid})")
    new_pid = ctx.procs.wait_replaced(role, target, pid, ctx.settings.recovery_timeout_s)
    record["new_pid"] = new_pid
    return target, fault_t, new_pid


def wait_broker_back(ctx: Context, broker: int, pid: int, after: float) -> float:
    """The time of the first look after ``after`` with ``broker`` registered under ``pid`` and
    announcing every partition it hosts."""
    hosted = set(ctx.placement().hosted_by(broker))
    return ctx.watch.wait(lambda look: look.brokers.get(broker) == pid and hosted <= look.hosted,
                          after, ctx.settings.recovery_timeout_s,
                          f"broker {broker} registered under pid {pid} and hosting its partitions")


def zookeeper_mode(port: int) -> str | None:
    """'standalone', 'leader' or 'follower' if the node on ``port`` serves, else None."""
    mode = server_mode(port)
    return mode if mode in SERVING_MODES else None


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.01)
