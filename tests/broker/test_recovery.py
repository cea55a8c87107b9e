"""Recovery on real files: a Log opened after a clean close or a crash, torn tails, corrupt
messages kept, gaps, files set aside, the start-up scrub of sealed segments."""
import doctest
import logging
import os

import pytest

from broker import exposed_end, message, recovery, scrub
from broker.config import LogConfig
from broker.log import Log
from broker.protocol import CorruptMessage, InvalidOffset, OffsetGap, OffsetOutOfRange
from broker.segment import segment_name
from tests.broker.logs import KIB, append_each, crash, flip_byte, make_log, msg, read_all


def test_the_layout_rule_and_its_worked_example():
    assert doctest.testmod(recovery).failed == 0
    assert recovery.layout([(0, 100), (100, 20)]) == ([0, 100], [], [])
    assert recovery.layout([(0, 100), (40, 80), (100, 10)]) == ([0, 100], [40], [])
    assert recovery.layout([(500, 10), (700, 1)]) == ([500, 700], [], [(510, 700)])


def test_the_worked_example_of_the_module_on_files(log_path):
    log_path.mkdir()
    (log_path / segment_name(0)).write_bytes(msg(0, 91))
    (log_path / segment_name(50)).write_bytes(b"x" * 10)
    (log_path / segment_name(100)).write_bytes(msg(1, 11))
    (log_path / segment_name(300)).write_bytes(msg(2, 20)[:5])
    (log_path / exposed_end.FILE_NAME).write_text("%020d\n" % 330)
    log = make_log(log_path)
    assert log.segment_starts == [0, 100, 300, 330]
    assert log.gaps == [(120, 300), (300, 330)]
    assert (log.end_offset, log.recovered_truncated_bytes) == (330, 5)
    assert (log_path / recovery.CORRUPT_DIR / segment_name(50)).exists()
    log.close()


def test_reopen_after_a_clean_close_continues(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(20)])
    starts, end = log.segment_starts, log.end_offset
    log.close()
    again = Log(log_path, LogConfig(segment_bytes=KIB))
    assert again.segment_starts == starts
    assert (again.end_offset, again.visible_end) == (end, end)
    assert again.recovered_truncated_bytes == 0
    assert again.append(msg(20), 1) == (end, end + 109)
    assert len(read_all(again)) == 20
    again.close()


def test_recovery_cuts_a_torn_tail(log_path, caplog):
    """An unexposed torn tail (acks=0, never flushed) is cut and its offsets are handed out
    again: nobody was told about them."""
    log = Log(log_path, LogConfig(flush_ms=60_000, flush_messages=1000))
    append_each(log, [msg(i) for i in range(10)])
    crash(log)
    os.truncate(log_path / segment_name(0), 10 * 109 - 7)
    with caplog.at_level(logging.WARNING, logger="broker.recovery"):
        again = Log(log_path, LogConfig())
    assert again.recovered_truncated_bytes == 102
    assert again.end_offset == again.visible_end == 9 * 109
    assert again.segment_starts == [0]
    assert (log_path / segment_name(0)).stat().st_size == 9 * 109
    assert [m.value[:6] for m in read_all(again)] == [b"%06d" % i for i in range(9)]
    assert any("recovery cut 102 bytes" in r.getMessage() for r in caplog.records)
    assert again.append(msg(9), 1) == (981, 1090)
    again.close()


def test_recovery_cuts_a_tail_shorter_than_a_header(log_path):
    log = make_log(log_path)
    append_each(log, [msg(i) for i in range(3)])
    log.close()
    with open(log_path / segment_name(0), "ab") as f:
        f.write(b"\x00\x00")
    again = make_log(log_path)
    assert again.recovered_truncated_bytes == 2
    assert again.end_offset == 327 and again.segment_starts == [0]
    again.close()


