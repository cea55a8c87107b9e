"""Every setting of a local cluster, once: typed, validated at construction, unknown keys refused.

``ClusterConfig`` is what ``sluice cluster up`` builds from its arguments, what ``up()`` and
``Supervisor`` take, and, as ``to_argv()``, the command line of a detached supervisor
(``python -m cluster.supervision``), which reads it back with ``from_args()``::

    config = ClusterConfig(".sluice", brokers=3, workers=2,
                           worker_settings={"topic": "clicks", "group": "loaders"})
    ClusterConfig.from_args(config.to_argv()) == config       # True
    config.broker_config(1, "127.0.0.1:2181").data_dir        # '/abs/.sluice/broker-1'

| setting            | default           | what                                                  |
| ------------------ | ----------------- | ----------------------------------------------------- |
| data_dir           | .sluice           | the cluster's files (cluster/supervision/files.py)    |
| brokers            | 3                 | broker processes, ids 0..brokers-1                    |
| zookeeper          | None              | an existing ensemble's connect string; None: embedded |
| zk_ensemble        | 1                 | embedded ZooKeeper nodes: 1 or 3                      |
| broker_settings    | {}                | BrokerConfig settings every broker shares; a non-zero |
|                    |                   | ``port`` is broker 0's, broker i gets port + i        |
| broker_overrides   | {}                | {"<id>": {settings}} merged over broker_settings for  |
|                    |                   | one broker: its own ``port`` (as given), its own      |
|                    |                   | ``zookeeper`` connect string (e.g. a proxy), its own  |
|                    |                   | ``replica_advertised_endpoint``                       |
| broker_target      | broker.server:run | ``module:function`` each broker process runs          |
| replication_factor | None              | the cluster's default for new topics (written to      |
|                    |                   | /config/cluster at start); None: leave it as it is    |
| workers            | 0                 | consumer-group worker processes                       |
| worker_settings    | {}                | WorkerConfig settings (topic and group at least)      |
| dashboard_port     | 8080              | web dashboard and /metrics; 0: a free port; None: off |
| dashboard_host     | 127.0.0.1         | its address; beyond loopback it needs a token          |
| dashboard_token_file | None            | the token's file (mode 0600); None: made in           |
|                    |                   | <data-dir>/security/ when the host is not loopback     |
| kafka_port         | 0                 | Kafka protocol listeners: BASE puts broker i on       |
|                    |                   | BASE + i; 0: a free port each; None: none             |
| backoff            | Backoff()         | restart delays of dead processes                      |
| secure             | False             | CURVE on every broker socket, an allow list, digest   |
|                    |                   | ACLs on every ZooKeeper node (supervision/security.py)|
|                    |                   | and SASL_SSL on the Kafka listeners                    |
| kafka_plaintext    | False             | with secure: Kafka listeners stay plaintext, no SASL  |

A refused setting is a ``ClusterSettingError`` (an InvalidArgument) naming it as the command
line does (``--brokers must be at least 1, not 0``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from broker.config import BrokerConfig
from cluster import targets
from cluster.errors import ClusterSettingError
from cluster.observe import dashboard_access
from cluster.supervision.slots import Backoff
from cluster.workers.worker import WorkerConfig
from coordinator import paths
from coordinator import zk as zkconnect

DEFAULT_BROKER_TARGET = "broker.server:run"
DASHBOARD_PORT = 8080
DASHBOARD_HOST = "127.0.0.1"
SET_BY_SUPERVISOR = ("broker_id", "data_dir", "zookeeper")
OVERRIDE_SET_BY_SUPERVISOR = ("broker_id", "data_dir")
WORKER_SET_BY_SUPERVISOR = ("worker_id", "zookeeper", "data_dir")
PLACEHOLDER_ZK = "127.0.0.1:2181"


@dataclass(frozen=True)
class ClusterConfig:
    """One local cluster's settings (see the module docstring for each)."""

    data_dir: str = zkconnect.DEFAULT_DATA_DIR
    brokers: int = 3
    zookeeper: str | None = None
    zk_ensemble: int = 1
    broker_settings: dict = field(default_factory=dict)
    broker_overrides: dict = field(default_factory=dict)
    broker_target: str | Callable[..., Any] = DEFAULT_BROKER_TARGET
    replication_factor: int | None = None
    workers: int = 0
    worker_settings: dict = field(default_factory=dict)
    dashboard_port: int | None = DASHBOARD_PORT
    dashboard_host: str = DASHBOARD_HOST
    dashboard_token_file: str | None = None
    kafka_port: int | None = 0
    backoff: Backoff = field(default_factory=Backoff)
    secure: bool = False
    kafka_plaintext: bool = False

    def __post_init__(self):
        if not isinstance(self.data_dir, (str, os.PathLike)):
            raise ClusterSettingError(f"--data-dir must be a path, not {self.data_dir!r}")
        object.__setattr__(self, "data_dir", str(Path(self.data_dir).resolve()))
        _whole(self.brokers, "--brokers", 1)
        _whole(self.workers, "--workers", 0)
        if self.replication_factor is not None:
            _whole(self.replication_factor, "--replication-factor", 1)
            if self.replication_factor > self.brokers and not self.zookeeper:
                raise ClusterSettingError(f"--replication-factor {self.replication_factor} needs "
                                          f"as many brokers; --brokers is {self.brokers}")
        if self.zk_ensemble not in (1, 3) or isinstance(self.zk_ensemble, bool):
            raise ClusterSettingError(f"--zk-ensemble must be 1 or 3, not {self.zk_ensemble!r}")
        if self.zookeeper is not None and not isinstance(self.zookeeper, str):
            raise ClusterSettingError(f"--zookeeper must be a connect string, not "
                                      f"{self.zookeeper!r}")
        if self.zookeeper and self.zk_ensemble != 1:
            raise ClusterSettingError("--zookeeper and --zk-ensemble exclude each other: an "
                                      "external ZooKeeper is used as it is")
        if self.dashboard_port is not None and (
                not isinstance(self.dashboard_port, int) or isinstance(self.dashboard_port, bool)
                or not 0 <= self.dashboard_port <= 65535):
            raise ClusterSettingError(f"--dashboard-port must be 0..65535, not "
                                      f"{self.dashboard_port!r}")
        if not isinstance(self.dashboard_host, str) or not self.dashboard_host:
            raise ClusterSettingError(f"--dashboard-host must be an address, not "
                                      f"{self.dashboard_host!r}")
        if self.dashboard_token_file is not None:
            if not isinstance(self.dashboard_token_file, (str, os.PathLike)):
                raise ClusterSettingError(f"--dashboard-token-file must be a path, not "
                                          f"{self.dashboard_token_file!r}")
            object.__setattr__(self, "dashboard_token_file",
                               str(Path(self.dashboard_token_file).resolve()))
            dashboard_access.load_token(Path(self.dashboard_token_file), create=False)
        if self.kafka_port is not None and (
                not isinstance(self.kafka_port, int) or isinstance(self.kafka_port, bool)
                or not 0 <= self.kafka_port <= 65536 - self.brokers):
            raise ClusterSettingError(f"--kafka-port must be 0..{65536 - self.brokers} (broker "
                                      f"i listens on BASE + i), not {self.kafka_port!r}")
        if self.kafka_plaintext and not self.secure:
            raise ClusterSettingError("--kafka-plaintext goes with --secure (without it the "
                                      "Kafka listeners are plaintext already)")
        if not isinstance(self.backoff, Backoff):
            raise ClusterSettingError(f"backoff must be a Backoff, not {self.backoff!r}")
        try:
            targets.check(self.broker_target, "--broker-target")
        except ValueError as exc:
            raise ClusterSettingError(str(exc)) from None
        self._check_broker_settings()
        self._check_worker_settings()

    # --- what the supervisor builds from it ------------------------------------------------

    def broker_config(self, broker_id: int, zookeeper: str) -> BrokerConfig:
        """Broker ``broker_id``'s config: the shared settings, its id, directory and port, then
        its overrides (a ``zookeeper`` there replaces the cluster's connect string)."""
        values = dict(self.broker_settings)
        if values.get("port"):
            values["port"] = int(values["port"]) + broker_id
        values.update(zookeeper=zookeeper)
        if "kafka_port" not in values:
            values["kafka_port"] = (None if self.kafka_port is None
                                    else self.kafka_port and self.kafka_port + broker_id)
        override = dict(self.broker_overrides.get(str(broker_id), {}))
        if isinstance(override.get("log"), dict) and isinstance(values.get("log"), dict):
            override["log"] = {**values["log"], **override["log"]}
        values.update(override)
        values.update(broker_id=broker_id,
                      data_dir=str(Path(self.data_dir) / f"broker-{broker_id}"))
        try:
            return BrokerConfig.from_dict(values)
        except (TypeError, ValueError) as exc:
            raise ClusterSettingError(f"invalid broker settings: {exc}") from None

    def worker_config(self, worker_id: int, zookeeper: str) -> WorkerConfig:
        """Worker ``worker_id``'s config: the shared settings, its id, the cluster's ZooKeeper."""
        try:
            return WorkerConfig.from_dict({**self.worker_settings, "worker_id": worker_id,
                                           "zookeeper": zookeeper, "data_dir": self.data_dir})
        except (TypeError, ValueError) as exc:
            raise ClusterSettingError(f"invalid worker settings: {exc}") from None

    # --- as a command line and as plain values ---------------------------------------------

    def to_argv(self) -> list[str]:
        """The arguments of ``python -m cluster.supervision`` for these settings."""
        target = self.broker_target
        argv = ["--data-dir", self.data_dir, "--brokers", str(self.brokers),
                "--zk-ensemble", str(self.zk_ensemble),
                "--broker-target", target if isinstance(target, str) else targets.reference(target)]
        if self.zookeeper:
            argv += ["--zookeeper", self.zookeeper]
        if self.broker_settings:
            argv += ["--broker-settings", json.dumps(self.broker_settings)]
        if self.broker_overrides:
            argv += ["--broker-overrides", json.dumps(self.broker_overrides)]
        if self.replication_factor is not None:
            argv += ["--replication-factor", str(self.replication_factor)]
        if self.workers:
            argv += ["--workers", str(self.workers),
                     "--worker-settings", json.dumps(self.worker_settings)]
        argv += (["--no-dashboard"] if self.dashboard_port is None
                 else ["--dashboard-port", str(self.dashboard_port)])
        if self.dashboard_host != DASHBOARD_HOST:
            argv += ["--dashboard-host", self.dashboard_host]
        if self.dashboard_token_file is not None:
            argv += ["--dashboard-token-file", self.dashboard_token_file]
        if self.kafka_port is None:
            argv.append("--no-kafka")
        elif self.kafka_port:
            argv += ["--kafka-port", str(self.kafka_port)]
        if self.backoff != Backoff():
            argv += ["--backoff", json.dumps(dataclasses.asdict(self.backoff))]
        if self.secure:
            argv.append("--secure")
        if self.kafka_plaintext:
            argv.append("--kafka-plaintext")
        return argv

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> "ClusterConfig":
        """Read ``to_argv()``'s arguments back (``None``: this process's command line)."""
        args = argument_parser().parse_args(argv)
        values = {name: getattr(args, name) for name in
                  ("data_dir", "brokers", "zookeeper", "zk_ensemble", "broker_target", "workers",
                   "replication_factor", "dashboard_host", "dashboard_token_file")}
        values["broker_settings"] = args.broker_settings or {}
        values["broker_overrides"] = args.broker_overrides or {}
        values["worker_settings"] = args.worker_settings or {}
        values["dashboard_port"] = None if args.no_dashboard else args.dashboard_port
        values["kafka_port"] = None if args.no_kafka else args.kafka_port
        if args.backoff:
            values["backoff"] = args.backoff
        values["secure"] = args.secure
        values["kafka_plaintext"] = args.kafka_plaintext
        return cls.from_dict(values)

    def to_dict(self) -> dict:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["backoff"] = dataclasses.asdict(self.backoff)
        if not isinstance(self.broker_target, str):
            values["broker_target"] = targets.reference(self.broker_target)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "ClusterConfig":
        """Build from plain values (JSON, parsed arguments); unknown keys are refused."""
        values = dict(values)
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ClusterSettingError(f"unknown cluster setting(s): {', '.join(unknown)}")
        backoff = values.get("backoff")
        if isinstance(backoff, dict):
            try:
                values["backoff"] = Backoff(**backoff)
            except TypeError as exc:
                raise ClusterSettingError(f"invalid backoff: {exc}") from None
        return cls(**values)

    # --- validation -----------------------------------------------------------------------

    def _check_broker_settings(self) -> None:
        if not isinstance(self.broker_settings, dict):
            raise ClusterSettingError(f"--broker-settings must be a JSON object, not "
                                      f"{self.broker_settings!r}")
        fixed = sorted(set(SET_BY_SUPERVISOR) & set(self.broker_settings))
        if fixed:
            raise ClusterSettingError(f"broker settings must not set {', '.join(fixed)}: the "
                                      "supervisor does")
        object.__setattr__(self, "broker_settings", dict(self.broker_settings))
        self._check_broker_overrides()
        for broker_id in range(self.brokers):
            self.broker_config(broker_id, self.zookeeper or PLACEHOLDER_ZK)

    def _check_broker_overrides(self) -> None:
        """Overrides keyed by the id of a broker this cluster runs, as a string (JSON's keys;
        an int key is taken as its string), each an object of BrokerConfig settings."""
        if not isinstance(self.broker_overrides, dict):
            raise ClusterSettingError(f"--broker-overrides must be a JSON object of broker id: "
                                      f"settings, not {self.broker_overrides!r}")
        overrides = {}
        for key, settings in self.broker_overrides.items():
            name = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
            if not isinstance(name, str) or not name.isdigit() or str(int(name)) != name \
                    or int(name) >= self.brokers:
                raise ClusterSettingError(f"--broker-overrides: {key!r} is not the id of a broker "
                                          f"of this cluster (0..{self.brokers - 1})")
            if name in overrides:
                raise ClusterSettingError(f"--broker-overrides: broker {name} is given twice")
            if not isinstance(settings, dict):
                raise ClusterSettingError(f"--broker-overrides: broker {name}'s settings must be "
                                          f"a JSON object, not {settings!r}")
            fixed = sorted(set(OVERRIDE_SET_BY_SUPERVISOR) & set(settings))
            if fixed:
                raise ClusterSettingError(f"--broker-overrides: broker {name} must not set "
                                          f"{', '.join(fixed)}: the supervisor does")
            overrides[name] = dict(settings)
        object.__setattr__(self, "broker_overrides", overrides)

    def _check_worker_settings(self) -> None:
        """Worker settings without the empty ones (the CLI passes None for what it was not
        given), checked before anything starts: names, policies, the handler's import."""
        if not isinstance(self.worker_settings, dict):
            raise ClusterSettingError(f"--worker-settings must be a JSON object, not "
                                      f"{self.worker_settings!r}")
        settings = {k: v for k, v in self.worker_settings.items() if v is not None}
        object.__setattr__(self, "worker_settings", settings)
        if not self.workers:
            return
        if not settings.get("topic") or not settings.get("group"):
            raise ClusterSettingError("--workers needs --topic and --group")
        fixed = sorted(set(WORKER_SET_BY_SUPERVISOR) & set(settings))
        if fixed:
            raise ClusterSettingError(f"worker settings must not set {', '.join(fixed)}: the "
                                      "supervisor does")
        unknown = sorted(set(settings) - {f.name for f in fields(WorkerConfig)})
        if unknown:
            raise ClusterSettingError(f"unknown WorkerConfig setting(s): {', '.join(unknown)}")
        config = self.worker_config(0, self.zookeeper or PLACEHOLDER_ZK)
        try:
            paths.check_name("topic", config.topic)
            paths.check_name("group", config.group)
            targets.load(config.handler, "--handler")
        except ValueError as exc:
            raise ClusterSettingError(str(exc)) from None


