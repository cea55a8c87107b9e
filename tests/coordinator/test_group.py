"""GroupMember over a real ZooKeeper and a real broker's registry entries."""
from __future__ import annotations

import threading

from coordinator import paths, zk as zkconnect
from coordinator.group import GroupMember
from coordinator.rebalance import RetryPolicy
from tests.coordinator.conftest import TOPIC
from tests.helpers import wait_for


def rebalance_threads(group: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"rebalance-{group}" and t.is_alive()]


def test_stop_ends_an_eager_member_in_its_back_off(zk, zk_client, broker):
    """The eager protocol backs off between tries on its stop event: stop() ends the rebalance
    thread even when the back-off is far longer than stop() waits for it."""
    group = "backing-off"
    zk_client.create(paths.owner(group, TOPIC, 0), b"another-member", ephemeral=True,
                     makepath=True)
    client = zkconnect.connect(zk)
    member = GroupMember(client, group, [TOPIC], protocol="eager",
                         retry=RetryPolicy(max_tries=2, backoff_s=3600))
    try:
        member.start()
        wait_for(lambda: member.conflicts == 1, what="the member to meet the held owner node")
        member.stop()
        assert rebalance_threads(group) == []
        assert member.owned == frozenset()
    finally:
        client.stop()
        client.close()


def test_a_member_whose_zookeeper_client_was_closed_stops_its_thread_quietly(zk, broker, caplog):
    """A member left running after its ZooKeeper client was closed (a consumer never closed,
    whose pool's client a test's teardown stopped) found its poll timer expired and retried
    leaving, with a traceback, as fast as the timer let it: 805 tracebacks in one passing
    `make test`. A closed client can never serve it again, so its thread ends, saying so once."""
    group = "orphaned"
    client = zkconnect.connect(zk)
    member = GroupMember(client, group, [TOPIC], protocol="cooperative", max_poll_interval_s=0.5)
    member.start()
    wait_for(lambda: member.owned, what="the member to own its partitions")
    client.stop()
    client.close()
    wait_for(lambda: rebalance_threads(group) == [], 10, what="the rebalance thread to end")
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) <= 1, [r.getMessage() for r in tracebacks]
    member.stop(leave=False)
