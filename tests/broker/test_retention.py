"""Retention as a pure function over (start, size, mtime) triples, oldest first, and the Log
applying it to real segment files."""
import time

import pytest

from broker import message
from broker.config import LogConfig
from broker.log import Log
from broker.protocol import OffsetOutOfRange
from broker.retention import segments_to_delete
from broker.segment import segment_name
from tests.broker.logs import KIB, append_each, files, make_log, msg, set_mtime

DAY_MS = 24 * 3600 * 1000
DAY = 24 * 3600.0


def test_the_docstring_example():
    segments = [(0, 100, 7 * DAY), (100, 100, 9.5 * DAY), (200, 100, 8 * DAY),
                (300, 100, 8 * DAY)]
    assert segments_to_delete(segments, 10 * DAY, DAY_MS) == 1
    assert segments_to_delete(segments, 10 * DAY, DAY_MS, retention_bytes=250) == 2


def test_no_segments_or_only_the_active_one():
    assert segments_to_delete([], 1e9, 1) == 0
    assert segments_to_delete([(0, 10 ** 9, 0.0)], 1e9, 1, retention_bytes=1) == 0


def test_time_rule_deletes_the_old_prefix_but_never_the_active_segment():
    segments = [(0, 10, 100.0), (10, 10, 200.0), (20, 10, 300.0)]
    assert segments_to_delete(segments, now=1000.0, retention_ms=1000) == 2
    assert segments_to_delete(segments, now=1000.0, retention_ms=850_000) == 1
    assert segments_to_delete(segments, now=1000.0, retention_ms=950_000) == 0


def test_time_rule_keeps_a_segment_exactly_at_the_cutoff():
    segments = [(0, 10, 100.0), (10, 10, 500.0)]
    assert segments_to_delete(segments, now=1100.0, retention_ms=1_000_000) == 0
    assert segments_to_delete(segments, now=1100.001, retention_ms=1_000_000) == 1


def test_time_rule_stops_at_the_first_young_segment():
    segments = [(0, 10, 100.0), (10, 10, 900.0), (20, 10, 100.0), (30, 10, 100.0)]
    assert segments_to_delete(segments, now=1000.0, retention_ms=500_000) == 1


def test_size_rule_deletes_oldest_while_the_total_exceeds_the_bound():
    segments = [(0, 400, 0.0), (400, 300, 0.0), (700, 200, 0.0), (900, 100, 0.0)]
    week_ms = 7 * DAY_MS
    assert segments_to_delete(segments, 1.0, week_ms, retention_bytes=1000) == 0
    assert segments_to_delete(segments, 1.0, week_ms, retention_bytes=999) == 1
    assert segments_to_delete(segments, 1.0, week_ms, retention_bytes=600) == 1
    assert segments_to_delete(segments, 1.0, week_ms, retention_bytes=599) == 2
    assert segments_to_delete(segments, 1.0, week_ms, retention_bytes=300) == 2
    assert segments_to_delete(segments, 1.0, week_ms, retention_bytes=150) == 3


def test_size_rule_never_deletes_the_active_segment_even_when_it_alone_is_too_big():
    segments = [(0, 10, 0.0), (10, 5000, 0.0)]
    assert segments_to_delete(segments, 1.0, DAY_MS, retention_bytes=100) == 1


def test_without_retention_bytes_size_does_not_matter():
    segments = [(0, 10 ** 12, 999.0), (10 ** 12, 10 ** 12, 999.0)]
    assert segments_to_delete(segments, 1000.0, DAY_MS) == 0


def test_the_rules_combine_as_the_longer_prefix():
    segments = [(0, 100, 0.0), (100, 100, 0.0), (200, 100, 990.0), (300, 100, 995.0)]
    assert segments_to_delete(segments, 1000.0, 100_000, retention_bytes=350) == 2
    assert segments_to_delete(segments, 1000.0, 100_000, retention_bytes=150) == 3


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
