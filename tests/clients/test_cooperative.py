"""Past the paper: cooperative rebalancing, static membership, graceful hand-off, liveness.

Each test records ownership from ZooKeeper and from the consumers themselves many times a
second, and asserts on that record: exclusivity at every sample, and which partitions moved.
"""
import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from clients import Consumer
from coordinator import consumer_registry as groups, zk as zkmod
from coordinator.membership import FencedInstance
from coordinator.rebalance import State
from tests.clients.test_consumer_group import FAST, owners_now
from tests.helpers import create_topic
from tests.helpers import ROOT, wait_for

COOP = {**FAST, "rebalance": "cooperative"}


class OwnershipRecorder(threading.Thread):
    """Samples the consumers' own assignments and ZooKeeper's owner nodes until stopped."""

    def __init__(self, zk, group, topic, consumers):
        super().__init__(daemon=True)
        self.client = zkmod.connect(zk)
        self.group, self.topic = group, topic
        self.consumers = consumers
        self.samples = []
        self.creations = []
        self.overlaps = []
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            owned = [set(c.assignment()) for c in list(self.consumers)]
            for i, a in enumerate(owned):
                for b in owned[i + 1:]:
                    if a & b:
                        self.overlaps.append(a & b)
            self.samples.append(groups.owners(self.client, self.group, self.topic))
            self.creations.append(owner_creations(self.client, self.group, self.topic))
            time.sleep(0.01)

    def stop(self):
        self._stop_event.set()
        self.join(10)
        self.client.stop()
        self.client.close()

    def ever_unowned_or_moved(self, partition, owner):
        return any(sample.get(partition) != owner for sample in self.samples)

    def owner_nodes_created(self, partition):
        """How many distinct owner nodes the partition had over the record (1 = never released)."""
        return len({c[partition] for c in self.creations if partition in c})


def owner_creations(client, group, topic):
    """The transaction id that created each partition's owner node: it changes on a release."""
    from coordinator import paths
    result = {}
    for partition in groups.owners(client, group, topic):
        stat = client.exists(paths.owner(group, topic, partition))
        if stat is not None:
            result[partition] = stat.czxid
    return result


def balanced(consumers, partitions):
    sizes = [len(c.assignment()) for c in consumers]
    return (all(c.member.state is State.STABLE for c in consumers)
            and sum(sizes) == partitions and max(sizes) - min(sizes) <= 1)


def test_a_join_moves_only_what_balance_needs_and_the_rest_never_stops(zk, brokers):
    create_topic(zk, "coop", 6, brokers)
    a = Consumer(["coop"], "gc", zookeeper=zk, **COOP)
    b = Consumer(["coop"], "gc", zookeeper=zk, **COOP)
    consumers = [a, b]
    try:
        wait_for(lambda: balanced(consumers, 6), 30, what="a and b to settle")
        before = {p: c.consumer_id for c in consumers for _, p in c.assignment()}
        recorder = OwnershipRecorder(zk, "gc", "coop", consumers)
        recorder.start()
        c = Consumer(["coop"], "gc", zookeeper=zk, **COOP)
        consumers.append(c)
        wait_for(lambda: balanced(consumers, 6), 30, what="the group to settle with c")
        time.sleep(0.3)
        recorder.stop()
        after = {p: m.consumer_id for m in consumers for _, p in m.assignment()}
        moved = [p for p in range(6) if after[p] != before[p]]
        assert len(moved) == 2, "6 partitions over 3 members: exactly 2 must move"
        assert all(after[p] == c.consumer_id for p in moved)
        kept = [p for p in range(6) if p not in moved]
        for p in kept:
            assert not recorder.ever_unowned_or_moved(p, before[p]), f"partition {p} stopped"
            assert recorder.owner_nodes_created(p) == 1, f"partition {p} was released"
        assert recorder.overlaps == [], "no partition was owned by two consumers at once"
        assert a.member.rebalances >= 1 and b.member.rebalances >= 1
    finally:
        for m in consumers:
            m.close()


