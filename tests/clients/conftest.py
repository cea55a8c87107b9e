"""Fixtures the client tests share.

| fixture      | scope    | yields                                                                |
| ------------ | -------- | --------------------------------------------------------------------- |
| cluster      | module   | a connect string to a chroot of its own, one broker, and topic        |
|              |          | ``TOPIC`` of 2 partitions: for tests that need something to talk to  |
| quick_broker | function | a broker in the test's chroot that flushes every 20 ms, so what is    |
|              |          | produced is soon visible                                              |
| brokers      | function | two brokers in the test's chroot that flush every 50 ms (group tests) |
"""
from __future__ import annotations

import uuid

import pytest

from coordinator import topics, zk as zkmod
from tests.helpers import BrokerProcess

TOPIC = "clicks"


@pytest.fixture(scope="module")
def cluster(zk_server, tmp_path_factory):
    connect = f"{zk_server.connect_string}/clients-{uuid.uuid4().hex[:8]}"
    broker = BrokerProcess(connect, tmp_path_factory.mktemp("clients")).start()
    client = zkmod.connect(connect)
    topics.create(client, TOPIC, 2)
    client.stop()
    client.close()
    broker.wait_hosting(TOPIC, 2)
    yield connect
    broker.stop()


@pytest.fixture
def quick_broker(zk, tmp_path):
    proc = BrokerProcess(zk, tmp_path, 0, log={"flush_ms": 20}).start()
    yield proc
    proc.stop()


@pytest.fixture
def brokers(zk, tmp_path):
    procs = [BrokerProcess(zk, tmp_path, i, log={"flush_ms": 50}).start() for i in range(2)]
    yield procs
    for proc in procs:
        proc.stop()
