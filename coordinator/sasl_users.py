"""The Kafka listener's SASL users in ZooKeeper, and a watch that keeps a broker's copy current.

``/security/sasl_users/<user>`` holds the user's SCRAM-SHA-256 credential (coordinator/scram.py:
salt, iterations, StoredKey, ServerKey; never the password), created by a secured cluster's
client and so carrying its digest ACL: nobody without the cluster's digest reads or changes it.
Every change also bumps the data of ``/security/sasl_users`` in the same transaction (checked
against its version), so a broker needs one DataWatch on the parent and rereads all users on a
change, as coordinator/acl_store.py does for the rules. A user's name is its principal for the
ACLs (``sluice acl add NAME ...``); the names of the cluster's own keys (``broker-<id>``,
``admin``) are refused, since those principals may do everything.

    store = SaslUsers(client)
    store.put("alice", ScramCredential.from_password(password))
    store.remove("alice")
    store.watch(lambda users: ...)       # {name: ScramCredential}, now and after every change
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from kazoo.recipe.watchers import DataWatch

from coordinator import paths
from coordinator.authorizer import ANONYMOUS, is_super
from coordinator.errors import InvalidArgument, SluiceError
from coordinator.scram import ScramCredential

logger = logging.getLogger(__name__)

_ATTEMPTS = 20


def check_user(name: str) -> str:
    """A user name: a ZooKeeper node name, and not one of the cluster's own principals."""
    paths.check_name("user", name)
    if name == ANONYMOUS:
        raise InvalidArgument(f"{name!r} is the principal of Kafka clients on a listener "
                              f"without SASL: choose another")
    if is_super(name):
        raise InvalidArgument(f"{name!r} is a name of the cluster's own principals "
                              f"(broker-<id>, admin), which may do everything: choose another")
    return name


class UserConflict(SluiceError):
    """Other writers kept changing the users; nothing of this change was written."""

    retriable = True


class SaslUsers:
    """Read, change and watch the users under ``/security/sasl_users``."""

    def __init__(self, client: KazooClient):
        self.client = client

    def names(self) -> list[str]:
        try:
            return sorted(self.client.get_children(paths.SASL_USERS))
        except NoNodeError:
            return []

    def users(self) -> dict[str, ScramCredential]:
        found = {}
        for name in self.names():
            try:
                data, _ = self.client.get(paths.sasl_user(name))
            except NoNodeError:
                continue
            try:
                found[name] = ScramCredential.from_json(data)
            except InvalidArgument as exc:
                logger.error("SASL user %s cannot be read and is left out: %s", name, exc)
        return found

    def put(self, name: str, credential: ScramCredential) -> bool:
        """Add the user or replace its credential; True when it is new."""
        check_user(name)
        return self._change(name, credential)

    def remove(self, name: str) -> bool:
        """Remove the user; False when there was none."""
        check_user(name)
        return self._change(name, None)

    def watch(self, on_change: Callable[[dict[str, ScramCredential]], None]) -> None:
        """Call ``on_change(users)`` now and after every change, from kazoo's thread."""
        self.client.ensure_path(paths.SASL_USERS)
        lock = threading.Lock()

        def changed(data, stat, event=None):
            if stat is None:
                self.client.ensure_path(paths.SASL_USERS)
            with lock:
                on_change(self.users())
        DataWatch(self.client, paths.SASL_USERS, changed)

    def _change(self, name: str, credential: ScramCredential | None) -> bool:
        self.client.ensure_path(paths.SASL_USERS)
        path = paths.sasl_user(name)
        for _ in range(_ATTEMPTS):
            _, parent = self.client.get(paths.SASL_USERS)
            try:
                _, stat = self.client.get(path)
            except NoNodeError:
                stat = None
            if credential is None and stat is None:
                return False
            tx = self.client.transaction()
            tx.set_data(paths.SASL_USERS, str(parent.version + 1).encode(),
                        version=parent.version)
            if credential is None:
                tx.delete(path, version=stat.version)
            elif stat is None:
                tx.create(path, credential.to_json())
            else:
                tx.set_data(path, credential.to_json(), version=stat.version)
            results = tx.commit()
            if any(isinstance(r, (BadVersionError, NodeExistsError, NoNodeError))
                   for r in results):
                continue
            for result in results:
                if isinstance(result, Exception):
                    raise result
            logger.info("SASL user %s %s", name, "removed" if credential is None else
                        "added" if stat is None else "changed")
            return credential is None or stat is None
        raise UserConflict(f"the SASL users changed {_ATTEMPTS} times while {name} was being "
                           "written; nothing was written, try again")
