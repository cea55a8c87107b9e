"""A secured supervised cluster (issue 14) runs its own parts with the keys it made for them:
group workers consume with the workers' key, the dashboard's sampler reads the brokers with
the operator's, and neither leaves a traceback in the supervisor's log."""
import json
import urllib.request

from clients.producer import Producer
from cluster.supervision import security
from cluster.workers.loader import read_loaded
from coordinator import topics, zk as zkconnect
from tests.helpers import wait_for

TOPIC, GROUP, MESSAGES = "visits", "loaders", 300


def dashboard_state(cluster) -> dict:
    with urllib.request.urlopen(cluster.info()["dashboard"] + "api/state", timeout=10) as answer:
        return json.load(answer)


def test_workers_consume_and_the_sampler_reads_a_secured_cluster(cluster_factory):
    cluster = cluster_factory(brokers=1, secure=True, workers=1,
                              worker_settings={"topic": TOPIC, "group": GROUP},
                              broker_settings={"log": {"flush_ms": 50}})
    client = zkconnect.connect(cluster.zookeeper, cluster.data_dir)
    try:
        topics.create(client, TOPIC, 1)
    finally:
        client.stop()
        client.close()
    admin = security.admin_credentials(cluster.data_dir)
    with Producer(cluster.zookeeper, data_dir=cluster.data_dir, acks=1,
                  credentials=admin) as producer:
        for i in range(MESSAGES):
            producer.send(TOPIC, b"visit-%d" % i)
        producer.flush()
    loaded = cluster.data_dir / "loaded" / GROUP

    def all_loaded():
        rows = read_loaded(loaded).get((TOPIC, 0), []) if loaded.exists() else []
        return {value for _, value in rows} == {b"visit-%d" % i for i in range(MESSAGES)}
    wait_for(all_loaded, 60, what="the worker to load every message")

    def sampled():
        latest = dashboard_state(cluster)["latest"]
        return latest and latest["brokers"] and latest["sampler"]["ticks"] >= 3 and latest
    latest = wait_for(sampled, 30, what="the sampler to read the secured brokers")
    assert latest["errors"] == []
    text = cluster.log_text()
    assert "Traceback" not in text and "sampling failed" not in text, text[-3000:]
