"""The control API of a local cluster: up, down, status (``sluice cluster up|down|status``).

    status = up(ClusterConfig(".sluice", brokers=3), detach=True)   # returns once ready
    status(".sluice")          # {"zookeeper", "dashboard", "kafka_bootstrap", "processes", ...}
    down(".sluice")            # SIGTERM the supervisor; returns once it (and all) exited

A detached ``up`` runs ``python -m cluster.supervision`` with ``config.to_argv()`` as its own
session, its output in supervisor.log, and polls cluster.json until the supervisor there says
ready. ``status`` needs no supervisor: it reads cluster.json and asks each recorded process
whether it is still the one recorded.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import psutil

from cluster.errors import ClusterError, ClusterNotRunning
from cluster.supervision.config import ClusterConfig
from cluster.supervision.files import ClusterFiles
from cluster.supervision.slots import process_alive
from cluster.supervision.supervisor import Supervisor, broker_registration
from cluster.supervision.zookeeper import ZooKeeperError, find_install, parent_death_hook
from coordinator import zk as zkconnect

log = logging.getLogger(__name__)

READY_POLL_S = 0.1


def up(config: ClusterConfig, detach: bool = False, timeout: float = 60.0,
       on_ready: Callable[[dict], None] | None = None, die_with_parent: bool = False) -> dict:
    """Start a local cluster and return its status once every broker is registered.

    Detached, the supervisor runs as its own session and this returns when it is ready; with
    ``die_with_parent`` (Linux, called from the main thread) it gets SIGTERM, and so stops the
    cluster, when the caller dies (a drill killed outright). In the foreground this supervises
    until a signal stops it, calling ``on_ready(status)`` once ready, and returns the final
    status.
    """
    files = ClusterFiles(config.data_dir)
    running = files.running_pid()
    if running is not None:
        raise ClusterError(files.already_running(running))
    if config.zookeeper is None:
        try:
            find_install()
        except ZooKeeperError as exc:
            raise ClusterError(str(exc)) from exc
    if not detach:
        Supervisor(config, on_ready=on_ready).run()
        return status(files.data_dir)
    return _up_detached(config, files, timeout, die_with_parent)


def supervisor_command(config: ClusterConfig) -> list[str]:
    """``python -m cluster.supervision ...`` for ``config``: what a detached up runs."""
    return [sys.executable, "-m", "cluster.supervision", *config.to_argv()]


def _up_detached(config: ClusterConfig, files: ClusterFiles, timeout: float,
                 die_with_parent: bool) -> dict:
    files.data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with open(files.log_file, "ab") as log_file:
        proc = subprocess.Popen(supervisor_command(config), stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env,
                                preexec_fn=parent_death_hook() if die_with_parent else None)
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            raise ClusterError(f"the supervisor exited with code {code} before the cluster was "
                               f"ready; last lines of {files.log_file}:\n{files.log_tail()}")
        state = files.try_read_state()
        if state and state.get("supervisor", {}).get("pid") == proc.pid and state.get("ready"):
            return status(files.data_dir)
        if time.monotonic() >= deadline:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise ClusterError(f"cluster not ready after {timeout:g} s, so it was stopped; last "
                               f"lines of {files.log_file}:\n{files.log_tail()}")
        time.sleep(READY_POLL_S)


def down(data_dir: str | os.PathLike = zkconnect.DEFAULT_DATA_DIR, timeout: float = 30.0) -> None:
    """SIGTERM the data dir's supervisor and wait until it (and so everything it ran) exited;
    ClusterNotRunning when none runs there."""
    files = ClusterFiles(data_dir)
    pid = files.running_pid()
    if pid is None:
        raise ClusterNotRunning(not_running(files))
    if pid <= 0:
        raise ClusterError(f"{files.lock_file} is held but names no pid: "
                           "is a supervisor still starting?")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while files.running_pid() is not None:
        if time.monotonic() >= deadline:
            raise ClusterError(f"the supervisor (pid {pid}) did not stop within {timeout:g} s: "
                               f"see {files.log_file}")
        time.sleep(READY_POLL_S)
    try:
        psutil.Process(pid).wait(max(0.1, deadline - time.monotonic()))
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired as exc:
        raise ClusterError(f"the supervisor (pid {pid}) released its lock but did not exit "
                           f"within {timeout:g} s") from exc


def not_running(files: ClusterFiles) -> str:
    return f"no cluster running in {files.data_dir}"


def running_status(data_dir: str | os.PathLike = zkconnect.DEFAULT_DATA_DIR) -> dict:
    """``status`` of the cluster running in ``data_dir``; ClusterNotRunning when no supervisor
    runs there (none started, or stopped: its cluster.json stays behind, every process dead)."""
    files = ClusterFiles(data_dir)
    if files.running_pid() is None:
        raise ClusterNotRunning(not_running(files))
    return status(files.data_dir)


def status(data_dir: str | os.PathLike = zkconnect.DEFAULT_DATA_DIR) -> dict:
    """The cluster as ``sluice cluster status --json`` prints it: ``processes`` has one
    ``{"role", "id", "pid", "endpoint", "alive"}`` per process (supervisor, ZooKeeper nodes, slots);
    ``settings`` holds, by role and id, the config each broker and worker was started with (every
    setting in force, defaults included: cluster up's --config, --set and flags applied);
    ``kafka_bootstrap`` is the live brokers' Kafka endpoints, ``host:port,...`` by broker id
    (None when none has one); when the listeners are not plaintext (``--secure``),
    ``kafka_security_protocol`` is what Kafka clients set as theirs (SASL_SSL) and
    ``kafka_ca`` the CA file they trust."""
    info = ClusterFiles(data_dir).read_state()
    sup = info.get("supervisor", {})
    processes = [{"role": "supervisor", "id": "0", "pid": sup.get("pid"), "endpoint": None,
                  "alive": process_alive(sup.get("pid"), sup.get("create_time"))}]
    for node in info.get("zookeeper_nodes", []):
        processes.append({"role": "zookeeper", "id": node["id"], "pid": node.get("pid"),
                          "endpoint": node.get("endpoint"),
                          "alive": process_alive(node.get("pid"), node.get("create_time"))})
    slots = [{"role": p["role"], "id": p["id"], "pid": p.get("pid"), "endpoint": None,
              "alive": process_alive(p.get("pid"), p.get("create_time"))}
             for p in info.get("processes", [])]
    settings: dict[str, dict] = {}
    for p in info.get("processes", []):
        if p.get("settings") is not None:
            settings.setdefault(p["role"], {})[p["id"]] = p["settings"]
    brokers = [p for p in slots if p["role"] == "broker" and p["alive"]]
    kafka: dict[int, str] = {}
    if brokers and info.get("zookeeper"):
        _fill_endpoints(info["zookeeper"], brokers, kafka, data_dir)
    found = {"zookeeper": info.get("zookeeper"), "dashboard": info.get("dashboard"),
             "kafka_bootstrap": ",".join(kafka[b] for b in sorted(kafka)) or None}
    protocol = info.get("kafka_security_protocol", "PLAINTEXT")
    if protocol != "PLAINTEXT":
        found.update(kafka_security_protocol=protocol, kafka_ca=info.get("kafka_ca"))
    return {**found, "processes": processes + slots, "settings": settings}


def _fill_endpoints(connect_string: str, brokers: list[dict], kafka: dict[int, str],
                    data_dir=None) -> None:
    """Each live broker's endpoint from its registration, when it is registered under its pid,
    and its Kafka endpoint into ``kafka`` by broker id."""
    try:
        client = zkconnect.connect(connect_string, data_dir, timeout=3.0)
    except zkconnect.NoCluster as exc:
        log.info("broker endpoints unknown: %s", exc)
        return
    try:
        for proc in brokers:
            registration = broker_registration(client, int(proc["id"]))
            if registration is not None and registration.get("pid", proc["pid"]) == proc["pid"]:
                proc["endpoint"] = registration.get("endpoint")
                if registration.get("kafka_endpoint"):
                    kafka[int(proc["id"])] = registration["kafka_endpoint"]
    finally:
        client.stop()
        client.close()
