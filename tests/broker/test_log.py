"""The Log on real files: offsets, rolling, reads, visibility, flush, recovery, retention."""
import errno
import logging
import os
import threading
import time

import pytest

from broker import log as log_module
from broker import exposed_end, message, recovery, scrub
from broker import segment as segment_module
from broker.config import LogConfig
from broker.log import Log
from broker.protocol import (CorruptMessage, InvalidOffset, OffsetGap, OffsetOutOfRange,
                             StorageError)
from broker.segment import find_segment, segment_name

KIB = 1024


def msg(i: int, size: int = 100) -> bytes:
    """One unkeyed message with a ``size``-byte value: 4 + 5 + size bytes on disk."""
    return message.encode(b"%06d" % i + b"." * (size - 6))


def make_log(path, **settings) -> Log:
    settings.setdefault("visible_after_flush", False)
    return Log(path, LogConfig(**settings))


def append_each(log: Log, messages: list[bytes]) -> list[int]:
    """Append one set per message; return each message's offset."""
    return [log.append(m, 1)[0] for m in messages]


def read_all(log: Log, max_bytes: int = 4096) -> list[message.Message]:
    out = []
    offset = log.start_offset
    while offset < log.visible_end:
        chunk = log.read(offset, max_bytes)
        assert chunk, f"empty read at {offset} below the visible end {log.visible_end}"
        out.extend(message.decode_set(chunk, "t", 0, offset))
        offset += len(chunk)
    return out


def files(path) -> list[str]:
    return sorted(p.name for p in path.glob("*.log"))


@pytest.fixture
def log_path(tmp_path):
    return tmp_path / "topic-0"


def test_a_new_log_is_one_empty_segment_at_offset_zero(log_path):
    log = make_log(log_path)
    assert files(log_path) == ["00000000000000000000.log"]
    assert (log.start_offset, log.end_offset, log.visible_end) == (0, 0, 0)
    assert log.segment_starts == [0]
    assert (log.segment_count, log.size_bytes) == (1, 0)
    assert log.read(0, 100) == b""
    log.close()


def test_offsets_are_byte_positions(log_path):
    log = make_log(log_path)
    first = msg(0, 100) + msg(1, 20) + msg(2, 6)
    assert [len(m) for m in (msg(0, 100), msg(1, 20), msg(2, 6))] == [109, 29, 15]
    assert log.append(first, 3) == (0, 153)
    assert log.append(msg(3, 50), 1) == (153, 153 + 4 + 55)
    got = read_all(log)
    assert [m.offset for m in got] == [0, 109, 138, 153]
    for m in got:
        size = message.MIN_SIZE + len(m.value)
        assert m.next_offset == m.offset + 4 + size
    assert [m.value[:6] for m in got] == [b"000000", b"000001", b"000002", b"000003"]
    assert log.end_offset == log.size_bytes == 212
    log.close()


def test_append_accepts_any_buffer(log_path):
    log = make_log(log_path)
    log.append(bytearray(msg(0)), 1)
    log.append(memoryview(msg(1)), 1)
    assert [m.value[:6] for m in read_all(log)] == [b"000000", b"000001"]
    with pytest.raises(ValueError):
        log.append(b"", 0)
    log.close()


