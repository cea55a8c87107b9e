"""Finding and connecting to the ZooKeeper ensemble.

A connect string is ``host:port[,host:port...][/chroot]``. sluice looks for it in the caller's
argument, then ``$SLUICE_ZK``, then the file ``<data-dir>/zookeeper`` that the local cluster's
supervisor writes, so every client and command finds a local cluster with no flags.

A secured cluster (``cluster up --secure``, issue 14) keeps a digest ``user:password`` in
``<data-dir>/security/`` (coordinator/credentials.py says where else one is found). A client
that has one authenticates with it and creates every node with an ACL that gives that digest
everything and nobody else anything, so a ZooKeeper client without the secret can neither read
nor change what sluice wrote.
"""
from __future__ import annotations

import os
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError
from kazoo.security import make_digest_acl

from coordinator import credentials

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


def digest_acl(digest: str) -> list:
    """The ACL of every node a secured cluster creates: all permissions to ``digest``, none to
    anyone else."""
    user, _, password = credentials.check_digest(digest).partition(":")
    return [make_digest_acl(user, password, all=True)]


def connect(zookeeper: str | None = None, data_dir=None, timeout: float = 10.0,
            session_timeout: float = DEFAULT_SESSION_TIMEOUT_MS / 1000,
            digest: str | None = None, keys=None) -> KazooClient:
    """A started KazooClient, creating the chroot first if it does not exist yet.

    With a digest (``digest``, else found as ``credentials.find_digest`` says, the data dir
    looked at when given or when it named the ensemble) the client authenticates and creates
    every node, the chroot too, with ``digest_acl``."""
    connect_string = resolve(zookeeper, data_dir)
    look_in = data_dir if data_dir is not None else (DEFAULT_DATA_DIR if not zookeeper else None)
    digest = credentials.find_digest(digest, look_in, keys)
    secured = ({} if digest is None else
               {"auth_data": [("digest", digest)], "default_acl": digest_acl(digest)})
    hosts, chroot = split_chroot(connect_string)
    if chroot:
        root = KazooClient(hosts=hosts, timeout=session_timeout, **secured)
        _start(root, connect_string, timeout)
        try:
            root.ensure_path(chroot)
        except NodeExistsError:
            pass
        finally:
            root.stop()
            root.close()
    client = KazooClient(hosts=connect_string, timeout=session_timeout, **secured)
    _start(client, connect_string, timeout)
    return client


def _start(client: KazooClient, connect_string: str, timeout: float) -> None:
    try:
        client.start(timeout=timeout)
    except Exception as exc:
        client.close()
        raise NoCluster(f"cannot reach ZooKeeper at {connect_string}: {exc}") from None
