"""What a drill runs with: its ``Settings``, the ``Context`` its hooks get, and its verdict's parts.

A drill's hooks (cluster/drills/catalog.py) see the cluster (processes, ZooKeeper, brokers),
the traffic (the steady producer and the ledger), the eyes (``GroupWatch``) and a place for
notes through one ``Context``; each must-hold they report is a ``Check``. A drill that cannot
run honestly where it is asked to raises ``Unsupported``: reported, never faked.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from broker import protocol
from clients.brokers import BrokerPool
from cluster.drills.faults import ClusterProcesses
from cluster.drills.ledger import Ledger
from cluster.drills.traffic import GroupWatch, SteadyProducer
from cluster.supervision.files import ClusterFiles
from coordinator import zk as zkconnect
from coordinator.errors import InvalidArgument, SluiceError


@dataclass(frozen=True)
class Settings:
    """How a drill runs; every figure lands in the result so a table can be reproduced."""

    count: int = 5
    interval: float = 2.0
    rate: int = 200
    partitions: int = 6
    brokers: int = 3
    workers: int = 3
    commit_ms: int = 1000
    session_timeout_ms: int = 4000
    flush_ms: int = 500
    recovery_timeout_s: float = 60.0
    warmup_s: float = 2.0
    drain_timeout_s: float = 90.0
    zookeeper: str | None = None
    keep: bool = False
    seed: int | None = None
    rebalance: str | None = None      # the workers' protocol (None: the worker's default)
    static: bool = False              # static members (instance id per worker slot)
    replication_factor: int = 1       # the drill topic's replicas per partition
    min_insync_replicas: int = 1      # acks=all refused below this many in-sync replicas

    def __post_init__(self):
        if self.rebalance not in (None, "eager", "cooperative"):
            raise InvalidArgument(f"rebalance must be 'eager' or 'cooperative', not "
                                  f"{self.rebalance!r}")
        if not isinstance(self.count, int) or self.count < 1:
            raise InvalidArgument(f"count must be a whole number >= 1, not {self.count!r}")
        if not self.interval >= 0:
            raise InvalidArgument(f"interval must be >= 0 seconds, not {self.interval!r}")
        for name in ("rate", "partitions", "brokers", "workers", "commit_ms",
                     "session_timeout_ms", "flush_ms", "replication_factor",
                     "min_insync_replicas"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{name} must be a whole number >= 1, not {value!r}")
        if self.replication_factor > self.brokers:
            raise InvalidArgument(f"replication_factor {self.replication_factor} needs as many "
                                  f"brokers; the drill runs {self.brokers}")
        if self.min_insync_replicas > self.replication_factor:
            raise InvalidArgument(f"min_insync_replicas must be 1..{self.replication_factor} "
                                  f"(the replication factor), not {self.min_insync_replicas}")


class Unsupported(SluiceError):
    """The drill cannot run honestly here (the message says why); it is reported, not faked."""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Context:
    """What a drill's hooks get: the cluster, the traffic, the eyes, and a place for notes."""

    drill: object
    settings: Settings
    data_dir: Path
    zookeeper: str
    topic: str
    group: str
    fresh: bool
    procs: ClusterProcesses
    ledger: Ledger
    rng: random.Random
    emit: Callable[..., None]
    watch: GroupWatch | None = None
    producer: SteadyProducer | None = None
    notes: dict = field(default_factory=dict)
    faults: list = field(default_factory=list)
    _pool: BrokerPool | None = None
    _zk: object = None

    @property
    def session_timeout_s(self) -> float:
        return self.settings.session_timeout_ms / 1000

    @property
    def files(self) -> ClusterFiles:
        return self.procs.files

    @property
    def loaded_dir(self) -> Path:
        """Where the group's workers load what they process (the ledger's "consumed")."""
        return self.files.loaded_dir(self.group)

    def log_end(self, partition: int) -> int:
        """The partition's visible end (the offsets API's latest), asked now."""
        if self._pool is None:
            self._pool = BrokerPool(self.zookeeper, request_timeout_ms=2000)
        return self._pool.offset(self.topic, partition, protocol.LATEST)

    def zk(self):
        """A ZooKeeper client of the drill's own (the watch's stays with the watch)."""
        if self._zk is None:
            self._zk = zkconnect.connect(self.zookeeper)
        return self._zk

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._zk is not None:
            self._zk.stop()
            self._zk.close()
            self._zk = None

    def placement(self):
        return self.watch.placement

    def recover(self, record: dict, fault_t: float, back_t: float) -> None:
        """Wait for partitions owned and lag back, and put the times into ``record``."""
        timeout = self.settings.recovery_timeout_s
        level = record["lag_level"]
        remaining = lambda: max(0.1, fault_t + timeout - time.monotonic())  # noqa: E731
        record["process_back_s"] = round(back_t - fault_t, 3)
        self.emit("waiting", detail="partitions owned again")
        owned_t = self.watch.wait(lambda look: look.complete, back_t, remaining(),
                                  "every partition owned by a live member")
        record["owned_s"] = round(owned_t - fault_t, 3)
        self.emit("waiting", detail=f"lag back to {level} bytes")
        lag_t = self.watch.wait(lambda look: look.complete and look.lag is not None
                                and look.lag <= level, owned_t, remaining(),
                                f"lag back to its level before the fault ({level} bytes)")
        record["recovery_s"] = round(lag_t - fault_t, 3)
