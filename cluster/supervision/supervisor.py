"""The local cluster's supervisor: ZooKeeper, then N brokers and M group workers, kept alive.

States of one supervisor and what moves it on:

    starting --ZooKeeper serves, every broker spawned--> waiting
    waiting  --every broker registered at /brokers/ids/<id> with its pid--> ready
    any      --SIGTERM / SIGINT / SIGHUP--> stopping --workers, then brokers joined, ZooKeeper
                                                      stopped--> stopped

Each process sits in a slot (cluster/supervision/slots.py). A slot whose process dies is
started again after an exponential back-off, and the death is logged as ``broker 2 (pid 123)
died with exit code -9; restarting in 0.5 s``. Brokers and group workers (role "worker",
``cluster.workers.worker.run``) live under the same restart logic, and so do the embedded
ZooKeeper nodes; workers are spawned once the brokers are. Every change is written to
cluster.json (cluster/supervision/files.py), which is how every other command finds the cluster.

The supervisor also runs the dashboards: a ``cluster.observe.sampler.Sampler`` thread samples
every process, broker and group once a second, and ``cluster.observe.web_dashboard`` serves the
page, its JSON and Prometheus ``/metrics`` on ``dashboard_port`` (a taken port falls back to a
free one). cluster.json's ``dashboard`` holds the address served.

Children die with the supervisor even when it is SIGKILLed: each child runs
``slots.child_main``, which watches its parent pid, and the ZooKeeper java processes ask Linux
for a parent-death signal.

    Supervisor(ClusterConfig(".sluice", brokers=3)).run()      # python -m cluster.supervision
"""
from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from pathlib import Path
from typing import Callable

from kazoo.exceptions import KazooException, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from cluster import targets
from cluster.errors import ClusterError
from cluster.supervision.config import ClusterConfig
from cluster.supervision.files import ClusterFiles, SupervisorLog
from cluster.supervision.slots import RestartState, Slot, SlotSpec, child_main, create_time
from cluster.supervision.zookeeper import ZooKeeperEnsemble, ZooKeeperError
from cluster.workers.worker import run as worker_run
from coordinator import paths, topics
from cluster.supervision import certificates, security
from coordinator import credentials
from coordinator import zk as zkconnect

log = logging.getLogger(__name__)

MONITOR_TICK_S = 0.2
READY_WARNING_S = 60.0


