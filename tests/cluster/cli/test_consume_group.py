"""``sluice consume --group`` on a topic of two partitions: each run commits what it printed of
every partition, so the group's next run prints each message exactly once more."""
from __future__ import annotations

import subprocess
import sys

from clients import Producer
from tests.helpers import ROOT, BrokerProcess, create_topic


def sluice(zk, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args, "--zookeeper", zk],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_consume_group_commits_every_partition_it_printed(zk, tmp_path):
    broker = BrokerProcess(zk, tmp_path, 0, log={"flush_ms": 20}).start()
    try:
        create_topic(zk, "t", 2, [broker])
        sent = [b"m%03d" % i for i in range(60)]
        with Producer(zk, acks=1, batch_size=5, linger_ms=0) as producer:
            for i, value in enumerate(sent):
                producer.send("t", value, partition=i % 2)
        first = sluice(zk, "consume", "t", "--group", "g", "--max-messages", "40")
        assert first.returncode == 0, first.stderr
        rest = sluice(zk, "consume", "t", "--group", "g", "--timeout-ms", "2000")
        assert rest.returncode == 0, rest.stderr
        printed = first.stdout.split() + rest.stdout.split()
        assert len(first.stdout.split()) == 40
        assert sorted(printed) == [v.decode() for v in sent]
    finally:
        broker.stop()
