"""A member cut off from ZooKeeper stops owning before anyone else can start (issue 10, hole 6).

Member A reaches ZooKeeper through a proxy that black-holes its traffic; member B directly. Both
run the real GroupMember against a real ZooKeeper and a real broker's registry entries.
"""
from __future__ import annotations

import threading

import pytest

from coordinator import zk as zkconnect
from coordinator.group import GroupMember
from tests.coordinator.conftest import TOPIC
from tests.helpers import wait_for
from cluster.drills.netproxy import BlackholeProxy

GROUP = "g"


@pytest.fixture
def proxy(zk_server):
    proxy = BlackholeProxy("127.0.0.1", zk_server.client_port).start()
    yield proxy
    proxy.stop()


class Recorder:
    """The member's callbacks, with what the *other* member's state was at each assignment."""

    def __init__(self):
        self.assigned: list[tuple[tuple[str, int], bool | None]] = []
        self.lost: list[tuple[str, int]] = []
        self.other: GroupMember | None = None
        self.event = threading.Event()

    def on_assign(self, partitions):
        for tp in partitions:
            self.assigned.append((tp, None if self.other is None else self.other.confirmed))
        self.event.set()

    def on_lost(self, partitions):
        self.lost.extend(partitions)
        self.event.set()


def member(client, recorder: Recorder) -> GroupMember:
    return GroupMember(client, GROUP, [TOPIC], protocol="cooperative",
                       on_assign=recorder.on_assign, on_lost=recorder.on_lost)


def chrooted(zk: str, hosts: str) -> str:
    return hosts + "/" + zk.split("/", 1)[1]


def test_a_cut_off_member_is_unconfirmed_before_its_partitions_move(zk, broker, proxy):
    client_a = zkconnect.connect(chrooted(zk, proxy.address), session_timeout=4.0)
    client_b = zkconnect.connect(zk, session_timeout=4.0)
    seen_a, seen_b = Recorder(), Recorder()
    a, b = member(client_a, seen_a), member(client_b, seen_b)
    try:
        a.start()
        wait_for(lambda: a.owned == {(TOPIC, 0)} and a.confirmed, 30, what="A to own t/0")
        seen_b.other = a
        b.start()
        wait_for(lambda: b.state.value == "stable", 30, what="B to settle owning nothing")
        assert b.owned == frozenset()

        proxy.cut()
        wait_for(lambda: b.owned == {(TOPIC, 0)}, 60, what="B to take t/0 after A's session expired")
        assert seen_b.assigned == [((TOPIC, 0), False)], \
            "A still handed out t/0 as its own when B was given it"
        assert (TOPIC, 0) in a.owned and not a.confirmed  # A cannot know yet, but holds back

        proxy.restore()
        wait_for(lambda: seen_a.lost == [(TOPIC, 0)] and a.confirmed, 60,
                 what="A to learn its session was lost and drop t/0")
        assert a.owned == frozenset() and b.owned == {(TOPIC, 0)}
    finally:
        for m in (a, b):
            m.stop()
        for client in (client_a, client_b):
            client.stop()
            client.close()


def test_a_short_suspension_keeps_the_partitions_once_confirmed(zk, broker, proxy):
    client_a = zkconnect.connect(chrooted(zk, proxy.address), session_timeout=10.0)
    seen_a = Recorder()
    a = member(client_a, seen_a)
    try:
        a.start()
        wait_for(lambda: a.owned == {(TOPIC, 0)} and a.confirmed, 30, what="A to own t/0")
        proxy.cut()
        wait_for(lambda: not a.confirmed, 30, what="A's connection to be suspended")
        proxy.restore()  # a third of the session timeout before the server would expire it
        wait_for(lambda: a.confirmed, 30, what="A to confirm its ownership again")
        assert a.owned == {(TOPIC, 0)} and seen_a.lost == []
        assert client_a.client_id is not None
    finally:
        a.stop()
        client_a.stop()
        client_a.close()
