"""The broker's authorization: what each request asks for, and the rules it is checked against.

Each request type needs one operation on one resource (coordinator/authorizer.py):

| request                       | needs                                                        |
| ----------------------------- | ------------------------------------------------------------ |
| PRODUCE (acks 0, 1, all),     | produce on its topic                                         |
| PRODUCE_SETS                  |                                                              |
| FETCH by a consumer           | consume on its topic                                         |
| OFFSETS, OFFSET_FOR_TIME      | describe on its topic                                        |
| OFFSET_COMMIT                 | consume on its group (Kafka's Read on the group)             |
| OFFSET_FETCH                  | describe on its group (a consume rule covers describe)       |
| METADATA                      | an authenticated principal; the answer lists only the        |
|                               | partitions of topics it may describe                         |
| FETCH by a follower,          | a broker's own principal (``supers``): replication           |
| OFFSET_FOR_EPOCH              | (``broker-<id>``, coordinator/authorizer.py's ``is_super``)   |

With security off there is no ``Authorizer`` and everything is allowed, as before. With it on,
the rules come from ZooKeeper and are watched (coordinator/acl_store.py): a change applies to
the next request, and until the first read nothing but the brokers' own requests is allowed
(default deny). A refusal is AUTHORIZATION_FAILED, naming the operation and resource, and is
counted with the broker's other request errors; the request reaches no log.
"""
from __future__ import annotations

import logging


from broker.protocol import CONSUMER, Api, Request
from coordinator.authorizer import GROUP, TOPIC, Authorizer, Operation, is_super
from coordinator.errors import AuthorizationFailed

logger = logging.getLogger(__name__)

REPLICATION = "replication"   # what followers' requests need: a super principal

_NEEDS = {Api.PRODUCE: Operation.PRODUCE, Api.PRODUCE_SETS: Operation.PRODUCE,
          Api.PRODUCE_SETS_ACKED: Operation.PRODUCE,
          Api.OFFSETS: Operation.DESCRIBE,
          Api.OFFSET_FOR_TIME: Operation.DESCRIBE}


def needs(request: Request) -> tuple[Operation, str, str] | str | None:
    """What ``request`` needs: ``(operation, resource kind, name)``, REPLICATION, or None
    (METADATA: any authenticated principal; its answer is filtered instead).

    >>> needs(Request(Api.FETCH, 1, "orders", 0))
    (<Operation.CONSUME: 'consume'>, 'topic', 'orders')
    >>> needs(Request(Api.OFFSET_COMMIT, 1, group="billing"))
    (<Operation.CONSUME: 'consume'>, 'group', 'billing')
    >>> needs(Request(Api.FETCH, 1, "orders", 0, replica_id=2))
    'replication'
    """
    api = request.api
    if api is Api.FETCH:
        return (Operation.CONSUME, TOPIC, request.topic) if request.replica_id == CONSUMER \
            else REPLICATION
    if api is Api.OFFSET_FOR_EPOCH:
        return REPLICATION
    if api is Api.METADATA:
        return None
    if api is Api.OFFSET_COMMIT:
        return Operation.CONSUME, GROUP, request.group
    if api is Api.OFFSET_FETCH:
        return Operation.DESCRIBE, GROUP, request.group
    return _NEEDS[api], TOPIC, request.topic


def for_config(config) -> "RequestAuthorizer":
    """Authorization is on exactly when the broker is secured (``BrokerConfig.security``, which
    comes with CURVE, issue 14 item 1; a config without the setting is not secured)."""
    return RequestAuthorizer(enabled=config.security is not None)


class RequestAuthorizer:
    """The current rules for one broker; ``authorizer`` is None when security is off."""

    def __init__(self, enabled: bool, supers: frozenset[str] = frozenset()):
        self.enabled = enabled
        self.supers = frozenset(supers)
        self.authorizer: Authorizer | None = Authorizer({}, self.supers) if enabled else None

    def watch(self, store) -> None:
        """Keep the rules current from ``store`` (an AclStore) when security is on."""
        if self.enabled:
            store.watch(self.rules_changed)

    def rules_changed(self, rules: dict) -> None:
        """Swap in an Authorizer for the new rules; the loop thread reads the reference."""
        self.authorizer = Authorizer(rules, self.supers)
        logger.info("authorization rules for %d principal(s) in force", len(rules))

    def check(self, principal: str, request: Request) -> None:
        """Raise AuthorizationFailed unless ``principal`` may make ``request``."""
        authorizer = self.authorizer
        if authorizer is None:
            return
        need = needs(request)
        if need is None:
            if not principal:
                raise AuthorizationFailed("an unauthenticated client may not ask for metadata")
            return
        if need == REPLICATION:
            if not is_super(principal, self.supers):
                raise AuthorizationFailed(
                    f"principal {principal!r} may not {request.api.name.lower().replace('_', ' ')}"
                    f" on topic {request.topic!r} as a replica: only brokers replicate")
            return
        operation, kind, name = need
        authorizer.check(principal, operation, kind, name)

    def may_produce(self, principal: str, topic: str) -> str | None:
        """For acks=0 produce (no answer to send): None when allowed, else the refusal."""
        authorizer = self.authorizer
        if authorizer is None:
            return None
        return authorizer.refusal(principal, Operation.PRODUCE, TOPIC, topic)

    def may_describe(self, principal: str, topic: str) -> bool:
        """Whether METADATA may show ``topic``'s partitions to ``principal``."""
        authorizer = self.authorizer
        return authorizer is None or authorizer.allows(principal, Operation.DESCRIBE, TOPIC,
                                                       topic)
