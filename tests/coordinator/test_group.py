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
