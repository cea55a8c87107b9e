"""The authorization rules in ZooKeeper, and a watch that keeps an Authorizer current.

``/security/acls/<principal>`` holds that principal's rules as a JSON list of
``{"operation", "pattern", "name"}`` (coordinator/authorizer.py). Every change also sets the
data of ``/security/acls`` itself, in the same transaction and checked against its version:
so changes never interleave, and a reader needs one DataWatch (on the parent) to learn of any
change, then reads all rules again. Rules are few (per principal, not per message), so a full
read per change is cheap and never leaves a reader with half of a change.

    store = AclStore(client)
    store.add("alice", [Rule("produce", "topic", "orders")])
    store.rules()                               # {"alice": (Rule(...),)}
    store.watch(lambda rules: ...)              # called now and after every change
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from kazoo.recipe.watchers import DataWatch

from coordinator import paths
from coordinator.authorizer import ANYONE, Rule
from coordinator.errors import InvalidArgument, SluiceError

logger = logging.getLogger(__name__)

_ATTEMPTS = 20   # concurrent writers retry a lost compare-and-set this many times


class AclConflict(SluiceError):
    """Another writer kept changing the rules; nothing of this change was written."""

    retriable = True


def check_principal(name: str) -> str:
    """A principal is ``*`` or a name fit for one ZooKeeper path component."""
    if name == ANYONE:
        return name
    return paths.check_name("principal", name)


class AclStore:
    """Read, change and watch the rules under ``/security/acls``."""

    def __init__(self, client: KazooClient):
        self.client = client

    def rules(self) -> dict[str, tuple[Rule, ...]]:
        """Every principal's rules (principals without any are left out)."""
        return self._read()[0]

    def add(self, principal: str, rules: list[Rule]) -> list[Rule]:
        """Add ``rules`` to the principal's; the ones that were new (already there: kept once)."""
        return self._change(principal, rules, adding=True)

    def remove(self, principal: str, rules: list[Rule]) -> list[Rule]:
        """Remove ``rules`` from the principal's; the ones that were there."""
        return self._change(principal, rules, adding=False)

    def watch(self, on_change: Callable[[dict[str, tuple[Rule, ...]]], None]) -> None:
        """Call ``on_change(rules)`` now and after every change, from kazoo's thread.

        A rule set that cannot be read (a node written by hand with bad JSON) is logged and
        the last good one stays in force, rather than every request being refused or allowed.
        """
        self.client.ensure_path(paths.ACLS)
        lock = threading.Lock()

        def changed(data, stat, event=None):
            if stat is None:
                self.client.ensure_path(paths.ACLS)
            with lock:
                try:
                    rules = self.rules()
                except SluiceError as exc:
                    logger.error("the ACLs in ZooKeeper cannot be read; the previous rules stay "
                                 "in force: %s", exc)
                    return
                on_change(rules)
        DataWatch(self.client, paths.ACLS, changed)

    # --- reading and writing ---------------------------------------------------------------

    def _read(self) -> tuple[dict[str, tuple[Rule, ...]], int]:
        """The rules and the parent's version they were read at."""
        try:
            _, stat = self.client.get(paths.ACLS)
            names = self.client.get_children(paths.ACLS)
        except NoNodeError:
            return {}, -1
        found = {}
        for name in names:
            try:
                data, _ = self.client.get(paths.acl(name))
            except NoNodeError:
                continue   # removed between the two reads; the next change event rereads
            rules = _decode(name, data)
            if rules:
                found[name] = rules
        return found, stat.version

    def _change(self, principal: str, rules: list[Rule], adding: bool) -> list[Rule]:
        check_principal(principal)
        if not rules or not all(isinstance(rule, Rule) for rule in rules):
            raise InvalidArgument(f"expected one or more rules, not {rules!r}")
        self.client.ensure_path(paths.ACLS)
        path = paths.acl(principal)
        for _ in range(_ATTEMPTS):
            parent, _ = self._parent_version()
            try:
                data, stat = self.client.get(path)
                current = list(_decode(principal, data))
            except NoNodeError:
                current, stat = [], None
            if adding:
                changed = [rule for rule in dict.fromkeys(rules) if rule not in current]
                updated = current + changed
            else:
                changed = [rule for rule in dict.fromkeys(rules) if rule in current]
                updated = [rule for rule in current if rule not in changed]
            if not changed:
                return []
            tx = self.client.transaction()
            tx.set_data(paths.ACLS, str(parent + 1).encode(), version=parent)
            if stat is None:
                tx.create(path, _encode(updated))
            elif updated:
                tx.set_data(path, _encode(updated), version=stat.version)
            else:
                tx.delete(path, version=stat.version)
            results = tx.commit()
            if not any(isinstance(result, (BadVersionError, NodeExistsError, NoNodeError))
                       for result in results):
                _raise_first(results)
                logger.info("ACL %s for %s: %s", "added" if adding else "removed", principal,
                            "; ".join(map(str, changed)))
                return changed
        raise AclConflict(f"the ACLs of {principal} changed {_ATTEMPTS} times while this "
                          "change was being written; nothing was written, try again")

    def _parent_version(self) -> tuple[int, bytes]:
        data, stat = self.client.get(paths.ACLS)
        return stat.version, data


def _raise_first(results) -> None:
    for result in results:
        if isinstance(result, Exception):
            raise result


def _encode(rules: list[Rule]) -> bytes:
    return json.dumps([rule.to_json() for rule in rules]).encode()


def _decode(principal: str, data: bytes) -> tuple[Rule, ...]:
    try:
        value = json.loads(data)
        if not isinstance(value, list):
            raise ValueError("not a list")
        return tuple(Rule.from_json(item) for item in value)
    except (ValueError, InvalidArgument) as exc:
        raise SluiceError(f"{paths.acl(principal)} does not hold a list of rules: {exc}") \
            from None
