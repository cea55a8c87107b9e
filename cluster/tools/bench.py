"""The paper's benchmark (section 5) on a fresh local cluster: ``make bench``.

    python -m cluster.tools.bench --messages 1000000 --runs 3     # what make bench runs

One broker with its embedded ZooKeeper in a temp dir, the default flush policy on (fsync every
500 messages or 3 s, a message visible once flushed), 200-byte values, one producer then one
consumer, every process on this host. Each run, on fresh single-partition topics:

    producer  batch 1,  acks=0        the paper's "batch 1"
    producer  batch 50, acks=0        the paper's "batch 50"
    producer  batch 50, acks=1        windowed (the Producer's 32 requests in flight), latency
    producer  batch 50, acks=1, audit the same, audited (clients/audit.py), right after it: the
                                      ratio to the row before is the audit's cost (target
                                      >= 0.95); ``--no-audit`` leaves it out
    consumer  ~200 KB per fetch       the paper's 1000 messages per pull, over the batch-50 topic
    consumer  sluice's default fetch  (1 MiB, SimpleConsumer's default)

plus the bytes on disk per message (segment file sizes over messages, minus the value) and the
broker's RSS, sampled by psutil every 0.1 s through every run. Then replication (issue 12), on a
second fresh cluster of 3 brokers, same messages, batch 50, one partition per topic:

    producer  R=3, min ISR 2, acks=all    ratio to the single-replica acks=1 row (target >= 50%)
    producer  R=3, min ISR 2, acks=1      ratio to the single-replica acks=1 row (target >= 80%)
    producer  R=1, acks=1                 the same row on the 3-broker cluster, for reference
    consumer  default fetch, from the R=3 topic and from the R=1 one (target: within 10%)

with the acks=all acknowledgement latency (p50, p99); ``--no-replication`` leaves them out. Kafka
clients (issue 13), on the 1-broker cluster through its Kafka listener, each run on fresh
one-partition topics, same messages, acks=1 (cluster/tools/kafka_perf.py):

    producer  confluent-kafka, kafka-python   ratio confluent-kafka / native acks=1 batch 50
                                              (target >= 50%)
    consumer  confluent-kafka, kafka-python   each from the topic it produced

``--no-kafka`` leaves them out (and the listener off). Security (issue 14), on a third fresh
1-broker cluster made with ``--secure`` (CurveZMQ on every socket, ZooKeeper digest ACLs), the
operator's key, same messages, one partition per topic, up beside the plaintext one, its runs
taking turns with the plaintext runs (plaintext run 1, secure run 1, plaintext run 2, ...):

    producer  batch 50, acks=1, secure    ratio to the plaintext acks=1 batch 50 row (>= 70%),
                                          p50 / p99 acknowledgement latency beside the plaintext's
    consumer  default fetch, secure       ratio to the plaintext default-fetch row (>= 70%)

``--no-secure`` leaves them out. Group offsets (issue 15), on a fresh one-broker cluster
(cluster/tools/offsets_bench.py): commits per second of each offset store from 100 groups x 10
partitions committing as fast as they can, with ZooKeeper's CPU and request latency meanwhile;
``--no-offsets`` leaves them out. The Kafka listener's TLS pair (issue 14,
cluster/tools/kafka_tls_bench.py: confluent-kafka producer and consumer on a plaintext and a
SASL_SSL one-broker cluster, runs alternating; targets SASL_SSL >= 70% of plaintext);
``--no-kafka-tls`` (or ``--no-kafka``) leaves it out. How cost grows (issue 16,
cluster/tools/scale_bench.py): on fresh clusters, 10 x ``--messages`` on one partition and ``--messages`` over 64 partitions of 3
brokers, each row's ratio to the same row here (target >= 0.85) and every broker's RSS through
them; ``--no-scale`` leaves them out. The figures are medians over the
runs; the table sets them beside the paper's and the targets, and ``.bench/results.json`` gets
them in the shape the issue gave (``--samples`` adds every run's raw figures in another file).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from broker.message import HEADER_SIZE
from cluster.errors import ClusterError
from cluster.supervision import ClusterConfig, down, up
from cluster.tools import kafka_perf, kafka_tls_bench, offsets_bench, perf, scale_bench
from coordinator import paths, topics
from coordinator import zk as zkconnect
from coordinator.errors import InvalidArgument, SluiceError

DEFAULT_FETCH_BYTES = 1 << 20
PAPER_FETCH_MESSAGES = 1000

# (result key, label, paper's Kafka, best peer here, target, higher is better): the best peer
# is the row of that key in the last `make bench-peers` result (.bench/peers.json), measured on
# this machine; None: no peer row
FIGURES = [
    ("producer_batch1_msgs_per_s", "producer, batch 1, acks=0 (msg/s)", 50_000,
     "producer_batch1_msgs_per_s", 400_000, True),
    ("producer_batch50_msgs_per_s", "producer, batch 50, acks=0 (msg/s)", 400_000,
     "producer_batch50_msgs_per_s", 1_000_000, True),
    ("producer_acks1_batch50_msgs_per_s", "producer, batch 50, acks=1 (msg/s)", None,
     "producer_acks1_batch50_msgs_per_s", 700_000, True),
    ("consumer_200kb_msgs_per_s", "consumer, ~200 KB per fetch (msg/s)", 22_000,
     "consumer_200kb_msgs_per_s", 1_000_000, True),
    ("consumer_msgs_per_s", "consumer, default fetch size (msg/s)", 22_000,
     None, 1_000_000, True),
    ("storage_overhead_bytes_per_msg", "storage overhead (bytes/msg)", 9,
     "storage_overhead_bytes_per_msg", 9, False),
    ("broker_peak_rss_mb", "broker peak RSS (MB)", None, None, 150, False),
]
PEERS_FILE = Path(".bench/peers.json")

# (result key, label, target, higher is better): the audit's cost, batch 50, acks=1
AUDIT_FIGURES = [
    ("producer_acks1_batch50_audit_msgs_per_s", "producer, batch 50, acks=1, audited (msg/s)",
     None, True),
    ("audit_vs_plain_acks1", "audited / plain acks=1 batch 50 (same run)", 0.95, True),
    ("audit_cpu_vs_plain_acks1", "audited / plain: producer + broker CPU per message", 1.05,
     False),
]

# (result key, label, target, higher is better): the replication rows, 3 brokers, batch 50
REPLICATION_FIGURES = [
    ("producer_r3_acks_all_batch50_msgs_per_s", "producer, R=3 min ISR 2, acks=all (msg/s)",
     None, True),
    ("producer_r3_acks1_batch50_msgs_per_s", "producer, R=3 min ISR 2, acks=1 (msg/s)", None,
     True),
    ("producer_r1_acks1_batch50_3brokers_msgs_per_s", "producer, R=1, acks=1, 3 brokers (msg/s)",
     None, True),
    ("acks_all_vs_single_replica_acks1", "acks=all / single-replica acks=1", 0.5, True),
    ("r3_acks1_vs_single_replica_acks1", "replicated acks=1 / single-replica acks=1", 0.8, True),
    ("consumer_r3_msgs_per_s", "consumer from the R=3 topic (msg/s)", None, True),
    ("consumer_r1_3brokers_msgs_per_s", "consumer from an R=1 topic, 3 brokers (msg/s)", None,
     True),
    ("consumer_r3_vs_r1", "consumer R=3 / R=1 (within 10%)", 0.9, True),
]
REPLICATION_BROKERS = 3

# (result key, label, target, higher is better): Kafka clients through the listener, acks=1
KAFKA_FIGURES = [
    ("kafka_confluent_producer_msgs_per_s", "Kafka: confluent-kafka producer, acks=1 (msg/s)",
     None, True),
    ("kafka_python_producer_msgs_per_s", "Kafka: kafka-python producer, acks=1 (msg/s)", None,
     True),
    ("kafka_confluent_vs_native_acks1", "confluent-kafka producer / native acks=1 batch 50",
     0.5, True),
    ("kafka_confluent_consumer_msgs_per_s", "Kafka: confluent-kafka consumer (msg/s)", None,
     True),
    ("kafka_python_consumer_msgs_per_s", "Kafka: kafka-python consumer (msg/s)", None, True),
]
KAFKA_KEYS = {"confluent-kafka": "confluent", "kafka-python": "python"}

# (result key, label, target, higher is better): a --secure 1-broker cluster, batch 50, acks=1
SECURE_FIGURES = [
    ("producer_secure_acks1_batch50_msgs_per_s", "secure: producer, batch 50, acks=1 (msg/s)",
     None, True),
    ("secure_vs_plain_producer_acks1", "secure / plaintext producer acks=1", 0.7, True),
    ("consumer_secure_msgs_per_s", "secure: consumer, default fetch (msg/s)", None, True),
    ("secure_vs_plain_consumer", "secure / plaintext consumer", 0.7, True),
]


class RssSampler(threading.Thread):
    """The peak resident set size of one process, sampled until stopped."""

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(name="rss-sampler", daemon=True)
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.last = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.interval)

    def sample(self) -> int:
        try:
            self.last = self.process.memory_info().rss
        except psutil.Error:
            return self.peak
        self.peak = max(self.peak, self.last)
        return self.last

    def stop(self) -> int:
        self._done.set()
        self.join()
        self.sample()
        return self.peak


def run(messages: int = 1_000_000, runs: int = 3, size: int = 200,
        say=lambda line: None, replication: bool = True,
        kafka: bool = True, secure: bool = True,
        audit: bool = True) -> tuple[dict, list[dict]]:
    """Run the benchmark on a fresh cluster; return (medians in the issue's shape, every run)."""
    if messages < 1 or runs < 1:
        raise InvalidArgument("messages and runs must be >= 1")
    data_dir = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    try:
        status = up(ClusterConfig(data_dir, brokers=1, dashboard_port=None,
                                  kafka_port=0 if kafka else None), detach=True)
        zookeeper = status["zookeeper"]
        bootstrap = status.get("kafka_bootstrap") if kafka else None
        if kafka and not bootstrap:
            raise ClusterError("the broker registered no Kafka endpoint")
        broker_pid = next(p["pid"] for p in status["processes"] if p["role"] == "broker")
        rss = RssSampler(broker_pid)
        rss.start()
        say(f"cluster up in {data_dir} (broker pid {broker_pid}, RSS {rss.sample() / 1e6:.0f} MB)")
        samples = []
        try:
            with contextlib.ExitStack() as stack:
                secure_run = stack.enter_context(_secure_cluster(say)) if secure else None
                for index in range(runs):      # plaintext then secure, run by run: A B A B
                    samples.append(_one_run(zookeeper, data_dir, index, messages, size, rss,
                                            say, bootstrap, audit))
                    if secure_run is not None:
                        samples[-1].update(secure_run(index, messages, size))
        finally:
            peak = rss.stop()
    finally:
        try:
            down(data_dir)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    result = _medians(samples, messages, size, runs)
    result["broker_peak_rss_mb"] = round(peak / 1e6, 1)
    if kafka:
        result.update(_kafka_medians(samples, result))
    if audit:
        result.update(_audit_medians(samples))
    if secure:
        result.update(_secure_medians(samples, result))
    if replication:
        replicated = _replication(messages, size, runs, say)
        for sample, more in zip(samples, replicated):
            sample.update(more)
        result.update(_replication_medians(samples, result))
    return result, samples


HOSTED_WAIT_S = 30.0


def _secure(messages: int, size: int, runs: int, say) -> list[dict]:
    """The security rows of ``runs`` runs on one fresh secured cluster (run() takes them in
    turns with the plaintext runs instead, through ``_secure_cluster``)."""
    with _secure_cluster(say) as one_run:
        return [one_run(index, messages, size) for index in range(runs)]


@contextlib.contextmanager
def _secure_cluster(say):
    """A fresh secured 1-broker cluster, up while the plaintext one is, so that its runs
    alternate with the plaintext runs and a drift of the machine's load favours neither (the
    consumer's ratio was 0.64-0.67 on one loaded run and 1.15 on another when all secure runs
    came after all plaintext ones). Yields ``one_run(index, messages, size) -> sample``, each
    on fresh topics, as the cluster's operator (the admin key: CURVE costs the same for every
    key, and no rule is looked up twice)."""
    from cluster.supervision.security import admin_credentials
    data_dir = Path(tempfile.mkdtemp(prefix="sluice-bench-secure-"))
    try:
        status = up(ClusterConfig(data_dir, brokers=1, dashboard_port=None, secure=True),
                    detach=True)
        zookeeper, key = status["zookeeper"], admin_credentials(data_dir)
        say(f"security: a --secure broker up in {data_dir}")

        def one_run(index: int, messages: int, size: int) -> dict:
            client = zkconnect.connect(zookeeper, data_dir)
            try:
                topic = f"bench-secure-{index}"
                topics.create(client, topic, 1)
                while client.exists(paths.broker_topic_partitions(topic, 0)) is None:
                    time.sleep(0.02)
            finally:
                client.stop()
                client.close()
            produced = perf.produce(topic, messages, size, 50, 1, linger_ms=5, partition=0,
                                    zookeeper=zookeeper, data_dir=data_dir, credentials=key)
            say(f"run {index + 1}: secure producer batch 50 acks=1: "
                f"{perf.summary_line(produced)}")
            _wait_flushed(zookeeper, topic, data_dir=data_dir, credentials=key)
            consumed = perf.consume(topic, 0, messages, DEFAULT_FETCH_BYTES, zookeeper=zookeeper,
                                    data_dir=data_dir, credentials=key)
            if "error" in consumed:
                raise ClusterError(consumed["error"])
            say(f"run {index + 1}: secure consumer: {perf.summary_line(consumed)}")
            return {"producer_secure_acks1_batch50": produced, "consumer_secure": consumed}
        yield one_run
    finally:
        try:
            down(data_dir)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


def _secure_medians(samples: list[dict], result: dict) -> dict:
    def rate(key):
        return round(statistics.median(s[key]["records_per_s"] for s in samples), 1)
    out = {"producer_secure_acks1_batch50_msgs_per_s": rate("producer_secure_acks1_batch50"),
           "consumer_secure_msgs_per_s": rate("consumer_secure"),
           "secure_acks1_latency_ms": {
               point: round(statistics.median(
                   s["producer_secure_acks1_batch50"]["latency_ms"][point] for s in samples), 3)
               for point in ("p50", "p99")}}
    for key, secure, plain in (
            ("secure_vs_plain_producer_acks1", "producer_secure_acks1_batch50_msgs_per_s",
             "producer_acks1_batch50_msgs_per_s"),
            ("secure_vs_plain_consumer", "consumer_secure_msgs_per_s", "consumer_msgs_per_s")):
        out[key] = round(out[secure] / result[plain], 3) if result[plain] else None
    return out


def _replication(messages: int, size: int, runs: int, say) -> list[dict]:
    """The replication rows, each run on fresh topics of a fresh 3-broker cluster."""
    data_dir = Path(tempfile.mkdtemp(prefix="sluice-bench-r3-"))
    try:
        status = up(ClusterConfig(data_dir, brokers=REPLICATION_BROKERS, dashboard_port=None),
                    detach=True)
        zookeeper = status["zookeeper"]
        say(f"replication: {REPLICATION_BROKERS} brokers up in {data_dir}")
        return [_replicated_run(zookeeper, index, messages, size, say) for index in range(runs)]
    finally:
        try:
            down(data_dir)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


def _replicated_run(zookeeper: str, index: int, messages: int, size: int, say) -> dict:
    client = zkconnect.connect(zookeeper)
    try:
        def fresh_topic(name: str, replicas: int) -> str:
            topic = f"bench-{name}-{index}"
            placement = topics.create(client, topic, 1, replication_factor=replicas,
                                      min_insync_replicas=min(2, replicas))
            deadline = time.monotonic() + HOSTED_WAIT_S
            for broker in placement.replicas[0]:    # every replica has opened its log
                while client.exists(paths.broker_topic_partitions(topic, broker)) is None:
                    if time.monotonic() > deadline:
                        raise ClusterError(f"broker {broker} did not open {topic}/0 within "
                                           f"{HOSTED_WAIT_S:g} s")
                    time.sleep(0.02)
            return topic

        sample: dict = {}
        produced = {}
        for key, replicas, acks in (("r1_acks1", 1, 1), ("r3_acks1", 3, 1),
                                    ("r3_acks_all", 3, "all")):
            topic = produced[key] = fresh_topic(key.replace("_", "-"), replicas)
            result = perf.produce(topic, messages, size, 50, acks, linger_ms=5, partition=0,
                                  zookeeper=zookeeper)
            sample[f"producer_{key}"] = result
            say(f"run {index + 1}: producer R={replicas} acks={acks}: "
                f"{perf.summary_line(result)}")
        for key in ("r1_acks1", "r3_acks1"):
            _wait_flushed(zookeeper, produced[key])
            result = perf.consume(produced[key], 0, messages, DEFAULT_FETCH_BYTES,
                                  zookeeper=zookeeper)
            if "error" in result:
                raise ClusterError(result["error"])
            sample[f"consumer_{key[:2]}"] = result
            say(f"run {index + 1}: consumer from the {key[:2].upper()} topic: "
                f"{perf.summary_line(result)}")
        return sample
    finally:
        client.stop()
        client.close()


def _replication_medians(samples: list[dict], result: dict) -> dict:
    def median(get):
        return round(statistics.median(get(s) for s in samples), 1)
    rate = lambda key: median(lambda s: s[key]["records_per_s"])  # noqa: E731
    single = result["producer_acks1_batch50_msgs_per_s"]
    out = {
        "producer_r3_acks_all_batch50_msgs_per_s": rate("producer_r3_acks_all"),
        "producer_r3_acks1_batch50_msgs_per_s": rate("producer_r3_acks1"),
        "producer_r1_acks1_batch50_3brokers_msgs_per_s": rate("producer_r1_acks1"),
        "acks_all_latency_ms": {
            point: round(statistics.median(
                s["producer_r3_acks_all"]["latency_ms"][point] for s in samples), 3)
            for point in ("p50", "p99")},
        "consumer_r3_msgs_per_s": rate("consumer_r3"),
        "consumer_r1_3brokers_msgs_per_s": rate("consumer_r1"),
    }
    out["acks_all_vs_single_replica_acks1"] = round(
        out["producer_r3_acks_all_batch50_msgs_per_s"] / single, 3) if single else None
    out["r3_acks1_vs_single_replica_acks1"] = round(
        out["producer_r3_acks1_batch50_msgs_per_s"] / single, 3) if single else None
    base = out["consumer_r1_3brokers_msgs_per_s"]
    out["consumer_r3_vs_r1"] = round(out["consumer_r3_msgs_per_s"] / base, 3) if base else None
    return out


def _one_run(zookeeper: str, data_dir: Path, index: int, messages: int, size: int,
             rss: RssSampler, say, bootstrap: str | None = None, audit: bool = False) -> dict:
    client = zkconnect.connect(zookeeper)
    try:
        def fresh_topic(name: str) -> str:
            topic = f"bench-{name}-{index}"
            topics.create(client, topic, 1)
            while client.exists(paths.broker_topic_partitions(topic, 0)) is None:
                time.sleep(0.02)
            return topic

        sample: dict = {"run": index + 1}
        produced = {}
        rows = [("batch1", 1, 0, False), ("batch50", 50, 0, False),
                ("acks1_batch50", 50, 1, False)]
        if audit:       # the pair in turns, so a drift of the machine's load favours neither
            rows.insert(2 + index % 2, ("acks1_batch50_audit", 50, 1, True))
        for key, batch, acks, audited in rows:
            topic = produced[key] = fresh_topic(key.replace("_", "-"))
            broker_cpu = _cpu_seconds(rss.process)
            result = perf.produce(topic, messages, size, batch, acks, linger_ms=5, partition=0,
                                  zookeeper=zookeeper, audit=audited)
            result["broker_cpu_seconds"] = round(_cpu_seconds(rss.process) - broker_cpu, 3)
            sample[f"producer_{key}"] = result
            say(f"run {index + 1}: producer batch {batch} acks={acks}"
                f"{', audited' if audited else ''}: "
                f"{perf.summary_line(result)} (broker RSS {rss.sample() / 1e6:.0f} MB)")
        topic = produced["batch50"]
        _wait_flushed(zookeeper, topic)
        for key, fetch_bytes in (("200kb", PAPER_FETCH_MESSAGES * (HEADER_SIZE + size)),
                                 ("default", DEFAULT_FETCH_BYTES)):
            result = perf.consume(topic, 0, messages, fetch_bytes, zookeeper=zookeeper)
            if "error" in result:
                raise ClusterError(result["error"])
            sample[f"consumer_{key}"] = result
            say(f"run {index + 1}: consumer {fetch_bytes:,} bytes per fetch: "
                f"{perf.summary_line(result)}")
        stored = sum(f.stat().st_size for f in
                     (data_dir / "broker-0" / topic / "0").glob("*.log"))
        sample["storage_overhead_bytes_per_msg"] = round(stored / messages - size, 3)
        sample["broker_rss_mb"] = round(rss.sample() / 1e6, 1)
        if bootstrap:
            for name, key in KAFKA_KEYS.items():
                topic = fresh_topic(f"kafka-{key}")
                result = kafka_perf.produce(name, bootstrap, topic, messages, size)
                if "error" in result:
                    raise ClusterError(result["error"])
                sample[f"kafka_{key}_producer"] = result
                say(f"run {index + 1}: {name} producer acks=1: {perf.summary_line(result)} "
                    f"(broker RSS {rss.sample() / 1e6:.0f} MB)")
                _wait_flushed(zookeeper, topic)
                result = kafka_perf.consume(name, bootstrap, topic, messages)
                if "error" in result:
                    raise ClusterError(result["error"])
                sample[f"kafka_{key}_consumer"] = result
                say(f"run {index + 1}: {name} consumer: {perf.summary_line(result)}")
        return sample
    finally:
        client.stop()
        client.close()


def _wait_flushed(zookeeper: str, topic: str, timeout: float = 30.0, data_dir=None,
                  credentials: str | None = None) -> None:
    """Until everything appended to the topic is flushed, hence visible: the consumer runs
    measure reading stored data, not waiting for the flusher."""
    from clients.brokers import BrokerPool
    from clients.simple_consumer import SimpleConsumer
    pool = BrokerPool(zookeeper, data_dir, credentials=credentials)
    try:
        consumer = SimpleConsumer(topic, 0, "earliest", pool=pool)
        end = perf.stored_bytes(pool, topic)
        deadline = time.monotonic() + timeout
        while consumer.offset_of("latest") < end:
            if time.monotonic() > deadline:
                raise ClusterError(f"{topic} was not flushed within {timeout:g} s")
            time.sleep(0.05)
    finally:
        pool.close()


def _kafka_medians(samples: list[dict], result: dict) -> dict:
    def rate(key):
        return round(statistics.median(s[key]["records_per_s"] for s in samples), 1)
    out = {f"kafka_{key}_{side}_msgs_per_s": rate(f"kafka_{key}_{side}")
           for key in KAFKA_KEYS.values() for side in ("producer", "consumer")}
    native = result["producer_acks1_batch50_msgs_per_s"]
    out["kafka_confluent_vs_native_acks1"] = round(
        out["kafka_confluent_producer_msgs_per_s"] / native, 3) if native else None
    return out


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _audit_medians(samples: list[dict]) -> dict:
    """The audited row's median, and the medians over runs of each run's own ratios (the pair
    ran back to back, in turns): throughput, and CPU per message of the producer and the
    broker together, which a loaded machine moves less than wall time."""
    def cpu(row):
        return row["cpu_seconds"] + row["broker_cpu_seconds"]
    return {
        "producer_acks1_batch50_audit_msgs_per_s": round(statistics.median(
            s["producer_acks1_batch50_audit"]["records_per_s"] for s in samples), 1),
        "audit_vs_plain_acks1": round(statistics.median(
            s["producer_acks1_batch50_audit"]["records_per_s"]
            / s["producer_acks1_batch50"]["records_per_s"] for s in samples), 3),
        "audit_cpu_vs_plain_acks1": round(statistics.median(
            cpu(s["producer_acks1_batch50_audit"]) / max(cpu(s["producer_acks1_batch50"]), 1e-9)
            for s in samples), 3)}


def _medians(samples: list[dict], messages: int, size: int, runs: int) -> dict:
    def median(get):
        return round(statistics.median(get(s) for s in samples), 1)
    return {
        "messages": messages, "message_bytes": size, "runs": runs,
        "producer_batch1_msgs_per_s": median(lambda s: s["producer_batch1"]["records_per_s"]),
        "producer_batch50_msgs_per_s": median(lambda s: s["producer_batch50"]["records_per_s"]),
        "producer_acks1_batch50_msgs_per_s":
            median(lambda s: s["producer_acks1_batch50"]["records_per_s"]),
        "acks1_latency_ms": {
            point: round(statistics.median(
                s["producer_acks1_batch50"]["latency_ms"][point] for s in samples), 3)
            for point in ("p50", "p99")},
        "consumer_200kb_msgs_per_s": median(lambda s: s["consumer_200kb"]["records_per_s"]),
        "consumer_msgs_per_s": median(lambda s: s["consumer_default"]["records_per_s"]),
        "storage_overhead_bytes_per_msg":
            round(statistics.median(s["storage_overhead_bytes_per_msg"] for s in samples), 3),
        "broker_peak_rss_mb": 0.0,
        "machine": {"cpus": os.cpu_count(),
                    "python": ".".join(platform.python_version_tuple()[:2])},
    }


def last_peers(path: Path = PEERS_FILE) -> dict | None:
    """The last ``make bench-peers`` document, or None when there is none (or it is unreadable:
    the table then says to run it)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _peers_caption(peers: dict | None) -> str:
    if peers is None:
        return ("best peer here: not measured on this machine yet; run `make bench-peers` "
                "(Redis Streams, NATS JetStream, RabbitMQ streams side by side)")
    machine = peers.get("machine") if isinstance(peers.get("machine"), dict) else {}
    return (f"best peer here: `make bench-peers` of {peers.get('date', '?')} on "
            f"{machine.get('cores', '?')} cores ({machine.get('cpu_model', '?')}), load "
            f"{machine.get('load_average', '?')}: {PEERS_FILE}")


def table(result: dict, peers: dict | None = None):
    """The figures beside the paper's Kafka, the last measured peers and the targets, as a
    rich Table."""
    from rich.table import Table
    from cluster.tools.peers.report import best_peer_line
    grid = Table(title=f"sluice vs the paper: {result['messages']:,} messages of "
                       f"{result['message_bytes']} bytes, median of {result['runs']} run(s), "
                       f"{result['machine']['cpus']} CPUs, Python {result['machine']['python']}",
                 title_justify="left")
    for column in ("figure", "paper's Kafka", "best peer here", "target", "sluice", "met"):
        grid.add_column(column, justify="left" if column in ("figure", "best peer here")
                        else "right")
    for key, label, paper, peer_key, target, higher in FIGURES:
        value = result[key]
        met = value >= target if higher else value <= target
        peer = (best_peer_line(peers, peer_key) if peers and peer_key else None) or ""
        grid.add_row(label, _number(paper), peer, ("≥ " if higher else "≤ ") + _number(target),
                     _number(value), "yes" if met else "NO")
    caption = [f"acks=1 latency: p50 {result['acks1_latency_ms']['p50']:.2f} ms, p99 "
               f"{result['acks1_latency_ms']['p99']:.2f} ms (send() of a batch's first message "
               "to its acknowledgement)", _peers_caption(peers)]
    for marker, figures in (("audit_vs_plain_acks1", AUDIT_FIGURES),
                            ("acks_all_vs_single_replica_acks1", REPLICATION_FIGURES),
                            ("kafka_confluent_vs_native_acks1", KAFKA_FIGURES),
                            ("secure_vs_plain_producer_acks1", SECURE_FIGURES)):
        for key, label, target, higher in figures if marker in result else ():
            value = result[key]
            met = "-" if target is None or value is None else (
                "yes" if (value >= target if higher else value <= target) else "NO")
            grid.add_row(label, "-", "", "-" if target is None else
                         ("≥ " if higher else "≤ ") + f"{target:g}", _number(value), met)
    if "acks_all_vs_single_replica_acks1" in result:
        latency = result["acks_all_latency_ms"]
        caption.append(f"acks=all latency (R=3, min ISR 2): p50 {latency['p50']:.2f} ms, p99 "
                       f"{latency['p99']:.2f} ms")
    if "secure_vs_plain_producer_acks1" in result:
        latency = result["secure_acks1_latency_ms"]
        caption.append(f"secure acks=1 latency: p50 {latency['p50']:.2f} ms, p99 "
                       f"{latency['p99']:.2f} ms")
    grid.caption = "\n".join(caption)
    return grid


def _number(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.tools.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--output", default=".bench/results.json")
    parser.add_argument("--samples", help="also write every run's raw figures to this file")
    parser.add_argument("--no-replication", dest="replication", action="store_false",
                        help="leave out the 3-broker replication rows")
    parser.add_argument("--no-kafka", dest="kafka", action="store_false",
                        help="leave out the Kafka client rows (and the broker's Kafka listener)")
    parser.add_argument("--no-secure", dest="secure", action="store_false",
                        help="leave out the --secure rows (CurveZMQ beside plaintext)")
    parser.add_argument("--no-offsets", dest="offsets", action="store_false",
                        help="leave out the offset stores' rows (cluster/tools/offsets_bench.py)")
    parser.add_argument("--no-audit", dest="audit", action="store_false",
                        help="leave out the audited producer row")
    parser.add_argument("--no-kafka-tls", dest="kafka_tls", action="store_false",
                        help="leave out the Kafka listener's SASL_SSL / plaintext pair "
                             "(cluster/tools/kafka_tls_bench.py)")
    parser.add_argument("--no-scale", dest="scale", action="store_false",
                        help="leave out how cost grows: 10x the messages, 64 partitions")
    args = parser.parse_args(argv)
    from rich.console import Console
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        result, samples = run(args.messages, args.runs, args.size, say=err.print,
                              replication=args.replication, kafka=args.kafka,
                              secure=args.secure, audit=args.audit)
        if args.offsets:
            result["offset_stores"] = offsets_bench.run(say=err.print)
        if args.kafka and args.kafka_tls:
            result["kafka_tls"] = kafka_tls_bench.run(args.messages, args.runs, args.size,
                                                      say=err.print)
        if args.scale:
            result["scale"] = scale_bench.run(args.messages, args.size, say=err.print,
                                              baseline=result)
    except SluiceError as exc:
        if not exc.user_error:
            raise
        sys.stderr.write(f"bench: error: {exc}\n")
        return 1
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    if args.samples:
        Path(args.samples).write_text(json.dumps(samples, indent=2) + "\n")
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 130)
    console.print(table(result, last_peers()))
    if result.get("offset_stores"):
        console.print(offsets_bench.table(result["offset_stores"]))
    if result.get("kafka_tls"):
        console.print(kafka_tls_bench.table(result["kafka_tls"]))
    if result.get("scale"):
        console.print(scale_bench.table(result["scale"]))
    err.print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
