"""The local cluster's supervisor: ZooKeeper, then N broker processes, kept alive until told to stop.

States of one supervisor and what moves it on:

    starting --ZooKeeper serves, every broker spawned--> waiting
    waiting  --every broker registered at /brokers/ids/<id> with its pid--> ready
    any      --SIGTERM / SIGINT / SIGHUP--> stopping --brokers joined, ZooKeeper stopped--> stopped

Each worker process sits in a slot (role, id, target, args). A slot whose process dies is started
again after an exponential back-off (``Backoff``), and the death is logged as
``broker 2 (pid 123) died with exit code -9; restarting in 0.5 s``. Brokers and consumer-group
workers (role "worker", ``cluster.workers.worker.run``) live under the same restart logic; workers are
spawned once the brokers are up.

Files in the data dir, which is how every other command finds the cluster:

| file             | what                                                                      |
| ---------------- | ------------------------------------------------------------------------- |
| zookeeper        | the connect string (read by ``coordinator.zk.resolve``); removed at stop  |
| cluster.json     | supervisor pid, ZooKeeper nodes, each slot's current pid; replaced atomically |
| supervisor.log   | this module's log (and, detached, the children's stderr)                  |
| supervisor.lock  | flock held while a supervisor runs; holds its pid                         |
| broker-<i>/      | broker i's data                                                           |
| loaded/<group>/  | what the default worker handler loaded, hourly files per partition        |
| zookeeper-data/  | the embedded ZooKeeper nodes' data and logs                               |

The supervisor also runs the dashboards: a ``cluster.observe.sampler.Sampler`` thread samples every
process, broker and group once a second, and ``cluster.observe.web_dashboard.DashboardServer`` serves the page,
its JSON and Prometheus ``/metrics`` on ``--dashboard-port`` (default 8080; 0 = any free port; a
taken port falls back to a free one). cluster.json's ``dashboard`` holds the address served.

Children die with the supervisor even when it is SIGKILLed: each child runs ``child_main``, which
watches its parent pid, and the ZooKeeper java processes ask Linux for a parent-death signal.

    python -m cluster.supervision.supervisor --data-dir .sluice --brokers 3        # foreground
    up(".sluice", brokers=3, detach=True); status(".sluice"); down(".sluice")
"""
from __future__ import annotations

import argparse
import fcntl
import importlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psutil
from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from broker.config import BrokerConfig
from cluster.workers.worker import WorkerConfig
from cluster.supervision.zookeeper import ZooKeeperEnsemble, ZooKeeperError, _die_with_parent, find_install
from coordinator import paths
from coordinator import zk as zkconnect
from coordinator.errors import SluiceError

log = logging.getLogger("sluice.supervisor")

CLUSTER_FILE = "cluster.json"
LOG_FILE = "supervisor.log"
LOCK_FILE = "supervisor.lock"
ZK_DIR = "zookeeper-data"
DEFAULT_BROKER_TARGET = "broker.server:run"
WORKER_TARGET = "cluster.workers.worker:run"
PARENT_POLL_S = 0.5
ORPHAN_GRACE_S = 5.0
MONITOR_TICK_S = 0.2
READY_CHECK_S = 0.2
DASHBOARD_PORT = 8080
_LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


class ClusterError(SluiceError):
    """Something a user can cause or fix (nothing running, already running, bad settings)."""


@dataclass(frozen=True)
class Backoff:
    """Delay before restarting a dead process.

    Starts at ``initial_s`` and doubles on each death up to ``max_s``; a process that lived
    ``reset_after_s`` or longer counts as healthy, so its next death starts over. A broker that
    crashes at once over and over waits 0.5, 1, 2, 4, 8, 10, 10, ... seconds.
    """

    initial_s: float = 0.5
    max_s: float = 10.0
    reset_after_s: float = 30.0

    def next_delay(self, previous_s: float | None, lived_s: float) -> float:
        """``previous_s`` is the delay used before the last start (None: first start)."""
        if previous_s is None or lived_s >= self.reset_after_s:
            return self.initial_s
        return min(previous_s * 2, self.max_s)


@dataclass(frozen=True)
class SlotSpec:
    """What one supervised process runs: ``target(*args)`` in a spawned child."""

    role: str
    id: str
    target: Callable[..., Any]
    args: tuple = ()

    @property
    def name(self) -> str:
        return f"{self.role} {self.id}"


