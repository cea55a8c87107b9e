"""The pure authorizer: the module docstring's worked examples, and each rule of the table."""
from __future__ import annotations

import pytest

from coordinator.authorizer import GROUP, TOPIC, Authorizer, Operation, Rule
from coordinator.errors import InvalidArgument

P, C, D, A = Operation.PRODUCE, Operation.CONSUME, Operation.DESCRIBE, Operation.ADMIN

EXAMPLE = Authorizer({
    "alice": [Rule("produce", "topic", "orders"), Rule("consume", "topic-prefix", "logs.")],
    "*": [Rule("describe", "topic-prefix", "")],
    "bob": [Rule("consume", "group", "billing")],
    "carol": [Rule("consume", "group-prefix", "etl.")],
})


@pytest.mark.parametrize("principal, operation, kind, name, allowed", [
    ("alice", P, TOPIC, "orders", True),
    ("alice", D, TOPIC, "orders", True),
    ("alice", C, TOPIC, "orders", False),
    ("alice", C, TOPIC, "logs.web", True),
    ("alice", C, TOPIC, "logsweb", False),
    ("bob", D, TOPIC, "anything", True),
    ("bob", C, GROUP, "billing", True),
    ("bob", C, TOPIC, "billing", False),
    ("carol", P, TOPIC, "orders", False),
    ("carol", C, GROUP, "etl.daily", True),
    ("carol", C, GROUP, "etl", False),
    ("carol", C, TOPIC, "etl.daily", False),
])
def test_worked_examples(principal, operation, kind, name, allowed):
    assert EXAMPLE.allows(principal, operation, kind, name) is allowed
    # the same question again comes from the decision cache, with the same answer
    assert EXAMPLE.allows(principal, operation, kind, name) is allowed


def test_no_rules_denies_everything_but_supers():
    authorizer = Authorizer({}, supers=frozenset({"ops"}))
    for operation in Operation:
        assert not authorizer.allows("alice", operation, TOPIC, "t")
        assert not authorizer.allows("", operation, TOPIC, "t")
        assert authorizer.allows("ops", operation, TOPIC, "t")
        assert authorizer.allows("broker-0", operation, GROUP, "g")
        assert authorizer.allows("broker-12", operation, TOPIC, "t")
        assert not authorizer.allows("broker-", operation, TOPIC, "t")
        assert not authorizer.allows("xbroker-1", operation, TOPIC, "t")


@pytest.mark.parametrize("granted, asked, allowed", [
    (P, D, True), (C, D, True), (A, D, True), (D, D, True),
    (A, P, False), (A, C, False), (P, C, False), (C, P, False), (D, P, False), (D, C, False),
])
def test_implications(granted, asked, allowed):
    authorizer = Authorizer({"u": [Rule(granted, "topic", "t")]})
    assert authorizer.allows("u", asked, TOPIC, "t") is allowed


def test_group_rules_do_not_cover_topics_and_topic_rules_do_not_cover_groups():
    authorizer = Authorizer({"u": [Rule("consume", "group", "g"),
                                   Rule("consume", "topic-prefix", "")]})
    assert authorizer.allows("u", C, GROUP, "g")
    assert not authorizer.allows("u", C, GROUP, "h")
    assert authorizer.allows("u", C, TOPIC, "anything")
    assert not Authorizer({"u": [Rule("consume", "topic-prefix", "")]}).allows(
        "u", C, GROUP, "g")


def test_refusal_names_principal_operation_and_resource():
    line = EXAMPLE.refusal("carol", P, TOPIC, "orders")
    assert "'carol'" in line and "produce" in line and "topic 'orders'" in line
    assert EXAMPLE.refusal("alice", P, TOPIC, "orders") is None
    assert "unauthenticated" in EXAMPLE.refusal("", C, GROUP, "g")
    assert not EXAMPLE.allows("", D, TOPIC, "anything")     # '*' is the authenticated ones


@pytest.mark.parametrize("bad", [
    ("read", "topic", "t"), ("produce", "queue", "t"), ("produce", "topic", ""),
    ("consume", "group", ""), ("produce", "topic", 7), ("produce", "group", "g"),
    ("admin", "group", "g"), ("produce", "topic", "a/b"), ("consume", "topic-prefix", "x y"),
    ("produce", "group-prefix", "g"), ("consume", "group-prefix", "a/b"),
])
def test_bad_rules_are_refused(bad):
    with pytest.raises(InvalidArgument):
        Rule(*bad)


def test_rules_round_trip_through_json():
    for rule in [Rule("admin", "topic-prefix", ""), Rule("consume", "group", "g")]:
        assert Rule.from_json(rule.to_json()) == rule
    with pytest.raises(InvalidArgument):
        Rule.from_json({"operation": "produce", "pattern": "topic"})


def test_check_raises_the_typed_error():
    from coordinator.errors import AuthorizationFailed, ErrorCode
    EXAMPLE.check("alice", P, TOPIC, "orders")
    with pytest.raises(AuthorizationFailed) as refused:
        EXAMPLE.check("alice", C, TOPIC, "orders")
    assert refused.value.code is ErrorCode.AUTHORIZATION_FAILED
    assert not refused.value.retriable
    assert "consume on topic 'orders'" in str(refused.value)


def test_the_zookeeper_side_checks_doctests():
    """coordinator/access.py's pure part: who may change the allow list and the rules."""
    import doctest
    from coordinator import access
    assert doctest.testmod(access).failed == 0


def test_the_authorizer_doctests():
    """may_produce_somewhere (an idempotent producer's InitProducerId) and Rule.grants."""
    import doctest
    from coordinator import authorizer
    assert doctest.testmod(authorizer).failed == 0


def test_an_idempotent_producer_id_needs_a_produce_rule_somewhere():
    assert EXAMPLE.may_produce_somewhere("alice")          # produce on orders
    assert not EXAMPLE.may_produce_somewhere("bob")        # consume and * describe only
    assert Authorizer({"*": [Rule("produce", "topic-prefix", "")]}).may_produce_somewhere("x")
    assert Authorizer({}, supers=frozenset({"ops"})).may_produce_somewhere("ops")


def test_anonymous_has_only_the_rules_that_name_it():
    """A Kafka client on a listener without SASL is ANONYMOUS: ``*`` (every authenticated
    principal) does not cover it; a rule naming ANONYMOUS does."""
    from coordinator.authorizer import ANONYMOUS
    rules = Authorizer({"*": [Rule("produce", "topic", "t")],
                        ANONYMOUS: [Rule("consume", "topic", "open")]})
    assert rules.allows("alice", P, TOPIC, "t")
    assert not rules.allows(ANONYMOUS, P, TOPIC, "t")
    assert not rules.may_produce_somewhere(ANONYMOUS)
    assert rules.allows(ANONYMOUS, C, TOPIC, "open")
    assert not rules.allows(ANONYMOUS, C, TOPIC, "t")


def test_no_key_may_take_the_anonymous_principal():
    from coordinator import credentials
    with pytest.raises(InvalidArgument):
        credentials.create(credentials.ANONYMOUS)
