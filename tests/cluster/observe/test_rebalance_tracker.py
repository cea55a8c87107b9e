"""The dashboards' pure parts: rebalance tracking, retention estimate, stuck and rate rules, the
Prometheus exposition of a snapshot, and the terminal view's rendering. No cluster needed."""
import os

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from cluster.observe import terminal_dashboard as dashboard, lag, metrics, retention_left
from cluster.observe.rebalance_tracker import RebalanceTracker
from cluster.observe.sampler import point, rate, stuck

P0, P1 = ("t", 0), ("t", 1)


def test_rebalance_tracker_follows_the_docstring_example():
    tracker = RebalanceTracker()
    assert tracker.observe(0, {"a"}, {P0: "a", P1: "a"}, {P0: "a", P1: "a"}) == "settled"
    assert tracker.rebalances == 0
    assert tracker.observe(1, {"a", "b"}, {P0: "a", P1: "a"}, {P0: "a", P1: "b"}) == "rebalancing"
    assert tracker.observe(2, {"a", "b"}, {P0: "a"}, {P0: "a", P1: "b"}) == "rebalancing"
    assert tracker.as_dict(2.5)["rebalancing_for_s"] == 1.5
    assert tracker.observe(3, {"a", "b"}, {P0: "a", P1: "b"}, {P0: "a", P1: "b"}) == "settled"
    assert (tracker.rebalances, tracker.last_seconds, tracker.seconds_total) == (1, 2.0, 2.0)
    assert tracker.observe(4, {"b"}, {P0: "a", P1: "b"}, {P0: "b", P1: "b"}) == "rebalancing"
    assert tracker.observe(9, {"b"}, {P0: "b", P1: "b"}, {P0: "b", P1: "b"}) == "settled"
    assert (tracker.rebalances, tracker.last_seconds, tracker.seconds_total) == (2, 5.0, 7.0)


def test_rebalance_inside_one_interval_counts_with_zero_duration():
    tracker = RebalanceTracker()
    tracker.observe(0, {"a"}, {P0: "a", P1: "a"}, {P0: "a", P1: "a"})
    assert tracker.observe(1, {"a", "b"}, {P0: "a", P1: "b"}, {P0: "a", P1: "b"}) == "settled"
    assert (tracker.rebalances, tracker.last_seconds) == (1, 0.0)
    assert tracker.observe(2, {"a", "b"}, {P0: "a", P1: "b"}, {P0: "a", P1: "b"}) == "settled"
    assert tracker.rebalances == 1


def test_rebalance_tracker_empty_group_and_first_join():
    tracker = RebalanceTracker()
    assert tracker.observe(0, set(), {}, {}) == "empty"
    assert tracker.observe(1, {"a"}, {}, {P0: "a"}) == "rebalancing"
    assert tracker.observe(2, set(), {}, {}) == "empty"   # the unfinished one is dropped
    assert tracker.rebalances == 0
    assert tracker.observe(3, {"a"}, {}, {P0: "a"}) == "rebalancing"
    assert tracker.observe(5, {"a"}, {P0: "a"}, {P0: "a"}) == "settled"
    assert (tracker.rebalances, tracker.last_seconds) == (1, 2.0)


def test_unknown_state_that_is_not_settled_starts_a_rebalance():
    tracker = RebalanceTracker()
    assert tracker.observe(0, {"a", "b"}, {P0: "a"}, {P0: "a", P1: "b"}) == "rebalancing"


def test_retention_seconds_left_follows_the_docstring_example():
    segments = [(0, 5_000.0), (1000, 7_000.0), (2000, 9_500.0)]
    assert retention_left.seconds_left(segments, 1500, 10_000.0, 3_600_000) == 600.0
    # a younger segment in front holds back the older one behind it (the log loses a prefix)
    assert retention_left.seconds_left([(0, 7_000.0), (1000, 5_000.0), (2000, 9_000.0)], 1500,
                                       10_000.0, 3_600_000) == 600.0
    assert retention_left.seconds_left(segments, 2500, 10_000.0, 3_600_000) is None  # active
    assert retention_left.seconds_left(segments, 1000, 20_000.0, 3_600_000) == 0.0   # overdue
    assert retention_left.seconds_left([(1000, 1.0), (2000, 2.0)], 500, 10.0, 1000) == 0.0
    assert retention_left.seconds_left([], 0, 10.0, 1000) is None