@dataclass
class Slot:
    """A spec and the state of its current (or last) process."""

    spec: SlotSpec
    process: multiprocessing.process.BaseProcess | None = None
    pid: int | None = None
    create_time: float | None = None
    started_at: float = 0.0
    delay_s: float | None = None
    restart_at: float | None = None
    restarts: int = 0
    last_exit_code: int | None = None


@dataclass
class ZooKeeperRestart:
    """The restart state of one embedded ZooKeeper node, kept like a slot's."""

    pid: int | None = None
    started_at: float = 0.0
    delay_s: float | None = None
    restart_at: float | None = None
    restarts: int = 0


def resolve_target(ref: str | Callable[..., Any]) -> Callable[..., Any]:
    """A callable from itself or from ``"module:function"``; ClusterError if it cannot be imported."""
    if callable(ref):
        return ref
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ClusterError(f"invalid target {ref!r}: use module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ClusterError(f"cannot import {module_name} for target {ref!r}: {exc}") from exc
    target = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ClusterError(f"target {ref!r}: {module_name} has no {attr}")
    if not callable(target):
        raise ClusterError(f"target {ref!r} is not callable")
    return target


def child_main(parent_pid: int, role: str, slot_id: str, target: Callable[..., Any],
               args: tuple) -> None:
    """Runs in every supervised child: own process group, parent watch, then the real target.

    Its own process group means a Ctrl-C at the terminal reaches only the supervisor, which then
    stops children in order. The parent watch ends the child when the supervisor is gone, even
    by SIGKILL; this lives here because broker code must not depend on cluster/.
    """
    os.setpgrp()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format=f"%(asctime)s {role}-{slot_id} %(name)s %(levelname)s: "
                                   "%(message)s")
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="sluice-parent-watch").start()
    target(*args)


