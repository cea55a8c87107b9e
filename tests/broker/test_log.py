"""The Log on real files: offsets, rolling, reads, visibility, flush, retention (recovery and
the exposed end have test files of their own)."""
import errno
import threading

import pytest

from broker import message
from broker import segment as segment_module
from broker.config import LogConfig
from broker.log import Log
from broker.protocol import InvalidOffset, OffsetOutOfRange, StorageError
from broker.segment import find_segment, segment_name
from tests.broker.logs import (KIB, append_each, files, make_log, msg, partial_write,
                               read_all, set_mtime)


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


def test_disk_full_cuts_the_partial_write_and_the_log_goes_on(log_path, monkeypatch):
    log = make_log(log_path)
    log.append(msg(0), 1)
    monkeypatch.setattr(segment_module.os, "write", partial_write(50))
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

    def no_truncate(fd, size):
        raise OSError(errno.EIO, "I/O")

    monkeypatch.setattr(segment_module.os, "write", partial_write(30))
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


