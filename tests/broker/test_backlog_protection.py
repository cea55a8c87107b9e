"""Backlog protection against a real broker and ZooKeeper: a blocked group (its committed offset
stays at the log start) on topics with a 2 s retention and 1 KiB segments; retention and the
protections' checks run every 100 ms. Each policy shows its effect, and an unprotected group or
topic beside it keeps the plain retention. Every wait is on a condition."""
from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker import message, protocol
from broker.kafka.errors import THROTTLING_QUOTA_EXCEEDED, kafka_code
from cluster.observe import metrics
from cluster.observe.sampler import Sampler
from coordinator import backlog_protection, topics, zk as zkmod
from coordinator.backlog_protection import Protection
from coordinator.errors import BacklogQuotaExceeded
from coordinator.offsets import OffsetStore
from tests.helpers import BrokerProcess, RawClient, wait_for

PROTECTED, PLAIN = "protected", "plain"
SLOW, OTHER = "slow", "other"
VALUE = b"v" * 100                    # 109 bytes a message: 9 per 1 KiB segment


@pytest.fixture
def setup(zk, tmp_path):
    """A broker, both topics with one partition, groups SLOW and OTHER committed at 0 on both."""
    proc = BrokerProcess(zk, tmp_path, 0, cleaner_interval_ms=100, backlog_check_ms=100,
                         log={"segment_bytes": 1024, "visible_after_flush": False,
                              "retention_ms": 2000}).start()
    client = zkmod.connect(zk)
    for topic in (PROTECTED, PLAIN):
        topics.create(client, topic, 1)
    proc.wait_hosting(PROTECTED, 1)
    proc.wait_hosting(PLAIN, 1)
    for group in (SLOW, OTHER):
        OffsetStore(client, group).commit({(PROTECTED, 0): 0, (PLAIN, 0): 0})
    raw = RawClient(proc.endpoint)
    yield proc, client, raw
    raw.close()
    client.stop()
    assert proc.stop() == 0, proc.log_text()[-3000:]


def produce(raw, topic: str, count: int = 1) -> tuple[int, int]:
    """``count`` acks=1 produce requests of one message; the last one's offsets."""
    for _ in range(count):
        reply = raw.request(protocol.encode_produce(2, topic, 0, 1), message.encode(VALUE))
        offsets = protocol.decode_response(reply[0], protocol.PRODUCE_REPLY)[1]
    return offsets


def row(raw, topic: str) -> dict:
    reply = raw.request(protocol.encode_metadata(1))
    document = json.loads(protocol.decode_metadata_response(reply[0])[1])
    return next(r for r in document["partitions"] if r["topic"] == topic)


def protection(raw, group: str = SLOW) -> dict | None:
    return next((b for b in row(raw, PROTECTED)["backlog"] if b["group"] == group), None)


def plain_expired(raw):
    """The unprotected topic's first segment is gone: retention has run past 2 s."""
    return row(raw, PLAIN)["start_offset"] > 0


def test_warn_alerts_once_and_retention_deletes_as_usual(setup, zk):
    proc, client, raw = setup
    backlog_protection.protect(client, SLOW, PROTECTED, Protection("warn", min_seconds=60))
    produce(raw, PROTECTED, 20)                       # three segments: the first two sealed
    entry = wait_for(lambda: (p := protection(raw)) and p["at_risk"] and p, 20,
                     what="the group to be at risk")
    assert entry["policy"] == "warn" and entry["warnings"] == 1 and not entry["refusing"]
    assert entry["seconds_left"] <= 2
    assert [b["group"] for b in row(raw, PROTECTED)["backlog"]] == [SLOW]   # not OTHER
    wait_for(lambda: row(raw, PROTECTED)["start_offset"] > 0, 20,
             what="retention to delete the warned group's segment (warn does not hold)")
    assert protection(raw)["at_risk"] and protection(raw)["warnings"] == 1
    assert proc.log_text().count(f"BACKLOG AT RISK: group {SLOW} on {PROTECTED}/0") == 1

    sampler = Sampler(zk)
    try:
        snapshot = sampler.sample_once()
    finally:
        sampler.close()
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(
                   metrics.render(lambda: snapshot).decode()) for sample in family.samples}
    labels = (("group", SLOW), ("partition", "0"), ("topic", PROTECTED))
    assert samples[("sluice_backlog_at_risk", tuple(sorted(labels + (("policy", "warn"),))))] == 1
    assert samples[("sluice_backlog_warnings_total", labels)] == 1
    assert not any(name.startswith("sluice_backlog") and ("group", OTHER) in key
                   for name, key in samples)


def test_hold_keeps_the_segment_past_retention_until_the_group_commits(setup):
    proc, client, raw = setup
    backlog_protection.protect(client, SLOW, PROTECTED, Protection("hold", min_seconds=60))
    produce(raw, PROTECTED, 20)
    produce(raw, PLAIN, 20)
    wait_for(lambda: plain_expired(raw) and row(raw, PROTECTED)["retention_held_segments"], 20,
             what="retention to pass over both topics")
    held = row(raw, PROTECTED)
    assert held["start_offset"] == 0, "the hold kept the lagging group's first segment"
    assert held["segments"] >= 3 and protection(raw)["at_risk"]

    OffsetStore(client, SLOW).commit({(PROTECTED, 0): 1090})     # into the second segment
    start = wait_for(lambda: row(raw, PROTECTED)["start_offset"], 20,
                     what="retention to delete what the group has now consumed")
    assert 0 < start <= 1090
    assert protection(raw)["forced_segments"] == 0


def test_the_hold_cap_gives_way_and_says_so(setup):
    proc, client, raw = setup
    backlog_protection.protect(client, SLOW, PROTECTED,
                               Protection("hold", min_seconds=60, max_hold_bytes=1500))
    produce(raw, PROTECTED, 40)          # four sealed segments of 981 bytes and the active one
    # once all four expired, holding them from offset 0 would keep 3924 bytes; 1500 allows one
    wait_for(lambda: row(raw, PROTECTED)["start_offset"] == 3 * 981, 20,
             what="the cap to let three segments go")
    assert row(raw, PROTECTED)["segments"] == 2
    entry = protection(raw)
    assert entry["forced_segments"] == 3 and entry["committed"] == 0 and entry["at_risk"]
    assert f"of group {SLOW}'s unconsumed messages anyway" in proc.log_text()


def test_refuse_answers_a_typed_error_until_the_group_catches_up(setup):
    proc, client, raw = setup
    backlog_protection.protect(client, SLOW, PROTECTED, Protection("refuse", min_seconds=60))
    _, end = produce(raw, PROTECTED, 20)
    wait_for(lambda: (p := protection(raw)) and p["refusing"], 20, what="the refusal")

    reply = raw.request(protocol.encode_produce(3, PROTECTED, 0, 1), message.encode(VALUE))
    with pytest.raises(BacklogQuotaExceeded) as refused:
        protocol.decode_response(reply[0], protocol.PRODUCE_REPLY)
    assert refused.value.retriable and f"group {SLOW}" in str(refused.value)
    assert kafka_code(refused.value) == THROTTLING_QUOTA_EXCEEDED
    assert produce(raw, PLAIN)[1] > 0, "another topic's produce is fine"
    assert row(raw, PROTECTED)["end_offset"] == end, "nothing of the refused set was written"

    OffsetStore(client, SLOW).commit({(PROTECTED, 0): end})      # caught up
    wait_for(lambda: not protection(raw)["refusing"], 20, what="the refusal to lift")
    assert produce(raw, PROTECTED)[0] == end