def _watch_parent(parent_pid: int) -> None:
    """SIGTERM ourselves (a graceful stop) once the parent is gone; _exit if that is not enough."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    log.warning("supervisor (pid %s) is gone; stopping", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(ORPHAN_GRACE_S)
    os._exit(1)


def broker_config(broker_id: int, data_dir: Path, zookeeper: str,
                  settings: dict | None) -> BrokerConfig:
    """Broker ``broker_id``'s config: the shared settings plus its id, directory and ZooKeeper.

    A non-zero ``port`` in the settings is the first broker's; broker i gets port + i.
    """
    values = dict(settings or {})
    fixed = sorted({"broker_id", "data_dir", "zookeeper"} & set(values))
    if fixed:
        raise ClusterError(f"broker settings must not set {', '.join(fixed)}: the supervisor does")
    if values.get("port"):
        values["port"] = int(values["port"]) + broker_id
    values.update(broker_id=broker_id, data_dir=str(data_dir / f"broker-{broker_id}"),
                  zookeeper=zookeeper)
    try:
        return BrokerConfig.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise ClusterError(f"invalid broker settings: {exc}") from exc


@dataclass
class _State:
    """The lifecycle in cluster.json: ``ready`` turns true once and stays so until stopping."""

    ready: bool = False
    phase: str = "starting"


class Supervisor:
    """Runs one local cluster in this process (see the module docstring for the lifecycle)."""

    def __init__(self, data_dir: str | os.PathLike, brokers: int = 3, zookeeper: str | None = None,
                 zk_ensemble: int = 1, broker_settings: dict | None = None,
                 broker_target: str | Callable[..., Any] = DEFAULT_BROKER_TARGET,
                 backoff: Backoff = Backoff(), ready_warning_s: float = 60.0,
                 on_ready: Callable[[dict], None] | None = None, workers: int = 0,
                 worker_settings: dict | None = None, dashboard_port: int | None = DASHBOARD_PORT):
        _check_options(brokers, zookeeper, zk_ensemble)
        _check_dashboard_port(dashboard_port)
        self.dashboard_port = dashboard_port
        self._sampler = None
        self._dashboard = None
        self.workers = workers
        self.worker_settings = _check_workers(workers, worker_settings)
        self.data_dir = Path(data_dir).resolve()
        self.brokers = brokers
        self.zk_ensemble = zk_ensemble
        self.broker_settings = dict(broker_settings or {})
        broker_config(0, self.data_dir, "127.0.0.1:2181", self.broker_settings)
        self.broker_target = broker_target
        self.backoff = backoff
        self.ready_warning_s = ready_warning_s
        self.on_ready = on_ready
        self.zookeeper: str | None = zookeeper
        self.ensemble: ZooKeeperEnsemble | None = None
        self.slots: list[Slot] = []
        self._state = _State()
        self._ctx = multiprocessing.get_context("spawn")
        self._stopping = False
        self._stopped = False
        self._lock_fd: int | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._zk_client = None
        self._started_at = 0.0
        self._warned_not_ready = False
        self._last_zk_error = ""
        self._zk_restart: dict[int, ZooKeeperRestart] = {}
        self._log_handler: logging.Handler | None = None
        self._saved_level: int | None = None

    @property
    def ready(self) -> bool:
        return self._state.ready

    @property
    def connect_file(self) -> Path:
        return self.data_dir / zkconnect.CONNECT_FILE

    def run(self) -> int:
        """Start, supervise until SIGTERM/SIGINT/SIGHUP, stop; the exit code for the process."""
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            self.start()
            while not self._stopping:
                self.poll(MONITOR_TICK_S)
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def request_stop(self) -> None:
        """Ask run() to stop; safe from a signal handler or another thread.

        The byte wakes poll() at once; a full pipe (BlockingIOError) already holds a wake-up.
        """
        self._stopping = True
        if self._wake_w < 0:
            return
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass

    def _on_signal(self, signum, frame) -> None:
        if not self._stopping:
            log.info("received %s; stopping", signal.Signals(signum).name)
        self.request_stop()

    def start(self) -> None:
        """Take the data dir, bring up ZooKeeper (or reach the given one), spawn the brokers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        self._attach_log_file()
        self._started_at = time.monotonic()
        log.info("supervisor (pid %s) starting in %s: %d broker(s), ZooKeeper %s", os.getpid(),
                 self.data_dir, self.brokers, self.zookeeper or f"embedded x{self.zk_ensemble}")
        self._write_state()
        target = resolve_target(self.broker_target)
        if self.zookeeper is None:
            self.ensemble = ZooKeeperEnsemble(self.data_dir / ZK_DIR, size=self.zk_ensemble)
            try:
                self.ensemble.start()
                self._write_state()
                self.ensemble.wait_ready(timeout=30.0)
            except ZooKeeperError as exc:
                raise ClusterError(str(exc)) from exc
            self.zookeeper = self.ensemble.connect_string
        try:
            self._zk_client = zkconnect.connect(self.zookeeper)
        except zkconnect.NoCluster as exc:
            raise ClusterError(str(exc)) from exc
        _write_atomic(self.connect_file, self.zookeeper + "\n")
        self.slots = [Slot(SlotSpec("broker", str(i), target,
                                    (broker_config(i, self.data_dir, self.zookeeper,
                                                   self.broker_settings),)))
                      for i in range(self.brokers)]
        for slot in self.slots:
            Path(slot.spec.args[0].data_dir).mkdir(parents=True, exist_ok=True)
            self._launch(slot)
        worker_target = resolve_target(WORKER_TARGET)
        for i in range(self.workers):
            config = WorkerConfig(worker_id=i, zookeeper=self.zookeeper,
                                  data_dir=str(self.data_dir), **self.worker_settings)
            slot = Slot(SlotSpec("worker", str(i), worker_target, (config,)))
            self.slots.append(slot)
            self._launch(slot)
        self._start_dashboard()
        self._state.phase = "waiting"
        self._write_state()

    def poll(self, timeout: float = MONITOR_TICK_S) -> None:
        """One monitoring step: wait for a death (or ``timeout``), restart what is due."""
        now = time.monotonic()
        due = [s.restart_at for s in self.slots if s.restart_at is not None]
        due += [z.restart_at for z in self._zk_restart.values() if z.restart_at is not None]
        if due:
            timeout = max(0.0, min(timeout, min(due) - now))
        sentinels = [s.process.sentinel for s in self.slots if s.process is not None]
        multiprocessing.connection.wait(sentinels + [self._wake_r], timeout)
        self._drain_wake()
        if self._stopping:
            return
        now = time.monotonic()
        for slot in self.slots:
            if slot.process is not None and not slot.process.is_alive():
                self._on_death(slot, now)
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= now:
                self._launch(slot)
        self._check_zookeeper_nodes()
        if not self._state.ready:
            self._check_ready()

    def stop(self, grace: float = 10.0) -> None:
        """Brokers first (SIGTERM, join, SIGKILL after ``grace``), then ZooKeeper; idempotent."""
        if self._stopped:
            return
        self._stopping = True
        self._stopped = True
        self._state.phase = "stopping"
        self._state.ready = False
        try:
            self._stop_dashboard()
            if self._lock_fd is not None:
                self._write_state()
            self._stop_slots(grace)
            if self._zk_client is not None:
                self._zk_client.stop()
                self._zk_client.close()
                self._zk_client = None
            if self.ensemble is not None:
                self.ensemble.stop(grace)
            if self._lock_fd is not None:
                self._state.phase = "stopped"
                self._write_state()
                self._remove_connect_file()
                log.info("supervisor (pid %s) stopped", os.getpid())
        finally:
            self._release_lock()
            self._detach_log_file()
            wake_r, wake_w, self._wake_r, self._wake_w = self._wake_r, self._wake_w, -1, -1
            os.close(wake_r)
            os.close(wake_w)

    def state(self) -> dict:
        """What cluster.json holds."""
        nodes = []
        if self.ensemble is not None:
            for node in self.ensemble.nodes:
                restart = self._zk_restart.get(node.myid)
                nodes.append({"id": str(node.myid), "pid": node.pid,
                              "create_time": _create_time(node.pid), "port": node.client_port,
                              "endpoint": node.endpoint, "log": str(node.log_path),
                              "restarts": restart.restarts if restart else 0})
        return {
            "supervisor": {"pid": os.getpid(), "create_time": _create_time(os.getpid())},
            "data_dir": str(self.data_dir),
            "phase": self._state.phase,
            "ready": self._state.ready,
            "zookeeper": self.zookeeper,
            "zookeeper_embedded": self.ensemble is not None,
            "zookeeper_nodes": nodes,
            "dashboard": self._dashboard.url if self._dashboard is not None else None,
            "processes": [{"role": s.spec.role, "id": s.spec.id, "pid": s.pid,
                           "create_time": s.create_time, "restarts": s.restarts,
                           "last_exit_code": s.last_exit_code} for s in self.slots],
            "updated_at": time.time(),
        }

    def processes(self) -> list:
        """Every process to sample (``cluster.observe.sampler.ProcessRef``): this one, ZooKeeper, slots."""
        from cluster.observe.sampler import ProcessRef
        refs = [ProcessRef("supervisor", "0", os.getpid())]
        if self.ensemble is not None:
            refs += [ProcessRef("zookeeper", str(n.myid), n.pid if n.is_running() else None)
                     for n in self.ensemble.nodes]
        return refs + [ProcessRef(s.spec.role, s.spec.id, s.pid if s.process else None,
                                  s.restarts) for s in list(self.slots)]

    def _start_dashboard(self) -> None:
        """The sampler thread and the web server, unless ``dashboard_port`` is None."""
        if self.dashboard_port is None:
            return
        from cluster.observe.sampler import BrokerDisk, Sampler
        from cluster.observe.web_dashboard import DashboardServer
        disks = {int(s.spec.id): BrokerDisk(s.spec.args[0].data_dir,
                                            s.spec.args[0].log.retention_ms)
                 for s in self.slots if s.spec.role == "broker"
                 and isinstance(s.spec.args[0], BrokerConfig)}
        self._sampler = Sampler(self.zookeeper, self.processes, disks).start()
        try:
            self._dashboard = DashboardServer(self._sampler, self.dashboard_port).start()
        except OSError as exc:
            raise ClusterError(f"cannot serve the dashboard on port {self.dashboard_port}: "
                               f"{exc}") from exc
        log.info("dashboard at %s (Prometheus metrics at %smetrics)", self._dashboard.url,
                 self._dashboard.url)

    def _stop_dashboard(self) -> None:
        if self._dashboard is not None:
            self._dashboard.stop()
            self._dashboard = None
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None

    def _launch(self, slot: Slot) -> None:
        spec = slot.spec
        process = self._ctx.Process(target=child_main,
                                    args=(os.getpid(), spec.role, spec.id, spec.target, spec.args),
                                    name=f"sluice-{spec.role}-{spec.id}")
        process.start()
        slot.process = process
        slot.pid = process.pid
        slot.create_time = _create_time(process.pid)
        slot.started_at = time.monotonic()
        if slot.restart_at is not None:
            slot.restarts += 1
            log.info("restarted %s (pid %s), restart #%d", spec.name, process.pid, slot.restarts)
        else:
            log.info("started %s (pid %s)", spec.name, process.pid)
        slot.restart_at = None
        self._write_state()

    def _on_death(self, slot: Slot, now: float) -> None:
        process = slot.process
        process.join()
        code = process.exitcode
        process.close()
        slot.process = None
        slot.last_exit_code = code
        slot.delay_s = self.backoff.next_delay(slot.delay_s, now - slot.started_at)
        slot.restart_at = now + slot.delay_s
        log.warning("%s (pid %s) died with exit code %s; restarting in %g s", slot.spec.name,
                    slot.pid, code, slot.delay_s)
        self._write_state()

    def _check_zookeeper_nodes(self) -> None:
        """Start a dead embedded ZooKeeper node again, with its data and ports, as a slot is:
        its death is logged once and the restart waits out the same ``Backoff``."""
        if self.ensemble is None:
            return
        now = time.monotonic()
        for node in self.ensemble.nodes:
            restart = self._zk_restart.setdefault(node.myid, ZooKeeperRestart(started_at=now))
            if node.is_running():
                restart.pid = node.pid
                continue
            if restart.restart_at is None:
                restart.delay_s = self.backoff.next_delay(restart.delay_s,
                                                          now - restart.started_at)
                restart.restart_at = now + restart.delay_s
                log.warning("zookeeper %s (pid %s) is not running; restarting it with its data "
                            "in %g s", node.myid, restart.pid, restart.delay_s)
                self._write_state()
            elif restart.restart_at <= now:
                restart.restart_at = None
                restart.started_at = now
                try:
                    node.start()
                except (ZooKeeperError, OSError) as exc:
                    log.error("cannot restart zookeeper %s: %s", node.myid, exc)
                    continue
                restart.pid = node.pid
                restart.restarts += 1
                log.info("restarted zookeeper %s (pid %s), restart #%d", node.myid, node.pid,
                         restart.restarts)
                self._write_state()

    def _check_ready(self) -> None:
        """Ready once every broker's registration carries its current pid."""
        missing = []
        for slot in self.slots:
            if slot.spec.role != "broker":
                continue
            try:
                registered = _registered_pid(self._zk_client, int(slot.spec.id))
            except (KazooException, KazooTimeoutError) as exc:
                if repr(exc) != self._last_zk_error:
                    log.warning("cannot read broker registrations yet: %r", exc)
                    self._last_zk_error = repr(exc)
                return
            if slot.process is None or registered is None or registered not in (slot.pid, -1):
                missing.append(slot.spec.id)
        if missing:
            waited = time.monotonic() - self._started_at
            if waited > self.ready_warning_s and not self._warned_not_ready:
                self._warned_not_ready = True
                log.warning("broker(s) %s not registered in ZooKeeper after %.0f s",
                            ", ".join(missing), waited)
            return
        self._state.ready = True
        self._state.phase = "ready"
        self._write_state()
        self._zk_client.stop()
        self._zk_client.close()
        self._zk_client = None
        log.info("cluster ready: %d broker(s), ZooKeeper %s", self.brokers, self.zookeeper)
        if self.on_ready is not None:
            self.on_ready(status(self.data_dir))

    def _stop_slots(self, grace: float) -> None:
        """Workers first (they commit and leave their group), then the brokers."""
        for slot in self.slots:
            slot.restart_at = None
        for role in ("worker", "broker"):
            self._stop_role(role, grace)
        for slot in self.slots:
            if slot.process is not None:
                slot.last_exit_code = slot.process.exitcode
                log.info("stopped %s (pid %s, exit code %s)", slot.spec.name, slot.pid,
                         slot.last_exit_code)
                slot.process.close()
                slot.process = None

    def _stop_role(self, role: str, grace: float) -> None:
        live = [s for s in self.slots if s.spec.role == role and s.process is not None
                and s.process.is_alive()]
        for slot in live:
            slot.process.terminate()
        deadline = time.monotonic() + grace
        for slot in live:
            slot.process.join(max(0.0, deadline - time.monotonic()))
        for slot in live:
            if slot.process.is_alive():
                log.warning("%s (pid %s) ignored SIGTERM for %g s; killing it", slot.spec.name,
                            slot.pid, grace)
                slot.process.kill()
                slot.process.join()

    def _write_state(self) -> None:
        _write_atomic(self.data_dir / CLUSTER_FILE, json.dumps(self.state(), indent=2) + "\n")

    def _remove_connect_file(self) -> None:
        try:
            if self.connect_file.read_text().strip() == self.zookeeper:
                self.connect_file.unlink()
        except FileNotFoundError:
            pass

    def _drain_wake(self) -> None:
        """Empty the wake pipe; BlockingIOError means it is empty."""
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _take_lock(self) -> None:
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ClusterError(_already_running(self.data_dir, _running_pid(self.data_dir)))
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _attach_log_file(self) -> None:
        """Log to supervisor.log, unless stderr already is that file (a detached supervisor)."""
        path = self.data_dir / LOG_FILE
        if _stderr_is(path):
            return
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        sluice = logging.getLogger("sluice")
        sluice.addHandler(handler)
        if sluice.level == logging.NOTSET or sluice.level > logging.INFO:
            self._saved_level = sluice.level
            sluice.setLevel(logging.INFO)
        self._log_handler = handler

    def _detach_log_file(self) -> None:
        if self._log_handler is not None:
            sluice = logging.getLogger("sluice")
            sluice.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
            if self._saved_level is not None:
                sluice.setLevel(self._saved_level)
                self._saved_level = None


