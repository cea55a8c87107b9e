"""Fixtures of the Kafka clients' tests: real broker processes with the Kafka listener."""
import pytest

from tests.helpers import BrokerProcess, create_topic


@pytest.fixture
def kafka_broker(zk, tmp_path):
    """``start(topic=None, partitions=1, **settings) -> BrokerProcess``: a real broker (id 0)
    with its Kafka listener on a free port (``proc.info["kafka_endpoint"]``, host:port),
    hosting a new topic when one is named; stopped cleanly (exit 0) after the test."""
    started = []

    def start(topic: str | None = None, partitions: int = 1, broker_id: int = 0,
              **settings) -> BrokerProcess:
        settings.setdefault("kafka_port", 0)
        proc = BrokerProcess(zk, tmp_path, broker_id, **settings).start()
        started.append(proc)
        if topic is not None:
            create_topic(zk, topic, partitions, [proc])
        return proc

    yield start
    for proc in started:
        assert proc.stop() == 0, proc.log_text()[-3000:]
