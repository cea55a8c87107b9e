"""The rules in a real ZooKeeper: add, remove, list, and the watch that applies changes."""
from __future__ import annotations

import threading

import pytest

from coordinator import paths
from coordinator.acl_store import AclStore
from coordinator.authorizer import Rule
from coordinator.errors import InvalidArgument
from tests.helpers import wait_for

PRODUCE_ORDERS = Rule("produce", "topic", "orders")
CONSUME_LOGS = Rule("consume", "topic-prefix", "logs.")


def test_add_list_remove(zk_client):
    store = AclStore(zk_client)
    assert store.rules() == {}
    assert store.add("alice", [PRODUCE_ORDERS, CONSUME_LOGS]) == [PRODUCE_ORDERS, CONSUME_LOGS]
    assert store.add("alice", [PRODUCE_ORDERS]) == []          # already there: kept once
    assert store.add("*", [Rule("describe", "topic-prefix", "")])
    assert store.rules() == {"alice": (PRODUCE_ORDERS, CONSUME_LOGS),
                             "*": (Rule("describe", "topic-prefix", ""),)}
    assert store.remove("alice", [PRODUCE_ORDERS, Rule("admin", "topic", "x")]) == [
        PRODUCE_ORDERS]
    assert store.remove("alice", [CONSUME_LOGS]) == [CONSUME_LOGS]
    assert not zk_client.exists(paths.acl("alice"))            # no rules left: no node
    assert list(store.rules()) == ["*"]
    assert store.remove("nobody", [PRODUCE_ORDERS]) == []


def test_bad_principal_is_refused(zk_client):
    with pytest.raises(InvalidArgument):
        AclStore(zk_client).add("a/b", [PRODUCE_ORDERS])
    with pytest.raises(InvalidArgument):
        AclStore(zk_client).add("alice", [])


def test_concurrent_writers_lose_nothing(zk, zk_client):
    """Writers on the same principal race; each add is a compare-and-set, so all survive."""
    from coordinator import zk as zkconnect
    clients = [zkconnect.connect(zk) for _ in range(4)]
    try:
        threads = [threading.Thread(target=lambda c=c, i=i: [
            AclStore(c).add("alice", [Rule("produce", "topic", f"t{i}-{n}")]) for n in range(5)])
            for i, c in enumerate(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for client in clients:
            client.stop()
            client.close()
    assert len(AclStore(zk_client).rules()["alice"]) == 20


def test_watch_sees_every_change(zk, zk_client):
    from coordinator import zk as zkconnect
    seen = []
    watcher = zkconnect.connect(zk)
    try:
        AclStore(watcher).watch(seen.append)
        wait_for(lambda: seen and seen[-1] == {}, what="the first call, with no rules")
        store = AclStore(zk_client)
        store.add("alice", [PRODUCE_ORDERS])
        wait_for(lambda: seen[-1] == {"alice": (PRODUCE_ORDERS,)}, what="the added rule")
        store.remove("alice", [PRODUCE_ORDERS])
        wait_for(lambda: seen[-1] == {}, what="the removal")
    finally:
        watcher.stop()
        watcher.close()


def test_unreadable_rules_keep_the_last_good_ones(zk, zk_client):
    from coordinator import zk as zkconnect
    seen = []
    watcher = zkconnect.connect(zk)
    try:
        store = AclStore(zk_client)
        store.add("alice", [PRODUCE_ORDERS])
        AclStore(watcher).watch(seen.append)
        wait_for(lambda: seen and seen[-1] == {"alice": (PRODUCE_ORDERS,)}, what="the rules")
        zk_client.create(paths.acl("mallory"), b"not json")
        zk_client.set(paths.ACLS, b"bump")
        store.add("bob", [CONSUME_LOGS])        # a later change while mallory's node is bad
        zk_client.delete(paths.acl("mallory"))
        store.add("carol", [CONSUME_LOGS])
        wait_for(lambda: "carol" in seen[-1], what="the rules once readable again")
        assert all("mallory" not in rules for rules in seen)
        assert seen[-1]["alice"] == (PRODUCE_ORDERS,)
    finally:
        watcher.stop()
        watcher.close()