def _check_workers(workers: int, settings: dict | None) -> dict:
    """Worker settings (topic, group, handler, ... of WorkerConfig) checked before anything starts."""
    settings = dict(settings or {})
    if workers < 0:
        raise ClusterError(f"--workers must be 0 or more, not {workers}")
    if not workers:
        return settings
    if not settings.get("topic") or not settings.get("group"):
        raise ClusterError("--workers needs --topic and --group")
    settings = {k: v for k, v in settings.items() if v is not None}
    try:
        WorkerConfig(worker_id=0, zookeeper="", data_dir="", **settings)
        paths.check_name("topic", settings["topic"])
        paths.check_name("group", settings["group"])
        if "handler" in settings:
            from cluster.workers.worker import load_handler
            load_handler(settings["handler"])
    except (TypeError, ValueError) as exc:
        raise ClusterError(str(exc)) from None
    return settings


def _check_dashboard_port(port: int | None) -> None:
    if port is not None and not 0 <= port <= 65535:
        raise ClusterError(f"--dashboard-port must be 0..65535, not {port}")


def _check_options(brokers: int, zookeeper: str | None, zk_ensemble: int) -> None:
    if brokers < 1:
        raise ClusterError(f"--brokers must be at least 1, not {brokers}")
    if zk_ensemble not in (1, 3):
        raise ClusterError(f"--zk-ensemble must be 1 or 3, not {zk_ensemble}")
    if zookeeper and zk_ensemble != 1:
        raise ClusterError("--zookeeper and --zk-ensemble exclude each other: an external "
                           "ZooKeeper is used as it is")


