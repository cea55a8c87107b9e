"""``sluice groups migrate-offsets`` both ways keeps a group's place, and ``groups
list|describe|reset-offsets|delete`` and ``topics delete`` work on a log-store group, against a
real broker and ZooKeeper."""
from __future__ import annotations

import json

from kazoo.exceptions import NoNodeError

from clients import Consumer, Producer
from clients.brokers import BrokerPool
from clients.log_offsets import LogOffsetStore
from coordinator import paths
from coordinator.offsets import OffsetStore
from tests.cluster.cli.test_bad_arguments import one_line_error
from tests.cluster.cli.test_group_admin_commands import _Cli
from tests.helpers import BrokerProcess, create_topic, wait_for

FAST = dict(rebalance_backoff_ms=200, rebalance_max_tries=20, max_wait_ms=200,
            session_timeout_ms=4000, auto_commit_ms=None)


def _read_some(zk: str, count: int, **settings):
    """A member of group g reads ``count`` messages of t/0 and commits them; its first one."""
    with Consumer(["t"], "g", zookeeper=zk, **FAST, **settings) as consumer:
        got = []
        wait_for(lambda: got.extend(consumer.poll(200)) or len(got) >= count, 30,
                 what=f"{count} messages")
        consumer.commit({("t", 0): got[count - 1].next_offset})
        return got[0], got[count - 1].next_offset


def _zookeeper_offset(client, group="g"):
    try:
        return int(client.get(paths.offset(group, "t", 0))[0])
    except NoNodeError:
        return None


def test_migrate_both_ways_keeps_the_place(zk, zk_client, tmp_path, capsys):
    broker = BrokerProcess(zk, tmp_path, log={"flush_ms": 20}).start()
    pool = BrokerPool(zk)
    cli = _Cli(capsys, zk)
    try:
        create_topic(zk, "t", 1, [broker])
        with Producer(zk, acks=1) as producer:
            for i in range(12):
                producer.send("t", b"m%02d" % i, partition=0)
        _, place = _read_some(zk, 4, offset_store="zookeeper")
        assert _zookeeper_offset(zk_client) == place
        listed = json.loads(cli("groups", "list", "--json").stdout)
        assert [r["offset_store"] for r in listed if r["group"] == "g"] == ["zookeeper"]

        out = cli("groups", "migrate-offsets", "g", "--to", "log", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["moved"] == 1
        assert zk_client.get(paths.offset_store("g"))[0] == b"log"
        assert _zookeeper_offset(zk_client) is None, "the old copy is removed"
        assert LogOffsetStore(pool, "g").fetch("t", 0) == place
        described = json.loads(cli("groups", "describe", "g", "--interval", "0",
                                   "--json").stdout)
        assert [r["committed"] for r in described["partitions"]] == [place]

        first, moved_on = _read_some(zk, 4)        # the group goes on from the log
        assert first.offset == place, "in the log, the group resumes where it was"
        place = moved_on
        assert LogOffsetStore(pool, "g").fetch("t", 0) == place
        assert _zookeeper_offset(zk_client) is None, "a log-store group writes no offset node"

        out = cli("groups", "migrate-offsets", "g", "--to", "zookeeper", "--json")
        assert out.returncode == 0, out.stderr
        assert _zookeeper_offset(zk_client) == place
        assert LogOffsetStore(pool, "g").all_committed() == {}
        first, _ = _read_some(zk, 2)
        assert first.offset == place, "back in ZooKeeper, the group resumes where it was"
    finally:
        pool.close()
        broker.stop()


def test_live_members_are_refused_and_log_groups_reset_and_delete(zk, zk_client, tmp_path,
                                                                  capsys):
    broker = BrokerProcess(zk, tmp_path, log={"flush_ms": 20}).start()
    pool = BrokerPool(zk)
    cli = _Cli(capsys, zk)
    try:
        create_topic(zk, "t", 1, [broker])
        with Producer(zk, acks=1) as producer:
            for i in range(6):
                producer.send("t", b"m%d" % i, partition=0)
        with Consumer(["t"], "g", zookeeper=zk, **FAST) as live:
            wait_for(lambda: live.assignment(), 30, what="an assignment")
            one_line_error(cli("groups", "migrate-offsets", "g", "--to", "zookeeper"), 1,
                           "live member")
        _, place = _read_some(zk, 3)
        assert LogOffsetStore(pool, "g").fetch("t", 0) == place
        out = cli("groups", "reset-offsets", "g", "--topic", "t", "--to-earliest", "--json")
        assert out.returncode == 0, out.stderr
        assert LogOffsetStore(pool, "g").fetch("t", 0) == 0
        create_topic(zk, "u", 1, [broker])
        LogOffsetStore(pool, "g").commit({("u", 0): 0})
        out = cli("topics", "delete", "u", "--force", "--json")
        assert out.returncode == 0, out.stderr
        assert "g" in json.loads(out.stdout)["groups_offsets_deleted"]
        assert LogOffsetStore(pool, "g").all_committed() == {("t", 0): 0}, \
            "a deleted topic's commits go, the group's others stay"
        one_line_error(cli("topics", "delete", "__consumer_offsets", "--force"), 1,
                       "not deleted")
        out = cli("groups", "delete", "g")
        assert out.returncode == 0, out.stderr
        assert LogOffsetStore(pool, "g").all_committed() == {}
        assert not zk_client.exists(paths.group("g"))
        assert OffsetStore(zk_client, "g").all_committed() == {}
    finally:
        pool.close()
        broker.stop()