def _whole(value, flag: str, at_least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < at_least:
        raise ClusterSettingError(f"{flag} must be at least {at_least}, not {value!r}")


def argument_parser() -> argparse.ArgumentParser:
    """The command line ``to_argv()`` writes (``python -m cluster.supervision --help``)."""
    parser = argparse.ArgumentParser(prog="python -m cluster.supervision",
                                     description="one supervisor in the foreground")
    parser.add_argument("--data-dir", default=zkconnect.DEFAULT_DATA_DIR)
    parser.add_argument("--brokers", type=int, default=3)
    parser.add_argument("--zookeeper", default=None,
                        help="an existing ZooKeeper connect string (default: start one here)")
    parser.add_argument("--zk-ensemble", type=int, choices=(1, 3), default=1)
    parser.add_argument("--broker-settings", type=json.loads, default=None,
                        help="JSON object of BrokerConfig settings shared by every broker")
    parser.add_argument("--broker-overrides", type=json.loads, default=None,
                        help='JSON object {"<broker id>": {settings}} over --broker-settings')
    parser.add_argument("--broker-target", default=DEFAULT_BROKER_TARGET,
                        help="module:function each broker process runs with its BrokerConfig")
    parser.add_argument("--replication-factor", type=int, default=None,
                        help="the cluster's default replication factor for new topics")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--worker-settings", type=json.loads, default=None,
                        help="JSON object of WorkerConfig settings (topic, group, handler, ...)")
    parser.add_argument("--dashboard-port", type=int, default=DASHBOARD_PORT,
                        help="port of the web dashboard and /metrics (default %(default)s; "
                        "0: any free port)")
    parser.add_argument("--no-dashboard", action="store_true",
                        help="no sampler, no web dashboard, no /metrics")
    parser.add_argument("--dashboard-host", default=DASHBOARD_HOST,
                        help="address of the dashboard (default %(default)s; elsewhere it "
                        "needs a token)")
    parser.add_argument("--dashboard-token-file", default=None,
                        help="file holding the dashboard's token (default: made in "
                        "<data-dir>/security/ when the host is not loopback)")
    parser.add_argument("--kafka-port", type=int, default=0,
                        help="Kafka protocol port of broker 0, broker i on BASE + i (default "
                        "0: a free port each)")
    parser.add_argument("--no-kafka", action="store_true", help="no Kafka protocol listeners")
    parser.add_argument("--backoff", type=json.loads, default=None,
                        help="JSON object of Backoff settings (initial_s, max_s, reset_after_s)")
    parser.add_argument("--secure", action="store_true",
                        help="CURVE and an allow list on the brokers, digest ACLs in ZooKeeper")
    parser.add_argument("--kafka-plaintext", action="store_true",
                        help="with --secure: plaintext Kafka listeners (no TLS, no SASL)")
    return parser