def test_a_cut_below_the_flushed_end_continues_at_the_exposed_end(log_path, caplog):
    """Hole 4: flushed (so fetched and committed past) messages cut by recovery. The log goes on
    at the highest offset it ever exposed, in a new segment; the cut range is a gap."""
    log = Log(log_path, LogConfig(flush_ms=60_000))
    append_each(log, [msg(i) for i in range(10)])
    log.flush()
    assert log.visible_end == 1090
    crash(log)
    flip_byte(log_path / segment_name(0), 9 * 109 + 50)
    with caplog.at_level(logging.WARNING, logger="broker.recovery"):
        again = Log(log_path, LogConfig(flush_ms=60_000))
    assert again.recovered_truncated_bytes == 109
    assert again.unclean_shutdown
    assert again.segment_starts == [0, 1090]
    assert again.end_offset == again.visible_end == 1090
    assert again.gaps == [(981, 1090)]
    assert again.size_bytes == 981
    with pytest.raises(OffsetGap) as info:
        again.read(981, 1000)
    assert info.value.resume_offset == 1090
    with pytest.raises(OffsetGap):
        again.read(1000, 1000)
    assert again.read(1090, 1000) == b""
    assert again.append(msg(10), 1) == (1090, 1199)
    assert again.read(0, 10_000)[:981] == (log_path / segment_name(0)).read_bytes()
    gap_lines = [r.getMessage() for r in caplog.records if "gap" in r.getMessage()]
    assert len(gap_lines) == 1 and "981" in gap_lines[0] and "1090" in gap_lines[0]
    cut_lines = [r.getMessage() for r in caplog.records if "recovery cut" in r.getMessage()]
    assert len(cut_lines) == 1 and "recovery cut 109 bytes" in cut_lines[0], \
        "the torn-segment drill reads the last 'recovery cut N bytes' line of a partition"
    again.flush()
    assert again.read(1090, 1000) == msg(10)
    again.close()
    third = Log(log_path, LogConfig())
    assert third.segment_starts == [0, 1090] and third.end_offset == 1199
    assert third.gaps == [(981, 1090)]
    third.close()


def test_a_clean_restart_leaves_no_gap(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(20)])
    starts, end = log.segment_starts, log.end_offset
    log.close()
    assert (log_path / recovery.CLEAN_FILE).exists()
    assert int((log_path / exposed_end.FILE_NAME).read_text()) == end
    again = make_log(log_path, segment_bytes=KIB)
    assert not again.unclean_shutdown
    assert not (log_path / recovery.CLEAN_FILE).exists(), "the marker goes at open"
    assert (again.segment_starts, again.end_offset, again.gaps) == (starts, end, [])
    assert again.append(msg(20), 1) == (end, end + 109)
    again.close()


def test_an_intact_unclean_restart_leaves_no_gap(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(20)])
    starts, end = log.segment_starts, log.end_offset
    crash(log)
    again = make_log(log_path, segment_bytes=KIB)
    assert again.unclean_shutdown
    assert (again.segment_starts, again.end_offset, again.gaps) == (starts, end, [])
    assert again.recovered_truncated_bytes == 0
    assert len(read_all(again)) == 20
    again.close()


def test_a_corrupt_message_inside_the_last_segment_survives_recovery(log_path, caplog):
    """Hole 5: a flipped byte with good messages after it is kept, not cut with them."""
    log = make_log(log_path, segment_bytes=KIB)
    offsets = append_each(log, [msg(i) for i in range(15)])
    end = log.end_offset
    assert log.segment_starts[-1] == 981
    crash(log)
    flip_byte(log_path / segment_name(981), offsets[12] - 981 + 50)
    with caplog.at_level(logging.WARNING, logger="broker.recovery"):
        again = make_log(log_path, segment_bytes=KIB)
    assert again.end_offset == end and again.recovered_truncated_bytes == 0
    assert again.corrupt_messages == 1
    assert any(f"corrupt message at offset {offsets[12]}" in r.getMessage()
               for r in caplog.records)
    before = again.read(offsets[10], 10_000)
    good = list(message.decode_set(bytes(before)[:offsets[12] - offsets[10]], "t", 0,
                                   offsets[10]))
    assert [m.value[:6] for m in good] == [b"000010", b"000011"]
    with pytest.raises(message.InvalidMessage):
        list(message.decode_set(before, "t", 0, offsets[10]))
    with pytest.raises(CorruptMessage, match=f"offset {offsets[12]}") as info:
        again.read(offsets[12], 10_000)
    assert info.value.resume_offset == offsets[13]
    after = list(message.decode_set(again.read(offsets[13], 10_000), "t", 0, offsets[13]))
    assert [m.value[:6] for m in after] == [b"000013", b"000014"]
    with pytest.raises(InvalidOffset) as inside:
        again.read(offsets[13] + 5, 100)
    assert f"{offsets[13]}" in str(inside.value) and f"{offsets[14]}" in str(inside.value)
    assert again.append(msg(15), 1) == (end, end + 109)
    again.close()


