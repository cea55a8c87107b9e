"""``sluice dump-log``: streamed rows, ``--summary``, ``--offset`` (a boundary or refused, naming
the boundaries around it), ``--max-messages``; damage judged as ``sluice scrub`` judges it."""
from __future__ import annotations

import doctest
import json

import pytest

from broker import gap_index, message, scrub
from broker.cleaner import LogCleaner
from broker.config import LogConfig
from broker.log import Log
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



def compacted(tmp_path):
    """A log cleaned by the cleaner's own code: every 7th message unkeyed (always kept), the
    others over 3 keys, so its first segment alternates kept messages and gap markers.
    Returns (that segment's path, the offsets written in it, the ones a fetch reads, its end
    offset)."""
    log = Log(tmp_path, LogConfig(segment_bytes=400, visible_after_flush=False,
                                  cleanup_policy="compact"))
    written = [log.append(message.encode(b"v%d" % i) if i % 7 == 0 else
                          message.encode(b"v%d" % i, key=b"k%d" % (i % 3)), 1)[0]
               for i in range(60)]
    cleaner = LogCleaner(1 << 30, on_error=lambda task, exc: pytest.fail(f"{task}: {exc}"))
    cleaner.clean(log, cleaner.state(log))
    end = log.segment_starts[1]
    kept, offset = [], 0
    while offset < end:                     # as a consumer reads it
        data, next_offset, _ = log.read_span(offset, 100, upto=end)
        kept += [m.offset for m in message.decode_set(data, "t", 0, offset)]
        offset = next_offset
    log.close()
    path = tmp_path / f"{0:020d}.log"
    assert gap_index.exists(tmp_path, 0) and 0 < len(kept) < len([o for o in written if o < end])
    return path, [o for o in written if o < end], kept, end


def markers_of(data: bytes) -> list[int]:
    """File positions of the gap markers of a whole valid set."""
    markers = []
    message.validate_set(data, scrub.ANY_SIZE, markers=markers)
    return markers