def test_rolls_at_segment_bytes_and_names_segments_by_start_offset(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    offsets = append_each(log, [msg(i) for i in range(25)])
    # 109-byte messages: 9 fit in 1024 bytes (981), the 10th would make 1090.
    assert log.segment_starts == [0, 981, 1962]
    assert files(log_path) == [segment_name(s) for s in (0, 981, 1962)]
    assert [(log_path / segment_name(s)).stat().st_size for s in (0, 981)] == [981, 981]
    assert offsets[9] == 981 and offsets[18] == 1962
    assert log.end_offset == 25 * 109
    log.close()


def test_a_set_that_exactly_fills_the_segment_does_not_roll(log_path):
    log = make_log(log_path, segment_bytes=2 * 109)
    log.append(msg(0), 1)
    log.append(msg(1), 1)
    assert log.segment_starts == [0]
    log.append(msg(2), 1)
    assert log.segment_starts == [0, 218]
    log.close()


def test_a_set_bigger_than_a_segment_gets_a_segment_of_its_own(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    log.append(msg(0), 1)
    big = b"".join(msg(i) for i in range(1, 21))
    assert log.append(big, 20) == (109, 109 + 20 * 109)
    log.append(msg(21), 1)
    assert log.segment_starts == [0, 109, 21 * 109]
    assert len(read_all(log, max_bytes=10 * KIB)) == 22
    log.close()


def test_an_empty_active_segment_takes_a_big_set_without_rolling(log_path):
    log = make_log(log_path, segment_bytes=100)
    log.append(b"".join(msg(i) for i in range(3)), 3)
    assert log.segment_starts == [0]
    log.close()


def test_binary_search_finds_every_message_in_its_segment(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    offsets = append_each(log, [msg(i, 30 + 7 * i) for i in range(40)])
    starts = log.segment_starts
    assert len(starts) > 3
    for i, offset in enumerate(offsets):
        index = find_segment(starts, offset)
        assert starts[index] <= offset
        assert index == len(starts) - 1 or offset < starts[index + 1]
        first = next(message.decode_set(log.read(offset, 1), "t", 0, offset))
        assert first.offset == offset
        assert first.value.startswith(b"%06d" % i)
    log.close()


def test_read_is_cut_back_to_whole_messages(log_path):
    log = make_log(log_path)
    append_each(log, [msg(i) for i in range(5)])
    assert len(log.read(0, 250)) == 218
    assert len(log.read(0, 218)) == 218
    assert len(log.read(0, 217)) == 109
    assert len(log.read(109, 10_000)) == 4 * 109
    log.close()


def test_read_returns_a_first_message_bigger_than_max_bytes_whole(log_path):
    log = make_log(log_path)
    log.append(msg(0, 5000), 1)
    log.append(msg(1), 1)
    for max_bytes in (0, 1, 3, 4, 9, 100, 5008):
        data = log.read(0, max_bytes)
        assert len(data) == 5009
        assert message.check_entry(data) == 5009
    assert len(log.read(0, 5009 + 109)) == 5009 + 109
    log.close()


def test_read_never_returns_a_partial_message(log_path):
    log = make_log(log_path)
    sizes = [6, 40, 200, 7, 90, 300, 12, 64]
    offsets = append_each(log, [msg(i, size) for i, size in enumerate(sizes)])
    ends = set(offsets[1:]) | {log.end_offset}
    for offset in offsets:
        for max_bytes in range(0, log.end_offset - offset + 20):
            data = log.read(offset, max_bytes)
            assert offset + len(data) in ends
            assert message.valid_prefix(data) == (len(data), len(list(
                message.decode_set(data, "t", 0, offset))))
            assert len(data) <= max_bytes or message.check_entry(data) == len(data)
    log.close()


def test_a_read_stops_at_the_segment_end_and_the_next_continues(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(20)])
    assert log.segment_starts[:2] == [0, 981]
    first = log.read(8 * 109, 100 * KIB)
    assert len(first) == 109
    second = log.read(981, 100 * KIB)
    assert len(second) == 981
    assert next(message.decode_set(second, "t", 0, 981)).value.startswith(b"000009")
    values = [m.value[:6] for m in read_all(log, max_bytes=100 * KIB)]
    assert values == [b"%06d" % i for i in range(20)]
    log.close()


def test_offset_out_of_range_below_start_and_beyond_end(log_path):
    log = make_log(log_path)
    append_each(log, [msg(i) for i in range(3)])
    with pytest.raises(OffsetOutOfRange, match=r"0\.\.327"):
        log.read(328, 100)
    with pytest.raises(OffsetOutOfRange):
        log.read(10 ** 12, 100)
    with pytest.raises(OffsetOutOfRange):
        log.read(-1, 100)
    assert log.read(327, 100) == b""
    log.close()


def test_invalid_offset_inside_a_message(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    offsets = append_each(log, [msg(i, 20 + 13 * i) for i in range(12)])
    starts = set(offsets)
    assert len(log.segment_starts) > 1
    bounds = sorted(starts | {log.end_offset})
    checked = 0
    for offset in range(log.end_offset):
        if offset in starts:
            assert log.read(offset, 1)
            continue
        with pytest.raises(InvalidOffset, match=f"offset {offset} is not the start") as info:
            log.read(offset, 1000)
        after = next(b for b in bounds if b > offset)
        before = bounds[bounds.index(after) - 1]
        assert f"inside the message at {before}" in str(info.value)
        assert f"next one starts at {after}" in str(info.value)
        checked += 1
    assert checked == log.end_offset - len(offsets)
    log.close()


def test_messages_become_visible_only_after_a_flush_by_default(log_path):
    log = Log(log_path, LogConfig(flush_messages=1000, flush_ms=60_000))
    assert log.config.visible_after_flush
    log.append(msg(0), 1)
    log.append(msg(1), 1)
    assert (log.end_offset, log.visible_end) == (218, 0)
    assert log.read(0, 1000) == b""
    with pytest.raises(OffsetOutOfRange):
        log.read(109, 1000)
    log.flush()
    assert log.visible_end == 218
    assert len(log.read(0, 1000)) == 218
    log.append(msg(2), 1)
    assert log.read(218, 1000) == b""
    assert len(log.read(0, 1000)) == 218
    log.close()


def test_visible_immediately_when_configured(log_path):
    log = make_log(log_path, visible_after_flush=False)
    log.append(msg(0), 1)
    assert log.visible_end == 109
    assert len(log.read(0, 1000)) == 109
    assert log.flushed_end == 0
    log.close()


def test_flush_due_by_count(log_path):
    log = make_log(log_path, flush_messages=3, flush_ms=60_000)
    now = time.monotonic()
    log.append(msg(0) + msg(1), 2)
    assert not log.flush_due(now)
    log.append(msg(2), 1)
    assert log.flush_due(now)
    log.flush()
    assert not log.flush_due(time.monotonic())
    assert log.flush_count == 1
    log.close()


def test_flush_due_by_time(log_path):
    log = make_log(log_path, flush_messages=1000, flush_ms=200)
    before = time.monotonic()
    log.append(msg(0), 1)
    after = time.monotonic()
    assert not log.flush_due(before + 0.1)
    assert log.flush_due(after + 0.2)
    assert 0 < log.seconds_until_flush(before) <= 0.2 + (after - before)
    log.flush()
    assert not log.flush_due(after + 100)
    assert log.seconds_until_flush(after) is None
    log.close()


def test_flush_without_new_data_does_not_fsync(log_path, monkeypatch):
    log = make_log(log_path)
    log.flush()
    assert log.flush_count == 0
    log.append(msg(0), 1)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(log_module.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    log.flush()
    log.flush()
    assert len(synced) == 2, "the segment and the exposed-end file, once"
    assert log.flush_count == 1
    assert log.flush_seconds >= 0
    log.close()


def test_flush_syncs_rolled_segments_too(log_path, monkeypatch):
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(20)])
    assert log.segment_count == 3
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(log_module.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    log.flush()
    assert len(synced) == 4, "three segments and the exposed-end file"
    assert log.flushed_end == log.end_offset
    log.close()


def test_a_failed_fsync_keeps_data_invisible_and_is_retried(log_path, monkeypatch):
    log = Log(log_path, LogConfig(flush_messages=1, segment_bytes=KIB))
    append_each(log, [msg(i) for i in range(12)])
    real_fsync = os.fsync

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(log_module.os, "fsync", broken)
    with pytest.raises(StorageError, match="disk error"):
        log.flush()
    assert log.visible_end == 0
    assert log.policy.pending == 12 and log.flush_due(time.monotonic())
    synced = []
    monkeypatch.setattr(log_module.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    log.flush()
    assert len(synced) == 3, "two segments and the exposed-end file"
    assert log.visible_end == 12 * 109
    log.close()


def test_disk_full_cuts_the_partial_write_and_the_log_goes_on(log_path, monkeypatch):
    log = make_log(log_path)
    log.append(msg(0), 1)
    real_write = os.write

    def half_then_enospc(fd, data):
        real_write(fd, bytes(data[:50]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segment_module.os, "write", half_then_enospc)
    with pytest.raises(StorageError, match=r"^disk full: No space left on device") as info:
        log.append(msg(1) + msg(2), 2)
    monkeypatch.undo()
    assert "\n" not in str(info.value)
    assert (log_path / segment_name(0)).stat().st_size == 109
    assert log.end_offset == 109
    assert log.append(msg(3), 1) == (109, 218)
    assert [m.value[:6] for m in read_all(log)] == [b"000000", b"000003"]
    log.close()
    again = make_log(log_path)
    assert again.recovered_truncated_bytes == 0
    assert again.end_offset == 218
    again.close()


def test_disk_full_on_a_fresh_segment_after_a_roll(log_path, monkeypatch):
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(9)])
    monkeypatch.setattr(segment_module.os, "write",
                        lambda fd, data: (_ for _ in ()).throw(OSError(errno.EDQUOT, "quota")))
    with pytest.raises(StorageError, match="^disk full"):
        log.append(msg(9), 1)
    monkeypatch.undo()
    assert log.segment_starts == [0, 981]
    assert (log_path / segment_name(981)).stat().st_size == 0
    assert log.append(msg(9), 1) == (981, 1090)
    assert len(read_all(log)) == 10
    log.close()


def test_other_write_errors_are_disk_errors(log_path, monkeypatch):
    log = make_log(log_path)
    monkeypatch.setattr(segment_module.os, "write",
                        lambda fd, data: (_ for _ in ()).throw(OSError(errno.EIO, "I/O")))
    with pytest.raises(StorageError, match="^disk error: I/O"):
        log.append(msg(0), 1)
    monkeypatch.undo()
    assert log.append(msg(0), 1) == (0, 109)
    log.close()


def test_a_partial_write_that_cannot_be_cut_stops_appends_until_recovery(log_path, monkeypatch):
    log = make_log(log_path)
    log.append(msg(0), 1)
    real_write = os.write

    def partial(fd, data):
        real_write(fd, bytes(data[:30]))
        raise OSError(errno.ENOSPC, "No space left on device")

    def no_truncate(fd, size):
        raise OSError(errno.EIO, "I/O")

    monkeypatch.setattr(segment_module.os, "write", partial)
    monkeypatch.setattr(segment_module.os, "ftruncate", no_truncate)
    with pytest.raises(StorageError, match="reopened and recovered"):
        log.append(msg(1), 1)
    monkeypatch.undo()
    with pytest.raises(StorageError, match="reopened and recovered"):
        log.append(msg(2), 1)
    assert len(log.read(0, 1000)) == 109
    log.close()
    again = make_log(log_path)
    assert again.recovered_truncated_bytes == 30
    assert again.append(msg(2), 1) == (109, 218)
    again.close()


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


def crash(log: Log) -> None:
    """What a SIGKILL leaves behind: no final flush, no clean-shutdown marker (the page cache
    keeps every write, so the files are as the process last wrote them)."""
    log._close_fds()


def flip_byte(path, pos: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[pos] ^= mask
    path.write_bytes(bytes(data))


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


def test_an_acknowledged_append_is_exposed_before_any_flush(log_path):
    """acks=1 tells the producer its next offset: append(expose=True) records it at once."""
    log = Log(log_path, LogConfig(flush_ms=60_000, flush_messages=1000))
    append_each(log, [msg(i) for i in range(3)])
    assert log.append(msg(3), 1, expose=True) == (327, 436)
    assert log.visible_end == 0
    crash(log)
    os.truncate(log_path / segment_name(0), 200)
    again = Log(log_path, LogConfig())
    assert again.end_offset == 436 and again.segment_starts == [0, 436]
    with pytest.raises(OffsetGap) as info:
        again.read(109, 100)
    assert info.value.resume_offset == 436
    base, _ = again.append(msg(4), 1)
    assert base == 436, "an offset handed out before the crash is never handed out again"
    again.close()


def test_visible_at_append_exposes_at_append(log_path):
    log = make_log(log_path)
    append_each(log, [msg(i) for i in range(4)])
    crash(log)
    os.truncate(log_path / segment_name(0), 2 * 109)
    again = make_log(log_path)
    assert again.segment_starts == [0, 436] and again.end_offset == 436
    again.close()


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


def test_the_exposed_end_is_written_only_when_it_grows(log_path, monkeypatch):
    log = Log(log_path, LogConfig(flush_ms=60_000))
    writes = []
    real = os.pwrite
    monkeypatch.setattr(log_module.os, "pwrite",
                        lambda fd, data, pos: writes.append(bytes(data)) or real(fd, data, pos))
    log.append(msg(0), 1)
    assert writes == [], "acks=0 exposes nothing"
    log.append(msg(1), 1, expose=True)
    log.flush()
    log.flush()
    log.append(msg(2), 1)
    log.flush()
    assert [int(w) for w in writes] == [218, 327]
    log.close()


def test_a_failed_append_takes_its_exposure_back(log_path, monkeypatch):
    log = make_log(log_path)
    log.append(msg(0), 1)
    monkeypatch.setattr(segment_module.os, "write",
                        lambda fd, data: (_ for _ in ()).throw(OSError(errno.EIO, "I/O")))
    with pytest.raises(StorageError):
        log.append(msg(1), 1, expose=True)
    monkeypatch.undo()
    assert int((log_path / exposed_end.FILE_NAME).read_text()) == 109
    crash(log)
    again = make_log(log_path)
    assert again.end_offset == 109 and again.gaps == []
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


def test_a_read_error_is_a_storage_error(log_path, monkeypatch):
    log = make_log(log_path)
    log.append(msg(0), 1)
    monkeypatch.setattr(segment_module.os, "pread",
                        lambda fd, n, pos: (_ for _ in ()).throw(OSError(errno.EIO, "I/O")))
    with pytest.raises(StorageError, match="^disk error: I/O"):
        log.read(0, 100)
    monkeypatch.undo()
    assert len(log.read(0, 100)) == 109
    log.close()


def test_below_the_start_says_where_the_log_resumes(log_path):
    log_path.mkdir()
    (log_path / segment_name(7000)).write_bytes(msg(0))
    log = make_log(log_path)
    with pytest.raises(OffsetOutOfRange) as below:
        log.read(0, 100)
    assert below.value.resume_offset == 7000
    with pytest.raises(OffsetOutOfRange) as beyond:
        log.read(9000, 100)
    assert beyond.value.resume_offset is None
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


def set_mtime(log_path, start: int, seconds: float) -> None:
    os.utime(log_path / segment_name(start), (seconds, seconds))


def test_retention_by_time_deletes_old_segments_and_offsets_continue(log_path):
    log = make_log(log_path, segment_bytes=KIB, retention_ms=3600 * 1000)
    append_each(log, [msg(i) for i in range(30)])
    assert log.segment_starts == [0, 981, 1962, 2943]
    now = time.time()
    set_mtime(log_path, 0, now - 7200)
    set_mtime(log_path, 981, now - 3601)
    set_mtime(log_path, 1962, now - 60)
    assert log.apply_retention(now) == 2
    assert log.segment_starts == [1962, 2943]
    assert files(log_path) == [segment_name(1962), segment_name(2943)]
    assert log.start_offset == 1962
    assert log.size_bytes == 30 * 109 - 1962
    with pytest.raises(OffsetOutOfRange, match="1962"):
        log.read(0, 100)
    assert next(message.decode_set(log.read(1962, 100), "t", 0, 1962)).value[:6] == b"000018"
    assert log.append(msg(30), 1) == (30 * 109, 31 * 109)
    assert log.apply_retention(now) == 0
    log.close()
    again = make_log(log_path, segment_bytes=KIB)
    assert again.start_offset == 1962 and again.end_offset == 31 * 109
    again.close()


def test_retention_never_deletes_the_active_segment(log_path):
    log = make_log(log_path, segment_bytes=KIB, retention_ms=1000)
    append_each(log, [msg(i) for i in range(5)])
    set_mtime(log_path, 0, 0)
    assert log.apply_retention() == 0
    append_each(log, [msg(i) for i in range(5, 20)])
    for start in log.segment_starts:
        set_mtime(log_path, start, 0)
    assert log.apply_retention() == 2
    assert log.segment_starts == [1962]
    assert log.read(1962, 10_000)
    assert log.append(msg(20) * 9, 9) == (20 * 109, 29 * 109)
    assert log.segment_starts == [1962, 20 * 109]
    assert files(log_path) == [segment_name(1962), segment_name(2180)]
    log.close()


def test_retention_by_size(log_path):
    log = make_log(log_path, segment_bytes=KIB, retention_bytes=2 * KIB)
    append_each(log, [msg(i) for i in range(40)])
    assert log.segment_starts == [0, 981, 1962, 2943, 3924]
    assert log.size_bytes == 4360
    assert log.apply_retention() == 3
    assert log.segment_starts == [2943, 3924]
    assert log.size_bytes == 4360 - 2943 <= 2 * KIB
    log.close()


def test_retention_keeps_segments_that_are_not_visible_yet(log_path):
    log = Log(log_path, LogConfig(segment_bytes=KIB, retention_bytes=KIB))
    append_each(log, [msg(i) for i in range(9)])
    log.flush()
    append_each(log, [msg(i) for i in range(9, 30)])
    assert log.segment_starts == [0, 981, 1962, 2943]
    assert log.visible_end == 981
    assert log.apply_retention() == 1
    assert log.start_offset == log.visible_end == 981
    log.flush()
    assert log.apply_retention() == 2
    assert log.segment_starts == [2943]
    log.close()


def test_offset_before(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(25)])
    assert log.segment_starts == [0, 981, 1962]
    set_mtime(log_path, 0, 1000)
    set_mtime(log_path, 981, 2000)
    set_mtime(log_path, 1962, 3000)
    end = log.end_offset
    assert log.offset_before(-1) == end
    assert log.offset_before(-2) == 0
    assert log.offset_before(0) == 0
    assert log.offset_before(999_999) == 0
    assert log.offset_before(1_000_000) == 981
    assert log.offset_before(1_999_999) == 981
    assert log.offset_before(2_000_000) == 1962
    assert log.offset_before(2_999_999) == 1962
    assert log.offset_before(3_000_000) == end
    assert log.offset_before(10 ** 13) == end
    log.close()


def test_offset_before_never_passes_the_visible_end(log_path):
    log = Log(log_path, LogConfig(segment_bytes=KIB))
    append_each(log, [msg(i) for i in range(5)])
    log.flush()
    append_each(log, [msg(i) for i in range(5, 15)])
    assert log.segment_starts == [0, 981]
    set_mtime(log_path, 0, 1000)
    set_mtime(log_path, 981, 2000)
    assert log.visible_end == 545
    assert log.offset_before(1_500_000) == 545
    assert log.offset_before(-1) == 545
    assert log.offset_before(500_000) == 0
    log.close()


def test_offset_before_and_earliest_after_retention(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(25)])
    for start, mtime in zip(log.segment_starts, (1000, 2000, 3000)):
        set_mtime(log_path, start, mtime)
    assert log.apply_retention(now=2000 + 7 * 86400 + 1) == 2
    assert log.offset_before(-2) == 1962
    assert log.offset_before(0) == 1962
    log.close()


def layout(log: Log) -> list[tuple[int, int]]:
    return [(start, size) for start, size in zip(log.segment_starts, _sizes(log))]


def _sizes(log: Log) -> list[int]:
    return [s.size for s in log._segments]


@pytest.mark.parametrize("segment_bytes", [100, 250, 1000, 10_000])
def test_joined_append_rolls_where_one_by_one_appends_would(tmp_path, segment_bytes):
    sets = [message.encode_set([(None, b"x" * n)] * k)
            for n, k in ((10, 1), (40, 3), (200, 1), (5, 7), (90, 2), (1, 1), (300, 1), (20, 4))]
    config = LogConfig(segment_bytes=segment_bytes)
    one_by_one = Log(tmp_path / "a", config)
    for one in sets:
        one_by_one.append(one, 1)
    joined = Log(tmp_path / "b", config)
    joined.append(sets[0], 1)
    base, nxt = joined.append(b"".join(sets[1:]), len(sets) - 1, [len(s) for s in sets[1:]])
    assert (base, nxt) == (len(sets[0]), one_by_one.end_offset)
    assert layout(joined) == layout(one_by_one)
    assert joined.read(0, 1 << 20) == one_by_one.read(0, 1 << 20)


def test_close_is_idempotent_and_a_closed_log_refuses_work(log_path):
    log = Log(log_path, LogConfig())
    log.append(msg(0), 1)
    log.close()
    log.close()
    log.flush()
    with pytest.raises(StorageError, match="closed"):
        log.append(msg(1), 1)
    with pytest.raises(StorageError, match="closed"):
        log.read(0, 100)
    again = Log(log_path, LogConfig())
    assert again.end_offset == 109
    again.close()


def test_flusher_thread_while_appending_and_rolling(log_path):
    log = Log(log_path, LogConfig(segment_bytes=KIB, flush_messages=1))
    stop = threading.Event()
    errors = []

    def flusher():
        try:
            while not stop.is_set():
                log.flush()
                assert log.flushed_end <= log.end_offset
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=flusher)
    thread.start()
    expected = []
    try:
        for i in range(1500):
            batch = [msg(i * 3 + j, 20 + (i * 7 + j) % 150) for j in range(1 + i % 3)]
            expected.extend(batch)
            base, nxt = log.append(b"".join(batch), len(batch))
            assert nxt - base == sum(map(len, batch))
            visible = log.visible_end
            assert visible <= log.end_offset
            if visible > log.start_offset and i % 50 == 0:
                assert log.read(log.start_offset, KIB)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert log.flush_count > 0
    log.flush()
    assert log.visible_end == log.end_offset == sum(map(len, expected))
    assert log.segment_count > 100
    got = read_all(log, max_bytes=KIB)
    assert [m.value for m in got] == [next(message.decode_set(m, "t", 0, 0)).value
                                      for m in expected]
    for start in log.segment_starts:
        data = (log_path / segment_name(start)).read_bytes()
        assert message.valid_prefix(data)[0] == len(data) <= KIB
    log.close()


def test_a_new_log_is_not_an_unclean_shutdown(log_path):
    log = make_log(log_path)
    assert not log.unclean_shutdown and log.scrub_state == "not needed"
    log.close()
