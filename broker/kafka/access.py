"""The ACLs (coordinator/authorizer.py) for Kafka clients: the principal is the connection's
SASL user (broker/kafka/sasl.py), "" on a listener without SASL.

| API                                   | needs                       | refused with        |
| ------------------------------------- | --------------------------- | ------------------- |
| Produce                               | produce on the topic        | 29 per partition    |
| Fetch                                 | consume on the topic        | 29 per partition    |
| ListOffsets                           | describe on the topic       | 29 per partition    |
| Metadata                              | describe on the topic       | 29 per named topic; |
|                                       |                             | left out of "all"   |
| JoinGroup, SyncGroup, Heartbeat,      | consume on the group        | 30                  |
| LeaveGroup, OffsetCommit              |                             |                     |
| OffsetCommit                          | and consume on the topic    | 29 per partition    |
| OffsetFetch                           | describe on the group       | 30                  |
| DescribeGroups, FindCoordinator       | describe on the group       | 30 per group        |
| ListGroups                            | describe on the group       | left out            |
| InitProducerId (idempotent producer)  | produce on some topic       | 31                  |

(29 TOPIC_AUTHORIZATION_FAILED, 30 GROUP_AUTHORIZATION_FAILED, 31 CLUSTER_AUTHORIZATION_FAILED,
Kafka's codes. InitProducerId is Kafka's rule since KIP-679: IdempotentWrite on the cluster or
Write on any topic; a super principal stands for the first.) A listener without SASL gives
its connections the principal ``ANONYMOUS`` (coordinator/authorizer.py), as Kafka's
User:ANONYMOUS: only rules naming it apply. With security
off there is no Authorizer and everything is allowed, as for native clients. A refusal is
counted with the broker's request errors (``authorization_failed``), logged at most once per
interval, and reaches no log.
"""
from __future__ import annotations

from broker.kafka.request import KafkaContext
from coordinator.authorizer import GROUP, TOPIC, Operation
from coordinator.errors import AuthorizationFailed

__all__ = ["refusal", "GROUP", "TOPIC", "Operation"]


def refusal(ctx: KafkaContext, conn, operation: Operation, kind: str, name: str,
            count: bool = True) -> str | None:
    """None when the connection's principal may do ``operation`` on ``kind name``; else the
    refusal's line, counted (unless ``count`` is False: the caller counts it as an error of
    its answer)."""
    authorizer = ctx.handlers.authorization.authorizer
    if authorizer is None:
        return None
    why = authorizer.refusal(getattr(conn, "principal", ""), operation, kind, name)
    if why is not None and count:
        ctx.handlers.errors.request_failed(AuthorizationFailed(f"kafka: {why}"), acks=1)
    return why


def producer_id_refusal(ctx: KafkaContext, conn) -> str | None:
    """None when the connection's principal may get an idempotent producer id (produce on
    some topic); else the refusal's line, counted."""
    authorizer = ctx.handlers.authorization.authorizer
    principal = getattr(conn, "principal", "")
    if authorizer is None or authorizer.may_produce_somewhere(principal):
        return None
    who = f"principal {principal!r}" if principal else "an unauthenticated client"
    why = (f"{who} may not get an idempotent producer id: no rule lets it produce to any "
           f"topic ('sluice acl add {principal or 'NAME'} produce --topic T')")
    ctx.handlers.errors.request_failed(AuthorizationFailed(f"kafka: {why}"), acks=1)
    return why

