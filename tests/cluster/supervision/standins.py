"""Stand-ins the supervision tests' supervisors run by ``module:function`` in place of real
brokers: one that registers like ``broker.server.run`` and idles, one that dies at once; and
what the tests read back (the registrations in ZooKeeper, whether a pid still runs)."""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading

import psutil
from kazoo.exceptions import NodeExistsError, NoNodeError

from broker.config import BrokerConfig
from coordinator import paths
from coordinator import zk as zkconnect


def standin_broker(config: BrokerConfig) -> None:
    """Registers at /brokers/ids/<id> as broker.server.run does, then idles until SIGTERM/SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    listener = socket.create_server((config.host, config.port))
    port = listener.getsockname()[1]
    registration = json.dumps({"endpoint": f"tcp://{config.endpoint_host}:{port}",
                               "host": config.endpoint_host, "port": port,
                               "pid": os.getpid()}).encode()
    client = zkconnect.connect(config.zookeeper, session_timeout=config.session_timeout_ms / 1000)
    try:
        while not stop.is_set():
            try:
                client.create(paths.broker(config.broker_id), registration, ephemeral=True,
                              makepath=True)
                break
            except NodeExistsError:
                stop.wait(0.2)
        stop.wait()
    finally:
        client.stop()
        client.close()
        listener.close()


def crashing_broker(config: BrokerConfig) -> None:
    """Dies at once, to drive the restart back-off."""
    sys.exit(3)


def registrations(connect: str) -> dict[int, dict]:
    client = zkconnect.connect(connect)
    try:
        try:
            ids = client.get_children(paths.BROKER_IDS)
        except NoNodeError:
            return {}
        return {int(i): json.loads(client.get(paths.broker(int(i)))[0]) for i in ids}
    finally:
        client.stop()
        client.close()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


