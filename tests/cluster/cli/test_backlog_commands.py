"""``sluice groups protect|unprotect`` and the protections in ``groups describe``, against a real
broker and ZooKeeper (the brokers' side is tests/broker/test_backlog_protection.py)."""
from __future__ import annotations

import json

import pytest

from coordinator import backlog_protection, topics, zk as zkconnect
from coordinator.backlog_protection import Protection
from coordinator.offsets import OffsetStore
from tests.cluster.cli.test_group_admin_commands import _Cli
from tests.helpers import BrokerProcess


def test_protect_describe_unprotect_delete(zk, tmp_path, capsys):
    proc = BrokerProcess(zk, tmp_path, 0).start()
    client = zkconnect.connect(zk)
    sluice = _Cli(capsys, zk)
    try:
        topics.create(client, "t", 1)
        proc.wait_hosting("t", 1)
        OffsetStore(client, "g").commit({("t", 0): 0})
        done = sluice("groups", "protect", "g", "--topic", "t", "--policy", "hold",
                      "--min-seconds", "30", "--max-hold-bytes", "4096", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"group": "g", "topic": "t", "policy": "hold",
                                           "min_seconds": 30, "max_hold_bytes": 4096}
        assert backlog_protection.of_topic(client, "t") == {"g": Protection("hold", 30, 4096)}

        described = sluice("groups", "describe", "g", "--interval", "0", "--json")
        assert json.loads(described.stdout)["protections"] == [
            {"topic": "t", "policy": "hold", "min_seconds": 30, "max_hold_bytes": 4096}]
        table = sluice("groups", "describe", "g", "--interval", "0")
        assert "backlog protections" in table.stdout and "hold" in table.stdout

        unknown = sluice("groups", "protect", "g", "--topic", "nope", "--policy", "warn")
        assert unknown.returncode == 1 and "nope" in unknown.stderr
        with pytest.raises(SystemExit) as bad:      # the parser's refusal
            sluice("groups", "protect", "g", "--topic", "t", "--policy", "stop")
        assert bad.value.code == 2

        assert sluice("groups", "unprotect", "g", "--topic", "t").returncode == 0
        assert not client.exists("/config/backlog/t")
        again = sluice("groups", "unprotect", "g", "--topic", "t")
        assert again.returncode == 1 and "no backlog protection" in again.stderr

        sluice("groups", "protect", "g", "--topic", "t", "--policy", "warn")
        assert sluice("groups", "delete", "g").returncode == 0
        assert backlog_protection.of_group(client, "g") == {}
    finally:
        client.stop()
        assert proc.stop() == 0