def _registered_pid(client, broker_id: int) -> int | None:
    """The pid in a broker's registration (-1 when it names none), None if not registered."""
    try:
        data, _ = client.get(paths.broker(broker_id))
    except NoNodeError:
        return None
    return _registration(data).get("pid", -1)


def _registration(data: bytes) -> dict:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _create_time(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


def process_alive(pid: int | None, create_time: float | None) -> bool:
    """The process exists, is not a zombie, and is the one recorded (not a reused pid)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 0.05:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _stderr_is(path: Path) -> bool:
    try:
        mine = os.fstat(sys.stderr.fileno())
        theirs = os.stat(path)
    except (OSError, AttributeError, ValueError):
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def _running_pid(data_dir: Path) -> int | None:
    """The pid of the supervisor holding ``data_dir``'s lock, None when none holds it."""
    path = data_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 64).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _already_running(data_dir: Path, pid: int | None) -> str:
    return (f"a cluster is already running in {data_dir} (supervisor pid {pid}): "
            f"stop it with 'sluice cluster down --data-dir {data_dir}'")


def _read_cluster_file(data_dir: Path) -> dict:
    path = data_dir / CLUSTER_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ClusterError(f"no cluster in {data_dir}: start one with 'sluice cluster up'") from None
    except json.JSONDecodeError as exc:
        raise ClusterError(f"{path} is not valid JSON ({exc}): remove it and start again") from exc


