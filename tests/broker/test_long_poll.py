"""The purgatory of long-poll fetches, without sockets: parked waiters, the one "satisfied?"
predicate, deadlines."""
import doctest

from broker import long_poll
from broker.long_poll import Purgatory, Waiter, satisfied
from broker.protocol import Api, Request


class FakeLog:
    """Stands in for a Log: the purgatory reads only its visible end."""

    def __init__(self, visible_end: int = 0):
        self.visible_end = visible_end


def waiter(log, offset=0, min_bytes=1, deadline=10.0, corr=1) -> Waiter:
    return Waiter(b"client-%d" % corr, Request(Api.FETCH, corr, "t", 0, offset=offset,
                                                min_bytes=min_bytes, max_wait_ms=500),
                  log, deadline)


def test_the_worked_examples():
    assert doctest.testmod(long_poll).failed == 0


def test_satisfied_wants_min_bytes_and_at_least_one_byte_past_the_offset():
    log = FakeLog()
    assert [satisfied(waiter(log, 100, 0), end) for end in (99, 100, 101)] == [False, False, True]
    assert [satisfied(waiter(log, 100, 60), end) for end in (159, 160)] == [False, True]


def test_a_waiter_is_let_go_once_its_log_grows_enough():
    log, other = FakeLog(100), FakeLog(0)
    purgatory = Purgatory()
    small, big = waiter(log, 100, 1, corr=1), waiter(log, 100, 500, corr=2)
    elsewhere = waiter(other, 0, 1, corr=3)
    for one in (small, big, elsewhere):
        purgatory.park(one)
    assert purgatory.ready([log]) == [] and len(purgatory) == 3
    log.visible_end = 160
    assert purgatory.ready([log]) == [small] and small.done and not big.done
    assert purgatory.ready([log]) == [], "a waiter is let go once"
    log.visible_end = 600
    assert purgatory.ready(purgatory.logs()) == [big]
    assert purgatory.logs() == [other] and not purgatory.waiting_on(log)


def test_deadlines_let_go_in_order_and_skip_what_was_answered():
    log = FakeLog(0)
    purgatory = Purgatory()
    late, early, answered = waiter(log, deadline=3.0), waiter(log, deadline=1.0), \
        waiter(log, deadline=2.0)
    for one in (late, early, answered):
        purgatory.park(one)
    assert purgatory.next_deadline() == 1.0
    log.visible_end = 5
    assert len(purgatory.ready([log])) == 3
    assert purgatory.expired(now=10.0) == [], "all three were answered before their deadline"
    for one in (late, early):
        purgatory.park(waiter(log, offset=5, deadline=one.deadline + 10))
    expired = purgatory.expired(now=12.0)
    assert [w.deadline for w in expired] == [11.0] and purgatory.next_deadline() == 13.0
    assert [w.deadline for w in purgatory.expired(now=13.0)] == [13.0]
    assert purgatory.next_deadline() is None


def test_an_expired_waiter_is_kept_nowhere():
    """On main an expired long-poll stayed in its log's list until the log next grew: an idle
    partition polled by a consumer kept one more waiter per poll, without bound."""
    log = FakeLog(0)
    purgatory = Purgatory()
    for i in range(1000):
        purgatory.park(waiter(log, deadline=float(i), corr=i))
        assert len(purgatory.expired(now=float(i))) == 1
    assert len(purgatory) == 0 and not purgatory, "nothing parked: the flusher wakes nobody"
    assert purgatory.logs() == [] and purgatory.next_deadline() is None


def test_the_purgatory_says_whether_anything_is_parked():
    log = FakeLog(0)
    purgatory = Purgatory()
    assert not purgatory
    one = waiter(log)
    purgatory.park(one)
    assert purgatory and purgatory.waiting_on(log)
    purgatory.expired(now=one.deadline)
    assert not purgatory


def test_drop_lets_every_waiter_of_a_log_go_and_none_expires_after():
    log, other = FakeLog(0), FakeLog(0)
    purgatory = Purgatory()
    mine, theirs = waiter(log, corr=1, deadline=1.0), waiter(other, corr=2, deadline=1.0)
    purgatory.park(mine)
    purgatory.park(theirs)
    assert purgatory.drop(log) == [mine] and mine.done
    assert purgatory.drop(log) == [] and purgatory.logs() == [other]
    assert purgatory.expired(5.0) == [theirs]


def test_a_replica_fetch_is_answered_at_once_only_for_an_acks_all_request_or_its_min_bytes():
    due = long_poll.replica_fetch_due
    assert [due(n, 1000, acks_waiting=True) for n in (0, 1, 999)] == [False, True, True]
    assert [due(n, 1000, acks_waiting=False) for n in (0, 999, 1000)] == [False, False, True]


def test_ready_lets_a_given_rule_decide_instead_of_each_requests_min_bytes():
    log = FakeLog(150)
    purgatory = Purgatory()
    follower = waiter(log, 100, min_bytes=1 << 20, corr=1)
    purgatory.park(follower)
    assert purgatory.ready([log]) == []                     # 50 bytes, it asked for a MiB
    acks_all_past_120 = lambda w, end: long_poll.replica_fetch_due(  # noqa: E731
        end - w.request.offset, w.request.min_bytes, acks_waiting=w.request.offset < 120)
    assert purgatory.ready([log], acks_all_past_120) == [follower]
    assert follower.done and not purgatory


def test_linger_brings_the_deadline_of_waiters_with_data_forward_only():
    log = FakeLog(100)
    purgatory = Purgatory()
    has_data, caught_up = waiter(log, 40, 1 << 20, deadline=10.0, corr=1), \
        waiter(log, 100, 1 << 20, deadline=10.0, corr=2)
    soon = waiter(log, 40, 1 << 20, deadline=2.0, corr=3)
    for one in (has_data, caught_up, soon):
        purgatory.park(one)
    purgatory.linger(log, until=3.0)
    assert (has_data.deadline, caught_up.deadline, soon.deadline) == (3.0, 10.0, 2.0)
    assert purgatory.next_deadline() == 2.0
    assert purgatory.expired(2.5) == [soon]
    assert purgatory.expired(3.0) == [has_data]              # its linger, not its 10 s
    assert purgatory.expired(10.0) == [caught_up]            # the stale 10 s entry is skipped
    assert not purgatory


def test_the_next_deadline_is_that_of_a_waiter_still_parked():
    """A waiter answered before its deadline does not set when the loop wakes next."""
    log = FakeLog(0)
    purgatory = Purgatory()
    answered, parked = waiter(log, 0, deadline=1.0, corr=1), waiter(log, 0, deadline=5.0, corr=2)
    purgatory.park(answered)
    purgatory.park(parked)
    log.visible_end = 10
    assert purgatory.ready([log], lambda w, end: w is answered) == [answered]
    assert purgatory.next_deadline() == 5.0
    assert purgatory.ready([log]) == [parked]
    assert purgatory.next_deadline() is None
