"""Finding and connecting to the ZooKeeper ensemble.

A connect string is ``host:port[,host:port...][/chroot]``. sluice looks for it in the caller's
argument, then ``$SLUICE_ZK``, then the file ``<data-dir>/zookeeper`` that the local cluster's
supervisor writes, so every client and command finds a local cluster with no flags.
"""
from __future__ import annotations

import os
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError

from coordinator.errors import InvalidArgument, SluiceError

ENV = "SLUICE_ZK"
DEFAULT_DATA_DIR = ".sluice"
CONNECT_FILE = "zookeeper"
DEFAULT_SESSION_TIMEOUT_MS = 6000   # every role's default (broker, consumer, worker)


class NoCluster(SluiceError):
    """No ZooKeeper could be found or reached."""


def resolve(zookeeper: str | None = None, data_dir: str | os.PathLike | None = None) -> str:
    """The connect string to use: the argument, else $SLUICE_ZK, else the local cluster's."""
    if zookeeper is not None and not isinstance(zookeeper, str):
        raise InvalidArgument(f"zookeeper must be a connect string 'host:port[,host:port][/chroot]' "
                        f"or None, not {type(zookeeper).__name__}")
    if zookeeper:
        return zookeeper
    if os.environ.get(ENV):
        return os.environ[ENV]
    path = Path(data_dir or DEFAULT_DATA_DIR) / CONNECT_FILE
    try:
        return path.read_text().strip()
    except OSError:
        raise NoCluster(f"no cluster found: pass --zookeeper, set ${ENV}, or start one with "
                        f"'make cluster-up' (looked for {path})") from None


def split_chroot(connect: str) -> tuple[str, str]:
    """('h1:p1,h2:p2', '/chroot') from a connect string; chroot is '' when absent."""
    hosts, slash, chroot = connect.partition("/")
    return hosts, (slash + chroot).rstrip("/")


def connect(zookeeper: str | None = None, data_dir=None, timeout: float = 10.0,
            session_timeout: float = DEFAULT_SESSION_TIMEOUT_MS / 1000) -> KazooClient:
    """A started KazooClient, creating the chroot first if it does not exist yet."""
    connect_string = resolve(zookeeper, data_dir)
    hosts, chroot = split_chroot(connect_string)
    if chroot:
        root = KazooClient(hosts=hosts, timeout=session_timeout)
        _start(root, connect_string, timeout)
        try:
            root.ensure_path(chroot)
        except NodeExistsError:
            pass
        finally:
            root.stop()
            root.close()
    client = KazooClient(hosts=connect_string, timeout=session_timeout)
    _start(client, connect_string, timeout)
    return client


def _start(client: KazooClient, connect_string: str, timeout: float) -> None:
    try:
        client.start(timeout=timeout)
    except Exception as exc:
        client.close()
        raise NoCluster(f"cannot reach ZooKeeper at {connect_string}: {exc}") from None
