"""Every broker setting, with its default, in one typed place.

Defaults follow the paper and Kafka 0.7 where they had one (1 GiB segments, flush after 500
messages or 3 s, 7 days of retention, a message visible to fetches once flushed). A refused
setting (unknown, missing, of the wrong type or out of range) raises ``InvalidArgument``, also a
ValueError and a TypeError, so the CLI and the supervisor show it as one line.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields

from broker import netns
from broker.message import ENTRY_OVERHEAD
from coordinator import settings, zk
from coordinator.errors import InvalidArgument

GIB = 1 << 30
MIB = 1 << 20
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class LogConfig:
    """How one partition's log is stored, flushed and retained.

    ``cleanup_policy`` (Kafka's names): ``delete`` is retention alone; ``compact`` is the log
    cleaner alone (broker/cleaner.py: the last message of every key is kept, a tombstone goes
    ``delete_retention_ms`` after its segment was written; retention deletes nothing);
    ``compact,delete`` both. A log is cleaned once at least ``min_cleanable_dirty_ratio`` of
    its sealed bytes were not cleaned yet."""

    segment_bytes: int = GIB
    flush_messages: int = 500
    flush_ms: int = 3000
    visible_after_flush: bool = True
    retention_ms: int = 7 * DAY_MS
    retention_bytes: int | None = None
    max_message_bytes: int = 1 << 20
    cleanup_policy: str = "delete"
    delete_retention_ms: int = DAY_MS
    min_cleanable_dirty_ratio: float = 0.5

    def __post_init__(self):
        _check_types(self)
        _positive(self, "segment_bytes", "flush_messages", "flush_ms", "retention_ms",
                  "max_message_bytes", "delete_retention_ms")
        if self.retention_bytes is not None and self.retention_bytes <= 0:
            raise InvalidArgument("retention_bytes must be positive when set")
        settings.one_of("cleanup_policy", self.cleanup_policy,
                        ("delete", "compact", "compact,delete"))
        if not 0 <= self.min_cleanable_dirty_ratio <= 1:
            raise InvalidArgument("min_cleanable_dirty_ratio must be 0..1, not "
                                  f"{self.min_cleanable_dirty_ratio!r}")

    @property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def delete(self) -> bool:
        return "delete" in self.cleanup_policy


@dataclass(frozen=True)
class SecurityConfig:
    """A secured broker (issue 14): CURVE on every socket, clients checked against the allow
    list in ZooKeeper. The settings are paths, never secrets, so a broker's config can be
    written and logged: ``server_key`` the cluster's server key pair (a credentials file),
    ``credentials`` this broker's own key (principal ``broker-<id>``, for its replica
    fetches), ``zookeeper_digest_file`` the file holding the ZooKeeper digest (None: the
    ensemble is not secured, or ``$SLUICE_ZK_DIGEST`` names it)."""

    server_key: str
    credentials: str
    zookeeper_digest_file: str | None = None

    def __post_init__(self):
        _check_types(self)


@dataclass(frozen=True)
class KafkaTlsConfig:
    """TLS on the Kafka listener (issue 14 item 4): ``certificate`` the broker's certificate
    chain (PEM), ``private_key`` its key (PEM, readable by its owner only), ``ca_certificate``
    the CA that signed it, the file Kafka clients are given to trust (``ssl_cafile``,
    ``ssl.ca.location``; None when the user's clients trust it some other way). Paths, never
    the secrets themselves; each must be a readable file."""

    certificate: str
    private_key: str
    ca_certificate: str | None = None

    def __post_init__(self):
        _check_types(self)
        for name in ("certificate", "private_key", "ca_certificate"):
            path = getattr(self, name)
            if path is not None and not os.access(path, os.R_OK):
                raise InvalidArgument(f"kafka_tls {name} {path!r} is not a readable file")
        if os.stat(self.private_key).st_mode & 0o077:
            raise InvalidArgument(f"kafka_tls private_key {self.private_key!r} is readable by "
                                  f"others: chmod 600 it")


@dataclass(frozen=True)
class BrokerConfig:
    """One broker process. ``port`` 0 binds a free port; ``advertised_host`` is what clients
    are told to connect to (default: ``host``), so brokers on several hosts share one ensemble.

    ``max_request_bytes`` bounds one request (all its frames): the producer sends sets of up
    to 1 MiB plus one message of up to ``max_message_bytes``, so the default 4 MiB leaves
    room. A bigger request is refused with MESSAGE_TOO_LARGE; ZeroMQ drops a connection that
    sends a frame above twice the bound, before the broker allocates it.

    Replication (issue 12, Kafka 0.8's names): a follower fetches from its leader with long
    polls of ``replica_fetch_wait_max_ms`` and up to ``replica_fetch_max_bytes``; one that has
    not caught up to the leader's log end for ``replica_lag_time_max_ms`` leaves the ISR. A
    parked replica fetch is answered at once when an acks=all request waits on its partition,
    else once ``replica_fetch_min_bytes`` are there to copy or ``replica_fetch_linger_ms``
    after the first byte was (broker/long_poll.py ``replica_fetch_due``): each round trip
    costs both brokers a request, a read and a send, and under acks=1 load the followers
    would otherwise come back for every produce request. An
    acks=all produce not answered within ``ack_timeout_ms`` gets REQUEST_TIMED_OUT.
    ``unclean_leader_election`` lets the controller elect an out-of-sync replica when no
    in-sync one is alive (losing what only the others had, counted); every
    ``leader_imbalance_check_ms`` the controller moves leadership back to preferred replicas
    that are in sync.

    ``replica_advertised_endpoint`` is where followers reach this broker (Kafka's
    inter.broker.listener.name, one ROUTER still): None, the client ``endpoint``; otherwise a
    ``tcp://host:port`` registered as the broker's replica endpoint, which may be a proxy in
    front of the ROUTER, so replica traffic can be cut while clients still get through.
    ``network_namespace`` (None: the host's): the broker joins that named network namespace
    (``ip netns add``, root only) before it opens a socket, so it has an address and routes of
    its own (broker/netns.py; the partition-leader drill).

    ``kafka_port``: the TCP port of the Kafka protocol listener (broker/kafka/), 0 a free
    one, None (the default for a broker started alone) no listener. ``kafka_tls``: the
    listener speaks TLS (KafkaTlsConfig); ``kafka_sasl``: every connection authenticates with
    SASL (PLAIN or SCRAM-SHA-256, users in ZooKeeper: coordinator/sasl_users.py) before any
    request but ApiVersions; it needs ``kafka_tls`` (SASL_SSL: no password in the clear).
    ``connections_max_reauth_ms`` (Kafka's connections.max.reauth.ms; 0, the default, off):
    a SASL session lasts that long, the client is told so and must re-authenticate on its
    connection before then, or the connection is closed (KIP-368, broker/kafka/sasl.py).
    Kafka clients' groups
    (broker/kafka/group_coordinator.py) take session timeouts within
    ``group_min_session_timeout_ms`` .. ``group_max_session_timeout_ms`` (Kafka's defaults),
    and an empty group's first rebalance waits ``group_initial_rebalance_delay_ms`` for more
    members (Kafka's default is 3000; 0 here: a lone consumer starts at once).
    ``kafka_audit`` counts Kafka clients' produces per topic and ``audit_window_ms`` window of
    the records' timestamps for the audit trail (broker/kafka/audit_tally.py).
    """

    broker_id: int
    data_dir: str
    zookeeper: str
    host: str = "127.0.0.1"
    port: int = 0
    advertised_host: str | None = None
    log: LogConfig = field(default_factory=LogConfig)
    cleaner_interval_ms: int = 60_000
    cleaner_bytes_per_second: int = 8 * MIB
    backlog_check_ms: int = 5000
    max_fetch_bytes: int = 8 << 20
    max_request_bytes: int = 4 * MIB
    max_wait_ms_limit: int = 30_000
    session_timeout_ms: int = zk.DEFAULT_SESSION_TIMEOUT_MS
    replica_lag_time_max_ms: int = 10_000
    replica_fetch_wait_max_ms: int = 500
    replica_fetch_max_bytes: int = MIB
    replica_fetch_min_bytes: int = MIB
    replica_fetch_linger_ms: int = 10
    ack_timeout_ms: int = 30_000
    unclean_leader_election: bool = False
    leader_imbalance_check_ms: int = 30_000
    replica_advertised_endpoint: str | None = None
    network_namespace: str | None = None
    kafka_port: int | None = None
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1_800_000
    group_initial_rebalance_delay_ms: int = 0
    kafka_audit: bool = False
    audit_window_ms: int = 60_000
    security: SecurityConfig | None = None
    kafka_tls: KafkaTlsConfig | None = None
    kafka_sasl: bool = False
    connections_max_reauth_ms: int = 0

    def __post_init__(self):
        _check_types(self)
        if self.kafka_sasl and self.kafka_tls is None:
            raise InvalidArgument("kafka_sasl needs kafka_tls: SASL over plaintext would send "
                                  "passwords (PLAIN) and sessions in the clear")
        if self.broker_id < 0:
            raise InvalidArgument("broker_id must be >= 0")
        if self.connections_max_reauth_ms < 0:
            raise InvalidArgument("connections_max_reauth_ms must be >= 0 (0: sessions do not "
                                  "expire)")
        if not 0 <= self.port <= 65535:
            raise InvalidArgument("port must be 0..65535")
        if self.kafka_port is not None and not 0 <= self.kafka_port <= 65535:
            raise InvalidArgument("kafka_port must be 0..65535 (0: a free port) or null (no "
                                  "Kafka listener)")
        _positive(self, "cleaner_interval_ms", "cleaner_bytes_per_second", "backlog_check_ms",
                  "max_fetch_bytes", "max_request_bytes",
                  "max_wait_ms_limit", "session_timeout_ms", "replica_lag_time_max_ms",
                  "replica_fetch_wait_max_ms", "replica_fetch_max_bytes",
                  "replica_fetch_min_bytes", "replica_fetch_linger_ms", "ack_timeout_ms",
                  "leader_imbalance_check_ms", "group_min_session_timeout_ms")
        if self.audit_window_ms < 1000:
            raise InvalidArgument("audit_window_ms must be at least 1000")
        if self.group_max_session_timeout_ms < self.group_min_session_timeout_ms:
            raise InvalidArgument("group_max_session_timeout_ms must be at least "
                                  "group_min_session_timeout_ms")
        if self.group_initial_rebalance_delay_ms < 0:
            raise InvalidArgument("group_initial_rebalance_delay_ms must not be negative")
        if self.replica_advertised_endpoint is not None:
            _check_tcp_endpoint("replica_advertised_endpoint", self.replica_advertised_endpoint)
        if self.network_namespace is not None:
            netns.check_name(self.network_namespace)
        smallest = self.log.max_message_bytes + ENTRY_OVERHEAD
        if self.max_request_bytes < smallest:
            raise InvalidArgument(f"max_request_bytes ({self.max_request_bytes}) must hold one "
                                  f"message of max_message_bytes and its framing: at least "
                                  f"{smallest}")

    @property
    def endpoint_host(self) -> str:
        return self.advertised_host or self.host

    @property
    def kafka_security_protocol(self) -> str:
        """The Kafka listener's protocol as Kafka clients name it (their security_protocol)."""
        if self.kafka_tls is None:
            return "PLAINTEXT"
        return "SASL_SSL" if self.kafka_sasl else "SSL"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "BrokerConfig":
        """Build from plain values (a JSON file, the supervisor); unknown and missing keys are
        refused."""
        values = dict(_mapping(cls, values))
        log = _mapping(LogConfig, values.pop("log", {}) or {})
        security = values.pop("security", None)
        kafka_tls = values.pop("kafka_tls", None)
        _check_keys(cls, values)
        _check_keys(LogConfig, log)
        if kafka_tls is not None:
            kafka_tls = _mapping(KafkaTlsConfig, kafka_tls)
            _check_keys(KafkaTlsConfig, kafka_tls)
            kafka_tls = KafkaTlsConfig(**kafka_tls)
        if security is not None:
            security = _mapping(SecurityConfig, security)
            _check_keys(SecurityConfig, security)
            security = SecurityConfig(**security)
        return cls(log=LogConfig(**log), security=security, kafka_tls=kafka_tls, **values)


_TYPES = {"int": (int,), "bool": (bool,), "str": (str,), "float": (int, float), "int | None": (int, type(None)),
          "str | None": (str, type(None)), "LogConfig": (LogConfig,),
          "SecurityConfig | None": (SecurityConfig, type(None)),
          "KafkaTlsConfig | None": (KafkaTlsConfig, type(None))}


def _check_types(obj) -> None:
    """Refuse a value of the wrong type (a bool is not a number here, though Python says so)."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        allowed = _TYPES[f.type]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise InvalidArgument(f"{f.name} must be {f.type.replace(' | None', ' or null')}, "
                                  f"not {value!r}")


def _mapping(cls, values) -> dict:
    if not isinstance(values, dict):
        raise InvalidArgument(f"{cls.__name__} settings must be an object of name: value, "
                              f"not {values!r}")
    return values


def _check_keys(cls, values: dict) -> None:
    settings.reject_unknown(cls, values)
    missing = [f.name for f in fields(cls) if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise InvalidArgument(f"{cls.__name__} needs the setting(s): {', '.join(missing)}")


def _check_tcp_endpoint(name: str, value: str) -> None:
    """``tcp://host:port`` with a port 1..65535 (what a ZeroMQ socket can connect to).

    >>> _check_tcp_endpoint("e", "tcp://10.0.0.2:9092")
    >>> _check_tcp_endpoint("e", "10.0.0.2:9092")
    Traceback (most recent call last):
    ...
    coordinator.errors.InvalidArgument: e must be tcp://host:port, not '10.0.0.2:9092'
    """
    host, colon, port = value.removeprefix("tcp://").rpartition(":")
    if not value.startswith("tcp://") or not colon or not host or not port.isdigit() \
            or not 0 < int(port) <= 65535:
        raise InvalidArgument(f"{name} must be tcp://host:port, not {value!r}")


def _positive(obj, *names: str) -> None:
    for name in names:
        if getattr(obj, name) <= 0:
            raise InvalidArgument(f"{name} must be positive, not {getattr(obj, name)}")
