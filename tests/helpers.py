"""Real broker processes for tests, and a raw socket to speak the wire protocol by hand."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import zmq
from kazoo.exceptions import NoNodeError

from coordinator import paths, topics, zk

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll until predicate() is truthy; return its value or fail the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def create_topic(zookeeper: str, topic: str, partitions: int, brokers=()) -> topics.Placement:
    """Create ``topic`` on the cluster behind ``zookeeper`` (placed on its live brokers), then
    wait until each of ``brokers`` (BrokerProcess) hosts its share of it."""
    client = zk.connect(zookeeper)
    try:
        placement = topics.create(client, topic, partitions)
    finally:
        client.stop()
        client.close()
    for proc in brokers:
        proc.wait_hosting(topic, len(placement.hosted_by(proc.broker_id)))
    return placement


class BrokerProcess:
    """``python -m broker`` as a child process, registered in ZooKeeper before it returns."""

    def __init__(self, zookeeper: str, data_dir: Path, broker_id: int = 0, **settings):
        self.zookeeper = zookeeper
        self.data_dir = Path(data_dir)
        self.broker_id = broker_id
        self.settings = settings
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}

    def start(self, timeout: float = 20.0) -> "BrokerProcess":
        config = {"broker_id": self.broker_id, "data_dir": str(self.data_dir / f"broker-{self.broker_id}"),
                  "zookeeper": self.zookeeper, "session_timeout_ms": 4000, **self.settings}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.data_dir / f"broker-{self.broker_id}.json"
        config_path.write_text(json.dumps(config))
        self.log_path = self.data_dir / f"broker-{self.broker_id}.out"
        self.proc = subprocess.Popen([sys.executable, "-m", "broker", "--config", str(config_path)],
                                     cwd=ROOT, stdout=open(self.log_path, "ab"),
                                     stderr=subprocess.STDOUT)
        client = zk.connect(self.zookeeper)
        try:
            def registered():
                if self.proc.poll() is not None:
                    raise AssertionError(f"broker exited: {self.log_path.read_text()[-2000:]}")
                try:
                    data = json.loads(client.get(paths.broker(self.broker_id))[0])
                except NoNodeError:  # not yet, or a dead predecessor's node just removed
                    return None
                return data if data.get("pid") == self.proc.pid else None
            self.info = wait_for(registered, timeout, what=f"broker {self.broker_id} to register")
        finally:
            client.stop()
            client.close()
        return self

    def wait_hosting(self, topic: str, partitions: int, timeout: float = 20.0) -> None:
        if partitions == 0:
            return
        client = zk.connect(self.zookeeper)
        try:
            def hosted():
                try:
                    data, _ = client.get(paths.broker_topic_partitions(topic, self.broker_id))
                except Exception:
                    return False
                return len(json.loads(data)) >= partitions
            wait_for(hosted, timeout, what=f"broker {self.broker_id} to host {topic}")
        finally:
            client.stop()
            client.close()

    @property
    def endpoint(self) -> str:
        return self.info["endpoint"]

    @property
    def produce_endpoint(self) -> str:
        return self.info["produce_endpoint"]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode if self.proc else None

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


class RawClient:
    """A DEALER socket for sending hand-made frames to a broker."""

    def __init__(self, endpoint: str, curve: dict | None = None):
        """``curve``: CURVE client options (credentials.curve_client_options) for a secured
        broker."""
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        for option, value in (curve or {}).items():
            self.socket.setsockopt(option, value)
        self.socket.connect(endpoint)

    def request(self, *frames: bytes, timeout: float = 10.0) -> list[bytes] | None:
        self.socket.send_multipart(list(frames))
        return self.reply(timeout)

    def reply(self, timeout: float = 10.0) -> list[bytes] | None:
        if self.socket.poll(int(timeout * 1000)):
            return self.socket.recv_multipart()
        return None

    def close(self) -> None:
        self.socket.close(0)
        self.context.term()


def push(endpoint: str, *frames: bytes, curve: dict | None = None) -> None:
    """Send frames to a broker's fire-and-forget produce socket."""
    context = zmq.Context()
    sock = context.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 5000)
    for option, value in (curve or {}).items():
        sock.setsockopt(option, value)
    sock.connect(endpoint)
    sock.send_multipart(list(frames))
    sock.close()
    context.term()


def env_with_zk(zookeeper: str) -> dict:
    env = dict(os.environ)
    env["SLUICE_ZK"] = zookeeper
    return env


class GroupOffsets:
    """A group's committed offsets through the store the group uses (ZooKeeper or the
    ``__consumer_offsets`` log), one BrokerPool per call: what a test reads after a consumer
    committed, whichever store the group got."""

    def __init__(self, zookeeper: str, group: str):
        self.zookeeper = zookeeper
        self.group = group

    def _use(self, method: str, *args):
        from clients.brokers import BrokerPool
        from clients.log_offsets import open_store
        pool = BrokerPool(self.zookeeper)
        try:
            return getattr(open_store(pool, self.group, record=False), method)(*args)
        finally:
            pool.close()

    def fetch(self, topic: str, partition: int):
        return self._use("fetch", topic, partition)

    def committed(self, topic: str) -> dict:
        return self._use("committed", topic)

    def data_loss(self, topic: str) -> dict:
        return self._use("data_loss", topic)