def test_a_flipped_size_field_is_resynced_past(log_path):
    log = make_log(log_path)
    offsets = append_each(log, [msg(i) for i in range(6)])
    end = log.end_offset
    crash(log)
    flip_byte(log_path / segment_name(0), offsets[2] + 3, 0x02)
    again = make_log(log_path)
    assert again.end_offset == end and again.corrupt_messages == 1
    assert [m.value[:6] for m in message.decode_set(again.read(0, offsets[2]), "t", 0, 0)] == [
        b"000000", b"000001"]
    with pytest.raises(CorruptMessage) as info:
        again.read(offsets[2], 1000)
    assert info.value.resume_offset == offsets[3]
    with pytest.raises(InvalidOffset, match="corrupt"):
        again.read(offsets[2] + 20, 1000)
    with pytest.raises(InvalidOffset) as inside:
        again.read(offsets[4] + 1, 1000)
    assert f"{offsets[4]}" in str(inside.value) and f"{offsets[5]}" in str(inside.value)
    assert len(again.read(offsets[3], 10_000)) == end - offsets[3]
    again.close()


@pytest.mark.parametrize("chunk", [9, 100, 109, 110, 500])
def test_recovery_in_small_chunks_handles_messages_across_chunk_edges(log_path, monkeypatch,
                                                                      chunk):
    monkeypatch.setattr(scrub, "CHUNK", chunk)
    log = make_log(log_path)
    sizes = [6, 300, 40, 1000, 7, 91, 100]
    offsets = append_each(log, [msg(i, size) for i, size in enumerate(sizes)])
    end = log.end_offset
    log.close()
    clean = make_log(log_path)
    assert clean.recovered_truncated_bytes == 0 and clean.end_offset == end
    assert clean.corrupt_messages == 0
    crash(clean)
    flip_byte(log_path / segment_name(0), offsets[4] + 9, 0x80)
    kept = make_log(log_path)
    assert kept.end_offset == end and kept.corrupt_messages == 1
    with pytest.raises(CorruptMessage) as info:
        kept.read(offsets[4], 10)
    assert info.value.resume_offset == offsets[5]
    crash(kept)
    os.truncate(log_path / segment_name(0), offsets[6] + 50)
    cut = make_log(log_path)
    assert cut.recovered_truncated_bytes == 50 and cut.corrupt_messages == 1
    assert cut.segment_starts == [0, end], "the torn message had been exposed"
    cut.close()


def test_recovery_only_walks_the_last_segment_and_makes_everything_visible(log_path):
    log = Log(log_path, LogConfig(segment_bytes=KIB))
    append_each(log, [msg(i) for i in range(12)])
    assert log.visible_end == 0
    log.close()
    again = Log(log_path, LogConfig(segment_bytes=KIB))
    assert again.visible_end == again.end_offset == 12 * 109
    again.close()


def test_gaps_between_segments_are_kept_and_read_as_gaps(log_path, caplog):
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(40)])
    starts = log.segment_starts
    assert starts == [0, 981, 1962, 2943, 3924]
    log.close()
    (log_path / segment_name(1962)).unlink()
    with caplog.at_level(logging.WARNING, logger="broker.recovery"):
        again = make_log(log_path, segment_bytes=KIB)
    assert again.segment_starts == [0, 981, 2943, 3924]
    assert again.gaps == [(1962, 2943)]
    assert again.end_offset == 40 * 109
    assert again.size_bytes == 40 * 109 - 981
    assert not (log_path / "corrupt").exists()
    assert any("gap" in r.getMessage() and "1962" in r.getMessage() for r in caplog.records)
    with pytest.raises(OffsetGap) as info:
        again.read(1962 + 109, 100)
    assert info.value.resume_offset == 2943
    assert len(read_all_across_gaps(again)) == 31
    again.close()


def read_all_across_gaps(log: Log) -> list[message.Message]:
    out = []
    offset = log.start_offset
    while offset < log.visible_end:
        try:
            chunk = log.read(offset, 4096)
        except OffsetGap as gap:
            offset = gap.resume_offset
            continue
        out.extend(message.decode_set(chunk, "t", 0, offset))
        offset += len(chunk)
    return out


