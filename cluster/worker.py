"""A consumer-group worker process: a Consumer plus a handler, run under the supervisor.

The loop is the paper's at-least-once recipe: poll a batch, hand each message to the handler,
and every ``commit_ms`` make the handler's output durable (its ``flush()``, if it has one) and
only then commit the offsets. SIGTERM stops it cleanly: flush, commit, release the partitions and
leave the group, so a successor need not wait for a session timeout.
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
                            rebalance_backoff_ms=config.rebalance_backoff_ms)
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
                handler(m)
            if time.monotonic() >= next_commit:
                next_commit = time.monotonic() + config.commit_ms / 1000
                if flush is not None:
                    flush()
                consumer.commit()
    finally:
        if flush is not None:
            flush()
        consumer.close()
        log.info("worker %d left group %s", config.worker_id, config.group)
