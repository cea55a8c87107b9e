"""``sluice scrub`` on a real broker's data dir: CRC-checks every segment, reads only."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from broker import message, protocol
from coordinator import topics, zk as zkmod
from tests.helpers import ROOT, BrokerProcess, RawClient

SEGMENT_BYTES = 1024
VALUE = b"." * 100                       # 112-byte messages: 9 to a 1 KiB segment


def sluice(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def produce(raw, topic, partition, count):
    for i in range(count):
        reply = raw.request(protocol.encode_produce(1, topic, partition, 1),
                            message.encode(b"%03d" % i + VALUE))
        protocol.decode_response(reply[0], protocol.PRODUCE_REPLY)


@pytest.fixture
def broker(zk, tmp_path):
    proc = BrokerProcess(zk, tmp_path, 0, log={"segment_bytes": SEGMENT_BYTES,
                                               "visible_after_flush": False}).start()
    client = zkmod.connect(zk)
    topics.create(client, "clicks", 2)
    topics.create(client, "other", 1)
    client.stop()
    proc.wait_hosting("clicks", 2)
    proc.wait_hosting("other", 1)
    raw = RawClient(proc.endpoint)
    produce(raw, "clicks", 0, 20)
    produce(raw, "clicks", 1, 30)
    produce(raw, "other", 0, 5)
    raw.close()
    yield proc
    proc.stop()


def flip_sealed(tmp_path, message_index=4):
    """Flip a value byte of one message in clicks/1's first (sealed) segment."""
    path = tmp_path / "broker-0" / "clicks" / "1" / ("0" * 20 + ".log")
    data = bytearray(path.read_bytes())
    data[message_index * 112 + 40] ^= 0x10
    path.write_bytes(bytes(data))
    return message_index * 112


def digests(tmp_path):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((tmp_path / "broker-0").rglob("*")) if p.is_file()}


def test_a_clean_data_dir_exits_0(broker, tmp_path):
    assert broker.stop() == 0
    out = sluice("scrub", "--data-dir", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["clean"] and report["findings"] == []
    assert report["messages"] == 55 and report["segments"] >= 6


def test_a_flipped_byte_in_a_sealed_segment_is_found_by_offset(broker, tmp_path):
    assert broker.stop() == 0
    offset = flip_sealed(tmp_path)
    out = sluice("scrub", "--data-dir", str(tmp_path), "--json")
    assert out.returncode == 3, out.stderr
    report = json.loads(out.stdout)
    assert not report["clean"]
    assert report["findings"] == [{"broker": 0, "topic": "clicks", "partition": 1,
                                   "segment": "0" * 20 + ".log", "offset": offset,
                                   "size": 112, "reason": "crc"}]
    table = sluice("scrub", "--data-dir", str(tmp_path))
    assert table.returncode == 3
    assert f" {offset} " in table.stdout and "crc" in table.stdout and "clicks" in table.stdout
    assert sluice("scrub", "--data-dir", str(tmp_path), "--topic", "other").returncode == 0


def test_scrub_beside_a_running_broker_reads_only(broker, tmp_path):
    before = digests(tmp_path)
    out = sluice("scrub", "--data-dir", str(tmp_path), "--topic", "clicks", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["messages"] == 50
    assert digests(tmp_path) == before
    assert broker.alive()


def test_an_unknown_topic_or_an_empty_dir_is_one_line(broker, tmp_path):
    out = sluice("scrub", "--data-dir", str(tmp_path), "--topic", "nope")
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1 and "unknown topic nope" in out.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    out = sluice("scrub", "--data-dir", str(empty))
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert "no broker data" in out.stderr


def test_help_names_the_exit_codes():
    out = sluice("scrub", "--help")
    assert out.returncode == 0 and "3" in out.stdout and "corrupt" in out.stdout
