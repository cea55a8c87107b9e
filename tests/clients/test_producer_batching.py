"""The producer's lock-free append: batches taken for sending (full, lingered, flushed) while
other threads append must lose no message, send none twice, and make no set bigger than
``max_request_bytes``."""
import sys
import threading

import pytest

from broker import message
from clients import Producer


@pytest.fixture
def producer(request, zk):
    """A Producer whose sets are recorded instead of sent (no broker needed), with threads
    switching as often as CPython allows, so that appends race with takes."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    settings = getattr(request, "param", {"batch_size": 7})
    p = Producer(zk, linger_ms=0.2, acks=0, **settings)
    p._partition_counts["t"] = 2
    sent = []
    p._send_set = lambda tp, payload, count, queued_at, window: sent.append(
        (tp, payload, count, window))
    try:
        yield p, sent
    finally:
        sys.setswitchinterval(interval)
        p.close()


def test_threads_and_the_linger_timer_lose_and_repeat_nothing(producer):
    p, sent = producer
    threads, per_thread = 4, 5000

    def send(name):
        for i in range(per_thread):
            p.send("t", b"%s-%d" % (name, i), partition=i % 2)

    workers = [threading.Thread(target=send, args=(b"w%d" % n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    p.flush()
    values = {}
    for (topic, partition), payload, count, _ in sent:
        got = [m.value for m in message.decode_set(payload, topic, partition, 0)]
        assert len(got) == count
        for value in got:
            values[value] = values.get(value, 0) + 1
    expected = {b"w%d-%d" % (n, i) for n in range(threads) for i in range(per_thread)}
    assert set(values) == expected
    assert set(values.values()) == {1}, "no message is sent twice"


@pytest.mark.parametrize("producer", [{"batch_size": 7, "audit": True,
                                       "audit_window_ms": 1000}], indirect=True)
def test_audited_batches_race_too_and_each_is_one_window(producer):
    """An audited producer's batches are stamped when they open: under the same races, every
    message is sent once, stamped with its set's window (so a set is counted in one)."""
    p, sent = producer

    def send(name):
        for i in range(3000):
            p.send("t", b"%s-%d" % (name, i), partition=i % 2, key=b"k" if i % 3 == 0 else None)

    workers = [threading.Thread(target=send, args=(b"w%d" % n,)) for n in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    p.flush()
    values = []
    for (topic, partition), payload, count, window in sent:
        got = list(message.decode_set(payload, topic, partition, 0))
        assert len(got) == count
        assert {m.timestamp - m.timestamp % 1000 for m in got} == {window}
        values += [m.value for m in got]
    assert sorted(values) == sorted(b"w%d-%d" % (n, i) for n in range(3) for i in range(3000))


def test_each_thread_keeps_its_order_within_a_partition(producer):
    p, sent = producer

    def send(name):
        for i in range(3000):
            p.send("t", b"%s-%05d" % (name, i), partition=0)

    workers = [threading.Thread(target=send, args=(name,)) for name in (b"a", b"b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    p.flush()
    stream = [m.value for tp, payload, *_ in sent
              for m in message.decode_set(payload, "t", 0, 0)]
    for name in (b"a", b"b"):
        mine = [v for v in stream if v.startswith(name)]
        assert mine == sorted(mine) and len(mine) == 3000


@pytest.mark.parametrize("producer", [{"batch_size": 1000, "max_request_bytes": 1000}],
                         indirect=True)
def test_threads_never_make_a_set_over_max_request_bytes(producer):
    p, sent = producer

    def send(name):
        for i in range(3000):
            p.send("t", b"%s-%d" % (name, i) + b"." * (i % 90), partition=i % 2)

    workers = [threading.Thread(target=send, args=(b"w%d" % n,)) for n in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    p.flush()
    sizes = [len(payload) for _, payload, *_ in sent]
    assert max(sizes) <= 1000
    values = [m.value for (topic, partition), payload, *_ in sent
              for m in message.decode_set(payload, topic, partition, 0)]
    assert len(values) == len(set(values)) == 4 * 3000
    assert sum(sizes) > 500 * len(sizes), "sets are filled up to the cap, not sent one by one"
