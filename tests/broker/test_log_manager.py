"""The LogManager's errors outside a request never end a broker's loop: they are logged,
counted, retried.

Each test provokes a real error in a real broker process: a ZooKeeper ACL that refuses the
placement refresh (the issue saw SessionExpiredError there; any ZooKeeper error takes the same
path), a segment that retention cannot delete. Before the fix each one ended the loop (the
broker process exited).
"""
from __future__ import annotations

import json
import os
import time

from kazoo.security import OPEN_ACL_UNSAFE, make_digest_acl

from broker import message, protocol
from coordinator import paths, topics, zk as zkmod
from tests.helpers import BrokerProcess, RawClient, wait_for

TOPIC = "events"


def admin_client(zk):
    client = zkmod.connect(zk)
    client.add_auth("digest", "admin:secret")
    return client


def errors_of(raw) -> dict | None:
    reply = raw.request(protocol.encode_metadata(1), timeout=2)
    if reply is None:
        return None
    return json.loads(protocol.decode_metadata_response(reply[0])[1])["errors"]


def counted_or_dead(proc, raw, name):
    """'dead' when the broker process is gone, 'counted' once METADATA counts ``name``."""
    def check():
        if not proc.alive():
            return "dead"
        errors = errors_of(raw)
        return "counted" if errors and errors.get(name) else None
    return check


def produce_one(raw, value: bytes, partition: int = 0) -> tuple[int, int]:
    reply = raw.request(protocol.encode_produce(2, TOPIC, partition, 1), message.encode(value))
    return protocol.decode_response(reply[0], protocol.PRODUCE_REPLY)[1]


def test_a_zookeeper_error_in_the_placement_refresh_is_retried(zk, tmp_path):
    admin = admin_client(zk)
    proc = BrokerProcess(zk, tmp_path, 0, log={"visible_after_flush": False}).start()
    other = BrokerProcess(zk, tmp_path, 1).start()
    raw = RawClient(proc.endpoint)
    try:
        topics.create(admin, TOPIC, 2)
        proc.wait_hosting(TOPIC, 1)
        mine = topics.get(admin, TOPIC).hosted_by(0)[0]
        produce_one(raw, b"before", mine)
        admin.set_acls(paths.TOPIC_CONFIG, [make_digest_acl("admin", "secret", all=True)])
        assert other.stop() == 0      # a registry change: broker 0 refreshes its placement
        state = wait_for(counted_or_dead(proc, raw, "placement_refresh_failed"), 30,
                         what="the failed placement refresh")
        assert state == "counted", proc.log_text()[-3000:]
        assert produce_one(raw, b"during", mine)[0] > 0, "the loop still serves"
        admin.set_acls(paths.TOPIC_CONFIG, OPEN_ACL_UNSAFE)
        topics.create(admin, "later", 2)
        proc.wait_hosting("later", 1)
        assert proc.alive()
    finally:
        raw.close()
        other.stop()
        admin.stop()
        assert proc.stop() == 0, proc.log_text()[-3000:]
    assert "placement refresh failed (NoAuthError" in proc.log_text()


def test_a_retention_error_is_retried(zk, tmp_path):
    proc = BrokerProcess(zk, tmp_path, 0, cleaner_interval_ms=100,
                         log={"segment_bytes": 1024, "visible_after_flush": False,
                              "retention_ms": 3600 * 1000}).start()
    client = zkmod.connect(zk)
    topics.create(client, TOPIC, 1)
    client.stop()
    proc.wait_hosting(TOPIC, 1)
    raw = RawClient(proc.endpoint)
    try:
        for i in range(20):
            produce_one(raw, b"%03d" % i + b"." * 100)
        directory = tmp_path / "broker-0" / TOPIC / "0"
        first = directory / ("0" * 20 + ".log")
        aside = directory / "first-aside"
        first.rename(aside)            # the broker's descriptor follows the file
        first.mkdir()                  # so unlinking the segment's path fails (EISDIR)
        old = time.time() - 7200
        os.utime(aside, (old, old))
        state = wait_for(counted_or_dead(proc, raw, "retention_failed"), 30,
                         what="the failed retention")
        assert state == "counted", proc.log_text()[-3000:]
        assert produce_one(raw, b"during")[0] > 0
        first.rmdir()
        aside.rename(first)

        def start_offset():
            reply = raw.request(protocol.encode_offsets(3, TOPIC, 0, protocol.EARLIEST))
            return protocol.decode_response(reply[0], protocol.OFFSETS_REPLY)[1][0]
        assert wait_for(start_offset, 30, what="retention to delete the old segment") > 0
    finally:
        raw.close()
        assert proc.stop() == 0, proc.log_text()[-3000:]
    assert "retention failed (StorageError" in proc.log_text()
