"""How cost grows (issue 16): the row plan, the ratio and flatness verdicts, and one short run
of both parts on their own fresh clusters. No timed assertions: speed lives in the benchmark."""
import json

import pytest

from cluster.tools import bench, scale_bench
from coordinator.errors import InvalidArgument


def test_the_plan_sets_every_row_beside_a_row_of_the_one_partition_run():
    rows = scale_bench.plan(1000)
    figures = {key for key, *_ in bench.FIGURES}
    assert [r.key for r in rows] == [
        "tenfold_producer_batch50", "tenfold_consumer", "tenfold_producer_batch1",
        "spread_producer_batch50", "spread_producer_acks1_batch50", "spread_producer_batch1",
        "spread_consumer"]
    for row in rows:
        assert row.baseline in figures, row.key
        assert row.messages == (10_000 if row.part == "tenfold" else 1000), row.key
    keys = [r.key for r in rows]
    for row in rows:
        if row.kind == "consume":       # reads a topic an earlier row of its part produced
            source = next(r for r in rows if r.key == row.source)
            assert source.part == row.part and keys.index(source.key) < keys.index(row.key)
            assert (source.batch, source.acks) == (50, 0)


def test_the_plan_without_batch_1_and_bad_counts():
    assert all(r.batch != 1 for r in scale_bench.plan(10, batch1=False))
    assert len(scale_bench.plan(10, batch1=False)) == 5
    with pytest.raises(InvalidArgument):
        scale_bench.plan(0)


def test_ratio_and_target():
    assert scale_bench.compare(900.0, 1000.0) == (0.9, True)
    assert scale_bench.compare(850.0, 1000.0) == (0.85, True)
    assert scale_bench.compare(849.4, 1000.0) == (0.849, False)
    assert scale_bench.compare(2000.0, 1000.0) == (2.0, True)
    assert scale_bench.compare(1.0, None) == (None, None)
    assert scale_bench.compare(1.0, 0.0) == (None, None)


def test_rss_flatness_is_growth_after_the_first_tenth():
    assert scale_bench.rss_flat(60_000_000, 66_000_000) == (0.1, True)
    assert scale_bench.rss_flat(60_000_000, 66_600_000) == (0.11, False)
    assert scale_bench.rss_flat(60_000_000, 50_000_000) == (-0.167, True)


def test_disk_needed_counts_each_produced_topic_framed():
    rows = scale_bench.plan(100)
    # tenfold: two topics of 1,000 messages of 9 + 200 bytes; spread: three of 100
    assert scale_bench.disk_needed(rows, "tenfold", 200) == 2 * 1000 * 209
    assert scale_bench.disk_needed(rows, "spread", 200) == 3 * 100 * 209


def test_a_short_run_of_the_64_partitions():
    """On 3 fresh brokers: every row measured, the consumer reading every message the
    producer spread over the 64 partitions, each ratio against the baseline given, every
    broker's RSS followed (the tenfold part is the 1-partition rows' perf.py calls, which
    test_bench.py runs)."""
    rows = [r for r in scale_bench.plan(300, batch1=False) if r.part == "spread"]
    baseline = {row.baseline: 1000.0 for row in rows}
    result = scale_bench.run(300, baseline=baseline, batch1=False, parts=("spread",))
    assert set(result["rows"]) == {r.key for r in rows}
    for row in rows:
        figures = result["rows"][row.key]
        assert figures["messages"] == 300, row.key
        assert figures["ratio"] == round(figures["records_per_s"] / 1000.0, 3), row.key
        assert figures["met"] == (figures["ratio"] >= scale_bench.TARGET)
    consumed = result["rows"]["spread_consumer"]
    assert consumed["partitions"] == scale_bench.PARTITIONS
    assert 1 < consumed["partitions_read"] <= scale_bench.PARTITIONS, "spread, a batch at a time"
    brokers = result["rss"]["spread"]["brokers"]
    assert len(brokers) == scale_bench.BROKERS
    assert all(0 < b["start_mb"] <= b["peak_mb"] for b in brokers)
    scale_bench.table(result)
    json.dumps(result)


def test_an_unknown_part_is_refused():
    with pytest.raises(InvalidArgument, match="no such part: sideways"):
        scale_bench.run(10, parts=("sideways",))


def test_the_command_line_refuses_an_unknown_part_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        scale_bench.main(["--part", "sideways"])
    assert exit_.value.code == 2
    assert "invalid choice: 'sideways' (choose from 'tenfold', 'spread')" in capsys.readouterr().err
