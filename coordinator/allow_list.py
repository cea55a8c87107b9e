"""The secured cluster's allow list in ZooKeeper: which CURVE public keys may connect, by name.

``/security/allowed/<name>`` holds the public key of principal ``name``; ``sluice keys allow``
writes it, ``sluice keys revoke`` deletes it. ``/security/server_key`` holds the brokers' public
key, which clients need to connect and which also tells them the cluster is secured. Brokers
keep an ``AllowList`` watched, so an allow or a revoke applies without a restart: the ZAP
handler asks it at each handshake, and the request loop asks it for every request's principal
(a revoked key's open connections are refused from its next request on).
"""
from __future__ import annotations

import logging
import threading

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError, NodeExistsError

from coordinator import credentials, paths

logger = logging.getLogger(__name__)


def publish_server_key(client: KazooClient, public_key: str) -> None:
    value = public_key.encode("ascii")
    try:
        client.create(paths.SERVER_KEY, value, makepath=True)
    except NodeExistsError:
        client.set(paths.SERVER_KEY, value)


def server_key(client: KazooClient) -> str | None:
    """The cluster's server public key; None when the cluster is not secured."""
    try:
        return client.get(paths.SERVER_KEY)[0].decode("ascii")
    except NoNodeError:
        return None


def allow(client: KazooClient, name: str, public_key: str) -> None:
    """Let the key ``public_key`` in as principal ``name`` (replacing a key of that name)."""
    value = public_key.encode("ascii")
    path = paths.allowed(credentials.check_name(name))
    try:
        client.create(path, value, makepath=True)
    except NodeExistsError:
        client.set(path, value)


def revoke(client: KazooClient, name: str) -> bool:
    """Take ``name`` off the allow list; False when it was not on it."""
    try:
        client.delete(paths.allowed(credentials.check_name(name)))
    except NoNodeError:
        return False
    return True


def allowed(client: KazooClient) -> dict[str, str]:
    """name -> public key, as listed now."""
    try:
        names = client.get_children(paths.ALLOWED)
    except NoNodeError:
        return {}
    keys = {}
    for name in names:
        try:
            keys[name] = client.get(paths.allowed(name))[0].decode("ascii")
        except NoNodeError:
            continue
    return keys


class AllowList:
    """The allow list as a broker sees it, kept current by a ZooKeeper watch.

    Lookups read one dict replaced whole on every change (no lock on the request path); the
    watch runs on kazoo's thread.

    ``name_of(public_key)`` is the principal a handshake's key stands for (None: refuse);
    ``allows(name)`` says whether a principal is still listed.
    """

    def __init__(self, client: KazooClient, always: dict[str, str] | None = None):
        self._client = client
        self._always = dict(always or {})          # public key -> name, never revoked
        self._by_key: dict[str, str] = dict(self._always)
        self._names: frozenset[str] = frozenset(self._always.values())
        self._watched: set[str] = set()
        self._lock = threading.Lock()
        self.changes = threading.Event()
        client.ensure_path(paths.ALLOWED)
        client.ChildrenWatch(paths.ALLOWED, self._children_changed)

    def _children_changed(self, names) -> None:
        self._reload()
        with self._lock:
            new = set(names) - self._watched
            self._watched |= new
        for name in new:
            self._client.DataWatch(paths.allowed(name), self._watch_data(name))

    def _watch_data(self, name: str):
        """A key replaced under the same name (``keys allow`` again) applies too."""
        def changed(data, stat):
            if data is None:
                with self._lock:
                    self._watched.discard(name)
                return False
            self._reload()
            return None
        return changed

    def _reload(self) -> None:
        by_key = dict(self._always)
        for name, key in allowed(self._client).items():
            by_key[key] = name
        self._by_key = by_key
        self._names = frozenset(by_key.values())
        self.changes.set()

    def name_of(self, public_key: str) -> str | None:
        return self._by_key.get(public_key)

    def allows(self, name: str) -> bool:
        return name in self._names
