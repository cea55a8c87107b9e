"""The delivery model: what poll(), iteration, commit(), close() and a rebalance mark processed.

Every assertion is on the offsets ZooKeeper holds afterwards (what a successor would resume
from), against the messages the application was handed.
"""
import threading

import pytest

from clients import Consumer, Producer
from tests.clients.test_consumer_group import settled
from tests.helpers import create_topic
from tests.helpers import BrokerProcess, GroupOffsets, wait_for

QUICK = dict(rebalance_backoff_ms=200, rebalance_max_tries=20, max_wait_ms=200,
             session_timeout_ms=4000)


@pytest.fixture
def broker(zk, tmp_path):
    proc = BrokerProcess(zk, tmp_path, 0, log={"flush_ms": 20}).start()
    yield proc
    proc.stop()


@pytest.fixture
def store(zk):
    return lambda group: GroupOffsets(zk, group)


def produce(zk, topic, count, partitions=1, start=0):
    with Producer(zk, acks=1, batch_size=50) as producer:
        for i in range(start, start + count):
            producer.send(topic, b"m%06d" % i, partition=i % partitions)


def poll_some(consumer, at_least=1, timeout=30):
    got = []
    wait_for(lambda: got.extend(consumer.poll(200)) or len(got) >= at_least, timeout,
             what=f"{at_least} message(s)")
    return got


def test_close_after_poll_commits_nothing_of_the_batch_in_hand(zk, broker, store):
    create_topic(zk, "inhand", 1, [broker])
    produce(zk, "inhand", 100)
    c = Consumer(["inhand"], "g-inhand", zookeeper=zk, auto_commit_ms=60_000, **QUICK)
    try:
        batch = poll_some(c)
        assert batch[0].offset == 0
    finally:
        c.close()
    assert store("g-inhand").fetch("inhand", 0) == 0, \
        "close() must not commit a batch the caller never came back from"


def test_the_next_poll_marks_the_previous_batch_and_close_writes_only_that(zk, broker, store):
    create_topic(zk, "nextpoll", 1, [broker])
    produce(zk, "nextpoll", 100)
    c = Consumer(["nextpoll"], "g-next", zookeeper=zk, auto_commit_ms=60_000,
                 max_poll_records=10, **QUICK)
    try:
        first = poll_some(c)
        second = poll_some(c)
        assert len(first) == len(second) == 10
        assert second[0].offset == first[-1].next_offset
    finally:
        c.close()
    assert store("g-next").fetch("nextpoll", 0) == first[-1].next_offset


def test_iteration_that_raises_commits_the_messages_before_it(zk, broker, store):
    create_topic(zk, "iterraise", 1, [broker])
    produce(zk, "iterraise", 100)
    seen = []
    c = Consumer(["iterraise"], "g-iter", zookeeper=zk, auto_commit_ms=60_000, **QUICK)
    try:
        with pytest.raises(RuntimeError):
            for m in c:
                seen.append(m)
                if len(seen) == 3:
                    raise RuntimeError("handler failed on the third message")
    finally:
        c.close()
    assert store("g-iter").fetch("iterraise", 0) == seen[2].offset


def test_commit_message_and_explicit_offsets_commit_exactly_that(zk, broker, store):
    create_topic(zk, "exact", 2, [broker])
    produce(zk, "exact", 100, partitions=2)
    c = Consumer(["exact"], "g-exact", zookeeper=zk, auto_commit_ms=None, **QUICK)
    offsets = store("g-exact")
    try:
        wait_for(lambda: len(c.assignment()) == 2, 30, what="both partitions")
        got = poll_some(c, at_least=20)
        p0 = [m for m in got if m.partition == 0]
        assert len(p0) >= 5
        assert c.commit(p0[4]) == 1
        assert offsets.fetch("exact", 0) == p0[4].next_offset
        assert offsets.fetch("exact", 1) in (None, 0), "commit(message) touches its partition"
        c.commit({("exact", 0): p0[2].next_offset})
        assert offsets.fetch("exact", 0) == p0[2].next_offset
        with pytest.raises(ValueError, match="returned"):
            c.commit({("exact", 0): p0[-1].next_offset + 15})
        with pytest.raises(ValueError, match="not owned"):
            c.commit({("exact", 7): 0})
        with pytest.raises(ValueError, match="not owned"):
            c.commit({("other", 0): 0})
        assert offsets.fetch("exact", 0) == p0[2].next_offset, "a refused commit writes nothing"
        c.commit()
        last = {m.partition: m.next_offset for m in got}
        assert offsets.fetch("exact", 0) == last[0]
    finally:
        c.close()
    assert store("g-exact").fetch("exact", 0) == last[0], "manual mode: close writes no more"


