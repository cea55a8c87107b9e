"""Every client setting, with its default, in one typed place: ProducerConfig, ConsumerConfig.

``Producer(zookeeper, **settings)`` and ``Consumer(topics, group, zookeeper, **settings)`` build
their config from keyword arguments (or take ``config=``, with keyword arguments overriding
it); anything that is not a setting is refused with one line naming it, before anything
connects. ``from_dict``/``to_dict`` carry a config as plain values (a group worker's settings
travel as JSON). Defaults shared with the lower layers are theirs: the session timeout is
coordinator.zk's, the rebalance retries are coordinator.rebalance.RetryPolicy's.

Not settings, and so not here: where the cluster is (``zookeeper``, ``data_dir``) and the
application's hooks (``partitioner``, ``on_delivery``, ``on_acknowledged``, ``before_commit``),
which are callables a JSON config cannot hold (the constructors check them with
coordinator.settings.callable_or_none).

>>> ProducerConfig(acks=1).batch_size
50
>>> ProducerConfig(acks=-1).acks
'all'
>>> ConsumerConfig.from_dict({"start": "latest"}).session_timeout_ms
6000
>>> ConsumerConfig.from_dict({"commit_ms": 1000})
Traceback (most recent call last):
  ...
coordinator.errors.InvalidArgument: unknown ConsumerConfig setting(s): commit_ms
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

from clients.audit import DEFAULT_WINDOW_MS, check_window_ms
from clients.resume import ON_CORRUPT
from coordinator import paths, settings, zk
from coordinator.errors import InvalidArgument
from coordinator.rebalance import RetryPolicy
from coordinator.rebalance_protocols import PROTOCOLS

MIB = 1 << 20
REQUEST_TIMEOUT_MS = 5000       # a request to a broker unanswered this long has timed out
FETCH_MAX_BYTES = MIB           # what one fetch may return
FETCH_MAX_WAIT_MS = 500         # how long a broker may park a fetch that found nothing new
STARTS = ("earliest", "latest")
ACKS = (0, 1, "all")            # a producer's acks; -1 is read as "all"

Config = TypeVar("Config", bound="_Settings")


class _Settings:
    """What both configs do with plain values."""

    @classmethod
    def from_dict(cls: type[Config], values: Mapping[str, Any]) -> Config:
        """Build from plain values; keys that name no setting are refused."""
        settings.reject_unknown(cls, values)
        return cls(**values)

    @classmethod
    def build(cls: type[Config], config: Config | None = None, **overrides) -> Config:
        """``config`` (default: the defaults) with keyword arguments in place of its values."""
        if config is None:
            return cls.from_dict(overrides)
        if not isinstance(config, cls):
            raise InvalidArgument(f"config must be a {cls.__name__}, not {config!r}")
        settings.reject_unknown(cls, overrides)
        return dataclasses.replace(config, **overrides) if overrides else config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class ProducerConfig(_Settings):
    """How a Producer batches, acknowledges and retries (clients/producer.py says why).

    ``batch_size`` messages or ``linger_ms`` (0: no timer) make a batch leave; ``acks`` 0 is
    the paper's fire and forget, 1 waits for the leader's append, "all" (or -1) for every
    in-sync replica's (acks=all batches are windowed, sequenced and retried as acks=1 ones;
    NOT_ENOUGH_REPLICAS is one more error that passes); an acknowledged request failing in
    passing is sent again up to ``retries`` times, ``retry_backoff_ms`` apart, and counts as
    failed once ``request_timeout_ms`` passed without an answer; up to ``max_in_flight``
    requests wait for answers per broker, and as many sets per partition (acks=1 with
    ``linger_ms`` > 0: in at most ``max_in_flight`` // 8 requests, the waiting sets sent
    together, clients/producer.py); a message's key and value may hold
    ``max_message_bytes``, and one request's set ``max_request_bytes`` (a bigger message goes
    alone). ``credentials`` is the path of a key file (``sluice keys create``) for a secured
    cluster, else ``$SLUICE_CREDENTIALS``; None and no variable: no key.
    ``idempotent`` (acks 1 and "all"; the default) numbers each partition's requests
    so that the brokers write none twice and none out of order (clients/producer.py);
    False sends them unsequenced (producer id 0), as the paper's producer did.
    ``audit`` stamps each message with its batch's send time (magic 2) and counts, per topic and
    ``audit_window_ms`` window, what was acknowledged and what was sent with acks=0, for the
    ``__audit`` topic (clients/audit.py).
    """

    batch_size: int = 50
    linger_ms: float = 5
    acks: int | str = 0
    retries: int = 10
    request_timeout_ms: float = REQUEST_TIMEOUT_MS
    retry_backoff_ms: float = 200
    max_in_flight: int = 32
    max_message_bytes: int = MIB
    max_request_bytes: int = MIB
    credentials: str | None = None
    idempotent: bool = True
    audit: bool = False
    audit_window_ms: int = DEFAULT_WINDOW_MS

    def __post_init__(self):
        _path_or_none("credentials", self.credentials)
        _audit_settings(self)
        if type(self.acks) is int and self.acks == -1:
            object.__setattr__(self, "acks", "all")
        if not any(self.acks == a and type(self.acks) is type(a) for a in ACKS):
            raise InvalidArgument(f"acks must be 0, 1 or 'all' (also -1), not {self.acks!r}")
        for name in ("batch_size", "max_in_flight", "max_message_bytes", "max_request_bytes"):
            settings.integer(name, getattr(self, name), minimum=1)
        settings.integer("retries", self.retries, minimum=0)
        settings.number("request_timeout_ms", self.request_timeout_ms, minimum=1)
        settings.number("linger_ms", self.linger_ms)
        settings.number("retry_backoff_ms", self.retry_backoff_ms)
        if type(self.idempotent) is not bool:
            raise InvalidArgument(f"idempotent must be true or false, not {self.idempotent!r}")


@dataclass(frozen=True, kw_only=True)
class ConsumerConfig(_Settings):
    """How a group Consumer commits, rebalances and fetches (clients/consumer.py says why).

    ``auto_commit_ms`` (None: only ``commit()``) writes processed offsets that often; a new
    group starts at ``start``; ``consumer_id`` names the member (default: host-pid-random);
    ``instance_id`` makes it a static member; ``rebalance`` is the protocol; the eager one
    tries ``rebalance_max_tries`` times, ``rebalance_backoff_ms`` apart; the ZooKeeper session
    expires after ``session_timeout_ms`` without an answer; a consumer that has not polled for
    ``max_poll_interval_ms`` (None: no bound) gives its partitions up; ``poll()`` returns at
    most ``max_poll_records``; a fetch asks for ``max_bytes`` and lets the broker park it up to
    ``max_wait_ms``; ``on_corrupt`` skips or raises at a corrupt message; ``credentials`` as
    for the Producer. ``offset_store`` is where a *new* group's offsets go ("log", the default,
    or the paper's "zookeeper"); a group that exists keeps the store it recorded
    (coordinator/offset_store_choice.py); ``audit`` counts what is committed per topic and
    ``audit_window_ms`` window of the messages' timestamps, for the ``__audit`` topic
    (clients/audit.py).
    """

    auto_commit_ms: float | None = 1000
    start: str = "earliest"
    consumer_id: str | None = None
    instance_id: str | None = None
    rebalance: str = "cooperative"
    rebalance_max_tries: int = RetryPolicy.max_tries
    rebalance_backoff_ms: float = round(RetryPolicy.backoff_s * 1000)
    session_timeout_ms: float = zk.DEFAULT_SESSION_TIMEOUT_MS
    max_poll_interval_ms: float | None = 300_000
    max_poll_records: int = 500
    max_bytes: int = FETCH_MAX_BYTES
    max_wait_ms: int = FETCH_MAX_WAIT_MS
    request_timeout_ms: float = REQUEST_TIMEOUT_MS
    on_corrupt: str = "skip"
    credentials: str | None = None
    offset_store: str = "log"
    audit: bool = False
    audit_window_ms: int = DEFAULT_WINDOW_MS

    def __post_init__(self):
        _path_or_none("credentials", self.credentials)
        settings.one_of("offset_store", self.offset_store, ("log", "zookeeper"))
        _audit_settings(self)
        if self.auto_commit_ms is not None and (
                isinstance(self.auto_commit_ms, bool)
                or not isinstance(self.auto_commit_ms, (int, float)) or self.auto_commit_ms <= 0):
            raise InvalidArgument(f"auto_commit_ms must be positive, or None for manual "
                                  f"commits, not {self.auto_commit_ms!r}")
        settings.one_of("start", self.start, STARTS)
        settings.text_or_none("consumer_id", self.consumer_id)
        settings.text_or_none("instance_id", self.instance_id)
        if self.instance_id is not None:
            paths.check_name("instance id", self.instance_id)
        settings.one_of("rebalance", self.rebalance, PROTOCOLS)
        for name in ("rebalance_max_tries", "max_poll_records", "max_bytes", "max_wait_ms"):
            settings.integer(name, getattr(self, name), minimum=1)
        for name in ("rebalance_backoff_ms", "session_timeout_ms", "request_timeout_ms"):
            settings.number(name, getattr(self, name), positive=True)
        if self.max_poll_interval_ms is not None:
            settings.number("max_poll_interval_ms", self.max_poll_interval_ms, positive=True)
        settings.one_of("on_corrupt", self.on_corrupt, ON_CORRUPT)

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.rebalance_max_tries, self.rebalance_backoff_ms / 1000)


def check_subscription(topics: Any, group: Any) -> list[str]:
    """A consumer's topics (a name or a list of names) and group, checked; the topics as a
    list."""
    if isinstance(topics, str):
        topics = [topics]
    if not isinstance(topics, (list, tuple)) or not all(isinstance(t, str) for t in topics):
        raise InvalidArgument(f"topics must be a list of topic names, not {topics!r}")
    if not topics:
        raise InvalidArgument("a consumer needs at least one topic")
    for topic in topics:
        paths.check_name("topic", topic)
    if not isinstance(group, str):
        raise InvalidArgument(f"group must be a group name (str), not {group!r}")
    paths.check_name("group", group)
    return list(topics)


def _path_or_none(name: str, value) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidArgument(f"{name} must be the path of a key file or None, not {value!r}")


def _audit_settings(config) -> None:
    if type(config.audit) is not bool:
        raise InvalidArgument(f"audit must be true or false, not {config.audit!r}")
    check_window_ms(config.audit_window_ms)
