"""Retention as a pure function over (start, size, mtime) triples, oldest first."""
from broker.retention import segments_to_delete

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
