"""``sluice perf produce|consume`` end to end against a real cluster. No timed assertions: speed
lives in the benchmark, not in the tests."""
import json
import subprocess
import sys

from tests.conftest import REPO

TOPIC = "perf"


def sluice(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args,
                           "--zookeeper", cluster.zookeeper], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_perf_produce_and_consume_through_the_cli(cluster_factory):
    cluster = cluster_factory(brokers=1)
    assert sluice(cluster, "topics", "create", TOPIC, "--partitions", "1").returncode == 0

    fire = sluice(cluster, "perf", "produce", TOPIC, "--messages", "2000", "--batch-size", "1",
                  "--json")
    assert fire.returncode == 0, fire.stderr
    result = json.loads(fire.stdout)
    assert result["messages"] == 2000 and result["acks"] == 0 and result["dropped"] == 0
    assert result["records_per_s"] > 0 and result["latency_ms"] is None

    acked = sluice(cluster, "perf", "produce", TOPIC, "--messages", "2000", "--acks", "1",
                   "--size", "100")
    assert acked.returncode == 0, acked.stderr
    assert "2,000 records sent" in acked.stdout and "records/s" in acked.stdout
    assert "MB/s" in acked.stdout and "p99" in acked.stdout

    read = sluice(cluster, "perf", "consume", TOPIC, "--messages", "4000", "--fetch-size",
                  "20000", "--json")
    assert read.returncode == 0, read.stderr
    result = json.loads(read.stdout)
    assert result["messages"] == 4000 and result["message_bytes"] == 150.0
    assert "error" not in result

    short = sluice(cluster, "perf", "consume", TOPIC, "--messages", "5000", "--timeout-ms",
                   "300", "--json")
    assert short.returncode == 1 and "only 4000 of 5000" in short.stderr


def test_perf_refuses_an_unknown_topic_in_one_line(cluster_factory):
    cluster = cluster_factory(brokers=1)
    missing = sluice(cluster, "perf", "produce", "nope", "--messages", "10")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].startswith("sluice: error:")
