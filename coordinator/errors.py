"""sluice's one error taxonomy: every error raised on purpose derives from ``SluiceError``.

It lives at the bottom of the import graph (coordinator/ imports nothing of ours) so that the
broker, the coordinator, the clients and the cluster tools raise and catch the same classes.
The classes say what a caller needs to decide, as kafka-python's ``errors.py`` does; callers
ask the error instead of keeping lists of their own:

| attribute     | meaning                                                                     |
| ------------- | --------------------------------------------------------------------------- |
| code          | the ``ErrorCode`` that travels on the wire (NONE for errors that never do)   |
| retriable     | the same request may succeed later (a broker away, a timeout, a partition    |
|               | not open yet): retry with back-off                                           |
| user_error    | a person's mistake or a condition to act on: the CLI prints it as one line.  |
|               | Anything that is not a SluiceError is a bug of ours: the CLI prints its      |
|               | traceback and asks for a report                                              |
| resume_offset | (instances) for errors about a position: where readable data resumes        |

``InvalidArgument`` is also a ValueError and a TypeError, so code written against the standard
exceptions keeps working while the CLI can tell a refused argument from a bug.
"""
from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """Error codes on the wire; a response carries one and a line of text for a person."""

    NONE = 0
    MALFORMED_REQUEST = 1
    UNKNOWN_API = 2
    UNKNOWN_TOPIC_OR_PARTITION = 3
    CORRUPT_MESSAGE = 4
    MESSAGE_TOO_LARGE = 5
    OFFSET_OUT_OF_RANGE = 6
    INVALID_OFFSET = 7
    STORAGE_ERROR = 8
    NOT_LEADER = 9
    BROKER_UNAVAILABLE = 10
    REQUEST_TIMED_OUT = 11
    OFFSET_GAP = 12
    OUT_OF_ORDER_SEQUENCE = 13
    NOT_ENOUGH_REPLICAS = 14
    FENCED_LEADER_EPOCH = 15
    AUTHENTICATION_FAILED = 16
    AUTHORIZATION_FAILED = 17
    BACKLOG_QUOTA_EXCEEDED = 18
    INVALID_RECORD = 19
    NOT_COORDINATOR = 30


class SluiceError(Exception):
    """The root: an error a person can act on (see the module docstring for the attributes)."""

    code = ErrorCode.NONE
    retriable = False
    user_error = True

    def __init__(self, message: str, code: ErrorCode | None = None,
                 resume_offset: int | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.resume_offset = resume_offset


class InvalidArgument(SluiceError, ValueError, TypeError):
    """A bad argument or setting, refused before anything was done."""


class MalformedRequest(SluiceError):
    code = ErrorCode.MALFORMED_REQUEST


class UnknownTopicOrPartition(SluiceError):
    """Retriable: a partition may not be open yet on a broker that just took it."""

    code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    retriable = True


class CorruptMessage(SluiceError):
    """A message set that fails its CRC or framing; on a fetch, ``resume_offset`` is the first
    readable offset after the corrupt bytes."""

    code = ErrorCode.CORRUPT_MESSAGE


class InvalidRecord(SluiceError):
    """A well-formed message set the partition refuses as it is, e.g. a message without a key
    for a compacted topic (Kafka's INVALID_RECORD): sending it again fails the same way."""

    code = ErrorCode.INVALID_RECORD


class MessageTooLarge(SluiceError):
    code = ErrorCode.MESSAGE_TOO_LARGE


class OffsetOutOfRange(SluiceError):
    """Outside the log; below its start (retention deleted it), ``resume_offset`` is the start."""

    code = ErrorCode.OFFSET_OUT_OF_RANGE


class InvalidOffset(SluiceError):
    """Inside the log but not at the start of a message."""

    code = ErrorCode.INVALID_OFFSET


class OffsetGap(SluiceError):
    """The offset lies in a gap of the log (offsets that were handed out and are gone, after a
    recovery cut); ``resume_offset`` is where the log continues."""

    code = ErrorCode.OFFSET_GAP


class StorageError(SluiceError):
    code = ErrorCode.STORAGE_ERROR


class NotLeader(SluiceError):
    code = ErrorCode.NOT_LEADER
    retriable = True


class BrokerUnavailable(SluiceError):
    code = ErrorCode.BROKER_UNAVAILABLE
    retriable = True


class RequestTimedOut(SluiceError):
    code = ErrorCode.REQUEST_TIMED_OUT
    retriable = True


class OutOfOrderSequence(SluiceError):
    """A sequenced produce request arrived before an older one of its partition: send again,
    in order."""

    code = ErrorCode.OUT_OF_ORDER_SEQUENCE
    retriable = True


class NotEnoughReplicas(SluiceError):
    """acks=all produce refused before it was written: the partition's ISR is smaller than
    its ``min_insync_replicas``. Retriable: a follower may catch up and rejoin."""

    code = ErrorCode.NOT_ENOUGH_REPLICAS
    retriable = True


class FencedLeaderEpoch(SluiceError):
    """A request named a leader epoch other than the partition's current one on this broker:
    one side is stale. Retriable: the stale side re-reads the partition's state."""

    code = ErrorCode.FENCED_LEADER_EPOCH
    retriable = True


class AuthenticationFailed(SluiceError):
    """The cluster does not know the client's key (none given, unknown or revoked): the
    request was refused before it reached a log. Not retriable: the same key is refused again
    until someone runs ``sluice keys allow``."""

    code = ErrorCode.AUTHENTICATION_FAILED


class AuthorizationFailed(SluiceError):
    """The principal is known but no rule lets it do this operation on this resource; the
    message names both. Not retriable: it needs ``sluice acl add``."""

    code = ErrorCode.AUTHORIZATION_FAILED


class BacklogQuotaExceeded(SluiceError):
    """Produce refused: a consumer group protected with ``--policy refuse`` on the topic is
    within its ``--min-seconds`` of losing unread messages to retention
    (broker/backlog_guard.py). Retriable: the refusal lifts by itself once the group commits
    past the messages at risk, and a producer's bounded retries (``retries``,
    ``retry_backoff_ms``) are the back-pressure the pull model lacks; once they are spent the
    batch is reported with this error, nothing written."""

    code = ErrorCode.BACKLOG_QUOTA_EXCEEDED
    retriable = True


class NotCoordinator(NotLeader):
    """OFFSET_COMMIT / OFFSET_FETCH reached a broker that does not lead the group's partition
    of ``__consumer_offsets`` (Kafka's NOT_COORDINATOR): look the leader up again and retry."""

    code = ErrorCode.NOT_COORDINATOR


_BY_CODE = {cls.code: cls for cls in (
    MalformedRequest, UnknownTopicOrPartition, CorruptMessage, MessageTooLarge,
    OffsetOutOfRange, InvalidOffset, OffsetGap, StorageError, NotLeader, BrokerUnavailable,
    RequestTimedOut, OutOfOrderSequence, NotEnoughReplicas, FencedLeaderEpoch,
    AuthenticationFailed, AuthorizationFailed, BacklogQuotaExceeded, NotCoordinator,
    InvalidRecord)}


def error_for(code: int, message: str, resume_offset: int | None = None) -> SluiceError:
    """The typed exception for an error code received from a broker."""
    try:
        code = ErrorCode(code)
    except ValueError:
        return SluiceError(f"unknown error code {code}: {message}")
    return _BY_CODE.get(code, SluiceError)(message, code, resume_offset)
