"""A consumer-group worker process: a Consumer plus a handler, run under the supervisor.

The loop is the paper's at-least-once recipe: iterate the consumer, hand each message to the
handler; a message counts as processed when the handler returned and the loop asks for the
next. Every ``consumer.auto_commit_ms`` (and before a partition is given up, and at the end) the consumer
makes the handler's output durable first (its ``flush()``, as the consumer's
``before_commit``) and only then writes the processed offsets. A rebalance thus replays
nothing, and a killed worker's successor replays only what it processed since its last commit.

A handler that raises: with ``on_error="stop"`` (the default) the worker logs the message's
topic, partition and offset with the traceback, commits up to the message before it (the
failing message and everything after stay uncommitted) and exits with EXIT_HANDLER_FAILED; the
supervisor restarts it, and it tries that message again. With ``"skip"`` it logs, notes the
skipped message in ZooKeeper beside the data-loss notes (``sluice groups describe`` shows it),
counts it, and goes on.

SIGTERM is the built-in pre-stop hook: the worker stops fetching, finishes the messages already
fetched (``on_stop="finish"``) or stops after the current message (``"abandon"``), flushes,
commits, then releases its partitions and leaves the group, so a successor need not wait for a
session timeout. A static worker (``static=True``: instance id ``worker-<id>``, stable across
restarts) instead keeps its partitions through the restart: it commits and exits, and its
successor in the same slot takes them straight back (KIP-345).
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import dataclasses
from dataclasses import dataclass

from clients.config import ConsumerConfig
from cluster import targets
from cluster.workers.loader import ROOT_ENV
from coordinator import settings
from coordinator.errors import InvalidArgument

DEFAULT_HANDLER = "cluster.workers.loader:hourly_files"
EXIT_HANDLER_FAILED = 3
ON_STOP = ("finish", "abandon")
ON_ERROR = ("stop", "skip")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    """One worker process: its slot id, the cluster, the group it joins, its handler and
    policies, and how its Consumer consumes (``consumer``: every consumer setting, defaults and
    checks in clients.config; ``consumer.auto_commit_ms`` is how often the worker commits)."""

    worker_id: int
    zookeeper: str
    topic: str
    group: str
    data_dir: str
    handler: str = DEFAULT_HANDLER
    static: bool = False
    on_stop: str = "finish"
    on_error: str = "stop"
    consumer: ConsumerConfig = ConsumerConfig()

    def __post_init__(self):
        settings.one_of("on_stop", self.on_stop, ON_STOP)
        settings.one_of("on_error", self.on_error, ON_ERROR)
        if not isinstance(self.consumer, ConsumerConfig):
            raise InvalidArgument(f"consumer must be a ConsumerConfig, not {self.consumer!r}")
        if self.consumer.auto_commit_ms is None:
            raise InvalidArgument("a worker commits what its handler finished every "
                                  "consumer.auto_commit_ms: it cannot be None")
        if self.consumer.instance_id is not None:
            raise InvalidArgument("a worker's instance id is worker-<id>: set static, not "
                                  "consumer.instance_id")

    @classmethod
    def from_dict(cls, values: dict) -> "WorkerConfig":
        """Build from plain values (JSON), the consumer's as a nested object; unknown keys of
        either are refused."""
        values = dict(values)
        consumer = ConsumerConfig.from_dict(values.pop("consumer", None) or {})
        settings.reject_unknown(cls, values)
        return cls(consumer=consumer, **values)

    @property
    def instance_id(self) -> str | None:
        return f"worker-{self.worker_id}" if self.static else None

    def consumer_config(self) -> ConsumerConfig:
        """The Consumer's config: ``consumer`` with the slot's instance id when static."""
        return dataclasses.replace(self.consumer, instance_id=self.instance_id)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _join(config: WorkerConfig, stopping: threading.Event, flush):
    """The worker's Consumer, once its topic exists (a worker may start before the topic)."""
    from broker.protocol import UnknownTopicOrPartition
    from clients.consumer import Consumer
    waiting = False
    while not stopping.is_set():
        try:
            return Consumer([config.topic], config.group, zookeeper=config.zookeeper,
                            data_dir=config.data_dir, config=config.consumer_config(),
                            before_commit=flush)
        except UnknownTopicOrPartition:
            if not waiting:
                log.info("worker %d waiting for topic %s to be created", config.worker_id,
                         config.topic)
                waiting = True
            stopping.wait(1.0)
    return None


def run(config: WorkerConfig) -> None:
    """Process entry point: consume until SIGTERM/SIGINT, or until the handler fails (with
    ``on_error="stop"``: exit code EXIT_HANDLER_FAILED)."""
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s worker-{config.worker_id} %(levelname)s %(message)s")
    os.environ.setdefault(ROOT_ENV, os.path.join(config.data_dir, "loaded", config.group))
    handler = targets.load(config.handler, "handler")
    stopping = threading.Event()
    joined = []

    def stop(*_):
        stopping.set()
        for consumer in joined:
            consumer.wakeup()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    consumer = _join(config, stopping, getattr(handler, "flush", None))
    if consumer is None:
        return
    joined.append(consumer)
    if stopping.is_set():
        consumer.wakeup()
    log.info("worker %d joined group %s as %s", config.worker_id, config.group,
             consumer.consumer_id)
    failed = None
    try:
        failed = _consume(consumer, handler, config)
    finally:
        consumer.close(leave_group=not config.static)
        log.info("worker %d %s group %s", config.worker_id,
                 "stopped, keeping its partitions in" if config.static else "left", config.group)
    code = 0 if failed is None else EXIT_HANDLER_FAILED
    if config.static:
        os._exit(code)  # keep the ZooKeeper session (and so our partitions) for our successor
    if code:
        sys.exit(code)


def _consume(consumer, handler, config: WorkerConfig):
    """Hand messages to the handler until the consumer is woken (SIGTERM), then, with
    ``on_stop="finish"``, the ones already fetched. Returns the message the handler failed on
    (``on_error="stop"``), or None."""
    for m in consumer:
        if not _handle(consumer, handler, m, config):
            return m
    if config.on_stop == "finish":
        for m in consumer.drain():
            if not _handle(consumer, handler, m, config):
                return m
    return None


def _handle(consumer, handler, m, config: WorkerConfig) -> bool:
    """Run the handler on one message; False when the worker must stop at it. Any exception
    of the handler is the policy's to judge, and is logged with its traceback either way."""
    try:
        handler(m)
        return True
    except Exception as exc:
        if config.on_error == "stop":
            log.error("handler failed on %s/%d at offset %d; committing up to the message "
                      "before it and exiting (the supervisor restarts the worker)", m.topic,
                      m.partition, m.offset, exc_info=True)
            return False
        consumer.note_skipped(m, exc)
        log.error("handler failed on %s/%d at offset %d; skipped it (on_error=skip, %d "
                  "skipped so far)", m.topic, m.partition, m.offset,
                  consumer.data_loss["skipped"]["events"], exc_info=True)
        return True