def test_max_poll_records_bounds_every_poll_and_nothing_is_fetched_twice(zk, broker):
    create_topic(zk, "bounded", 2, [broker])
    produce(zk, "bounded", 3000, partitions=2)
    sizes, got = [], []
    with Consumer(["bounded"], "g-bounded", zookeeper=zk, max_poll_records=64, **QUICK) as c:
        def more():
            batch = c.poll(200)
            sizes.append(len(batch))
            got.extend(batch)
            return len(got) >= 3000
        wait_for(more, 60, what="3000 messages")
        assert max(sizes) == 64
        assert c.stats["fetched_messages"] == 3000, "a buffered message was fetched again"
    for partition in (0, 1):
        values = [m.value for m in got if m.partition == partition]
        assert values == [b"m%06d" % i for i in range(partition, 3000, 2)]


def test_before_commit_runs_before_each_offsets_write(zk, broker, store):
    create_topic(zk, "durable", 1, [broker])
    produce(zk, "durable", 50)
    offsets = store("g-durable")
    calls = []
    c = Consumer(["durable"], "g-durable", zookeeper=zk, auto_commit_ms=None,
                 before_commit=lambda: calls.append(offsets.fetch("durable", 0)), **QUICK)
    try:
        got = poll_some(c, at_least=10)
        c.commit(got[3])
        assert calls == [None], "called once, before the write"
        assert c.commit(got[3]) == 0 and calls == [None], "nothing to write: not called"
        c.commit(got[5])
        assert calls == [None, got[3].next_offset]
    finally:
        c.close()
    assert offsets.fetch("durable", 0) == got[5].next_offset


class Drain(threading.Thread):
    """poll() in a loop, each batch held ``work_s`` (processing takes time, so a rebalance
    finds batches in hand); records each batch with the partitions owned when the poll began
    (a partition may be assigned during the poll, but one given up before it must not show)."""

    def __init__(self, consumer, work_s=0.01):
        super().__init__(daemon=True)
        self.consumer = consumer
        self.work_s = work_s
        self.batches = []
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            owned = set(self.consumer.assignment())
            batch = self.consumer.poll(100)
            self.batches.append((owned, batch))
            if batch:
                self.stop_event.wait(self.work_s)

    def values(self):
        return [m.value for _, batch in self.batches for m in batch]

    def stop(self):
        self.stop_event.set()
        self.consumer.wakeup()
        self.join(30)


class IterDrain(Drain):
    """The same, iterating: one message at a time, each held ``work_s``."""

    def run(self):
        messages = iter(self.consumer)
        while not self.stop_event.is_set():
            owned = set(self.consumer.assignment())
            m = next(messages, None)
            if m is None:
                return
            self.batches.append((owned, [m]))
            self.stop_event.wait(self.work_s)


@pytest.mark.parametrize("drain, work_s", [(Drain, 0.01), (IterDrain, 0.001)])
def test_a_rebalance_replays_nothing_and_drops_what_was_buffered(zk, broker, drain, work_s):
    create_topic(zk, "moves", 2, [broker])
    produce(zk, "moves", 2000, partitions=2)
    small = dict(QUICK, max_poll_records=5, max_bytes=8 * 16)  # batches alternate partitions
    a = Consumer(["moves"], "g-moves", zookeeper=zk, **small)
    drains = [drain(a, work_s)]
    b = None
    try:
        wait_for(lambda: settled([a], "moves", 2), 30, what="a to own both partitions")
        drains[0].start()
        wait_for(lambda: len(drains[0].values()) >= 200, 30, what="a to be part-way")
        b = Consumer(["moves"], "g-moves", zookeeper=zk, **small)
        drains.append(drain(b, work_s))
        drains[1].start()
        wait_for(lambda: len(set(drains[0].values() + drains[1].values())) >= 2000, 60,
                 what="every message")
        for d in drains:
            d.stop()
        for d in drains:
            had = set()
            for owned, batch in d.batches:
                given_up = had - owned
                had |= owned
                strays = [m for m in batch if (m.topic, m.partition) in given_up]
                assert not strays, "returned messages of a partition given up before the ask"
        values = drains[0].values() + drains[1].values()
        assert len(values) == len(set(values)) == 2000, "a cooperative move replayed messages"
        assert len(b.assignment()) == 1
    finally:
        for d in drains:
            d.stop()
        a.close()
        if b is not None:
            b.close()