class Supervisor:
    """Runs one local cluster in this process (see the module docstring for the lifecycle)."""

    def __init__(self, config: ClusterConfig,
                 on_ready: Callable[[dict], None] | None = None):
        self.config = config
        self.files = ClusterFiles(config.data_dir)
        self.data_dir = self.files.data_dir
        self.on_ready = on_ready
        self.zookeeper: str | None = config.zookeeper
        self.ensemble: ZooKeeperEnsemble | None = None
        self.slots: list[Slot] = []
        self.ready = False
        self.phase = "starting"
        self._zk_restarts: dict[int, RestartState] = {}
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
        self._log = SupervisorLog(self.files.log_file)
        self._sampler = None
        self._dashboard = None
        self._dashboard_token_file = None   # a Path when the dashboard asks for a token
        self.kafka_security = ("PLAINTEXT", None)    # the Kafka listeners' protocol, CA file

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

    # --- starting ---------------------------------------------------------------------------

    def start(self) -> None:
        """Take the data dir, bring up ZooKeeper (or reach the given one), spawn the slots."""
        config = self.config
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self.files.take_lock()
        self._log.attach()
        self._started_at = time.monotonic()
        log.info("supervisor (pid %s) starting in %s: %d broker(s), ZooKeeper %s", os.getpid(),
                 self.data_dir, config.brokers, self.zookeeper or f"embedded x{config.zk_ensemble}")
        self._write_state()
        target = targets.load(config.broker_target, "broker target")
        if self.zookeeper is None:
            self._start_ensemble()
        digest_file = None
        if config.secure:
            digest_file = security.ensure_digest(self.data_dir,
                                                 os.environ.get(credentials.DIGEST_ENV))
        try:
            self._zk_client = zkconnect.connect(
                self.zookeeper,
                digest=None if digest_file is None else credentials.read_digest(digest_file))
        except zkconnect.NoCluster as exc:
            raise ClusterError(str(exc)) from exc
        secured = ({} if not config.secure else
                   security.prepare(self.data_dir, self._zk_client, range(config.brokers),
                                    digest_file))
        if config.replication_factor is not None:
            defaults = topics.cluster_defaults(self._zk_client)
            topics.set_cluster_defaults(self._zk_client, {
                **defaults, "default_replication_factor": config.replication_factor})
        self.files.write_connect(self.zookeeper)
        kafka_tls = self._kafka_tls()
        for i in range(config.brokers):
            broker = config.broker_config(i, self.zookeeper)
            if i in secured:
                broker = dataclasses.replace(broker, security=secured[i])
            if kafka_tls is not None and broker.kafka_port is not None:
                broker = dataclasses.replace(broker, kafka_tls=broker.kafka_tls or kafka_tls,
                                             kafka_sasl=True)
            if i == 0 and broker.kafka_port is not None:
                self.kafka_security = (broker.kafka_security_protocol, broker.kafka_tls and
                                       broker.kafka_tls.ca_certificate)
            Path(broker.data_dir).mkdir(parents=True, exist_ok=True)
            self.slots.append(Slot(SlotSpec("broker", str(i), target, (broker,))))
        workers_key = None
        if config.secure and config.workers:
            workers_key = security.prepare_workers(self.data_dir, self._zk_client,
                                                   config.worker_settings["topic"],
                                                   config.worker_settings["group"])
        for i in range(config.workers):
            worker = config.worker_config(i, self.zookeeper)
            if workers_key is not None and worker.consumer.credentials is None:
                worker = dataclasses.replace(worker, consumer=dataclasses.replace(
                    worker.consumer, credentials=workers_key))
            self.slots.append(Slot(SlotSpec("worker", str(i), worker_run, (worker,))))
        for slot in self.slots:
            self._launch(slot)
        self._start_dashboard()
        self.phase = "waiting"
        self._write_state()

    def _kafka_tls(self):
        """With --secure the Kafka listeners speak SASL_SSL (unless --kafka-plaintext): the
        certificate the user gave in the broker settings, else the cluster's own
        (cluster/supervision/certificates.py, valid for the brokers' hosts)."""
        config = self.config
        if not config.secure or config.kafka_plaintext:
            return None
        brokers = [config.broker_config(i, self.zookeeper) for i in range(config.brokers)]
        if all(b.kafka_port is None for b in brokers):
            return None
        given = brokers[0].kafka_tls
        if given is not None:
            return given
        return certificates.ensure(self.data_dir, [b.endpoint_host for b in brokers])

    def _start_ensemble(self) -> None:
        self.ensemble = ZooKeeperEnsemble(self.files.zookeeper_dir, size=self.config.zk_ensemble)
        try:
            self.ensemble.start()
            self._write_state()
            self.ensemble.wait_ready(timeout=30.0)
        except ZooKeeperError as exc:
            raise ClusterError(str(exc)) from exc
        self.zookeeper = self.ensemble.connect_string

    def _start_dashboard(self) -> None:
        """The sampler thread and the web server, unless ``dashboard_port`` is None."""
        port = self.config.dashboard_port
        if port is None:
            return
        from cluster.observe.sampler import BrokerDisk, Sampler
        from cluster.observe import dashboard_access
        from cluster.observe.web_dashboard import DashboardServer
        disks = {int(s.spec.id): BrokerDisk(s.spec.args[0].data_dir,
                                            s.spec.args[0].log.retention_ms)
                 for s in self.slots if s.spec.role == "broker"}
        host, token_file = self.config.dashboard_host, self.config.dashboard_token_file
        token = None
        if dashboard_access.needs_token(host, token_file):
            self._dashboard_token_file = dashboard_access.token_path(self.data_dir, token_file)
            token = dashboard_access.load_token(self._dashboard_token_file,
                                                create=token_file is None)
        self._sampler = Sampler(self.zookeeper, self.processes, disks,
                               data_dir=str(self.data_dir)).start()
        try:
            self._dashboard = DashboardServer(self._sampler, port, host, token=token).start()
        except OSError as exc:
            raise ClusterError(f"cannot serve the dashboard on {host}:{port}: {exc}") from exc
        log.info("dashboard at %s (Prometheus metrics at %smetrics)%s", self._dashboard.url,
                 self._dashboard.url, "" if token is None else
                 f"; it asks for the token in {self._dashboard_token_file}")

    # --- supervising ------------------------------------------------------------------------

    def poll(self, timeout: float = MONITOR_TICK_S) -> None:
        """One monitoring step: wait for a death (or ``timeout``), restart what is due."""
        now = time.monotonic()
        due = [r.restart_at for r in self._restart_states() if r.restart_at is not None]
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
            if slot.restart.due(now):
                self._launch(slot)
        self._check_zookeeper_nodes()
        if not self.ready:
            self._check_ready()

    def _restart_states(self) -> list[RestartState]:
        return [s.restart for s in self.slots] + list(self._zk_restarts.values())

    def _launch(self, slot: Slot) -> None:
        spec = slot.spec
        process = self._ctx.Process(target=child_main,
                                    args=(os.getpid(), spec.role, spec.id, spec.target, spec.args),
                                    name=f"sluice-{spec.role}-{spec.id}")
        process.start()
        slot.process = process
        if slot.restart.started(process.pid, time.monotonic()):
            log.info("restarted %s (pid %s), restart #%d", spec.name, process.pid,
                     slot.restart.restarts)
        else:
            log.info("started %s (pid %s)", spec.name, process.pid)
        self._write_state()

    def _on_death(self, slot: Slot, now: float) -> None:
        process = slot.process
        process.join()
        code = process.exitcode
        process.close()
        slot.process = None
        delay = slot.restart.died(now, self.config.backoff, code)
        log.warning("%s (pid %s) died with exit code %s; restarting in %g s", slot.spec.name,
                    slot.restart.pid, code, delay)
        self._write_state()

    def _check_zookeeper_nodes(self) -> None:
        """Start a dead embedded ZooKeeper node again, with its data and ports, as a slot is:
        its death is logged once and the restart waits out the same back-off."""
        if self.ensemble is None:
            return
        now = time.monotonic()
        for node in self.ensemble.nodes:
            restart = self._zk_restarts.setdefault(node.myid, RestartState(started_at=now))
            if node.is_running():
                restart.pid = node.pid
            elif restart.restart_at is None:
                delay = restart.died(now, self.config.backoff, node.last_exit_code)
                log.warning("zookeeper %s (pid %s) is not running; restarting it with its data "
                            "in %g s", node.myid, restart.pid, delay)
                self._write_state()
            elif restart.due(now):
                self._restart_zookeeper_node(node, restart, now)

    def _restart_zookeeper_node(self, node, restart: RestartState, now: float) -> None:
        try:
            node.start()
        except (ZooKeeperError, OSError) as exc:
            delay = restart.died(now, self.config.backoff, node.last_exit_code)
            log.error("cannot restart zookeeper %s: %s; trying again in %g s", node.myid, exc,
                      delay)
            return
        restart.started(node.pid, now)
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
                registration = broker_registration(self._zk_client, int(slot.spec.id))
            except (KazooException, KazooTimeoutError) as exc:
                if repr(exc) != self._last_zk_error:
                    log.warning("cannot read broker registrations yet: %r", exc)
                    self._last_zk_error = repr(exc)
                return
            if slot.process is None or registration is None or \
                    registration.get("pid", -1) not in (slot.restart.pid, -1):
                missing.append(slot.spec.id)
        if missing:
            waited = time.monotonic() - self._started_at
            if waited > READY_WARNING_S and not self._warned_not_ready:
                self._warned_not_ready = True
                log.warning("broker(s) %s not registered in ZooKeeper after %.0f s",
                            ", ".join(missing), waited)
            return
        self.ready = True
        self.phase = "ready"
        self._write_state()
        self._zk_client.stop()
        self._zk_client.close()
        self._zk_client = None
        log.info("cluster ready: %d broker(s), ZooKeeper %s", self.config.brokers,
                 self.zookeeper)
        if self.on_ready is not None:
            from cluster.supervision.control import status
            self.on_ready(status(self.data_dir))

    # --- stopping ---------------------------------------------------------------------------

    def stop(self, grace: float = 10.0) -> None:
        """Workers, then brokers (SIGTERM, join, SIGKILL after ``grace``), then ZooKeeper;
        idempotent."""
        if self._stopped:
            return
        self._stopping = True
        self._stopped = True
        self.phase = "stopping"
        self.ready = False
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
                self.phase = "stopped"
                self._write_state()
                if self.zookeeper is not None:
                    self.files.remove_connect(self.zookeeper)
                log.info("supervisor (pid %s) stopped", os.getpid())
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            self._log.detach()
            wake_r, wake_w, self._wake_r, self._wake_w = self._wake_r, self._wake_w, -1, -1
            os.close(wake_r)
            os.close(wake_w)

    def _stop_dashboard(self) -> None:
        if self._dashboard is not None:
            self._dashboard.stop()
            self._dashboard = None
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None

    def _stop_slots(self, grace: float) -> None:
        """Workers first (they commit and leave their group), then the brokers."""
        for slot in self.slots:
            slot.restart.restart_at = None
        for role in ("worker", "broker"):
            self._stop_role(role, grace)
        for slot in self.slots:
            if slot.process is not None:
                slot.restart.last_exit_code = slot.process.exitcode
                log.info("stopped %s (pid %s, exit code %s)", slot.spec.name, slot.restart.pid,
                         slot.restart.last_exit_code)
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
                            slot.restart.pid, grace)
                slot.process.kill()
                slot.process.join()

    # --- what others see --------------------------------------------------------------------

    def state(self) -> dict:
        """What cluster.json holds."""
        nodes = []
        if self.ensemble is not None:
            for node in self.ensemble.nodes:
                restart = self._zk_restarts.get(node.myid)
                nodes.append({"id": str(node.myid), "pid": node.pid,
                              "create_time": create_time(node.pid), "port": node.client_port,
                              "endpoint": node.endpoint, "log": str(node.log_path),
                              "restarts": restart.restarts if restart else 0})
        return {
            "supervisor": {"pid": os.getpid(), "create_time": create_time(os.getpid())},
            "data_dir": str(self.data_dir),
            "phase": self.phase,
            "ready": self.ready,
            "zookeeper": self.zookeeper,
            "zookeeper_embedded": self.ensemble is not None,
            "zookeeper_nodes": nodes,
            "dashboard": self._dashboard.url if self._dashboard is not None else None,
            "dashboard_token_file": (str(self._dashboard_token_file)
                                     if self._dashboard_token_file is not None else None),
            "kafka_security_protocol": self.kafka_security[0],
            "kafka_ca": self.kafka_security[1],
            "processes": [{"role": s.spec.role, "id": s.spec.id, "pid": s.restart.pid,
                           "create_time": s.restart.create_time,
                           "restarts": s.restart.restarts,
                           "last_exit_code": s.restart.last_exit_code,
                           "settings": settings_in_force(s.spec.args)} for s in self.slots],
            "updated_at": time.time(),
        }

    def processes(self) -> list:
        """Every process to sample (``ProcessRef``): this one, ZooKeeper, the slots."""
        from cluster.observe.processes import ProcessRef
        refs = [ProcessRef("supervisor", "0", os.getpid())]
        if self.ensemble is not None:
            refs += [ProcessRef("zookeeper", str(n.myid), n.pid if n.is_running() else None)
                     for n in self.ensemble.nodes]
        return refs + [ProcessRef(s.spec.role, s.spec.id, s.restart.pid if s.process else None,
                                  s.restart.restarts) for s in list(self.slots)]

    def _write_state(self) -> None:
        self.files.write_state(self.state())

    def _drain_wake(self) -> None:
        """Empty the wake pipe; BlockingIOError means it is empty."""
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass


def settings_in_force(args: tuple) -> dict | None:
    """The config a slot's process was started with, as plain values (``cluster status
    --json``): every setting, defaults included. Broker and worker configs hold paths, never
    secrets (BrokerConfig.security names key files)."""
    config = args[0] if args else None
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return None


def broker_registration(client, broker_id: int) -> dict | None:
    """What broker ``broker_id`` registered (``{}`` when it is not a JSON object), None when
    it is not registered."""
    try:
        data, _ = client.get(paths.broker(broker_id))
    except NoNodeError:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
