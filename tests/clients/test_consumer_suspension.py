"""A consumer cut off from ZooKeeper stops processing before another takes over (issue 10, hole 6).

Consumer A reaches ZooKeeper through a proxy that black-holes its traffic for longer than its
session timeout, while it can still reach the broker; consumer B reaches ZooKeeper directly.
Both record every message they process with the time (one process, one clock). Once the cut
starts, A may finish only what it already had in hand; B starts after A's session expired.
"""
from __future__ import annotations

import threading
import time

import pytest

from clients import Consumer, Producer
from coordinator import zk as zkconnect
from tests.helpers import GroupOffsets, create_topic
from tests.helpers import BrokerProcess, wait_for
from cluster.drills.netproxy import BlackholeProxy

TOPIC, GROUP = "cut", "g"
SETTINGS = dict(auto_commit_ms=200, max_wait_ms=100, session_timeout_ms=4000,
                rebalance_backoff_ms=200, rebalance_max_tries=20, max_poll_records=20)


@pytest.fixture
def broker(zk, tmp_path):
    proc = BrokerProcess(zk, tmp_path, log={"flush_ms": 50}).start()
    create_topic(zk, TOPIC, 1, [proc])
    yield proc
    proc.stop()


@pytest.fixture
def proxy(zk_server):
    proxy = BlackholeProxy("127.0.0.1", zk_server.client_port).start()
    yield proxy
    proxy.stop()


class Steady(threading.Thread):
    """acks=1 at a few hundred messages a second until stopped."""

    def __init__(self, zk):
        super().__init__(daemon=True)
        self.zk = zk
        self.sent = 0
        self.stopping = threading.Event()

    def run(self):
        with Producer(self.zk, acks=1, batch_size=5, linger_ms=5) as producer:
            while not self.stopping.is_set():
                for _ in range(5):
                    producer.send(TOPIC, b"%08d" % self.sent)
                    self.sent += 1
                time.sleep(0.02)


class Processing(threading.Thread):
    """Iterate a consumer, recording (time, offset) of every message processed."""

    def __init__(self, consumer: Consumer):
        super().__init__(daemon=True)
        self.consumer = consumer
        self.events: list[tuple[float, int]] = []
        self.error: BaseException | None = None

    def run(self):
        try:
            for m in self.consumer:
                self.events.append((time.monotonic(), m.offset))
        except BaseException as exc:  # reported by the test
            self.error = exc

    def stop(self):
        self.consumer.wakeup()
        self.join(30)
        self.consumer.close()


def test_a_cut_off_consumer_stops_before_another_member_takes_its_partition(zk, broker, proxy):
    producer = Steady(zk)
    producer.start()
    hosts, chroot = proxy.address, "/" + zk.split("/", 1)[1]
    a = Processing(Consumer([TOPIC], GROUP, zookeeper=hosts + chroot, **SETTINGS))
    a.start()
    wait_for(lambda: len(a.events) > 200, 60, what="A to process messages")
    b = Processing(Consumer([TOPIC], GROUP, zookeeper=zk, **SETTINGS))
    b.start()
    client = zkconnect.connect(zk)
    try:
        wait_for(lambda: b.consumer.member.state.value == "stable", 30, what="B to settle")
        assert b.consumer.assignment() == [] and a.consumer.assignment() == [(TOPIC, 0)]

        cut_at = time.monotonic()
        proxy.cut()
        committed_at_cut = GroupOffsets(zk, GROUP).fetch(TOPIC, 0)
        wait_for(lambda: len(b.events) > 200, 90, what="B to take over and process")
        proxy.restore()
        wait_for(lambda: a.consumer.assignment() == [] and a.consumer.member.confirmed, 60,
                 what="A to learn its session was lost")
    finally:
        producer.stopping.set()
        producer.join(30)
        b.stop()
        a.stop()
        client.stop()
        client.close()
    assert a.error is None and b.error is None, (a.error, b.error)

    b_started = b.events[0][0]
    a_after_cut = [(t, off) for t, off in a.events if t >= cut_at]
    late = [(round(t - b_started, 3), off) for t, off in a_after_cut if t >= b_started]
    assert late == [], f"A processed {len(late)} message(s) after B began: {late[:5]}"
    # What both processed is what A had processed but not committed when the cut began.
    both = {off for _, off in a.events} & {off for _, off in b.events}
    assert committed_at_cut is not None and all(off >= committed_at_cut for off in both)
    assert b.events[0][1] >= committed_at_cut
