"""sluice itself through the harness: a fresh 1-broker cluster (``cluster.supervision.up``),
the default flush policy, rows run with ``cluster.tools.perf`` as ``make bench`` runs them.

Batch 1 / batch 50 without acknowledgement are the Producer with acks=0 (its clock stops when
the broker's log end has grown by every byte sent); batch 50 acknowledged is acks=1 with the
Producer's window of 32 requests. The consumer is the SimpleConsumer fetching 1,000 messages'
bytes per pull, every message CRC-checked, once the stream is flushed. Disk: the partition's
segment files. ``zookeeper`` and ``data_dir`` given: run on that cluster instead, leaving it up.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from broker.message import HEADER_SIZE
from cluster.supervision import ClusterConfig, down, up
from cluster.tools import perf
from cluster.tools.peers import harness


class System:
    name = "sluice"
    client = "clients.Producer (acks=0, acks=1) and clients.SimpleConsumer, via cluster.tools.perf"

    def __init__(self, workdir: Path | None = None, zookeeper: str | None = None,
                 data_dir: Path | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="peers-sluice-"))
        self.zookeeper = zookeeper
        self.data_dir = Path(data_dir) if data_dir else None
        self._started = False
        self._client = None
        self._size = 200

    @staticmethod
    def missing() -> str | None:
        return None

    def start(self) -> None:
        if self.zookeeper is None:
            self.data_dir = self.workdir / "cluster"
            self._started = True
            status = up(ClusterConfig(self.data_dir, brokers=1, dashboard_port=None,
                                      kafka_port=None), detach=True)
            self.zookeeper = status["zookeeper"]
        from coordinator import zk as zkconnect
        self._client = zkconnect.connect(self.zookeeper)

    def stop(self) -> None:
        try:
            if self._client is not None:
                self._client.stop()
                self._client.close()
        finally:
            if self._started:
                try:
                    down(self.data_dir)
                finally:
                    shutil.rmtree(self.data_dir, ignore_errors=True)

    def _fresh(self, stream: str) -> None:
        from coordinator import paths, topics
        topics.create(self._client, stream, 1)
        harness.wait_until(
            lambda: self._client.exists(paths.broker_topic_partitions(stream, 0)) is not None,
            f"the broker did not open {stream}/0", interval=0.02)

    def produce(self, stream: str, messages: int, value: bytes, batch: int,
                acknowledged: bool) -> float:
        self._fresh(stream)
        self._size = len(value)
        result = perf.produce(stream, messages, len(value), batch, 1 if acknowledged else 0,
                              linger_ms=5, partition=0, zookeeper=self.zookeeper)
        if result["dropped"] or (acknowledged and result["acked"] != messages):
            raise harness.PeerError(f"sluice: {perf.summary_line(result)}")
        return result["seconds"]

    def consume(self, stream: str, messages: int) -> float:
        from cluster.tools.bench import _wait_flushed
        _wait_flushed(self.zookeeper, stream)
        fetch_bytes = harness.PULL_MESSAGES * (HEADER_SIZE + self._size)
        result = perf.consume(stream, 0, messages, fetch_bytes, zookeeper=self.zookeeper)
        if "error" in result:
            raise harness.PeerError(f"sluice: {result['error']}")
        return result["seconds"]

    def disk_bytes(self, stream: str) -> int:
        broker = next(self.data_dir.glob("broker-*"))
        return sum(f.stat().st_size for f in (broker / stream / "0").glob("*.log"))
