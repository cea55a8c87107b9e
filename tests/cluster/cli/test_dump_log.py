"""``sluice dump-log``: streamed rows, ``--summary``, ``--offset`` (a boundary or refused, naming
the boundaries around it), ``--max-messages``; damage judged as ``sluice scrub`` judges it."""
from __future__ import annotations

import doctest
import json

from broker import message, scrub
from cluster import cli
from cluster.cli import segment_commands

SEGMENT = "00000000000000001000.log"     # the segment starts at offset 1000


def segment(tmp_path, data: bytes):
    path = tmp_path / SEGMENT
    path.write_bytes(data)
    return path


def run(capsys, *argv):
    code = cli.main(["dump-log", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def damaged() -> tuple[bytes, list[int]]:
    """Five keyed messages, the third with a flipped value byte, then a torn tail."""
    entries = [message.encode(b"value-%d" % i, key=b"k%d" % i) for i in range(5)]
    starts = [sum(map(len, entries[:i])) for i in range(5)]
    data = bytearray(b"".join(entries))
    data[starts[3] - 1] ^= 0x20                       # the last byte of message 2's value
    return bytes(data) + entries[0][:7], starts


def test_doctests():
    assert doctest.testmod(segment_commands).failed == 0


def test_summary_counts_messages_crc_failures_and_the_torn_tail(tmp_path, capsys):
    data, starts = damaged()
    path = segment(tmp_path, data)
    code, out, err = run(capsys, path, "--summary", "--json")
    assert (code, err) == (0, "")
    summary = json.loads(out)
    assert summary["messages"] == 4
    assert summary["first_offset"] == 1000 and summary["last_offset"] == 1000 + starts[4]
    assert summary["crc_failures"] == 1
    assert summary["bad_ranges"] == [
        {"offset": 1000 + starts[2], "size": starts[3] - starts[2], "reason": "crc"},
        {"offset": 1000 + len(data) - 7, "size": 7, "reason": "truncated"}]
    assert summary["bytes"] == len(data) - 7 - (starts[3] - starts[2])
    # the same damage scrub finds
    report = scrub.scrub(scrub.BytesReader(data), len(data), last=True)
    assert (report.messages, [b.position for b in report.bad], report.torn_at) == \
        (4, [starts[2]], len(data) - 7)
    code, out, _ = run(capsys, path, "--summary")
    assert out.count("\n") == 1 and "4 message(s)" in out and "1 CRC failure(s)" in out


def test_rows_show_the_bad_message_and_the_torn_tail(tmp_path, capsys):
    data, starts = damaged()
    code, out, _ = run(capsys, segment(tmp_path, data))
    lines = out.splitlines()
    assert code == 0 and lines[0].endswith(f"({len(data)} bytes)")
    rows = [line.split() for line in lines[2:-1]]
    assert [row[0] for row in rows] == [str(1000 + s) for s in starts[:5]] + \
        [str(1000 + len(data) - 7)]
    assert rows[0][2:] == ["ok", "k0", "value-0"]
    assert rows[2][2:4] == ["BAD", "k2"]
    assert "truncated" in lines[-2]
    assert lines[-1] == "4 message(s) and 2 bad range(s) shown"


def test_offset_starts_at_a_boundary_and_max_messages_stops(tmp_path, capsys):
    entries = [message.encode(b"v%d" % i) for i in range(100)]
    path = segment(tmp_path, b"".join(entries))
    at = 1000 + sum(map(len, entries[:40]))
    code, out, _ = run(capsys, path, "--offset", at, "--max-messages", 3, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["value"] for r in rows] == ["v40", "v41", "v42"]
    assert rows[0]["offset"] == at and rows[1]["offset"] == rows[0]["next_offset"]
    code, out, _ = run(capsys, path, "--offset", at, "--summary", "--json")
    assert json.loads(out)["messages"] == 60 and json.loads(out)["first_offset"] == at


def test_an_offset_inside_a_message_is_refused_naming_the_boundaries(tmp_path, capsys):
    entries = [message.encode(b"v%d" % i) for i in range(10)]
    path = segment(tmp_path, b"".join(entries))
    before = 1000 + sum(map(len, entries[:4]))
    code, out, err = run(capsys, path, "--offset", before + 2)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert f"lies inside the message at {before}" in err
    assert f"the next one starts at {before + len(entries[4])}" in err
    code, _, err = run(capsys, path, "--offset", 10)
    assert code == 1 and "outside this segment" in err


def test_an_offset_past_damage_is_found_by_scrubs_walk(tmp_path, capsys):
    entries = [message.encode(b"v%d" % i) for i in range(10)]
    data = bytearray(b"".join(entries))
    data[len(entries[0]):len(entries[0]) + 4] = b"\xff\xff\xff\xff"     # message 1's size
    path = segment(tmp_path, bytes(data))
    at = 1000 + sum(map(len, entries[:5]))
    code, out, _ = run(capsys, path, "--offset", at, "--max-messages", 1, "--json")
    assert code == 0 and json.loads(out)["value"] == "v5"


def test_a_message_longer_than_a_chunk_and_a_kafka_record_are_shown(tmp_path, capsys):
    big = message.encode(b"x" * (segment_commands.CHUNK + 100), key=b"bigkey")
    record = message.encode_record(b"hello", b"rk", 1_700_000_000_000, [("h", b"v")])
    path = segment(tmp_path, message.encode(b"a") + big + record)
    code, out, _ = run(capsys, path, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["offset"] for r in rows] == [1000, 1010, 1010 + len(big)]
    assert (rows[1]["key"], rows[1]["value_bytes"]) == ("bigkey", segment_commands.CHUNK + 100)
    assert (rows[2]["magic"], rows[2]["key"], rows[2]["value"]) == (2, "rk", "hello")
    code, out, _ = run(capsys, path, "--summary", "--json")
    assert json.loads(out)["messages"] == 3 and json.loads(out)["bytes"] == len(path.read_bytes())


def test_good_runs_end_where_validate_set_stops():
    """dump-log's walk and the broker's check agree on every kind of damage."""
    entries = [message.encode(b"value-%d" % i, key=b"k%d" % i) for i in range(6)] + \
        [message.encode_record(b"r", b"k", 1, [("h", b"v")])]
    clean = b"".join(entries)
    for at in range(0, len(clean), 3):
        for flip in (0x01, 0x80):
            data = bytearray(clean)
            data[at] ^= flip
            assert segment_commands.good_run(bytes(data))[-1] == \
                message.valid_prefix(bytes(data))[0], (at, flip)
    assert segment_commands.good_run(clean)[-1] == len(clean)
