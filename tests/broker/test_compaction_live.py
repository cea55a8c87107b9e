"""Log compaction in a real broker process, read by real clients over real sockets: the native
SimpleConsumer and group Consumer, and kafka-python through the Kafka listener. Segments are a
few kilobytes and the cleaner looks every 100 ms, so each test takes seconds."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from broker import protocol
from broker.cleaner import CRASH_ENV
from broker.segment import parse_segment_name
from clients import Consumer, Producer, SimpleConsumer
from coordinator import topics, zk as zkmod
from coordinator.errors import InvalidArgument
from tests.helpers import BrokerProcess, RawClient, create_topic, wait_for

kafka = pytest.importorskip("kafka")

TOPIC = "profiles"
SETTINGS = dict(kafka_port=0, cleaner_interval_ms=100,
                log={"segment_bytes": 2048, "visible_after_flush": False})


def row(proc: BrokerProcess) -> dict | None:
    raw = RawClient(proc.endpoint)
    try:
        reply = raw.request(protocol.encode_metadata(1), timeout=5)
    finally:
        raw.close()
    if reply is None:
        return None
    rows = json.loads(protocol.decode_metadata_response(reply[0])[1])["partitions"]
    return next((r for r in rows if r["topic"] == TOPIC and r["partition"] == 0), None)


def partition_dir(proc: BrokerProcess) -> Path:
    return proc.data_dir / f"broker-{proc.broker_id}" / TOPIC / "0"


def active_start(proc: BrokerProcess) -> int:
    return max(parse_segment_name(p.name) for p in partition_dir(proc).glob("*.log"))


def produce(zk: str, pairs) -> None:
    with Producer(zk, acks=1, batch_size=10, linger_ms=1) as producer:
        for key, value in pairs:
            producer.send(TOPIC, value, key=key, partition=0)


def read_native(zk: str, offset="earliest") -> list:
    """Every message from ``offset`` to the end the broker reports (the high watermark)."""
    got = []
    with SimpleConsumer(TOPIC, 0, offset, zookeeper=zk, timeout_ms=3000) as consumer:
        end = consumer.offset_of("latest")
        if consumer.position >= end:
            return got
        for m in consumer:
            got.append((m.offset, m.key, m.value))
            if m.next_offset >= end:
                break
    return got


def set_policy(zk: str, **config) -> None:
    client = zkmod.connect(zk)
    try:
        topics.configure(client, TOPIC, config)
    finally:
        client.stop()
        client.close()


def compact_and_wait(zk: str, proc: BrokerProcess, **config) -> dict:
    """Turn the topic's policy to compact; wait until a clean has covered every sealed
    segment."""
    set_policy(zk, **{"cleanup.policy": "compact", **config})
    active = active_start(proc)
    return wait_for(lambda: (r := row(proc)) and r.get("cleans", 0) >= 1
                    and r["clean_end"] == active and r, timeout=30,
                    what="a clean of every sealed segment")


def last_per_key(records, below: int) -> dict:
    latest = {}
    for offset, key, _ in records:
        if offset < below:
            latest[key] = offset
    return latest


@pytest.fixture
def broker(zk, tmp_path):
    started = []

    def start(**extra) -> BrokerProcess:
        proc = BrokerProcess(zk, tmp_path, 0, **{**SETTINGS, **extra}).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.alive():
            assert proc.stop() == 0, proc.log_text()[-3000:]


def test_a_compacted_topic_keeps_the_last_value_per_key_at_its_old_offset(zk, broker):
    proc = broker()
    create_topic(zk, TOPIC, 1, [proc])
    produce(zk, [(f"user-{i % 7}".encode(), f"v{i}".encode() * 5) for i in range(400)])
    before = read_native(zk)
    assert len(before) == 400
    compact_and_wait(zk, proc)
    active = active_start(proc)
    after = read_native(zk)
    by_offset = {offset: (key, value) for offset, key, value in before}
    assert all(by_offset[o] == (k, v) for o, k, v in after)       # offsets never move
    assert {o for o, _, _ in after if o < active} == set(last_per_key(before, active).values())
    assert [r for r in after if r[0] >= active] == [r for r in before if r[0] >= active]
    stats = row(proc)
    assert stats["size_bytes"] < stats["end_offset"] - stats["start_offset"]   # gaps hold none
    assert stats["cleaned_messages"] == len(before) - len(after)
    # a group consumer from the start reads the same messages across the gaps, and commits
    with Consumer([TOPIC], "readers", zk, auto_commit_ms=None) as consumer:
        got = []
        deadline = time.monotonic() + 20
        while len(got) < len(after) and time.monotonic() < deadline:
            got += [(m.offset, m.key, m.value) for m in consumer.poll(500)]
        assert got == after
    # a consumer starting at an offset the cleaner removed resumes at the next kept message
    removed = next(o for o, _, _ in before if o not in {r[0] for r in after})
    assert read_native(zk, removed)[0][0] == min(o for o, _, _ in after if o > removed)


def test_a_kafka_client_reads_a_compacted_log_across_the_gaps(zk, broker):
    proc = broker()
    create_topic(zk, TOPIC, 1, [proc])
    produce(zk, [(f"k{i % 5}".encode(), f"value-{i}".encode()) for i in range(300)])
    before = read_native(zk)
    compact_and_wait(zk, proc)
    after = read_native(zk)
    assert len(after) < len(before)
    bootstrap = proc.info["kafka_endpoint"]
    tp = kafka.TopicPartition(TOPIC, 0)
    consumer = kafka.KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                   consumer_timeout_ms=3000, enable_auto_commit=False)
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        got = [(r.offset, r.key, r.value) for r in consumer]
        assert got == after
        removed = next(o for o, _, _ in before if o not in {r[0] for r in after})
        consumer.seek(tp, removed)                 # into a gap: on to the next kept message
        first = next(iter(consumer))
        assert first.offset == min(o for o, _, _ in after if o > removed)
    finally:
        consumer.close()


def test_a_tombstone_goes_after_the_delete_retention(zk, broker):
    proc = broker()
    create_topic(zk, TOPIC, 1, [proc])
    producer = kafka.KafkaProducer(bootstrap_servers=proc.info["kafka_endpoint"], acks=1)
    try:
        producer.send(TOPIC, key=b"gone", value=b"first", partition=0).get(10)
        producer.send(TOPIC, key=b"gone", value=None, partition=0).get(10)
        for i in range(200):
            producer.send(TOPIC, key=f"k{i % 3}".encode(), value=b"x" * 40, partition=0)
        producer.flush(10)
    finally:
        producer.close()
    compact_and_wait(zk, proc, **{"delete.retention.ms": 3_600_000})
    kept = read_native(zk)
    assert [(k, v) for _, k, v in kept if k == b"gone"] == [(b"gone", None)]   # kept a while
    set_policy(zk, **{"delete.retention.ms": 1})
    wait_for(lambda: all(k != b"gone" for _, k, _ in read_native(zk)), timeout=30,
             what="the tombstone to go")
    assert [r for r in read_native(zk) if r[1] != b"gone"] == [r for r in kept if r[1] != b"gone"]


@pytest.mark.parametrize("crash_at", ["written", "pending", "renamed"])
def test_a_broker_killed_during_a_clean_restarts_with_the_old_or_the_new_segment(
        zk, broker, monkeypatch, crash_at):
    monkeypatch.setenv(CRASH_ENV, crash_at)     # the hook fires only once a clean runs
    crashing = broker()
    create_topic(zk, TOPIC, 1, [crashing])
    produce(zk, [(f"k{i % 4}".encode(), f"value-{i}".encode()) for i in range(300)])
    before = read_native(zk)
    set_policy(zk, **{"cleanup.policy": "compact"})
    wait_for(lambda: not crashing.alive(), timeout=30, what="the fault hook to end the broker")
    assert crashing.proc.returncode == 70
    monkeypatch.delenv(CRASH_ENV)
    restarted = broker()
    restarted.wait_hosting(TOPIC, 1)
    by_offset = {offset: (key, value) for offset, key, value in before}
    after = read_native(zk)
    assert all(by_offset[o] == (k, v) for o, k, v in after)   # never a mix: each offset holds
    assert {r[0] for r in after} <= set(by_offset)           # what it held, or nothing
    active = active_start(restarted)
    assert [r for r in after if r[0] >= active] == [r for r in before if r[0] >= active]
    wait_for(lambda: (r := row(restarted)) and r.get("cleans", 0) >= 1
             and r["clean_end"] == active, timeout=30, what="the clean after the restart")
    final = read_native(zk)
    assert {o for o, _, _ in final if o < active} == set(last_per_key(before, active).values())


def test_a_follower_rebuilt_from_a_compacted_leader_holds_the_same_offsets(zk, tmp_path):
    """The follower's disk is lost while its leader compacts; rebuilt by replica fetches from
    the compacted log, it holds the leader's kept messages at the same offsets, markers and
    all, and reopens so."""
    from broker.config import LogConfig
    from broker.log import Log
    from broker import message
    from coordinator import partition_state
    procs = {i: BrokerProcess(zk, tmp_path, i, **SETTINGS, replica_fetch_wait_max_ms=200,
                              leader_imbalance_check_ms=600_000).start() for i in range(2)}
    client = zkmod.connect(zk)
    try:
        topics.create(client, TOPIC, 1, replication_factor=2)
        for proc in procs.values():
            proc.wait_hosting(TOPIC, 1)
        set_policy(zk, **{"cleanup.policy": "compact"})
        leader = partition_state.read(client, TOPIC, 0)[0].leader
        follower = 1 - leader
        procs[follower].stop()
        produce(zk, [(f"k{i % 4}".encode(), f"value-{i}".encode()) for i in range(300)])
        active = active_start(procs[leader])
        wait_for(lambda: (r := row(procs[leader])) and r.get("cleans", 0) >= 1
                 and r["clean_end"] == active, timeout=30, what="the leader's clean")
        expected = read_native(zk)
        assert len(expected) < 300
        shutil.rmtree(partition_dir(procs[follower]))
        procs[follower].start()
        end = row(procs[leader])["end_offset"]
        wait_for(lambda: (r := row(procs[follower])) and r["end_offset"] == end, timeout=30,
                 what="the follower to catch up")
        assert procs[follower].stop() == 0
        assert list(partition_dir(procs[follower]).glob("*.gaps"))   # it copied gap markers
        log = Log(partition_dir(procs[follower]), LogConfig())
        try:
            copied, offset = [], log.start_offset
            while offset < log.end_offset:
                data, offset_end, _ = log.read_span(offset, 1 << 16)
                copied += [(m.offset, m.key, m.value)
                           for m in message.decode_set(data, TOPIC, 0, offset)]
                offset = offset_end
        finally:
            log.close()
        assert copied == expected
    finally:
        client.stop()
        client.close()
        for proc in procs.values():
            if proc.alive():
                proc.stop()


def test_a_restarted_broker_goes_on_from_the_cleaner_checkpoint(zk, broker):
    """What was clean before the restart is not read again: the broker reads its clean end
    from ``cleaner-offset-checkpoint``, so the log is not due and the cleaner reads nothing;
    new dirty bytes are cleaned from there on."""
    proc = broker()
    create_topic(zk, TOPIC, 1, [proc])
    produce(zk, [(f"user-{i % 7}".encode(), f"v{i}".encode() * 5) for i in range(400)])
    first = compact_and_wait(zk, proc)
    assert first["clean_read_bytes"] > 0
    checkpoint = proc.data_dir / f"broker-{proc.broker_id}" / "cleaner-offset-checkpoint"
    assert f"{TOPIC} 0 {first['clean_end']} -1" in checkpoint.read_text().splitlines()
    assert proc.stop() == 0
    restarted = broker()
    restarted.wait_hosting(TOPIC, 1)
    assert active_start(restarted) == first["clean_end"]     # nothing new is sealed
    again = wait_for(lambda: (r := row(restarted)) and r.get("clean_checks", 0) >= 5 and r,
                     what="five due checks of the restarted broker's cleaner")
    assert again["clean_end"] == first["clean_end"]
    assert (again["cleans"], again["clean_read_bytes"], again["cleaned_segments"]) == (0, 0, 0)
    produce(zk, [(f"user-{i % 7}".encode(), f"w{i}".encode() * 5) for i in range(400)])
    active = active_start(restarted)
    wait_for(lambda: (r := row(restarted)) and r["cleans"] >= 1 and r["clean_end"] == active,
             timeout=30, what="a clean of the new dirty bytes")


def test_a_corrupt_message_in_a_compacted_topic_leaves_its_log_uncleaned_and_served(zk, broker):
    proc = broker()
    create_topic(zk, TOPIC, 1, [proc])
    produce(zk, [(f"k{i % 5}".encode(), f"value-{i:04d}".encode()) for i in range(300)])
    before = read_native(zk)
    victim, _, value = before[10]
    first = partition_dir(proc) / f"{0:020d}.log"
    assert victim + len(value) < active_start(proc)
    with open(first, "r+b") as f:            # the last byte of the victim's value
        f.seek(before[11][0] - 1)
        f.write(b"\xff")
    files = {p.name: p.read_bytes() for p in partition_dir(proc).iterdir()}
    set_policy(zk, **{"cleanup.policy": "compact"})
    gave_up = wait_for(lambda: (r := row(proc)) and r.get("uncleanable") and r, timeout=30,
                       what="the cleaner to give the log up")
    assert f"(offset {victim})" in gave_up["uncleanable"]
    assert gave_up["cleans"] == 0 and gave_up["cleaned_segments"] == 0
    assert {p.name: p.read_bytes() for p in partition_dir(proc).iterdir()} == files
    assert read_native(zk) == [r for r in before if r[0] != victim]    # served, all but it
    raw = RawClient(proc.endpoint)
    try:
        meta = json.loads(protocol.decode_metadata_response(
            raw.request(protocol.encode_metadata(2))[0])[1])
    finally:
        raw.close()
    assert meta["errors"].get("uncleanable_log") == 1
    assert proc.log_text().count("uncleanable log") == 1


def test_a_topics_min_cleanable_dirty_ratio_overrides_the_brokers(zk, broker):
    """The broker's ratio is 1: after the first clean (all of it dirty) nothing is due again
    however much is written; the topic's 0.01 makes the new dirty bytes due at once."""
    proc = broker(log={**SETTINGS["log"], "min_cleanable_dirty_ratio": 1.0})
    create_topic(zk, TOPIC, 1, [proc])
    produce(zk, [(f"k{i % 5}".encode(), f"value-{i}".encode()) for i in range(200)])
    compact_and_wait(zk, proc)
    produce(zk, [(f"k{i % 5}".encode(), f"again-{i}".encode()) for i in range(200)])
    checks = row(proc)["clean_checks"]
    waited = wait_for(lambda: (r := row(proc)) and r["clean_checks"] >= checks + 5 and r,
                      what="five more due checks")
    assert waited["cleans"] == 1 and waited["clean_end"] < active_start(proc)
    set_policy(zk, **{"min.cleanable.dirty.ratio": 0.01})
    wait_for(lambda: (r := row(proc)) and r["cleans"] == 2, timeout=30,
             what="the clean the topic's ratio makes due")
    with pytest.raises(InvalidArgument, match="must be a number 0..1, not 1.5"):
        set_policy(zk, **{"min.cleanable.dirty.ratio": 1.5})