def _log_tail(data_dir: Path, lines: int = 20) -> str:
    try:
        text = (data_dir / LOG_FILE).read_text(errors="replace")
    except FileNotFoundError:
        return "(no supervisor.log)"
    return "\n".join(text.splitlines()[-lines:])


def status(data_dir: str | os.PathLike = zkconnect.DEFAULT_DATA_DIR) -> dict:
    """The cluster as ``sluice cluster status --json`` prints it (INTERFACE.md's shape)."""
    data_dir = Path(data_dir).resolve()
    info = _read_cluster_file(data_dir)
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
    brokers = [p for p in slots if p["role"] == "broker" and p["alive"]]
    if brokers and info.get("zookeeper"):
        _fill_endpoints(info["zookeeper"], brokers)
    return {"zookeeper": info.get("zookeeper"), "dashboard": info.get("dashboard"),
            "processes": processes + slots}


def _fill_endpoints(connect_string: str, brokers: list[dict]) -> None:
    """Each live broker's endpoint from its registration, when it is registered under its pid."""
    try:
        client = zkconnect.connect(connect_string, timeout=3.0)
    except zkconnect.NoCluster as exc:
        log.info("broker endpoints unknown: %s", exc)
        return
    try:
        for proc in brokers:
            try:
                data, _ = client.get(paths.broker(int(proc["id"])))
            except NoNodeError:
                continue
            registration = _registration(data)
            if registration.get("pid", proc["pid"]) == proc["pid"]:
                proc["endpoint"] = registration.get("endpoint")
    finally:
        client.stop()
        client.close()


