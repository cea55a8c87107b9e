"""``sluice acl add|remove|list`` against a real ZooKeeper, as a person runs them."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from coordinator.acl_store import AclStore
from coordinator.authorizer import Rule
from tests.helpers import ROOT


def sluice(zk, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.cli", "--zookeeper", zk, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_add_list_remove(zk, zk_client):
    added = sluice(zk, "acl", "add", "alice", "produce", "consume", "--topic", "orders")
    assert added.returncode == 0, added.stderr
    assert "added: alice may produce on topic 'orders'" in added.stderr
    again = sluice(zk, "acl", "add", "alice", "produce", "--topic", "orders")
    assert "unchanged" in again.stderr
    assert sluice(zk, "acl", "add", "*", "describe", "--topic-prefix", "").returncode == 0
    assert sluice(zk, "acl", "add", "bob", "consume", "--group", "billing").returncode == 0
    assert AclStore(zk_client).rules() == {
        "alice": (Rule("produce", "topic", "orders"), Rule("consume", "topic", "orders")),
        "*": (Rule("describe", "topic-prefix", ""),),
        "bob": (Rule("consume", "group", "billing"),)}

    listed = sluice(zk, "acl", "list", "--json")
    assert json.loads(listed.stdout) == [
        {"principal": "*", "operation": "describe", "pattern": "topic-prefix", "name": ""},
        {"principal": "alice", "operation": "produce", "pattern": "topic", "name": "orders"},
        {"principal": "alice", "operation": "consume", "pattern": "topic", "name": "orders"},
        {"principal": "bob", "operation": "consume", "pattern": "group", "name": "billing"}]
    only_bob = json.loads(sluice(zk, "acl", "list", "bob", "--json").stdout)
    assert [row["principal"] for row in only_bob] == ["bob"]
    table = sluice(zk, "acl", "list")
    assert "alice" in table.stdout and "billing" in table.stdout

    removed = sluice(zk, "acl", "remove", "alice", "produce", "--topic", "orders", "--json")
    assert json.loads(removed.stdout) == {"principal": "alice", "removed": [
        {"operation": "produce", "pattern": "topic", "name": "orders"}]}
    assert AclStore(zk_client).rules()["alice"] == (Rule("consume", "topic", "orders"),)


@pytest.mark.parametrize("args, code, words", [
    (["acl", "add", "alice", "read", "--topic", "t"], 2, ["invalid choice"]),
    (["acl", "add", "alice", "produce"], 2, ["--topic"]),
    (["acl", "add", "alice", "produce", "--topic", "t", "--group", "g"], 2, ["not allowed"]),
    (["acl", "add", "alice", "produce", "--group", "g"], 1, ["group rule", "produce"]),
    (["acl", "add", "a/b", "produce", "--topic", "t"], 1, ["invalid principal name"]),
    (["acl", "add", "alice", "produce", "--topic", "no way"], 1, ["invalid topic name"]),
])
def test_bad_arguments_are_one_line(zk, args, code, words):
    out = sluice(zk, *args)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code, out.stderr
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    for word in words:
        assert word in lines[0], lines[0]