def test_list_segments_reads_names_and_mtimes(tmp_path):
    for start, mtime in ((2048, 200.0), (0, 100.0), (1024, 150.0)):
        path = tmp_path / f"{start:020d}.log"
        path.write_bytes(b"x")
        os.utime(path, (mtime, mtime))
    (tmp_path / "notes.txt").write_text("not a segment")
    assert retention_left.list_segments(tmp_path) == [(0, 100.0), (1024, 150.0), (2048, 200.0)]
    assert retention_left.list_segments(tmp_path / "missing") == []
    assert retention_left.partition_dir("/d/broker-1", "clicks", 3).as_posix() == \
        "/d/broker-1/clicks/3"


def test_stuck_needs_lag_and_no_progress_for_the_window():
    first = {"time": 0.0, "committed": 100}
    assert stuck(first, {"time": 5.0, "committed": 100}, 50, 5.0)
    assert not stuck(first, {"time": 5.0, "committed": 120}, 50, 5.0)     # moving
    assert not stuck(first, {"time": 5.0, "committed": 100}, 0, 5.0)      # caught up
    assert not stuck(first, {"time": 2.0, "committed": 100}, 50, 5.0)     # too soon to say
    assert not stuck(None, {"time": 5.0, "committed": 100}, 50, 5.0)


def test_rate_skips_first_sample_and_counter_resets():
    assert rate(None, 10, 1.0) is None
    assert rate(10, 40, 2.0) == 15.0
    assert rate(40, 5, 1.0) is None


def test_lag_row_without_a_first_sample_has_no_rates():
    row = lag.row("t", 0, "c1", None, {"committed": 100, "time": 1.0, "log_start": 0,
                                       "log_end": 300}, None, lambda offset: 20.0)
    assert (row.lag_bytes, row.lag_messages, row.consume_msgs_per_s, row.stuck) == \
        (200, 10, None, False)
    row = lag.row("t", 0, "c1", {"committed": 0, "time": 0.0, "log_start": 0, "log_end": 200},
                  {"committed": 100, "time": 2.0, "log_start": 0, "log_end": 300}, None,
                  lambda offset: 20.0)
    assert (row.consume_bytes_per_s, row.consume_msgs_per_s) == (50.0, 2.5)


def snapshot():
    """A snapshot as the sampler makes it: 1 broker, 1 partition, 1 group, 2 processes."""
    return {
        "time": 1_700_000_000.0, "seq": 7, "interval_s": 1.0, "zookeeper": "127.0.0.1:2181",
        "errors": [],
        "processes": [
            {"role": "broker", "id": "0", "pid": 11, "alive": True, "restarts": 1,
             "cpu_percent": 12.5, "cpu_seconds": 3.0, "rss_bytes": 50_000_000, "threads": 9,
             "open_files": 30, "read_bytes": 0, "write_bytes": 4096, "read_bytes_per_s": 0.0,
             "write_bytes_per_s": 4096.0, "ctx_switches": 100, "ctx_switches_per_s": 10.0},
            {"role": "worker", "id": "0", "pid": None, "alive": False, "restarts": 0},
        ],
        "brokers": [{"broker": 0, "endpoint": "tcp://x:1", "up": True, "error": None,
                     "errors": {"offset_out_of_range": 2}, "messages_in": 10, "bytes_in": 300,
                     "bytes_out": 600, "messages_in_per_s": 5.0, "bytes_in_per_s": 150.0,
                     "bytes_out_per_s": 300.0}],
        "partitions": [{"broker": 0, "topic": "clicks", "partition": 0, "start_offset": 0,
                        "end_offset": 300, "visible_end": 300, "segments": 2,
                        "size_bytes": 300, "flushes": 4, "flush_seconds": 0.25,
                        "messages_in": 10, "bytes_in": 300, "bytes_out": 600, "fetches": 3,
                        "messages_in_per_s": 5.0, "bytes_in_per_s": 150.0,
                        "bytes_out_per_s": 300.0}],
        "groups": [{"group": "loaders", "members": ["c1"], "topics": ["clicks"],
                    "state": "settled", "rebalances": 2, "rebalance_seconds_total": 3.0,
                    "last_rebalance_s": 1.0, "rebalancing_for_s": None,
                    "partitions": [{"topic": "clicks", "partition": 0, "owner": "c1",
                                    "committed": 120, "log_start": 0, "log_end": 300,
                                    "lag_bytes": 180, "lag_messages": 6,
                                    "consume_bytes_per_s": 0.0, "consume_msgs_per_s": 0.0,
                                    "stuck": True, "data_loss": None, "error": None,
                                    "retention_seconds_left": 1234.5}]}],
        "sampler": {"ticks": 7, "cpu_seconds": 0.01, "tick_ms": 3.0},
    }


