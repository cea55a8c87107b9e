"""Kafka's error codes for sluice's errors, and error responses.

The codes are Kafka's (org.apache.kafka.common.protocol.Errors). A sluice error keeps its
meaning on the wire: a partition this broker does not lead is NOT_LEADER_OR_FOLLOWER, so
clients refresh their metadata and follow the leader; an offset no message starts at (and
that is not just past a message start, broker/kafka/records.py) is OFFSET_OUT_OF_RANGE, so
clients apply their reset policy. BACKLOG_QUOTA_EXCEEDED (a refuse protection,
broker/backlog_guard.py) is THROTTLING_QUOTA_EXCEEDED (89): a quota in Kafka's own words and,
like the native error, retriable in Kafka's clients (kafka-python's
ThrottlingQuotaExceededError), so a producer backs off and retries; POLICY_VIOLATION (44) is
permanent there, and the refusal is not: it lifts once the group catches up.

>>> from coordinator.errors import NotLeader
>>> kafka_code(NotLeader("broker 1 leads it"))
6
"""
from __future__ import annotations

from coordinator.errors import ErrorCode, SluiceError

NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
LEADER_NOT_AVAILABLE = 5
NOT_LEADER_OR_FOLLOWER = 6
REQUEST_TIMED_OUT = 7
MESSAGE_TOO_LARGE = 10
NOT_ENOUGH_REPLICAS = 19
INVALID_REQUIRED_ACKS = 21
TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
CLUSTER_AUTHORIZATION_FAILED = 31
COORDINATOR_NOT_AVAILABLE = 15
UNSUPPORTED_VERSION = 35
INVALID_REQUEST = 42
UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_PRODUCER_EPOCH = 47
KAFKA_STORAGE_ERROR = 56
INVALID_RECORD = 87
THROTTLING_QUOTA_EXCEEDED = 89
UNKNOWN_SERVER_ERROR = -1

_BY_CODE = {
    ErrorCode.OFFSET_OUT_OF_RANGE: OFFSET_OUT_OF_RANGE,
    ErrorCode.INVALID_OFFSET: OFFSET_OUT_OF_RANGE,
    ErrorCode.OFFSET_GAP: OFFSET_OUT_OF_RANGE,
    ErrorCode.CORRUPT_MESSAGE: CORRUPT_MESSAGE,
    ErrorCode.INVALID_RECORD: INVALID_RECORD,
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: UNKNOWN_TOPIC_OR_PARTITION,
    ErrorCode.NOT_LEADER: NOT_LEADER_OR_FOLLOWER,
    ErrorCode.REQUEST_TIMED_OUT: REQUEST_TIMED_OUT,
    ErrorCode.MESSAGE_TOO_LARGE: MESSAGE_TOO_LARGE,
    ErrorCode.NOT_ENOUGH_REPLICAS: NOT_ENOUGH_REPLICAS,
    ErrorCode.OUT_OF_ORDER_SEQUENCE: OUT_OF_ORDER_SEQUENCE_NUMBER,
    ErrorCode.STORAGE_ERROR: KAFKA_STORAGE_ERROR,
    ErrorCode.BROKER_UNAVAILABLE: LEADER_NOT_AVAILABLE,
    ErrorCode.MALFORMED_REQUEST: INVALID_REQUEST,
    ErrorCode.BACKLOG_QUOTA_EXCEEDED: THROTTLING_QUOTA_EXCEEDED,
    ErrorCode.AUTHORIZATION_FAILED: TOPIC_AUTHORIZATION_FAILED,   # groups' are answered apart
}


def kafka_code(exc: SluiceError) -> int:
    """Kafka's code for a sluice error (UNKNOWN_SERVER_ERROR for one without a counterpart)."""
    return _BY_CODE.get(exc.code, UNKNOWN_SERVER_ERROR)


def error_response(response_class, version: int, code: int):
    """A response of ``version`` with its defaults and top-level ``error_code`` set, for a
    request that cannot be served; None when the API's response has no top-level error code
    or kafka-python does not define that version."""
    if response_class is None or not 0 <= version <= response_class.max_version:
        return None
    if not any(field["name"] == "ErrorCode" and in_versions(field.get("versions", "none"),
                                                            version)
               for field in response_class.json["fields"]):
        return None
    return response_class(version=version, error_code=code)


def in_versions(spec: str, version: int) -> bool:
    """Whether ``version`` is in a schema's version range (``"0+"``, ``"1-3"``, ``"none"``).

    >>> in_versions("13+", 9), in_versions("0-3", 3), in_versions("none", 0)
    (False, True, False)
    """
    if spec == "none":
        return False
    if spec.endswith("+"):
        return version >= int(spec[:-1])
    low, _, high = spec.partition("-")
    return int(low) <= version <= int(high or low)
