"""Authorization: may this principal do this operation on this resource? Pure; no I/O.

A principal is a key's name (``sluice keys create NAME``). A rule grants one operation on one
pattern: a topic by name, every topic whose name starts with a prefix, a group by name, or
every group whose name starts with a prefix. The
rules are stored in ZooKeeper (coordinator/acl_store.py) and the broker asks an ``Authorizer``
built from them about each request (broker/authorization.py).

| operation | lets a principal                                      | implies   |
| --------- | ----------------------------------------------------- | --------- |
| produce   | send messages to a topic                              | describe  |
| consume   | fetch a topic; join a group, commit its offsets       | describe  |
| describe  | read a topic's offsets and metadata                   |           |
| admin     | create a topic                                        | describe  |

``admin`` does not imply produce or consume: who creates topics need not read them. The
principal ``*`` in a rule means every authenticated principal; the empty principal (a client
that did not authenticate) is allowed nothing. ``ANONYMOUS`` (Kafka's name) is a Kafka client
on a listener without SASL (``cluster up --secure --kafka-plaintext``): it has only the rules
that name it, not those of ``*``, since nobody proved who it is. The brokers' own keys
(principals ``broker-<id>``, coordinator/credentials.py), the operator's key that ``--secure``
makes for the CLI and the dashboard (``admin``, as Kafka's ``super.users``) and any ``supers``
given may do everything. Nothing else is allowed: with security on, the default is deny.

Worked examples, rules ``alice: produce topic orders; consume topic-prefix logs.;
*: describe topic-prefix ""; bob: consume group billing; carol: consume group-prefix etl.``::

    principal  operation  resource             decision  because
    alice      produce    topic orders         allow     produce on topic orders
    alice      describe   topic orders         allow     produce implies describe
    alice      consume    topic orders         deny      no consume rule covers orders
    alice      consume    topic logs.web       allow     prefix logs. covers logs.web
    alice      consume    topic logsweb        deny      logsweb does not start with logs.
    bob        describe   topic anything       allow     * may describe every topic
    bob        consume    group billing        allow     consume on group billing
    bob        consume    topic billing        deny      a group rule is not a topic rule
    carol      produce    topic orders         deny      no rule names carol
    carol      consume    group etl.daily      allow     group prefix etl. covers etl.daily
    carol      consume    group etl            deny      etl does not start with etl.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from coordinator import credentials, paths
from coordinator.errors import AuthorizationFailed, InvalidArgument

ANYONE = "*"
ANONYMOUS = credentials.ANONYMOUS   # a Kafka client on a listener without SASL
BROKER_PRINCIPAL = re.compile(r"broker-[0-9]+")   # a broker's own key: replication, everything
_CACHE_LIMIT = 4096   # decisions remembered per Authorizer (emptied when full)


class Operation(str, enum.Enum):
    PRODUCE = "produce"
    CONSUME = "consume"
    DESCRIBE = "describe"
    ADMIN = "admin"


class Pattern(str, enum.Enum):
    """What a rule's name matches: one topic, topics by prefix, one group."""

    TOPIC = "topic"
    TOPIC_PREFIX = "topic-prefix"
    GROUP = "group"
    GROUP_PREFIX = "group-prefix"


_GROUP_PATTERNS = frozenset({Pattern.GROUP, Pattern.GROUP_PREFIX})
TOPIC = "topic"      # resource kinds a request is about
GROUP = "group"

_IMPLIES_DESCRIBE = frozenset({Operation.PRODUCE, Operation.CONSUME, Operation.ADMIN})


@dataclass(frozen=True, slots=True)
class Rule:
    """``operation`` allowed on what ``pattern`` and ``name`` match."""

    operation: Operation
    pattern: Pattern
    name: str

    def __post_init__(self):
        try:
            object.__setattr__(self, "operation", Operation(self.operation))
            object.__setattr__(self, "pattern", Pattern(self.pattern))
        except ValueError as exc:
            raise InvalidArgument(f"invalid rule: {exc}") from None
        if self.pattern in _GROUP_PATTERNS and self.operation not in (Operation.CONSUME,
                                                                      Operation.DESCRIBE):
            raise InvalidArgument(f"a group rule allows consume or describe, not "
                                  f"{self.operation.value}")
        if not isinstance(self.name, str):
            raise InvalidArgument(f"a rule's name is a string, not {self.name!r}")
        if self.pattern in (Pattern.TOPIC_PREFIX, Pattern.GROUP_PREFIX):
            if self.name:   # '' (every one) is a prefix; any other must be one of a name
                paths.check_name(self.pattern.value.replace("-", " "), self.name)
        else:
            paths.check_name("topic" if self.pattern is Pattern.TOPIC else "group", self.name)

    def grants(self, operation: Operation, kind: str, name: str) -> bool:
        """Whether this rule lets its principal do ``operation`` on resource ``kind name``.

        >>> Rule("consume", "topic-prefix", "logs.").grants(Operation.DESCRIBE, TOPIC, "logs.a")
        True
        >>> Rule("admin", "topic", "t").grants(Operation.CONSUME, TOPIC, "t")
        False
        """
        if self.operation is not operation and not (
                operation is Operation.DESCRIBE and self.operation in _IMPLIES_DESCRIBE):
            return False
        if self.pattern is Pattern.GROUP:
            return kind == GROUP and name == self.name
        if self.pattern is Pattern.GROUP_PREFIX:
            return kind == GROUP and name.startswith(self.name)
        if kind != TOPIC:
            return False
        if self.pattern is Pattern.TOPIC:
            return name == self.name
        return name.startswith(self.name)

    def to_json(self) -> dict:
        return {"operation": self.operation.value, "pattern": self.pattern.value,
                "name": self.name}

    @classmethod
    def from_json(cls, value) -> "Rule":
        if not isinstance(value, dict) or set(value) != {"operation", "pattern", "name"}:
            raise InvalidArgument(f"a rule is {{operation, pattern, name}}, not {value!r}")
        return cls(value["operation"], value["pattern"], value["name"])

    def __str__(self) -> str:
        return f"{self.operation.value} on {self.pattern.value} {self.name!r}"