def test_a_torn_sealed_segment_is_kept_and_its_bad_tail_skipped(log_path):
    """A crash after a roll but before the old segment reached the disk: the sealed segment's
    partial message reads as corrupt, resuming where the next segment starts."""
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(12)])
    crash(log)
    os.truncate(log_path / segment_name(0), 981 - 50)
    again = make_log(log_path, segment_bytes=KIB)
    assert again.segment_starts == [0, 981]
    assert again.gaps == [(931, 981)]
    assert len(again.read(0, 10_000)) == 8 * 109
    with pytest.raises(CorruptMessage) as info:
        again.read(8 * 109, 100)
    assert info.value.resume_offset == 981
    assert again.end_offset == 12 * 109
    again.close()


def test_an_overlapping_segment_is_set_aside(log_path, caplog):
    log_path.mkdir()
    (log_path / segment_name(0)).write_bytes(msg(0) + msg(1))
    (log_path / segment_name(109)).write_bytes(msg(5))
    (log_path / segment_name(218)).write_bytes(msg(2))
    with caplog.at_level(logging.WARNING, logger="broker.recovery"):
        log = make_log(log_path)
    assert log.segment_starts == [0, 218]
    assert (log_path / "corrupt" / segment_name(109)).read_bytes() == msg(5)
    assert any("overlap" in r.getMessage() for r in caplog.records)
    log.close()


def test_set_aside_never_overwrites_an_earlier_corrupt_file(log_path):
    (log_path / "corrupt").mkdir(parents=True)
    (log_path / "corrupt" / segment_name(50)).write_bytes(b"older")
    (log_path / segment_name(50)).write_bytes(b"newer")
    (log_path / segment_name(0)).write_bytes(msg(0))
    log = make_log(log_path)
    assert (log_path / "corrupt" / segment_name(50)).read_bytes() == b"older"
    assert (log_path / "corrupt" / (segment_name(50) + ".1")).read_bytes() == b"newer"
    assert log.end_offset == 109
    log.close()


def test_scrub_of_sealed_segments_reports_each_bad_message(log_path, caplog):
    log = make_log(log_path, segment_bytes=KIB)
    offsets = append_each(log, [msg(i) for i in range(30)])
    crash(log)
    flip_byte(log_path / segment_name(0), offsets[3] + 20)
    flip_byte(log_path / segment_name(981), offsets[10] - 981 + 20)
    again = make_log(log_path, segment_bytes=KIB)
    assert again.unclean_shutdown and again.scrub_state == "pending"
    assert again.corrupt_messages == 0, "recovery walks only the last segment"
    with caplog.at_level(logging.WARNING, logger="broker.recovery"):
        found = again.scrub_sealed()
    assert [(offset, bad.size, bad.reason) for offset, bad in found] == [
        (offsets[3], 109, "crc"), (offsets[10], 109, "crc")]
    assert again.corrupt_messages == 2 and again.scrub_state == "done"
    assert sum(f"corrupt message at offset {offsets[3]}" in r.getMessage()
               for r in caplog.records) == 1
    again.close()


def test_recovery_ignores_files_that_are_not_segments(log_path):
    log_path.mkdir()
    (log_path / "notes.log").write_bytes(b"not a segment")
    (log_path / segment_name(0)).write_bytes(msg(0) + msg(1))
    log = make_log(log_path)
    assert log.segment_starts == [0]
    assert log.end_offset == 218
    assert (log_path / "notes.log").read_bytes() == b"not a segment"
    log.close()


def test_a_log_may_start_at_a_later_offset(log_path):
    log_path.mkdir()
    (log_path / segment_name(7000)).write_bytes(msg(0))
    log = make_log(log_path)
    assert (log.start_offset, log.end_offset) == (7000, 7109)
    with pytest.raises(OffsetOutOfRange):
        log.read(0, 100)
    assert log.append(msg(1), 1) == (7109, 7218)
    log.close()


def test_a_new_log_is_not_an_unclean_shutdown(log_path):
    log = make_log(log_path)
    assert not log.unclean_shutdown and log.scrub_state == "not needed"
    log.close()
