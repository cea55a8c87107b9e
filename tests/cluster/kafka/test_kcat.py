"""kcat (librdkafka's command-line client, Debian's package) produces to and consumes from a
sluice broker's Kafka listener: keys, values and the partition it was told, read back from
the beginning; and what a native sluice producer wrote, read by kcat."""
import shutil
import subprocess

import pytest

from broker import message, protocol
from tests.helpers import RawClient

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None,
                                reason="kcat is not installed (make test installs Debian's "
                                "kcat package)")

TOPIC = "lines"
SETTINGS = {"log": {"visible_after_flush": False}}


def kcat(*args, stdin=None):
    return subprocess.run(["kcat", *args], input=stdin, capture_output=True, timeout=60,
                          check=True).stdout


def test_kcat_produces_keyed_lines_and_reads_them_back_by_partition(kafka_broker):
    proc = kafka_broker(TOPIC, 2, **SETTINGS)
    bootstrap = proc.info["kafka_endpoint"]
    lines = [f"k{i % 5}:value {i}" for i in range(500)]
    for partition in (0, 1):
        kcat("-b", bootstrap, "-P", "-t", TOPIC, "-p", str(partition), "-K", ":",
             "-X", "acks=all", stdin="\n".join(lines).encode() + b"\n")
    for partition in (0, 1):
        out = kcat("-b", bootstrap, "-C", "-t", TOPIC, "-p", str(partition), "-o", "beginning",
                   "-e", "-f", "%k:%s\n")
        assert out.decode().splitlines() == lines


def test_kcat_reads_what_a_native_producer_wrote(kafka_broker):
    proc = kafka_broker(TOPIC, 1, **SETTINGS)
    raw = RawClient(proc.endpoint)
    try:
        data = message.encode_set([(b"n1", b"native one"), (None, b"native two")])
        reply = raw.request(protocol.encode_produce(1, TOPIC, 0, 1), data)
        protocol.decode_response(reply[0], protocol.PRODUCE_REPLY)
    finally:
        raw.close()
    out = kcat("-b", proc.info["kafka_endpoint"], "-C", "-t", TOPIC, "-p", "0", "-o",
               "beginning", "-e", "-f", "%k|%s|%o\n", "-Z")
    rows = [line.split("|") for line in out.decode().splitlines()]
    assert [(k, v) for k, v, _ in rows] == [("n1", "native one"), ("NULL", "native two")]
    assert [int(o) for _, _, o in rows] == [0, 4 + 5 + 5 + 2 + 10]
