"""A consumer-group worker process: a Consumer plus a handler, run under the supervisor.

The loop is the paper's at-least-once recipe: poll a batch, hand each message to the handler,
and every ``commit_ms`` make the handler's output durable (its ``flush()``, if it has one) and
only then commit the offsets.

SIGTERM is the built-in pre-stop hook: the worker stops fetching, finishes the batch in hand
(``on_stop="finish"``) or stops after the current message (``"abandon"``), flushes, commits,
then releases its partitions and leaves the group, so a successor need not wait for a session
timeout. A static worker (``static=True``: instance id ``worker-<id>``, stable across restarts)
instead keeps its partitions through the restart: it commits and exits, and its successor in
the same slot takes them straight back (KIP-345).
"""
from __future__ import annotations

import importlib
import logging
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass

from cluster.loader import ROOT_ENV

DEFAULT_HANDLER = "cluster.loader:hourly_files"
log = logging.getLogger("sluice.worker")


@dataclass(frozen=True)
class WorkerConfig:
    worker_id: int
    zookeeper: str
    topic: str
    group: str
    data_dir: str
    handler: str = DEFAULT_HANDLER
    commit_ms: int = 1000
    session_timeout_ms: int = 6000
    rebalance_max_tries: int = 4
    rebalance_backoff_ms: int = 2000
    start: str = "earliest"
    rebalance: str = "cooperative"
    static: bool = False
    max_poll_interval_ms: int | None = 300_000
    on_stop: str = "finish"

    def __post_init__(self):
        if self.on_stop not in ("finish", "abandon"):
            raise ValueError(f"on_stop must be 'finish' or 'abandon', not {self.on_stop!r}")
        if self.rebalance not in ("eager", "cooperative"):
            raise ValueError(f"rebalance must be 'eager' or 'cooperative', not {self.rebalance!r}")

    @property
    def instance_id(self) -> str | None:
        return f"worker-{self.worker_id}" if self.static else None

    def to_dict(self) -> dict:
        return asdict(self)


def load_handler(spec: str):
    """``module:function`` to the callable it names, with a one-line error when it cannot."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"handler must look like module:function, not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import handler module {module_name!r}: {exc}") from None
    handler = getattr(module, attr, None)
    if not callable(handler):
        raise ValueError(f"{spec} is not a callable in {module_name}")
    return handler


def _join(config: WorkerConfig, stopping: threading.Event):
    """The worker's Consumer, once its topic exists (a worker may start before the topic)."""
    from broker.protocol import UnknownTopicOrPartition
    from clients.consumer import Consumer
    waiting = False
    while not stopping.is_set():
        try:
            return Consumer([config.topic], config.group, zookeeper=config.zookeeper,
                            auto_commit_ms=None, start=config.start,
                            session_timeout_ms=config.session_timeout_ms,
                            rebalance_max_tries=config.rebalance_max_tries,
                            rebalance_backoff_ms=config.rebalance_backoff_ms,
                            rebalance=config.rebalance, instance_id=config.instance_id,
                            max_poll_interval_ms=config.max_poll_interval_ms)
        except UnknownTopicOrPartition:
            if not waiting:
                log.info("worker %d waiting for topic %s to be created", config.worker_id,
                         config.topic)
                waiting = True
            stopping.wait(1.0)
    return None


def run(config: WorkerConfig) -> None:
    """Process entry point: consume until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s worker-{config.worker_id} %(levelname)s %(message)s")
    os.environ.setdefault(ROOT_ENV, os.path.join(config.data_dir, "loaded", config.group))
    handler = load_handler(config.handler)
    flush = getattr(handler, "flush", None)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    consumer = _join(config, stopping)
    if consumer is None:
        return
    log.info("worker %d joined group %s as %s", config.worker_id, config.group,
             consumer.consumer_id)
    next_commit = time.monotonic() + config.commit_ms / 1000
    try:
        while not stopping.is_set():
            for m in consumer.poll(200):
                if stopping.is_set() and config.on_stop == "abandon":
                    consumer.abandon_from(m)
                    break
                handler(m)
            if time.monotonic() >= next_commit:
                next_commit = time.monotonic() + config.commit_ms / 1000
                if flush is not None:
                    flush()
                consumer.commit()
    finally:
        if flush is not None:
            flush()
        consumer.commit()
        consumer.close(leave_group=not config.static)
        log.info("worker %d %s group %s", config.worker_id,
                 "stopped, keeping its partitions in" if config.static else "left", config.group)
    if config.static:
        os._exit(0)  # keep the ZooKeeper session (and so our partitions) for our successor