def test_eager_protocol_stops_everyone_on_a_join(zk, brokers):
    create_topic(zk, "eager", 4, brokers)
    eager = {**FAST, "rebalance": "eager"}
    a = Consumer(["eager"], "ge", zookeeper=zk, **eager)
    consumers = [a]
    try:
        wait_for(lambda: len(a.assignment()) == 4, 30, what="a to own everything")
        recorder = OwnershipRecorder(zk, "ge", "eager", consumers)
        recorder.start()
        b = Consumer(["eager"], "ge", zookeeper=zk, **eager)
        consumers.append(b)
        wait_for(lambda: balanced(consumers, 4), 30, what="a and b to settle")
        sampled = len(recorder.samples)
        wait_for(lambda: len(recorder.samples) > sampled + 1, 10,
                 what="a sample of the owner nodes taken after the settle")
        recorder.stop()
        kept_by_a = [p for _, p in a.assignment()]
        assert kept_by_a, "a keeps some partitions"
        for p in range(4):
            assert recorder.owner_nodes_created(p) >= 2 or p not in recorder.creations[0], \
                f"the paper's protocol releases every partition, even {p} which a keeps"
        assert recorder.overlaps == []
    finally:
        for m in consumers:
            m.close()


def test_poll_interval_exceeded_gives_partitions_up_then_rejoins(zk, brokers):
    create_topic(zk, "slow", 4, brokers)
    slow = Consumer(["slow"], "gs", zookeeper=zk, max_poll_interval_ms=1500, **COOP)
    busy = Consumer(["slow"], "gs", zookeeper=zk, max_poll_interval_ms=60_000, **COOP)
    stop = threading.Event()

    def keep_polling():
        while not stop.is_set():
            busy.poll(100)

    thread = threading.Thread(target=keep_polling, daemon=True)
    thread.start()
    try:
        wait_for(lambda: balanced([slow, busy], 4), 30, what="the group to settle")
        time.sleep(0.2)
        # `slow` stops polling: its handler is "stuck"
        wait_for(lambda: slow.member.state is State.LEFT, 10, what="slow to give up")
        wait_for(lambda: len(busy.assignment()) == 4, 10, what="busy to take all 4")
        assert slow.assignment() == [] and slow.member.left_for_slowness == 1
        slow.poll(100)
        wait_for(lambda: (slow.poll(50) is not None) and balanced([slow, busy], 4), 30,
                 what="slow to rejoin and the group to rebalance")
    finally:
        stop.set()
        thread.join(5)
        slow.close()
        busy.close()


STATIC_WORKER = """
import json, signal, sys, time
from clients import Consumer
args = json.loads(sys.argv[1])
c = Consumer([args["topic"]], "gst", zookeeper=args["zk"], instance_id=args["id"],
             session_timeout_ms=args["session_ms"], rebalance="cooperative",
             rebalance_backoff_ms=200, auto_commit_ms=200, max_wait_ms=200)
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
print("ready", flush=True)
while not stopping:
    c.poll(100)
c.close(leave_group=args.get("leave", True))
"""


def start_member(zk, topic, instance_id, session_ms=8000, leave=True):
    proc = subprocess.Popen([sys.executable, "-c", STATIC_WORKER,
                             json.dumps({"zk": zk, "topic": topic, "id": instance_id,
                                         "session_ms": session_ms, "leave": leave})],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def test_static_member_comes_back_to_its_partitions_and_a_twin_is_fenced(zk, brokers):
    create_topic(zk, "static", 4, brokers)
    one = start_member(zk, "static", "one")
    two = start_member(zk, "static", "two")
    try:
        wait_for(lambda: sorted(owners_now(zk, "gst", "static").values()) ==
                 ["one", "one", "two", "two"], 30, what="two static members to settle")
        before = owners_now(zk, "gst", "static")
        one.send_signal(signal.SIGKILL)
        one.wait(10)
        one = start_member(zk, "static", "one")
        for _ in range(20):
            assert owners_now(zk, "gst", "static") == before, "nobody's assignment changed"
            time.sleep(0.1)
        with pytest.raises(FencedInstance, match="in use by a live consumer"):
            Consumer(["static"], "gst", zookeeper=zk, instance_id="two", **COOP)
    finally:
        for proc in (one, two):
            proc.kill()
            proc.wait(10)


def test_sigterm_hands_partitions_over_without_a_session_timeout(zk, brokers):
    create_topic(zk, "handoff", 4, brokers)
    leaving = start_member(zk, "handoff", "leaving", session_ms=30_000)
    stay = Consumer(["handoff"], "gst", zookeeper=zk, **COOP)
    try:
        wait_for(lambda: len(owners_now(zk, "gst", "handoff")) == 4 and len(stay.assignment()) == 2,
                 30, what="two members to share four partitions")
        leaving.send_signal(signal.SIGTERM)
        assert leaving.wait(20) == 0
        wait_for(lambda: len(stay.assignment()) == 4, 15,
                 what="the partitions to move long before the 30 s session timeout")
        assert "leaving" not in groups.members(stay.member.client, "gst")
    finally:
        leaving.kill()
        stay.close()