def samples(text: str) -> dict:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_metrics_name_and_label_every_figure_the_prometheus_way():
    text = metrics.render(snapshot).decode()
    got = samples(text)
    part = (("broker", "0"), ("partition", "0"), ("topic", "clicks"))
    group = (("group", "loaders"), ("partition", "0"), ("topic", "clicks"))
    broker = (("id", "0"), ("role", "broker"))
    assert got[("sluice_broker_messages_in_total", part)] == 10
    assert got[("sluice_broker_bytes_in_total", part)] == 300
    assert got[("sluice_broker_bytes_out_total", part)] == 600
    assert got[("sluice_broker_log_size_bytes", part)] == 300
    assert got[("sluice_broker_log_segments", part)] == 2
    assert got[("sluice_broker_flushes_total", part)] == 4
    assert got[("sluice_broker_flush_seconds_total", part)] == 0.25
    assert got[("sluice_broker_errors_total", (("broker", "0"), ("error",
                                                                  "offset_out_of_range")))] == 2
    assert got[("sluice_group_lag_bytes", group)] == 180
    assert got[("sluice_group_lag_messages", group)] == 6
    assert got[("sluice_group_committed_offset", group)] == 120
    assert got[("sluice_group_consume_rate", group)] == 0
    assert got[("sluice_group_stuck", group)] == 1
    assert got[("sluice_group_retention_seconds_left", group)] == 1234.5
    assert got[("sluice_group_rebalances_total", (("group", "loaders"),))] == 2
    assert got[("sluice_group_members", (("group", "loaders"),))] == 1
    assert got[("sluice_process_cpu_percent", broker)] == 12.5
    assert got[("sluice_process_resident_memory_bytes", broker)] == 50_000_000
    assert got[("sluice_process_threads", broker)] == 9
    assert got[("sluice_process_open_files", broker)] == 30
    assert got[("sluice_process_restarts_total", broker)] == 1
    assert got[("sluice_process_up", (("id", "0"), ("role", "worker")))] == 0
    # a dead process has no figures rather than zeros
    assert ("sluice_process_resident_memory_bytes", (("id", "0"), ("role", "worker"))) not in got
    assert "# TYPE sluice_broker_messages_in_total counter" in text
    assert "# TYPE sluice_group_lag_bytes gauge" in text


def test_metrics_before_the_first_sample_are_empty():
    assert metrics.render(lambda: None) == b""


def test_history_point_carries_the_plotted_figures():
    p = point(snapshot())
    assert p["msgs_in"] == {"0": 5.0}
    assert p["lag"] == {"loaders clicks/0": 6}
    assert p["cpu"] == {"broker 0": 12.5, "worker 0": None}
    assert p["rss"]["broker 0"] == 50_000_000


def test_terminal_view_renders_a_snapshot():
    console = Console(width=160, record=True)
    console.print(dashboard.render(snapshot(), [point(snapshot())] * 3, "test"))
    text = console.export_text()
    assert "broker 0" in text and "12.5%" in text and "47.7 MiB" in text
    assert "clicks/0" in text and "STUCK" in text and "20.6 min" in text
    assert "group loaders: 1 member(s), settled, 2 rebalance(s)" in text
    assert "answered 2 request(s) with offset_out_of_range" in text


def test_sparkline_scales_to_the_maximum():
    assert dashboard.sparkline([0, 1, 2, None, 4]) == "▁▃▅ █"
    assert dashboard.sparkline([]) == ""


def test_a_finished_rebalance_of_either_protocol_is_the_sticky_planners_fixed_point():
    """The sampler's ``expected``: what eager (range) and cooperative (sticky) settle on."""
    from coordinator import assignor
    partitions = {"t0": [0, 1, 2, 3, 4], "t1": [0, 1]}
    subscriptions = {"a": ["t0", "t1"], "b": ["t0", "t1"], "c": ["t0"]}
    ranged = assignor.assign(partitions, subscriptions)
    owners: dict = {}
    for member, tps in ranged.items():
        for topic, partition in tps:
            owners.setdefault(topic, {})[partition] = member
    assert assignor.sticky_assign_all(partitions, subscriptions, owners) == ranged
    # mid-rebalance (c holds nothing yet) is not a fixed point
    owners["t0"] = {0: "a", 1: "a", 2: "a", 3: "b", 4: "b"}
    assert assignor.sticky_assign_all(partitions, subscriptions, owners)["c"]
