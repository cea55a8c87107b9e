"""What each request type needs (broker/authorization.py), decided without a broker."""
from __future__ import annotations

import pytest

from broker.authorization import REPLICATION, RequestAuthorizer, needs
from broker.protocol import Api, Request
from coordinator.authorizer import Operation, Rule
from coordinator.errors import AuthorizationFailed

PRODUCE = Request(Api.PRODUCE, 1, "orders", 0, acks=1)
PRODUCE_SETS = Request(Api.PRODUCE_SETS, 1, "orders", 0)
PRODUCE_SETS_ACKED = Request(Api.PRODUCE_SETS_ACKED, 1, "orders", 0, acks=1)
FETCH = Request(Api.FETCH, 1, "orders", 0)
REPLICA_FETCH = Request(Api.FETCH, 1, "orders", 0, replica_id=1)
OFFSETS = Request(Api.OFFSETS, 1, "orders", 0)
METADATA = Request(Api.METADATA, 1)
EPOCH = Request(Api.OFFSET_FOR_EPOCH, 1, "orders", 0)
BY_TIME = Request(Api.OFFSET_FOR_TIME, 1, "orders", 0, time=1000)
COMMIT = Request(Api.OFFSET_COMMIT, 1, group="g", entries=(("orders", 0, 42),))
COMMITTED = Request(Api.OFFSET_FETCH, 1, group="g", entries=(("orders", 0),))


def test_each_request_type_needs_its_operation():
    assert needs(PRODUCE) == (Operation.PRODUCE, "topic", "orders")
    assert needs(PRODUCE_SETS) == (Operation.PRODUCE, "topic", "orders")
    assert needs(PRODUCE_SETS_ACKED) == (Operation.PRODUCE, "topic", "orders")
    assert needs(FETCH) == (Operation.CONSUME, "topic", "orders")
    assert needs(OFFSETS) == (Operation.DESCRIBE, "topic", "orders")
    assert needs(BY_TIME) == (Operation.DESCRIBE, "topic", "orders")
    assert needs(REPLICA_FETCH) == REPLICATION
    assert needs(EPOCH) == REPLICATION
    assert needs(METADATA) is None
    assert needs(COMMIT) == (Operation.CONSUME, "group", "g")
    assert needs(COMMITTED) == (Operation.DESCRIBE, "group", "g")
    assert {api for api in Api} == {r.api for r in (PRODUCE, PRODUCE_SETS, PRODUCE_SETS_ACKED,
                                                FETCH, OFFSETS, METADATA, EPOCH, BY_TIME,
                                                COMMIT, COMMITTED)}


def test_group_offsets_need_the_groups_rules():
    rules = RequestAuthorizer(enabled=True)
    rules.rules_changed({"bob": [Rule("consume", "group", "g")],
                         "eve": [Rule("consume", "topic", "orders")]})
    rules.check("bob", COMMIT)
    rules.check("bob", COMMITTED)
    for request in (COMMIT, COMMITTED):
        with pytest.raises(AuthorizationFailed, match="on group 'g'"):
            rules.check("eve", request)


def test_security_off_allows_everything():
    off = RequestAuthorizer(enabled=False)
    for request in (PRODUCE, FETCH, REPLICA_FETCH, OFFSETS, METADATA, EPOCH):
        off.check("", request)
    assert off.may_produce("", "orders") is None and off.may_describe("", "orders")


def test_security_on_denies_by_default_until_a_rule_allows():
    on = RequestAuthorizer(enabled=True, supers=frozenset())
    for request in (PRODUCE, FETCH, REPLICA_FETCH, OFFSETS, EPOCH):
        with pytest.raises(AuthorizationFailed):
            on.check("alice", request)
        on.check("broker-1", request)
    on.check("alice", METADATA)
    with pytest.raises(AuthorizationFailed, match="unauthenticated"):
        on.check("", METADATA)
    assert "produce on topic 'orders'" in on.may_produce("alice", "orders")
    assert not on.may_describe("alice", "orders")

    on.rules_changed({"alice": (Rule("produce", "topic", "orders"),)})
    on.check("alice", PRODUCE)
    on.check("alice", OFFSETS)                 # produce implies describe
    assert on.may_produce("alice", "orders") is None and on.may_describe("alice", "orders")
    with pytest.raises(AuthorizationFailed, match="consume on topic 'orders'"):
        on.check("alice", FETCH)
    with pytest.raises(AuthorizationFailed, match="only brokers replicate"):
        on.check("alice", REPLICA_FETCH)       # no rule makes a client a replica

    on.rules_changed({})                       # the rule removed: refused again
    with pytest.raises(AuthorizationFailed):
        on.check("alice", PRODUCE)
