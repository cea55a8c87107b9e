"""The lag figures' pure parts: one stuck rule (the dashboards' and ``groups describe``'s) and
one partition's row from two samples."""
from cluster.observe import lag
from cluster.observe.lag import stuck


def test_stuck_needs_lag_and_no_progress_for_the_window():
    first = {"time": 0.0, "committed": 100}
    assert stuck(first, {"time": 5.0, "committed": 100}, 50, 5.0)
    assert not stuck(first, {"time": 5.0, "committed": 120}, 50, 5.0)     # moving
    assert not stuck(first, {"time": 5.0, "committed": 100}, 0, 5.0)      # caught up
    assert not stuck(first, {"time": 2.0, "committed": 100}, 50, 5.0)     # too soon to say
    assert not stuck(None, {"time": 5.0, "committed": 100}, 50, 5.0)


def test_lag_row_without_a_first_sample_has_no_rates():
    row = lag.row("t", 0, "c1", None, {"committed": 100, "time": 1.0, "log_start": 0,
                                       "log_end": 300}, None, lambda offset: 20.0)
    assert (row.lag_bytes, row.lag_messages, row.consume_msgs_per_s, row.stuck) == \
        (200, 10, None, False)
    row = lag.row("t", 0, "c1", {"committed": 0, "time": 0.0, "log_start": 0, "log_end": 200},
                  {"committed": 100, "time": 2.0, "log_start": 0, "log_end": 300}, None,
                  lambda offset: 20.0)
    assert (row.consume_bytes_per_s, row.consume_msgs_per_s) == (50.0, 2.5)


def test_a_partition_nobody_owns_is_not_stuck_but_unowned_or_idle():
    """An empty group (its consumers all left, as ``sluice consume --group`` leaves one) keeps
    its lag, but nobody is there to be stuck: ``idle``; with members, between owners:
    ``unowned``."""
    first = {"committed": 100, "time": 0.0, "log_start": 0, "log_end": 300}
    second = {"committed": 100, "time": 10.0, "log_start": 0, "log_end": 300}
    owned = lag.row("t", 0, "c1", first, second, None, lambda offset: 20.0, window_s=10.0)
    nobody = lag.row("t", 0, None, first, second, None, lambda offset: 20.0, window_s=10.0)
    assert owned.stuck and not nobody.stuck and nobody.lag_bytes == 200
    row = lag.as_dicts([nobody])[0]
    assert (lag.state(row, 0), lag.state(row, 2)) == ("idle", "unowned")
    assert lag.state(lag.as_dicts([owned])[0], 1) == "STUCK"


def test_doctests():
    import doctest
    assert doctest.testmod(lag).failed == 0
