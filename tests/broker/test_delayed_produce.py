"""The acks=all purgatory (broker/delayed_produce.py), without sockets."""
import doctest

from broker import delayed_produce
from broker.delayed_produce import AckPurgatory, AckWaiter

KEY, OTHER = ("t", 0), ("t", 1)


def waiter(corr, base, nxt, deadline=30.0, key=KEY):
    return AckWaiter(b"c%d" % corr, corr, key, base, nxt, deadline)


def test_the_worked_examples():
    assert doctest.testmod(delayed_produce).failed == 0


def test_waiters_are_answered_in_write_order_as_the_high_watermark_passes_them():
    p = AckPurgatory()
    ws = [waiter(i, i * 10, i * 10 + 10) for i in range(5)]
    for w in ws:
        p.park(w)
    p.park(waiter(9, 0, 10, key=OTHER))
    assert p.ready(KEY, 9) == []
    assert p.ready(KEY, 30) == ws[:3]
    assert p.ready(KEY, 30) == [], "answered once"
    assert p.ready(KEY, 1000) == ws[3:] and len(p) == 1


def test_a_deadline_answers_once_and_the_expired_waiter_is_skipped_later():
    p = AckPurgatory()
    early, late = waiter(1, 0, 10, deadline=1.0), waiter(2, 10, 20, deadline=5.0)
    p.park(early)
    p.park(late)
    assert p.next_deadline() == 1.0
    assert p.expired(2.0) == [early] and early.done
    assert p.ready(KEY, 20) == [late], "the expired one in front does not block the next"
    assert p.expired(10.0) == [] and len(p) == 0


def test_losing_leadership_lets_every_waiter_of_the_partition_go():
    p = AckPurgatory()
    mine, other = waiter(1, 0, 10), waiter(2, 0, 10, key=OTHER)
    p.park(mine)
    p.park(other)
    assert p.drop(KEY) == [mine]
    assert p.expired(100.0) == [other], "a dropped waiter does not expire again"
    assert p.drop(KEY) == []


def test_a_duplicates_waiter_parked_after_newer_writes_goes_in_next_offset_order():
    """A retry of an older write is parked after newer ones but waits on its original's next
    offset: it is let go when the high watermark passes that, not behind the newer writes,
    and the newest next offset still tells a fetching follower it is lacking."""
    p = AckPurgatory()
    older, newer, retry = waiter(1, 0, 10), waiter(2, 10, 20), waiter(3, 0, 10)
    p.park(older)
    p.park(newer)
    p.park(retry)
    assert p.waits_past(KEY, 15)
    assert p.ready(KEY, 10) == [older, retry]
    assert p.ready(KEY, 20) == [newer] and len(p) == 0
