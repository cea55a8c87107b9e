"""A topic's own settings: overrides of the brokers' log settings, under Kafka's names.

``sluice topics config T --set retention.ms=3600000`` stores ``{"retention.ms": 3600000}`` in the
topic's config node (``/config/topics/<topic>``, key ``config``, beside the placement), and every
broker hosting the topic applies it to the topic's logs without a restart (it watches the node).
A setting not overridden is the broker's (``BrokerConfig.log``). Pure: parsing and checking,
no ZooKeeper.

| name                      | LogConfig field           | value                             |
| ------------------------- | ------------------------- | --------------------------------- |
| retention.ms              | retention_ms              | an integer >= 1                   |
| retention.bytes           | retention_bytes           | an integer >= 1                   |
| segment.bytes             | segment_bytes             | an integer >= 1                   |
| flush.messages            | flush_messages            | an integer >= 1                   |
| flush.ms                  | flush_ms                  | an integer >= 1                   |
| cleanup.policy            | cleanup_policy            | delete, compact or compact,delete |
| delete.retention.ms       | delete_retention_ms       | an integer >= 1                   |
| min.cleanable.dirty.ratio | min_cleanable_dirty_ratio | a number 0..1                     |
| min.insync.replicas       | (the placement)           | an integer 1..R                   |

``cleanup.policy`` chooses retention (``delete``), the compacting log cleaner (``compact``,
broker/cleaner.py) or both; ``delete.retention.ms`` is how long a compacted log keeps a
tombstone; ``min.cleanable.dirty.ratio`` the share of a compacted log's sealed bytes that must
be dirty (not cleaned yet) before it is cleaned again (0: at every check, 1: only once all is).
``min.insync.replicas`` is the placement's own field (coordinator/topics.py), checked against R.

>>> parse_assignments(["retention.ms=60000", "cleanup.policy=compact,delete",
...                    "min.cleanable.dirty.ratio=0.25"])
{'retention.ms': 60000, 'cleanup.policy': 'compact,delete', 'min.cleanable.dirty.ratio': 0.25}
>>> log_overrides({"retention.ms": 60000, "cleanup.policy": "compact"})
{'retention_ms': 60000, 'cleanup_policy': 'compact'}
>>> parse_assignments(["retention.hours=1"])
Traceback (most recent call last):
  ...
coordinator.errors.InvalidArgument: unknown topic setting 'retention.hours': use cleanup.policy, delete.retention.ms, flush.messages, flush.ms, min.cleanable.dirty.ratio, min.insync.replicas, retention.bytes, retention.ms, segment.bytes
"""
from __future__ import annotations

from typing import Iterable, Mapping

from coordinator.errors import InvalidArgument

LOG_FIELDS = {"retention.ms": "retention_ms", "retention.bytes": "retention_bytes",
              "segment.bytes": "segment_bytes", "flush.messages": "flush_messages",
              "flush.ms": "flush_ms", "cleanup.policy": "cleanup_policy",
              "delete.retention.ms": "delete_retention_ms",
              "min.cleanable.dirty.ratio": "min_cleanable_dirty_ratio"}
CLEANUP_POLICIES = ("delete", "compact", "compact,delete")
CLEANUP_POLICY = "cleanup.policy"
MIN_INSYNC = "min.insync.replicas"
DIRTY_RATIO = "min.cleanable.dirty.ratio"
NAMES = tuple(sorted([*LOG_FIELDS, MIN_INSYNC]))


def check(name: str, value) -> int | str:
    """The value of one setting, checked (text from a command line is converted)."""
    if name not in NAMES:
        raise InvalidArgument(f"unknown topic setting {name!r}: use {', '.join(NAMES)}")
    if name == CLEANUP_POLICY:
        text = ",".join(sorted(part.strip() for part in str(value).split(",")))
        if text not in CLEANUP_POLICIES:
            raise InvalidArgument(f"{name} must be one of {', '.join(CLEANUP_POLICIES)}, "
                                  f"not {value!r}")
        return text
    if name == DIRTY_RATIO:
        return _ratio(name, value)
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an integer >= 1, not {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{name} must be an integer >= 1, not {value!r}") from None
    if number < 1 or (isinstance(value, float) and value != number):
        raise InvalidArgument(f"{name} must be an integer >= 1, not {value!r}")
    return number


def _ratio(name: str, value) -> float:
    """A number 0..1 (text from a command line converted), as Kafka checks the setting.

    >>> _ratio(DIRTY_RATIO, "0.1"), _ratio(DIRTY_RATIO, 1)
    (0.1, 1.0)
    >>> _ratio(DIRTY_RATIO, "1.5")
    Traceback (most recent call last):
      ...
    coordinator.errors.InvalidArgument: min.cleanable.dirty.ratio must be a number 0..1, not '1.5'
    """
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not 0 <= number <= 1:     # NaN fails the comparison too
        raise InvalidArgument(f"{name} must be a number 0..1, not {value!r}")
    return number


def parse_assignments(assignments: Iterable[str]) -> dict:
    """``["name=value", ...]`` as checked settings, in the order given."""
    found = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not equals or not name.strip():
            raise InvalidArgument(f"expected name=value, got {assignment!r}")
        found[name.strip()] = check(name.strip(), value.strip())
    return found


def checked(values: Mapping) -> dict:
    """A stored ``config`` object, every entry checked (a corrupt node is refused whole)."""
    if not isinstance(values, Mapping):
        raise InvalidArgument(f"a topic's config must be an object, not {values!r}")
    return {name: check(name, value) for name, value in values.items()}


def log_overrides(values: Mapping) -> dict:
    """The LogConfig fields a topic's settings override (``dataclasses.replace`` takes them)."""
    return {LOG_FIELDS[name]: value for name, value in values.items() if name in LOG_FIELDS}
