"""Fixtures of the broker's tests (the ZooKeeper ones are in tests/conftest.py)."""
import pytest

from tests.helpers import BrokerProcess, RawClient, create_topic


@pytest.fixture
def log_path(tmp_path):
    return tmp_path / "topic-0"


@pytest.fixture
def hosting_broker(zk, tmp_path):
    """``start(topic, partitions, **settings)``: a real broker process (id 0) hosting a new
    topic. Every broker it started must stop cleanly (exit 0) after the test."""
    started = []

    def start(topic: str, partitions: int = 1, **settings) -> BrokerProcess:
        proc = BrokerProcess(zk, tmp_path, 0, **settings).start()
        started.append(proc)
        create_topic(zk, topic, partitions, [proc])
        return proc

    yield start
    for proc in started:
        assert proc.stop() == 0, proc.log_text()[-3000:]


@pytest.fixture
def raw(broker):
    """A raw request socket to the module's ``broker`` fixture."""
    client = RawClient(broker.endpoint)
    yield client
    client.close()
