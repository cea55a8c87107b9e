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

import errno
import os
import selectors
import socket
import time
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
PROBE_TIMEOUT_S = 3.0               # ``probe``: how long one TCP connect may take
#: When set (seconds), ``connect`` first probes the servers (``probe``) and fails at once, in
#: one line naming the cause, when none takes a connection. The ``sluice`` command sets it: a
#: person waits for it. Servers and clients leave it None and let kazoo retry for its timeout
#: (a broker started while its ensemble is still coming up).
probe_first: float | None = None


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


def origin(zookeeper: str | None = None, data_dir: str | os.PathLike | None = None) -> str:
    """Where ``resolve`` finds the connect string, for a person: ``--zookeeper``,
    ``$SLUICE_ZK`` or the local cluster's file."""
    if zookeeper:
        return "--zookeeper"
    if os.environ.get(ENV):
        return f"${ENV}"
    return str(Path(data_dir or DEFAULT_DATA_DIR) / CONNECT_FILE)


def probe(connect_string: str, origin_text: str | None = None,
          timeout: float = PROBE_TIMEOUT_S) -> None:
    """NoCluster, naming the cause per server, unless one server of the connect string takes a
    TCP connection within ``timeout`` (the servers are tried at once, so the whole probe takes
    at most ``timeout``). kazoo's own start retries for its whole timeout and then says
    "Connection time-out" whatever the cause; a person wants to know at once whether nothing
    listens there (refused) or nothing answers (timed out)."""
    hosts, _ = split_chroot(connect_string)
    causes = _connect_causes([h.strip() for h in hosts.split(",") if h.strip()], timeout)
    if causes is None:
        return
    where = f" (from {origin_text})" if origin_text else ""
    raise NoCluster(f"cannot reach ZooKeeper at {connect_string}{where}: "
                    f"{unreachable_summary(causes)}")


def unreachable_summary(causes: dict[str, str]) -> str:
    """One line for the servers that could not be reached. Pure.

    >>> unreachable_summary({"127.0.0.1:1": "connection refused"})
    'connection refused'
    >>> unreachable_summary({"a:1": "connection refused", "b:2": "timed out after 3 s"})
    'a:1 connection refused; b:2 timed out after 3 s'
    """
    if len(causes) == 1:
        return next(iter(causes.values()))
    return "; ".join(f"{host} {cause}" for host, cause in causes.items())


def _connect_causes(hosts: list[str], timeout: float) -> dict[str, str] | None:
    """None when one of ``hosts`` (``host:port``) accepts a TCP connection within ``timeout``,
    else why each did not."""
    causes: dict[str, str] = {}
    pending: dict[socket.socket, str] = {}
    selector = selectors.DefaultSelector()
    try:
        for host in hosts:
            name, _, port = host.rpartition(":")
            try:
                family, kind, proto, _, address = socket.getaddrinfo(
                    name.strip("[]") or host, int(port) if port.isdigit() else 2181,
                    type=socket.SOCK_STREAM)[0]
            except (socket.gaierror, UnicodeError) as exc:
                causes[host] = f"unknown host ({exc.args[-1] if exc.args else exc})"
                continue
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            code = sock.connect_ex(address)
            if code == 0:
                sock.close()
                return None
            if code not in (errno.EINPROGRESS, errno.EWOULDBLOCK):
                causes[host] = _cause(code)
                sock.close()
                continue
            pending[sock] = host
            selector.register(sock, selectors.EVENT_WRITE)
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in selector.select(left):
                sock = key.fileobj
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == 0:
                    return None
                causes[pending.pop(sock)] = _cause(code)
                selector.unregister(sock)
                sock.close()
        for sock, host in pending.items():
            causes[host] = f"timed out after {timeout:g} s"
        return {host: causes[host] for host in hosts if host in causes}
    finally:
        for sock in list(pending):
            sock.close()
        selector.close()


def _cause(code: int) -> str:
    """A connect error as a person says it: 'connection refused', 'no route to host'."""
    return os.strerror(code).lower()


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
    if probe_first is not None:
        probe(connect_string, origin(zookeeper, data_dir), probe_first)
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
