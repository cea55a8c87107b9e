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


def test_a_short_run_of_both_parts():
    """Every row measured on its cluster, the 64-partition consumer reading every message the
    producer spread, each ratio against the baseline given, every broker's RSS followed."""
    rows = scale_bench.plan(300, batch1=False)
    baseline = {row.baseline: 1000.0 for row in rows}
    result = scale_bench.run(300, baseline=baseline, batch1=False)
    assert set(result["rows"]) == {r.key for r in rows}
    for row in rows:
        figures = result["rows"][row.key]
        assert figures["messages"] == row.messages, row.key
        assert figures["ratio"] == round(figures["records_per_s"] / 1000.0, 3), row.key
        assert figures["met"] == (figures["ratio"] >= scale_bench.TARGET)
    assert result["rows"]["spread_consumer"]["partitions"] == scale_bench.PARTITIONS
    assert [len(result["rss"][part]["brokers"]) for part in ("tenfold", "spread")] == [1, 3]
    for part in result["rss"].values():
        for broker in part["brokers"]:
            assert 0 < broker["start_mb"] <= broker["peak_mb"]
    scale_bench.table(result)
    json.dumps(result)