def up(data_dir: str | os.PathLike = zkconnect.DEFAULT_DATA_DIR, brokers: int = 3,
       zookeeper: str | None = None, zk_ensemble: int = 1, detach: bool = False,
       broker_settings: dict | None = None, timeout: float = 60.0,
       broker_target: str = DEFAULT_BROKER_TARGET,
       on_ready: Callable[[dict], None] | None = None, workers: int = 0,
       worker_settings: dict | None = None, dashboard_port: int | None = DASHBOARD_PORT,
       die_with_parent: bool = False) -> dict:
    """Start a local cluster and return its status once every broker is registered.

    Detached, the supervisor runs as its own session (``python -m cluster.supervision.supervisor``) and this
    returns when it is ready; with ``die_with_parent`` (Linux, called from the main thread) it
    gets SIGTERM, and so stops the cluster, when the caller dies (a drill killed outright).
    In the foreground this supervises until a signal stops it, calling ``on_ready(status)``
    once ready, and returns the final status.
    """
    data_dir = Path(data_dir).resolve()
    _check_options(brokers, zookeeper, zk_ensemble)
    broker_config(0, data_dir, "127.0.0.1:2181", broker_settings)
    worker_settings = _check_workers(workers, worker_settings)
    _check_dashboard_port(dashboard_port)
    running = _running_pid(data_dir)
    if running is not None:
        raise ClusterError(_already_running(data_dir, running))
    if zookeeper is None:
        try:
            find_install()
        except ZooKeeperError as exc:
            raise ClusterError(str(exc)) from exc
    if not detach:
        Supervisor(data_dir, brokers, zookeeper, zk_ensemble, broker_settings, broker_target,
                   on_ready=on_ready, workers=workers, worker_settings=worker_settings,
                   dashboard_port=dashboard_port).run()
        return status(data_dir)
    return _up_detached(data_dir, brokers, zookeeper, zk_ensemble, broker_settings, timeout,
                        broker_target, workers, worker_settings, dashboard_port,
                        die_with_parent)


def command_line(data_dir, brokers: int = 3, zookeeper: str | None = None, zk_ensemble: int = 1,
                 broker_target: str = DEFAULT_BROKER_TARGET, broker_settings: dict | None = None,
                 workers: int = 0, worker_settings: dict | None = None,
                 dashboard_port: int | None = DASHBOARD_PORT) -> list[str]:
    """``python -m cluster.supervision.supervisor ...`` for these settings (what a detached up runs)."""
    command = [sys.executable, "-m", "cluster.supervision.supervisor", "--data-dir", str(data_dir),
               "--brokers", str(brokers), "--zk-ensemble", str(zk_ensemble),
               "--broker-target", broker_target]
    if zookeeper:
        command += ["--zookeeper", zookeeper]
    if broker_settings:
        command += ["--broker-settings", json.dumps(broker_settings)]
    if workers:
        command += ["--workers", str(workers), "--worker-settings", json.dumps(worker_settings)]
    command += (["--no-dashboard"] if dashboard_port is None
                else ["--dashboard-port", str(dashboard_port)])
    return command


