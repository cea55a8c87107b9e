"""Fixtures the coordinator tests share.

| fixture | scope    | yields                                                               |
| ------- | -------- | -------------------------------------------------------------------- |
| broker  | function | a real broker in the test's chroot, hosting topic ``TOPIC`` (1 partition) |
"""
from __future__ import annotations

import pytest

from tests.helpers import create_topic
from tests.helpers import BrokerProcess

TOPIC = "t"


@pytest.fixture
def broker(zk, tmp_path):
    proc = BrokerProcess(zk, tmp_path).start()
    create_topic(zk, TOPIC, 1, [proc])
    yield proc
    proc.stop()
