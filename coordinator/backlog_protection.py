"""Backlog protections: which consumer groups a topic's brokers protect from retention, and how.

``sluice groups protect G --topic T --policy warn|hold|refuse`` stores one entry per group in
the topic's protection node, ``/config/backlog/<topic>``, a JSON object by group::

    {"loaders": {"policy": "hold", "min_seconds": 3600, "max_hold_bytes": 1073741824}}

Every broker watches these nodes (``ProtectionWatch``) and acts on the partitions it hosts
(broker/backlog_guard.py): a group whose oldest unconsumed message is within ``min_seconds``
of being deleted by retention is *at risk*, and

| policy | what the brokers do while the group is at risk                                   |
| ------ | -------------------------------------------------------------------------------- |
| warn   | alert: one log line per partition on entering the state, METADATA, the metrics   |
| hold   | warn, and retention keeps the segments from the group's committed offset on, up  |
|        | to ``max_hold_bytes`` per partition past what retention would have deleted       |
| refuse | hold, and produce to the partition gets BACKLOG_QUOTA_EXCEEDED until the group   |
|        | commits past the messages at risk                                                |

One node per topic, not per group, because brokers act per topic: one watch per protected
topic. A change is a versioned write, so two concurrent ``protect`` commands do not lose one
another's entry. ``topics delete`` removes the node; ``groups delete`` removes the group's
entries. The node is stored beside the topic's config, not under it, so ``topics config``
and placement changes never rewrite a protection.

>>> Protection.checked({"policy": "refuse", "min_seconds": 30})
Protection(policy='refuse', min_seconds=30, max_hold_bytes=1073741824)
>>> Protection.checked({"policy": "stop"})
Traceback (most recent call last):
  ...
coordinator.errors.InvalidArgument: policy must be one of warn, hold, refuse, not 'stop'
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from coordinator import paths
from coordinator.errors import InvalidArgument, SluiceError

log = logging.getLogger(__name__)

POLICIES = ("warn", "hold", "refuse")
DEFAULT_MIN_SECONDS = 3600
DEFAULT_MAX_HOLD_BYTES = 1 << 30      # per partition: at most this much kept past retention
_TRIES = 5


class UnknownProtection(SluiceError):
    """``groups unprotect`` for a group and topic that have no protection."""


@dataclass(frozen=True)
class Protection:
    """One group's protection on one topic (the module docstring says what each policy does)."""

    policy: str
    min_seconds: int = DEFAULT_MIN_SECONDS
    max_hold_bytes: int = DEFAULT_MAX_HOLD_BYTES

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise InvalidArgument(f"policy must be one of {', '.join(POLICIES)}, "
                                  f"not {self.policy!r}")
        for name in ("min_seconds", "max_hold_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgument(f"{name} must be an integer >= 0, not {value!r}")

    @property
    def holds(self) -> bool:
        """Whether retention keeps the group's unconsumed segments (hold and refuse)."""
        return self.policy in ("hold", "refuse")

    @classmethod
    def checked(cls, value) -> "Protection":
        if not isinstance(value, dict):
            raise InvalidArgument(f"a protection must be an object, not {value!r}")
        unknown = set(value) - {"policy", "min_seconds", "max_hold_bytes"}
        if unknown:
            raise InvalidArgument(f"unknown protection field(s) {sorted(unknown)}")
        return cls(**value)


def parse(data: bytes | None) -> dict[str, Protection]:
    """A protection node's value by group; a corrupt entry is left out and logged (a broker
    must keep serving the others)."""
    if not data:
        return {}
    try:
        document = json.loads(data)
    except ValueError as exc:
        log.error("a backlog protection node is not JSON (%s): ignored", exc)
        return {}
    found = {}
    for group, value in (document.items() if isinstance(document, dict) else ()):
        try:
            found[group] = Protection.checked(value)
        except InvalidArgument as exc:
            log.error("backlog protection of group %s ignored: %s", group, exc)
    return found


def of_topic(client: KazooClient, topic: str) -> dict[str, Protection]:
    try:
        data, _ = client.get(paths.backlog_protection(topic))
    except NoNodeError:
        return {}
    return parse(data)


def of_group(client: KazooClient, group: str) -> dict[str, Protection]:
    """The group's protections by topic."""
    try:
        names = client.get_children(paths.BACKLOG_PROTECTION)
    except NoNodeError:
        return {}
    found = {}
    for topic in sorted(names):
        protection = of_topic(client, topic).get(group)
        if protection is not None:
            found[topic] = protection
    return found


def protect(client: KazooClient, group: str, topic: str, protection: Protection) -> None:
    """Add or replace ``group``'s protection on ``topic``."""
    paths.check_name("group", group)
    paths.check_name("topic", topic)
    _change(client, topic, lambda entries: {**entries, group: asdict(protection)})


def unprotect(client: KazooClient, group: str, topic: str) -> None:
    """Remove ``group``'s protection on ``topic``; UnknownProtection when it has none."""
    def without(entries: dict) -> dict:
        if group not in entries:
            raise UnknownProtection(f"group {group} has no backlog protection on topic {topic}")
        return {g: v for g, v in entries.items() if g != group}
    _change(client, topic, without)


def forget_group(client: KazooClient, group: str) -> list[str]:
    """Remove every protection of ``group`` (``groups delete``); the topics it had one on."""
    topics = sorted(of_group(client, group))
    for topic in topics:
        try:
            unprotect(client, group, topic)
        except UnknownProtection:
            pass
    return topics


def forget_topic(client: KazooClient, topic: str) -> None:
    """Remove the topic's protection node (``topics delete``)."""
    try:
        client.delete(paths.backlog_protection(topic))
    except NoNodeError:
        pass


def _change(client: KazooClient, topic: str, change) -> None:
    """Apply ``change`` to the node's raw entries with a versioned write (retried when another
    writer came first); an empty result deletes the node."""
    path = paths.backlog_protection(topic)
    for _ in range(_TRIES):
        try:
            data, stat = client.get(path)
            entries, version = json.loads(data or b"{}"), stat.version
        except NoNodeError:
            entries, version = {}, None
        changed = change(entries)
        try:
            if version is None:
                if changed:
                    client.create(path, json.dumps(changed, sort_keys=True).encode(),
                                  makepath=True)
            elif changed:
                client.set(path, json.dumps(changed, sort_keys=True).encode(), version=version)
            else:
                client.delete(path, version=version)
            return
        except (BadVersionError, NodeExistsError, NoNodeError):
            continue
    raise SluiceError(f"the backlog protections of topic {topic} kept changing under this "
                      f"command: run it again")


class ProtectionWatch:
    """Every topic's protections as ZooKeeper's watches last told: a ChildrenWatch on
    ``/config/backlog`` and a DataWatch per topic node (kept while the broker lives: a node
    deleted and made again is seen by the same watch). ``of(topic)`` is a plain dict read, for
    the broker's loop."""

    def __init__(self, client: KazooClient):
        self.client = client
        self._by_topic: dict[str, dict[str, Protection]] = {}
        self._watched: set[str] = set()
        self._lock = threading.Lock()

    def start(self) -> "ProtectionWatch":
        self.client.ensure_path(paths.BACKLOG_PROTECTION)
        self.client.ChildrenWatch(paths.BACKLOG_PROTECTION, self._topics)
        return self

    def of(self, topic: str) -> dict[str, Protection]:
        return self._by_topic.get(topic, {})

    def topics(self) -> list[str]:
        return [topic for topic, entries in self._by_topic.items() if entries]

    def _topics(self, children: list[str]) -> None:
        with self._lock:
            new = set(children) - self._watched
            self._watched |= new
        for topic in sorted(new):
            self.client.DataWatch(paths.backlog_protection(topic), self._watcher(topic))

    def _watcher(self, topic: str):
        def changed(data, _stat):       # two arguments: kazoo passes a third only if asked
            self._set(topic, data)
        return changed

    def _set(self, topic: str, data: bytes | None) -> None:
        entries = parse(data)
        if entries != self._by_topic.get(topic):
            log.info("backlog protections of topic %s now %s", topic,
                     {g: p.policy for g, p in entries.items()} or "none")
        self._by_topic = {**self._by_topic, topic: entries}
