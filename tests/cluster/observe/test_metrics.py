"""/metrics: a snapshot's exposition (pure), then a supervised cluster's against known traffic.

Every figure is read the way Prometheus would (scraping ``/metrics``), and waited for with
``wait_for``: the sampler looks once a second, so the tests wait for a condition, never a time.
"""
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from clients import Producer
from cluster.observe import metrics
from tests.cluster.observe.handlers import HOLD_ENV
from tests.cluster.observe.snapshots import samples, snapshot
from tests.helpers import create_topic, wait_for

GROUP = "loaders"


def scrape(cluster) -> dict:
    """``{(name, frozenset(labels)): value}`` from the cluster's /metrics."""
    with urllib.request.urlopen(cluster.info()["dashboard"] + "metrics", timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def pick(found: dict, name: str, **labels) -> dict:
    """The samples of one metric whose labels include ``labels``, keyed by their label dicts."""
    wanted = {(k, str(v)) for k, v in labels.items()}
    return {tuple(sorted(lbl)): v for (n, lbl), v in found.items() if n == name and wanted <= lbl}


def one(found: dict, name: str, **labels) -> float | None:
    values = list(pick(found, name, **labels).values())
    assert len(values) <= 1, (name, labels, values)
    return values[0] if values else None


def test_broker_counters_add_up_to_the_messages_produced(cluster_factory):
    cluster = cluster_factory(brokers=3)
    create_topic(cluster.zookeeper, "counted", 3)
    create_topic(cluster.zookeeper, "other", 1)
    sent = 1000
    with Producer(cluster.zookeeper, acks=1, batch_size=20) as producer:
        for i in range(sent):
            producer.send("counted", b"message %06d" % i)
        producer.send("other", b"not counted")

    def counted_and_flushed():
        found = scrape(cluster)
        total = sum(pick(found, "sluice_broker_messages_in_total", topic="counted").values())
        flushes = pick(found, "sluice_broker_flushes_total", topic="counted").values()
        return found if total >= sent and len(flushes) == 3 and all(flushes) else None

    found = wait_for(counted_and_flushed, 60,
                     what="the counters to reach the messages produced, and a flush")
    per_partition = pick(found, "sluice_broker_messages_in_total", topic="counted")
    assert sum(per_partition.values()) == sent
    assert len(per_partition) == 3 and all(v > 0 for v in per_partition.values())
    assert {dict(k)["broker"] for k in per_partition} == {"0", "1", "2"}
    # bytes in are the offsets the logs grew by (visible once flushed; the broker flushes every
    # 3 s and the sampler looks every second, so wait for that too); 14 bytes of value + header
    found = wait_for(lambda: (lambda f: f if sum(pick(f, "sluice_broker_log_end_offset",
                                                    topic="counted").values())
                              == sum(pick(f, "sluice_broker_bytes_in_total",
                                          topic="counted").values()) else None)(scrape(cluster)),
                     60, what="every message to be flushed")
    bytes_in = sum(pick(found, "sluice_broker_bytes_in_total", topic="counted").values())
    ends = sum(pick(found, "sluice_broker_log_end_offset", topic="counted").values())
    sizes = sum(pick(found, "sluice_broker_log_size_bytes", topic="counted").values())
    assert bytes_in == ends == sizes > sent * 14
    assert sum(pick(found, "sluice_broker_messages_in_total", topic="other").values()) == 1
    assert all(v == 1 for v in pick(found, "sluice_broker_log_segments").values())
    # every process of the cluster is sampled (ZooKeeper is the tests' shared one, not ours)
    for role, ident in (("supervisor", 0), ("broker", 0), ("broker", 1), ("broker", 2)):
        assert one(found, "sluice_process_up", role=role, id=ident) == 1
        assert one(found, "sluice_process_resident_memory_bytes", role=role, id=ident) > 1e6
        assert one(found, "sluice_process_threads", role=role, id=ident) >= 1
        assert one(found, "sluice_process_open_files", role=role, id=ident) >= 3
        assert one(found, "sluice_process_cpu_seconds_total", role=role, id=ident) > 0
    assert one(found, "sluice_broker_up", broker=2) == 1
    assert one(found, "sluice_sampler_cpu_seconds_total") is not None


def test_lag_and_stuck_follow_a_blocked_worker(cluster_factory, tmp_path):
    hold = tmp_path / "hold"
    hold.write_text("hold")
    cluster = cluster_factory(
        brokers=1, workers=1, env={HOLD_ENV: str(hold)},
        broker_settings={"log": {"segment_bytes": 1024, "flush_ms": 50,
                                 "retention_ms": 3_600_000}},
        worker_settings={"topic": "clicks", "group": GROUP, "consumer": {"auto_commit_ms": 200},
                         "handler": "tests.cluster.observe.handlers:hold_on_block"})
    create_topic(cluster.zookeeper, "clicks", 1)
    labels = {"group": GROUP, "topic": "clicks", "partition": 0}
    with Producer(cluster.zookeeper, acks=1) as producer:   # every value is 6 bytes
        for i in range(20):
            producer.send("clicks", b"m%05d" % i)

    def caught_up():
        found = scrape(cluster)
        end = one(found, "sluice_broker_log_end_offset", topic="clicks", partition=0)
        committed = one(found, "sluice_group_committed_offset", **labels)
        return found if end and committed == end else None

    found = wait_for(caught_up, 60, what="the worker to consume the first messages")
    assert one(found, "sluice_group_lag_bytes", **labels) == 0
    assert one(found, "sluice_group_lag_messages", **labels) == 0
    assert one(found, "sluice_group_retention_seconds_left", **labels) is None
    blocked_at = one(found, "sluice_group_committed_offset", **labels)

    with Producer(cluster.zookeeper, acks=1) as producer:
        producer.send("clicks", b"block!")
        for i in range(200):   # in sets of 20, so the 1 KiB segments roll past the block
            producer.send("clicks", b"n%05d" % i)
            if i % 20 == 19:
                producer.flush()

    def stuck():
        found = scrape(cluster)
        return found if one(found, "sluice_group_stuck", **labels) == 1 else None

    found = wait_for(stuck, 60, what="the blocked partition to be flagged stuck")
    end = one(found, "sluice_broker_log_end_offset", topic="clicks", partition=0)
    assert one(found, "sluice_group_committed_offset", **labels) == blocked_at
    assert one(found, "sluice_group_lag_bytes", **labels) == end - blocked_at
    assert one(found, "sluice_group_lag_messages", **labels) == 201
    assert one(found, "sluice_group_consume_messages_per_second", **labels) == 0
    assert one(found, "sluice_group_owned", **labels) == 1
    # 1 KiB segments: the blocked message's segment has rolled, so retention can reach it
    assert one(found, "sluice_broker_log_segments", topic="clicks", partition=0) >= 3
    assert 0 < one(found, "sluice_group_retention_seconds_left", **labels) <= 3600
    assert one(found, "sluice_group_members", group=GROUP) == 1
    assert one(found, "sluice_group_rebalances_total", group=GROUP) >= 1

    hold.unlink()

    def drained():
        found = scrape(cluster)
        return found if (one(found, "sluice_group_stuck", **labels) == 0
                         and one(found, "sluice_group_lag_bytes", **labels) == 0) else None

    found = wait_for(drained, 60, what="the worker to catch up once released")
    assert one(found, "sluice_group_committed_offset", **labels) == end
    assert one(found, "sluice_group_retention_seconds_left", **labels) is None


def test_metrics_name_and_label_every_figure_the_prometheus_way():
    text = metrics.render(snapshot).decode()
    got = samples(text)
    part = (("broker", "0"), ("partition", "0"), ("topic", "clicks"))
    group = (("group", "loaders"), ("partition", "0"), ("topic", "clicks"))
    broker = (("id", "0"), ("role", "broker"))
    assert got[("sluice_broker_messages_in_total", part)] == 10
    assert got[("sluice_broker_bytes_in_total", part)] == 300
    assert got[("sluice_broker_bytes_out_total", part)] == 600
    assert got[("sluice_broker_log_size_bytes", part)] == 300
    assert got[("sluice_broker_log_segments", part)] == 2
    assert got[("sluice_broker_flushes_total", part)] == 4
    assert got[("sluice_broker_flush_seconds_total", part)] == 0.25
    assert got[("sluice_broker_errors_total", (("broker", "0"), ("error",
                                                                  "offset_out_of_range")))] == 2
    assert got[("sluice_group_lag_bytes", group)] == 180
    assert got[("sluice_group_lag_messages", group)] == 6
    assert got[("sluice_group_committed_offset", group)] == 120
    assert got[("sluice_group_consume_messages_per_second", group)] == 0
    assert got[("sluice_group_stuck", group)] == 1
    assert got[("sluice_group_retention_seconds_left", group)] == 1234.5
    assert got[("sluice_group_rebalances_total", (("group", "loaders"),))] == 2
    assert got[("sluice_group_members", (("group", "loaders"),))] == 1
    assert got[("sluice_process_cpu_seconds_total", broker)] == 3.0
    assert got[("sluice_process_resident_memory_bytes", broker)] == 50_000_000
    assert got[("sluice_process_threads", broker)] == 9
    assert got[("sluice_process_open_files", broker)] == 30
    assert got[("sluice_process_restarts_total", broker)] == 1
    assert got[("sluice_process_up", (("id", "0"), ("role", "worker")))] == 0
    # a dead process has no figures rather than zeros
    assert ("sluice_process_resident_memory_bytes", (("id", "0"), ("role", "worker"))) not in got
    assert "# TYPE sluice_broker_messages_in_total counter" in text
    assert "# TYPE sluice_group_lag_bytes gauge" in text


def test_counters_end_in_total_and_rates_name_their_unit():
    """Prometheus' naming: a counter's samples end ``_total``; a gauge that is a rate says
    ``_per_second``; no unitless rate or percentage; a count of lost bytes is a counter."""
    with_loss = snapshot()
    with_loss["groups"][0]["partitions"][0]["data_loss"] = {"lost_bytes": 77}
    text = metrics.render(lambda: with_loss).decode()
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE"))
    for name in types:
        assert "rate" not in name and "percent" not in name, name
    counters = [name for name, kind in types.items() if kind == "counter"]
    assert counters and all(name.endswith("_total") for name in counters)
    assert types["sluice_group_data_loss_bytes_total"] == "counter"
    assert types["sluice_group_consume_messages_per_second"] == "gauge"
    group = (("group", "loaders"), ("partition", "0"), ("topic", "clicks"))
    assert samples(text)[("sluice_group_data_loss_bytes_total", group)] == 77


def test_metrics_before_the_first_sample_are_empty():
    assert metrics.render(lambda: None) == b""
