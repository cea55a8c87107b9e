"""The Log on real files: offsets, rolling, reads, visibility, flush, recovery, retention."""
import errno
import logging
import os
import threading
import time

import pytest

from broker import log as log_module
from broker import message
from broker import segment as segment_module
from broker.config import LogConfig
from broker.log import Log
from broker.protocol import InvalidOffset, OffsetOutOfRange, StorageError
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
    checked = 0
    for offset in range(log.end_offset):
        if offset in starts:
            assert log.read(offset, 1)
            continue
        with pytest.raises(InvalidOffset, match=f"offset {offset} is not the start"):
            log.read(offset, 1000)
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
    assert len(synced) == 1
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
    assert len(synced) == 3
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
    assert len(synced) == 2
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


def test_recovery_cuts_a_torn_tail(log_path, caplog):
    log = make_log(log_path)
    append_each(log, [msg(i) for i in range(10)])
    log.close()
    os.truncate(log_path / segment_name(0), 10 * 109 - 7)
    with caplog.at_level(logging.WARNING, logger="sluice.broker.log"):
        again = Log(log_path, LogConfig())
    assert again.recovered_truncated_bytes == 102
    assert again.end_offset == again.visible_end == 9 * 109
    assert (log_path / segment_name(0)).stat().st_size == 9 * 109
    assert [m.value[:6] for m in read_all(again)] == [b"%06d" % i for i in range(9)]
    assert any("102 bytes" in r.getMessage() for r in caplog.records)
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
    assert again.end_offset == 327
    again.close()


def test_recovery_cuts_at_a_flipped_byte(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    offsets = append_each(log, [msg(i) for i in range(15)])
    last_start = log.segment_starts[-1]
    assert last_start == 981
    log.close()
    path = log_path / segment_name(last_start)
    data = bytearray(path.read_bytes())
    victim = offsets[12] - last_start + 50
    data[victim] ^= 0x01
    path.write_bytes(bytes(data))
    again = make_log(log_path, segment_bytes=KIB)
    assert again.end_offset == offsets[12]
    assert again.recovered_truncated_bytes == 3 * 109
    assert len(read_all(again)) == 12
    again.close()


def test_recovery_catches_a_flipped_size_field(log_path):
    log = make_log(log_path)
    offsets = append_each(log, [msg(i) for i in range(6)])
    log.close()
    path = log_path / segment_name(0)
    data = bytearray(path.read_bytes())
    data[offsets[2] + 3] ^= 0x02
    path.write_bytes(bytes(data))
    again = make_log(log_path)
    assert again.end_offset == offsets[2]
    assert len(read_all(again)) == 2
    again.close()


@pytest.mark.parametrize("chunk", [9, 100, 109, 110, 500])
def test_recovery_in_small_chunks_handles_messages_across_chunk_edges(log_path, monkeypatch,
                                                                      chunk):
    monkeypatch.setattr(log_module, "RECOVERY_CHUNK", chunk)
    log = make_log(log_path)
    sizes = [6, 300, 40, 1000, 7, 91, 100]
    offsets = append_each(log, [msg(i, size) for i, size in enumerate(sizes)])
    end = log.end_offset
    log.close()
    clean = make_log(log_path)
    assert clean.recovered_truncated_bytes == 0 and clean.end_offset == end
    clean.close()
    path = log_path / segment_name(0)
    data = bytearray(path.read_bytes())
    data[offsets[4] + 9] ^= 0x80
    path.write_bytes(bytes(data))
    cut = make_log(log_path)
    assert cut.end_offset == offsets[4]
    assert cut.recovered_truncated_bytes == end - offsets[4]
    assert len(read_all(cut)) == 4
    cut.close()


def test_recovery_only_walks_the_last_segment_and_makes_everything_visible(log_path):
    log = Log(log_path, LogConfig(segment_bytes=KIB))
    append_each(log, [msg(i) for i in range(12)])
    assert log.visible_end == 0
    log.close()
    again = Log(log_path, LogConfig(segment_bytes=KIB))
    assert again.visible_end == again.end_offset == 12 * 109
    again.close()


def test_recovery_sets_aside_segments_after_a_gap(log_path, caplog):
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(40)])
    starts = log.segment_starts
    assert starts == [0, 981, 1962, 2943, 3924]
    log.close()
    moved = (log_path / segment_name(2943)).read_bytes()
    (log_path / segment_name(1962)).unlink()
    with caplog.at_level(logging.WARNING, logger="sluice.broker.log"):
        again = make_log(log_path, segment_bytes=KIB)
    assert again.segment_starts == [0, 981]
    assert again.end_offset == 1962
    assert files(log_path) == [segment_name(0), segment_name(981)]
    assert sorted(p.name for p in (log_path / "corrupt").iterdir()) == [
        segment_name(2943), segment_name(3924)]
    assert (log_path / "corrupt" / segment_name(2943)).read_bytes() == moved
    assert any("not contiguous" in r.getMessage() for r in caplog.records)
    assert len(read_all(again)) == 18
    again.close()


def test_a_torn_sealed_segment_is_a_gap_and_gets_cut(log_path):
    """A crash after a roll but before the old segment reached the disk."""
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(12)])
    log.close()
    os.truncate(log_path / segment_name(0), 981 - 50)
    again = make_log(log_path, segment_bytes=KIB)
    assert again.segment_starts == [0]
    assert again.end_offset == 8 * 109
    assert again.recovered_truncated_bytes == 109 - 50
    assert (log_path / "corrupt" / segment_name(981)).is_file()
    again.close()


def test_set_aside_never_overwrites_an_earlier_corrupt_file(log_path):
    (log_path / "corrupt").mkdir(parents=True)
    (log_path / "corrupt" / segment_name(5000)).write_bytes(b"older")
    (log_path / segment_name(5000)).write_bytes(b"newer")
    (log_path / segment_name(0)).write_bytes(msg(0))
    log = make_log(log_path)
    assert (log_path / "corrupt" / segment_name(5000)).read_bytes() == b"older"
    assert (log_path / "corrupt" / (segment_name(5000) + ".1")).read_bytes() == b"newer"
    assert log.end_offset == 109
    log.close()


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