def test_a_compacted_segments_summary_counts_its_gaps_apart(tmp_path, capsys):
    path, _, kept, end = compacted(tmp_path)
    data = path.read_bytes()
    markers = markers_of(data)
    assert len(markers) > 2
    code, out, err = run(capsys, path, "--summary", "--json")
    assert (code, err) == (0, "")
    summary = json.loads(out)
    assert (summary["messages"], summary["first_offset"], summary["last_offset"],
            summary["next_offset"]) == (len(kept), kept[0], kept[-1], end)
    assert summary["gaps"] == len(markers) and summary["bad_ranges"] == []
    assert summary["bytes"] == len(data) - len(markers) * message.GAP_ENTRY
    assert summary["compacted_bytes"] == end - summary["bytes"]     # the segment starts at 0
    code, out, _ = run(capsys, path, "--summary")
    assert f"{len(markers)} gap(s) of {end - summary['bytes']} compacted bytes" in out
    assert f"offsets {kept[0]} to {kept[-1]}" in out and out.endswith(f"next offset {end}\n")
    at = kept[len(kept) // 2]                # from a kept message in the middle
    code, out, _ = run(capsys, path, "--offset", at, "--summary", "--json")
    summary = json.loads(out)
    assert (summary["messages"], summary["first_offset"], summary["next_offset"]) == \
        (len([o for o in kept if o >= at]), at, end)


def test_rows_of_a_compacted_segment_show_each_gap_and_the_kept_offsets(tmp_path, capsys):
    path, _, kept, end = compacted(tmp_path)
    code, out, _ = run(capsys, path, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["offset"] for r in rows if "gap_to" not in r] == kept
    for row, after in zip(rows, rows[1:]):
        assert row["next_offset"] == after["offset"]
    assert rows[-1]["next_offset"] == end
    code, out, _ = run(capsys, path)
    lines = out.splitlines()
    gaps = [line for line in lines if "[gap: compacted away up to offset" in line]
    assert len(gaps) == sum("gap_to" in r for r in rows)
    assert lines[-1] == f"{len(kept)} message(s), {len(gaps)} gap(s) and 0 bad range(s) shown"


@pytest.mark.parametrize("sidecar", ["complete", "missing", "pending"])
def test_offset_in_a_compacted_segment_starts_where_a_fetch_does(tmp_path, capsys, sidecar):
    """A kept offset starts at its message; a removed one at the marker of its gap (then the
    next kept message); inside a kept message it is refused naming the kept boundaries. The
    same with the sidecar gone or pending (the file's framing is walked)."""
    path, written, kept, end = compacted(tmp_path)
    if sidecar == "missing":
        gap_index.remove(tmp_path, 0)
    elif sidecar == "pending":
        gap_index.write_pending(tmp_path, 0)
    for offset in written:
        code, out, err = run(capsys, path, "--offset", offset, "--max-messages", 1, "--json")
        rows = [json.loads(line) for line in out.splitlines()]
        expected = next((o for o in kept if o >= offset), None)
        assert code == 0, (offset, err)
        assert [r["offset"] for r in rows if "gap_to" not in r] == \
            ([] if expected is None else [expected]), offset
        if offset in kept:
            assert rows[0]["offset"] == offset and "compacted away" not in err
        else:
            assert rows[0]["offset"] <= offset < rows[0]["gap_to"], offset
            assert f"offset {offset} was compacted away" in err
    inside = kept[-2] + 2
    code, out, err = run(capsys, path, "--offset", inside)
    assert (code, out) == (1, "")
    assert f"lies inside the message at {kept[-2]}; the next one starts at {kept[-1]}" in err
    code, _, err = run(capsys, path, "--offset", end + 1)
    assert code == 1 and f"holds offsets 0 to {end}" in err


def test_a_damaged_marker_is_a_bad_range_and_the_sidecar_keeps_the_offsets(tmp_path, capsys):
    path, _, kept, end = compacted(tmp_path)
    data = bytearray(path.read_bytes())
    marker = markers_of(bytes(data))[2]
    data[marker + message.GAP_ENTRY - 1] ^= 0x01        # its resume offset: the CRC fails
    path.write_bytes(bytes(data))
    report = scrub.scrub(scrub.BytesReader(data), len(data))
    assert [(b.position, b.size, b.reason) for b in report.bad] == \
        [(marker, message.GAP_ENTRY, "magic")]
    code, out, _ = run(capsys, path, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["offset"] for r in rows if "gap_to" not in r and "error" not in r] == kept
    assert [r["size"] for r in rows if "error" in r] == [message.GAP_ENTRY]
    code, out, _ = run(capsys, path, "--summary", "--json")
    summary = json.loads(out)
    assert (summary["messages"], summary["next_offset"]) == (len(kept), end)
    assert [b["reason"] for b in summary["bad_ranges"]] == ["magic"]


def scrub_prefix(data: bytes) -> int:
    """Bytes of whole valid entries, gap markers included, as scrub judges stored data."""
    try:
        scrub.validate_set(data, scrub.ANY_SIZE)
        return len(data)
    except message.InvalidMessage as bad:
        return bad.position


def test_good_runs_with_markers_end_where_scrub_stops():
    """A valid marker is good; a flipped one, or magic 3 on anything else, is damage."""
    entries = [message.encode(b"value-0", key=b"k0"), message.encode_gap(500),
               message.encode_record(b"r", b"k", 1, [("h", b"v")]), message.encode_gap(900),
               message.encode(b"v")]
    clean = b"".join(entries)
    gaps = []
    assert segment_commands.good_run(clean, gaps)[-1] == len(clean) and gaps == [1, 3]
    for at in range(len(clean)):
        for flip in (0x01, 0x80):
            data = bytearray(clean)
            data[at] ^= flip
            assert segment_commands.good_run(bytes(data), [])[-1] == \
                scrub_prefix(bytes(data)), (at, flip)


def test_scrub_names_a_bad_message_of_a_compacted_segment_by_its_offset(tmp_path, capsys):
    """``sluice scrub`` reports positions past gap markers as offsets, through the gap index."""
    partition = tmp_path / "broker-0" / "t" / "0"
    partition.mkdir(parents=True)
    path, _, kept, _ = compacted(partition)
    data = bytearray(path.read_bytes())
    victim = kept[-2]                           # a kept message after several markers
    position = gap_index.read(partition, 0, len(data)).position(victim, len(data))
    assert position < victim
    data[position + message.HEADER_SIZE] ^= 0x01
    path.write_bytes(bytes(data))
    code = cli.main(["--data-dir", str(tmp_path), "scrub", "--json"])
    found = json.loads(capsys.readouterr().out)["findings"]
    assert code == segment_commands.SCRUB_FOUND_CORRUPTION
    assert [(f["offset"], f["reason"]) for f in found] == [(victim, "crc")]
