"""Key pairs, credentials files and the cluster's secrets on disk (issue 14).

A principal is the NAME of a CURVE key pair (``sluice keys create NAME``). Its credentials file
is one JSON object, mode 0600::

    {"name": "alice", "public_key": "<40 Z85 chars>", "secret_key": "<40 Z85 chars>"}

optionally with ``"zookeeper_digest": "user:password"`` for a client whose host has no copy of
the cluster's data dir. A client finds its file in its ``credentials`` argument, else
``$SLUICE_CREDENTIALS``; none means it connects without CURVE (refused by a secured cluster).

The cluster's own secrets live in ``<data-dir>/security/`` (mode 0700, each file 0600): the
server key pair every broker socket serves CURVE with, the ZooKeeper digest ``user:password``
and the brokers' own key pairs (principal ``broker-<id>``), used for replica fetches. Nothing
here logs or prints a secret key or the digest: ``KeyPair``'s repr names the public key only.
"""
from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from coordinator.errors import InvalidArgument

ENV = "SLUICE_CREDENTIALS"
DIGEST_ENV = "SLUICE_ZK_DIGEST"
SECURITY_DIR = "security"
SERVER_KEY = "server.key"
DIGEST_FILE = "zookeeper.digest"
KEYS_DIR = "keys"
DIGEST_USER = "sluice"
OPERATOR = "admin"      # the key --secure makes for the CLI and dashboard: a super principal
ANONYMOUS = "ANONYMOUS"   # a Kafka client on a listener without SASL (Kafka's User:ANONYMOUS)
_Z85_KEY = 40


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair (Z85 text) and the principal it stands for."""

    name: str
    public_key: str
    secret_key: str = field(repr=False)
    zookeeper_digest: str | None = field(default=None, repr=False)

    def __post_init__(self):
        check_name(self.name)
        for what in ("public_key", "secret_key"):
            value = getattr(self, what)
            if not isinstance(value, str) or len(value) != _Z85_KEY:
                raise InvalidArgument(f"{what} of key {self.name!r} must be {_Z85_KEY} Z85 "
                                      f"characters")
        if self.zookeeper_digest is not None:
            check_digest(self.zookeeper_digest)

    def to_json(self) -> str:
        values = {"name": self.name, "public_key": self.public_key,
                  "secret_key": self.secret_key}
        if self.zookeeper_digest is not None:
            values["zookeeper_digest"] = self.zookeeper_digest
        return json.dumps(values, indent=1) + "\n"


def curve_client_options(keys: KeyPair, server_key: str) -> dict:
    """ZeroMQ socket options of a CURVE client with ``keys`` connecting to ``server_key``."""
    return {zmq.CURVE_SERVERKEY: server_key.encode("ascii"),
            zmq.CURVE_PUBLICKEY: keys.public_key.encode("ascii"),
            zmq.CURVE_SECRETKEY: keys.secret_key.encode("ascii")}


def check_name(name) -> str:
    """A principal's name: a ZooKeeper node name of letters, digits and ``._-``.

    >>> check_name("alice-1")
    'alice-1'
    """
    if (not isinstance(name, str) or not name or len(name) > 200 or name.startswith(".")
            or not all(c.isalnum() or c in "._-" for c in name)):
        raise InvalidArgument(f"a key name is letters, digits, '.', '_' and '-' (not starting "
                              f"with '.'), not {name!r}")
    return name


def check_digest(digest) -> str:
    """``user:password``, both parts non-empty (what ZooKeeper's digest scheme takes)."""
    user, colon, password = (digest or "").partition(":") if isinstance(digest, str) else ("", "", "")
    if not (user and colon and password):
        raise InvalidArgument("a ZooKeeper digest is 'user:password'")
    return digest


def create(name: str) -> KeyPair:
    """A fresh CURVE key pair for ``name`` (not ``ANONYMOUS``: that principal is whoever
    reaches a Kafka listener without SASL, and a key must not take its rules)."""
    if name == ANONYMOUS:
        raise InvalidArgument(f"{ANONYMOUS!r} is the principal of Kafka clients on a listener "
                              f"without SASL: choose another key name")
    public, secret = zmq.curve_keypair()
    return KeyPair(check_name(name), public.decode("ascii"), secret.decode("ascii"))


def write_private(path: str | os.PathLike, text: str) -> Path:
    """Write a secret file readable by its owner only (0600 from its creation on, so there is no
    moment it is world-readable); its directory is made 0700 if it does not exist."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def save(keys: KeyPair, path: str | os.PathLike) -> Path:
    return write_private(path, keys.to_json())


def load(path: str | os.PathLike) -> KeyPair:
    """A credentials file, refused in one line when it is missing or not one."""
    try:
        values = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InvalidArgument(f"cannot read credentials {path}: {exc.strerror}") from None
    except ValueError:
        raise InvalidArgument(f"credentials {path} are not a JSON key file (made by 'sluice "
                              f"keys create')") from None
    if not isinstance(values, dict) or set(values) - {"name", "public_key", "secret_key",
                                                       "zookeeper_digest"}:
        raise InvalidArgument(f"credentials {path} must be a key file made by 'sluice keys "
                              f"create'")
    try:
        return KeyPair(**values)
    except TypeError:
        raise InvalidArgument(f"credentials {path} lack a name, public_key or "
                              f"secret_key") from None


def resolve(credentials: str | os.PathLike | None = None) -> KeyPair | None:
    """The client's key: the argument, else ``$SLUICE_CREDENTIALS``, else None (no CURVE)."""
    path = credentials or os.environ.get(ENV)
    return load(path) if path else None


def security_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / SECURITY_DIR


def key_path(data_dir: str | os.PathLike, name: str) -> Path:
    """Where ``sluice keys create NAME`` writes by default."""
    return security_dir(data_dir) / KEYS_DIR / f"{check_name(name)}.key"


def read_digest(path: str | os.PathLike) -> str:
    try:
        return check_digest(Path(path).read_text().strip())
    except OSError as exc:
        raise InvalidArgument(f"cannot read the ZooKeeper digest {path}: {exc.strerror}") from None


def find_digest(digest: str | None = None, data_dir: str | os.PathLike | None = None,
                keys: KeyPair | None = None) -> str | None:
    """The ZooKeeper digest to authenticate with: the argument, else ``$SLUICE_ZK_DIGEST``, else
    the credentials' own, else the local cluster's file in ``<data-dir>/security/``; None when
    there is none (an unsecured cluster)."""
    if digest:
        return check_digest(digest)
    if os.environ.get(DIGEST_ENV):
        return check_digest(os.environ[DIGEST_ENV])
    if keys is not None and keys.zookeeper_digest:
        return keys.zookeeper_digest
    if data_dir is not None:
        path = security_dir(data_dir) / DIGEST_FILE
        if path.exists():
            return read_digest(path)
    return None


def new_digest() -> str:
    return f"{DIGEST_USER}:{secrets.token_urlsafe(24)}"
