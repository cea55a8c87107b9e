"""The flush policy with made-up monotonic times: N messages or T ms, whichever first."""
import pytest

from broker.flush import FlushPolicy


def test_nothing_pending_is_never_due():
    policy = FlushPolicy(messages=3, ms=1000)
    assert not policy.due(0.0)
    assert not policy.due(1e9)
    assert policy.seconds_until_due(5.0) is None
    policy.record(0, now=1.0)
    assert not policy.due(1e9)
    assert policy.unflushed == 0


def test_due_by_count():
    policy = FlushPolicy(messages=3, ms=1000)
    policy.record(2, now=10.0)
    assert not policy.due(10.0)
    policy.record(1, now=10.1)
    assert policy.due(10.1)
    assert policy.seconds_until_due(10.1) == 0.0


def test_one_big_batch_is_due_at_once():
    policy = FlushPolicy(messages=500, ms=3000)
    policy.record(800, now=1.0)
    assert policy.due(1.0)


def test_due_by_time_since_the_first_unflushed_message():
    policy = FlushPolicy(messages=500, ms=3000)
    policy.record(1, now=10.0)
    policy.record(1, now=12.5)
    assert not policy.due(12.999)
    assert policy.seconds_until_due(11.0) == pytest.approx(2.0)
    assert policy.due(13.0)
    assert policy.seconds_until_due(14.0) == 0.0


def test_flush_resets_both_rules():
    policy = FlushPolicy(messages=3, ms=1000)
    policy.record(5, now=0.0)
    assert policy.begin() == 5
    policy.done()
    assert policy.unflushed == 0
    assert not policy.due(100.0)
    policy.record(1, now=100.0)
    assert not policy.due(100.5)
    assert policy.due(101.0)


def test_messages_appended_during_a_flush_keep_their_own_age():
    """The docstring's example: 10 messages arrive while 200 are being fsynced."""
    policy = FlushPolicy(messages=500, ms=3000)
    policy.record(200, now=10.0)
    assert not policy.due(11.0)
    assert policy.due(13.0)
    assert policy.begin() == 200
    assert not policy.due(13.0)
    policy.record(10, now=13.5)
    assert policy.unflushed == 210
    policy.done()
    assert policy.unflushed == 10
    assert not policy.due(16.4)
    assert policy.due(16.5)


def test_count_during_a_flush_counts_only_new_messages():
    policy = FlushPolicy(messages=3, ms=60_000)
    policy.record(3, now=0.0)
    policy.begin()
    policy.record(2, now=0.1)
    assert not policy.due(0.1)
    policy.record(1, now=0.2)
    assert policy.due(0.2)


def test_abort_puts_the_messages_back_with_their_age():
    policy = FlushPolicy(messages=100, ms=1000)
    policy.record(4, now=5.0)
    policy.begin()
    policy.record(1, now=5.8)
    policy.abort()
    assert policy.unflushed == 5
    assert policy.pending == 5
    assert policy.due(6.0)
    assert not policy.flushing


def test_abort_without_a_flush_changes_nothing():
    policy = FlushPolicy(messages=100, ms=1000)
    policy.record(2, now=1.0)
    policy.abort()
    assert (policy.pending, policy.pending_since) == (2, 1.0)


def test_empty_flush_keeps_later_records_timed_from_themselves():
    policy = FlushPolicy(messages=100, ms=1000)
    assert policy.begin() == 0
    policy.record(1, now=50.0)
    policy.done()
    assert not policy.due(50.9)
    assert policy.due(51.0)


def test_only_one_flush_in_flight():
    policy = FlushPolicy(messages=1, ms=1)
    policy.begin()
    with pytest.raises(RuntimeError):
        policy.begin()
    policy.done()
    policy.begin()


@pytest.mark.parametrize("messages, ms", [(0, 1000), (1, 0), (-1, 5)])
def test_rejects_non_positive_settings(messages, ms):
    with pytest.raises(ValueError):
        FlushPolicy(messages, ms)
