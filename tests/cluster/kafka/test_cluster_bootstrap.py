"""``sluice cluster up`` gives every broker a Kafka listener (or none with --no-kafka), and
``cluster status --json`` prints their bootstrap list, which a Kafka client uses as it is."""
import json
import subprocess
import sys

from confluent_kafka.admin import AdminClient

from tests.helpers import wait_for


def test_status_lists_every_brokers_kafka_endpoint_and_clients_bootstrap_from_it(cluster_factory):
    cluster = cluster_factory(brokers=2)
    status = wait_for(lambda: (s := cluster.status())["kafka_bootstrap"]
                      and len(s["kafka_bootstrap"].split(",")) == 2 and s,
                      30, what="both brokers' Kafka endpoints in the status")
    out = subprocess.run([sys.executable, "-m", "cluster.cli", "cluster", "status", "--json",
                          "--data-dir", str(cluster.data_dir)], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out)["kafka_bootstrap"] == status["kafka_bootstrap"]
    first = status["kafka_bootstrap"].split(",")[0]
    metadata = AdminClient({"bootstrap.servers": first}).list_topics(timeout=10)
    brokers = {b.id: f"{b.host}:{b.port}" for b in metadata.brokers.values()}
    assert ",".join(brokers[i] for i in sorted(brokers)) == status["kafka_bootstrap"]


def test_no_kafka_runs_brokers_without_listeners(cluster_factory):
    cluster = cluster_factory(brokers=1, kafka_port=None)
    status = cluster.status()
    assert [p["alive"] for p in status["processes"] if p["role"] == "broker"] == [True]
    assert status["kafka_bootstrap"] is None
