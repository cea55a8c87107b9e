"""The broker registry read by a group member: the partitions live brokers announce."""
from coordinator import registry
from tests.clients.test_produce_consume import create_topic
from tests.helpers import BrokerProcess, wait_for


def test_hosted_partitions_follow_the_brokers_sessions(zk, zk_client, tmp_path):
    assert registry.hosted_partitions(zk_client, "clicks") == []
    brokers = [BrokerProcess(zk, tmp_path, i).start() for i in range(2)]
    try:
        placement = create_topic(zk, "clicks", 4, brokers)
        assert registry.hosted_partitions(zk_client, "clicks") == [0, 1, 2, 3]
        brokers[0].stop()
        left = [p for p in range(4) if placement.brokers[p] != brokers[0].broker_id]
        wait_for(lambda: registry.hosted_partitions(zk_client, "clicks") == left,
                 what="the stopped broker's partitions to leave the registry")
    finally:
        for proc in brokers:
            proc.stop()
