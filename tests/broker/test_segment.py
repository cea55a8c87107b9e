"""Segment files: names, the binary search over starts, append / read / truncate on real files."""
import doctest
import errno
import os

import pytest

from broker import segment as segment_module
from broker.segment import (Segment, find_segment, find_segment_by_time, parse_segment_name,
                            segment_name, split_at_rolls)
from tests.broker.logs import partial_write


def test_segment_name_is_twenty_digits_and_sorts_like_the_offset():
    assert segment_name(0) == "00000000000000000000.log"
    assert segment_name(1024) == "00000000000000001024.log"
    assert segment_name(2 ** 64 - 1) == "18446744073709551615.log"
    starts = [5, 1 << 30, 10, 999_999]
    assert sorted(segment_name(s) for s in starts) == [segment_name(s) for s in sorted(starts)]


@pytest.mark.parametrize("start", [0, 1, 981, 1 << 30, 2 ** 64 - 1])
def test_parse_segment_name_inverts_segment_name(start):
    assert parse_segment_name(segment_name(start)) == start


@pytest.mark.parametrize("name", [
    "0.log", "0000000000000000000.log", "000000000000000000000.log",
    "0000000000000000000a.log", "00000000000000000000.txt", "00000000000000000000",
    "-0000000000000000001.log", "notes.log", "０００００００００００００００００００.log",
])
def test_parse_segment_name_rejects_other_files(name):
    with pytest.raises(ValueError):
        parse_segment_name(name)


def test_segment_name_rejects_offsets_that_do_not_fit():
    with pytest.raises(ValueError):
        segment_name(-1)
    with pytest.raises(ValueError):
        segment_name(10 ** 20)


def test_find_segment_binary_search():
    starts = [0, 100, 250, 1000]
    assert find_segment(starts, 0) == 0
    assert find_segment(starts, 99) == 0
    assert find_segment(starts, 100) == 1
    assert find_segment(starts, 249) == 1
    assert find_segment(starts, 250) == 2
    assert find_segment(starts, 999) == 2
    assert find_segment(starts, 1000) == 3
    assert find_segment(starts, 10 ** 12) == 3
    assert find_segment(starts, -1) == -1
    assert find_segment([500], 499) == -1
    assert find_segment([500], 500) == 0


def test_new_segment_creates_the_named_empty_file(tmp_path):
    seg = Segment(tmp_path, 4096)
    try:
        assert seg.path == tmp_path / "00000000000000004096.log"
        assert seg.path.is_file()
        assert (seg.start, seg.size, seg.end) == (4096, 0, 4096)
        assert seg.read(0, 10) == b""
    finally:
        seg.close()


def test_append_read_and_reopen(tmp_path):
    seg = Segment(tmp_path, 100)
    seg.append(b"hello ")
    seg.append(memoryview(b"world"))
    seg.append(bytearray(b"!"))
    assert seg.size == 12 and seg.end == 112
    assert seg.read(0, 12) == b"hello world!"
    assert seg.read(6, 5) == b"world"
    assert seg.read(6, 1000) == b"world!"
    assert seg.read(12, 10) == b""
    seg.close()
    assert seg.closed
    again = Segment(tmp_path, 100)
    try:
        assert again.size == 12
        again.append(b"?")
        assert again.path.read_bytes() == b"hello world!?"
    finally:
        again.close()


def test_append_loops_over_short_writes(tmp_path, monkeypatch):
    real_write = os.write
    calls = []

    def three_bytes_at_a_time(fd, data):
        calls.append(len(data))
        return real_write(fd, bytes(data[:3]))

    seg = Segment(tmp_path, 0)
    monkeypatch.setattr(segment_module.os, "write", three_bytes_at_a_time)
    seg.append(b"0123456789")
    monkeypatch.undo()
    assert seg.size == 10
    assert calls == [10, 7, 4, 1]
    assert seg.path.read_bytes() == b"0123456789"
    seg.close()


def test_a_write_that_makes_no_progress_raises_instead_of_spinning(tmp_path, monkeypatch):
    seg = Segment(tmp_path, 0)
    monkeypatch.setattr(segment_module.os, "write", lambda fd, data: 0)
    with pytest.raises(OSError) as info:
        seg.append(b"abc")
    monkeypatch.undo()
    assert info.value.errno == errno.EIO
    assert seg.size == 0
    seg.close()


def test_failed_append_keeps_size_and_truncate_cuts_the_partial_bytes(tmp_path, monkeypatch):
    seg = Segment(tmp_path, 0)
    seg.append(b"kept")
    monkeypatch.setattr(segment_module.os, "write", partial_write(2))
    with pytest.raises(OSError):
        seg.append(b"lost")
    monkeypatch.undo()
    assert seg.size == 4
    assert seg.path.read_bytes() == b"keptlo"
    seg.truncate(seg.size)
    assert seg.path.read_bytes() == b"kept"
    seg.append(b"next")
    assert seg.read(0, 100) == b"keptnext"
    seg.close()


def test_mtime_follows_the_file(tmp_path):
    seg = Segment(tmp_path, 0)
    seg.append(b"x")
    os.utime(seg.path, (1_000_000, 1_234_567))
    assert seg.mtime == 1_234_567
    seg.close()


def test_dup_survives_close_and_delete(tmp_path):
    seg = Segment(tmp_path, 0)
    seg.append(b"data")
    fd = seg.dup()
    try:
        seg.delete()
        assert seg.closed
        assert not seg.path.exists()
        os.fsync(fd)
        assert os.pread(fd, 4, 0) == b"data"
    finally:
        os.close(fd)
    seg.close()


def test_sync_and_truncate_to_zero(tmp_path):
    seg = Segment(tmp_path, 7)
    seg.append(b"abcdef")
    seg.sync()
    seg.truncate(0)
    assert (seg.size, seg.end) == (0, 7)
    assert seg.path.stat().st_size == 0
    seg.close()


def test_the_worked_examples_of_the_module():
    assert doctest.testmod(segment_module).failed == 0


def test_a_time_finds_the_newest_segment_written_before_it():
    mtimes = [1000, 2000, 3000]
    assert [find_segment_by_time(mtimes, t) for t in (0, 999, 1000, 1999, 2000, 2999)] == [
        0, 0, 1, 1, 2, 2]
    assert find_segment_by_time(mtimes, 3000) is None, "no message is newer than the last"
    assert find_segment_by_time([500], 100) == 0


@pytest.mark.parametrize("used,sizes,limit,expected", [
    (0, [4, 4, 4], 100, [12]),            # it all fits: one write
    (90, [4, 4, 4], 100, [8, 4]),         # the third set rolls
    (99, [4, 4], 100, [8]),               # the Log rolls before the first chunk, not here
    (0, [150, 10], 100, [150, 10]),       # a set bigger than a segment gets one of its own
    (50, [60], 100, [60]),                # one set: the Log rolls before it
])
def test_a_joined_write_is_cut_where_the_sets_one_by_one_would_roll(used, sizes, limit,
                                                                     expected):
    data = memoryview(bytes(range(sum(sizes))))
    chunks = split_at_rolls(data, sizes, used, limit)
    assert [len(c) for c in chunks] == expected
    assert b"".join(chunks) == data.tobytes()