def _up_detached(data_dir: Path, brokers: int, zookeeper: str | None, zk_ensemble: int,
                 broker_settings: dict | None, timeout: float, broker_target: str,
                 workers: int = 0, worker_settings: dict | None = None,
                 dashboard_port: int | None = DASHBOARD_PORT,
                 die_with_parent: bool = False) -> dict:
    data_dir.mkdir(parents=True, exist_ok=True)
    command = command_line(data_dir, brokers, zookeeper, zk_ensemble, broker_target,
                           broker_settings, workers, worker_settings, dashboard_port)
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with open(data_dir / LOG_FILE, "ab") as log_file:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                preexec_fn=_die_with_parent() if die_with_parent else None)
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            raise ClusterError(f"the supervisor exited with code {code} before the cluster was "
                               f"ready; last lines of {data_dir / LOG_FILE}:\n"
                               f"{_log_tail(data_dir)}")
        if _is_ready(data_dir, proc.pid):
            return status(data_dir)
        if time.monotonic() >= deadline:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise ClusterError(f"cluster not ready after {timeout:g} s, so it was stopped; last "
                               f"lines of {data_dir / LOG_FILE}:\n{_log_tail(data_dir)}")
        time.sleep(0.1)


def _is_ready(data_dir: Path, pid: int) -> bool:
    try:
        info = json.loads((data_dir / CLUSTER_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return info.get("supervisor", {}).get("pid") == pid and info.get("ready") is True


def down(data_dir: str | os.PathLike = zkconnect.DEFAULT_DATA_DIR, timeout: float = 30.0) -> None:
    """SIGTERM the data dir's supervisor and wait until it (and so everything it ran) exited."""
    data_dir = Path(data_dir).resolve()
    pid = _running_pid(data_dir)
    if pid is None:
        raise ClusterError(f"no cluster is running in {data_dir}")
    if pid <= 0:
        raise ClusterError(f"{data_dir / LOCK_FILE} is held but names no pid: "
                           "is a supervisor still starting?")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _running_pid(data_dir) is not None:
        if time.monotonic() >= deadline:
            raise ClusterError(f"the supervisor (pid {pid}) did not stop within {timeout:g} s: "
                               f"see {data_dir / LOG_FILE}")
        time.sleep(0.1)
    try:
        psutil.Process(pid).wait(max(0.1, deadline - time.monotonic()))
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired as exc:
        raise ClusterError(f"the supervisor (pid {pid}) released its lock but did not exit "
                           f"within {timeout:g} s") from exc


def main(argv: list[str] | None = None) -> int:
    """``python -m cluster.supervision.supervisor``: one supervisor in the foreground (what --detach runs)."""
    parser = argparse.ArgumentParser(prog="python -m cluster.supervision.supervisor", description=main.__doc__)
    parser.add_argument("--data-dir", default=zkconnect.DEFAULT_DATA_DIR)
    parser.add_argument("--brokers", type=int, default=3)
    parser.add_argument("--zookeeper", default=None,
                        help="an existing ZooKeeper connect string (default: start one here)")
    parser.add_argument("--zk-ensemble", type=int, choices=(1, 3), default=1)
    parser.add_argument("--broker-settings", type=json.loads, default=None,
                        help="JSON object of BrokerConfig settings shared by every broker")
    parser.add_argument("--broker-target", default=DEFAULT_BROKER_TARGET,
                        help="module:function each broker process runs with its BrokerConfig")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--worker-settings", type=json.loads, default=None,
                        help="JSON object of WorkerConfig settings (topic, group, handler, ...)")
    parser.add_argument("--dashboard-port", type=int, default=DASHBOARD_PORT,
                        help="port of the web dashboard and /metrics (default %(default)s; "
                        "0: any free port)")
    parser.add_argument("--no-dashboard", action="store_true",
                        help="no sampler, no web dashboard, no /metrics")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("kazoo").setLevel(logging.WARNING)
    try:
        return Supervisor(args.data_dir, args.brokers, args.zookeeper, args.zk_ensemble,
                          args.broker_settings, args.broker_target, workers=args.workers,
                          worker_settings=args.worker_settings,
                          dashboard_port=None if args.no_dashboard else args.dashboard_port).run()
    except ClusterError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    from cluster.supervision.supervisor import main as _main
    sys.exit(_main())
