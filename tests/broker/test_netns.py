"""A broker in a network namespace of its own (broker/netns.py): the name is checked, and as
root a real broker joins the namespace before it binds, registers its own address, and is
reached from the host through the drill's bridge (cluster/drills/namespaces.py)."""
from __future__ import annotations

import doctest
import os
import shutil

import pytest

from broker import netns
from clients.simple_consumer import SimpleConsumer
from cluster.drills.namespaces import BrokerNetwork
from coordinator import zk as zkconnect
from tests.helpers import BrokerProcess, create_topic


def test_worked_examples():
    assert doctest.testmod(netns).failed == 0


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                    reason="network namespaces need root and iproute2's ip")
def test_a_broker_in_its_namespace_serves_from_its_own_address(zk, zk_server, tmp_path):
    host, port = zkconnect.split_chroot(zk_server.connect_string)[0].rsplit(":", 1)
    network = BrokerNetwork(1, lambda: (host, int(port))).setup()
    broker = None
    try:
        overrides = network.broker_overrides(zkconnect.split_chroot(zk)[1])["0"]
        broker = BrokerProcess(overrides.pop("zookeeper"), tmp_path, 0, **overrides).start()
        assert broker.endpoint == f"tcp://{network.broker_address(0)}:9092"
        assert "entered network namespace " + network.namespace(0) in broker.log_text()
        create_topic(zk, "t", 1)
        broker.wait_hosting("t", 1)
        with SimpleConsumer("t", 0, "earliest", zk, max_wait_ms=0) as consumer:
            assert consumer.offset_of("latest") == 0
    finally:
        if broker is not None:
            broker.stop()
        network.teardown()
    assert network.namespace(0) not in os.listdir(netns.NETNS_DIR)