def is_super(principal: str, supers: frozenset[str] = frozenset()) -> bool:
    """A broker's own principal, the operator's, or one of ``supers``: allowed everything.

    >>> is_super("broker-3"), is_super("broker-x"), is_super("ops", frozenset({"ops"}))
    (True, False, True)
    >>> is_super("admin")
    True
    """
    return (principal in supers or principal == credentials.OPERATOR
            or BROKER_PRINCIPAL.fullmatch(principal) is not None)


def describe_resource(kind: str, name: str) -> str:
    return f"{kind} {name!r}"


class Authorizer:
    """The decision for ``rules`` (principal -> rules) and ``supers`` (allowed everything).

    Immutable: a change of rules builds a new Authorizer. Decisions are remembered, so a
    request costs one dict lookup once its principal, operation and resource were seen.
    """

    def __init__(self, rules: dict[str, list[Rule]] | None = None,
                 supers: frozenset[str] = frozenset()):
        self.rules = {principal: tuple(found) for principal, found in (rules or {}).items()}
        self.supers = frozenset(supers)
        self._anyone = self.rules.get(ANYONE, ())
        self._decided: dict[tuple, bool] = {}

    def _rules_of(self, principal: str) -> tuple[Rule, ...]:
        mine = self.rules.get(principal, ())
        return mine if principal == ANONYMOUS else mine + self._anyone

    def allows(self, principal: str, operation: Operation, kind: str, name: str) -> bool:
        key = (principal, operation, kind, name)
        decided = self._decided.get(key)
        if decided is None:
            decided = bool(principal) and (is_super(principal, self.supers) or any(
                rule.grants(operation, kind, name) for rule in self._rules_of(principal)))
            if len(self._decided) >= _CACHE_LIMIT:
                self._decided.clear()
            self._decided[key] = decided
        return decided

    def may_produce_somewhere(self, principal: str) -> bool:
        """Whether ``principal`` may produce to some topic: what Kafka asks of an idempotent
        producer's InitProducerId since KIP-679 (Write on any topic; sluice has no cluster
        IdempotentWrite right, a super principal stands for it).

        >>> rules = {"alice": [Rule("produce", "topic-prefix", "logs.")],
        ...          "bob": [Rule("consume", "topic", "t")], "*": [Rule("describe", "topic", "t")]}
        >>> a = Authorizer(rules)
        >>> [a.may_produce_somewhere(p) for p in ("alice", "bob", "broker-1", "", ANONYMOUS)]
        [True, False, True, False, False]
        >>> Authorizer({"*": [Rule("produce", "topic", "t")]}).may_produce_somewhere("bob")
        True
        """
        if not principal:
            return False
        return is_super(principal, self.supers) or any(
            rule.operation is Operation.PRODUCE for rule in self._rules_of(principal))

    def refusal(self, principal: str, operation: Operation, kind: str, name: str) -> str | None:
        """None when allowed; else the line that says what was refused to whom."""
        if self.allows(principal, operation, kind, name):
            return None
        who = f"principal {principal!r}" if principal else "an unauthenticated client"
        return (f"{who} may not {operation.value} on {describe_resource(kind, name)} (no "
                f"rule allows it: 'sluice acl add {principal or 'NAME'} {operation.value} "
                f"--{kind} {name}')")

    def check(self, principal: str, operation: Operation, kind: str, name: str) -> None:
        """Raise AuthorizationFailed, naming what was refused, unless allowed."""
        if not self.allows(principal, operation, kind, name):
            raise AuthorizationFailed(self.refusal(principal, operation, kind, name))
