"""Supervised group workers on a real cluster: 3 brokers, a 12-partition topic, 4 workers.

Asserted from ZooKeeper (who owns what) and from what the workers loaded (every message's
partition, offset and value): the group settles after every change, nothing is skipped, and
duplicates stay within what one commit interval allows.
"""
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import psutil
import pytest

from clients import Producer
from cluster.loader import read_loaded
from coordinator import group as groups, paths, topics, zk as zkmod
from coordinator.offsets import OffsetStore
from tests.cluster.handlers import BLOCK_ENV
from tests.helpers import ROOT, wait_for

log = logging.getLogger("test.group_workers")
TOPIC, GROUP, PARTITIONS = "clicks", "loaders", 12
WORKER = {"topic": TOPIC, "group": GROUP, "commit_ms": 1000, "session_timeout_ms": 4000,
          "rebalance_max_tries": 20, "rebalance_backoff_ms": 300}
RATE = 300


class SteadyProducer(threading.Thread):
    """acks=1 at about RATE messages/s with unique values, until stopped."""

    def __init__(self, zookeeper):
        super().__init__(daemon=True)
        self.zookeeper = zookeeper
        self.sent = 0
        self.error = None
        self._stop_event = threading.Event()

    def run(self):
        try:
            with Producer(self.zookeeper, batch_size=10, linger_ms=5, acks=1,
                          request_timeout_ms=2000, retries=50) as producer:
                while not self._stop_event.is_set():
                    for _ in range(RATE // 10):
                        producer.send(TOPIC, b"%08d" % self.sent)
                        self.sent += 1
                    time.sleep(0.1)
                producer.flush()
        except Exception as exc:  # surfaced by the test
            self.error = exc

    def stop(self):
        self._stop_event.set()
        self.join(120)
        assert not self.is_alive() and self.error is None, self.error


def live_members(client):
    """Group members whose process is alive (a SIGKILLed one lingers until its session ends)."""
    alive = set()
    for member in groups.members(client, GROUP):
        try:
            data = json.loads(client.get(paths.consumer(GROUP, member))[0])
        except Exception:
            continue
        if psutil.pid_exists(data["pid"]) and psutil.Process(data["pid"]).status() != "zombie":
            alive.add(member)
    return alive


def wait_settled(client, expected_members, what):
    """Every partition owned by exactly one live member, and every live member counted."""
    started = time.monotonic()

    def settled():
        members = live_members(client)
        if len(members) != expected_members or set(groups.members(client, GROUP)) != members:
            return False
        owners = groups.owners(client, GROUP, TOPIC)
        return sorted(owners) == list(range(PARTITIONS)) and set(owners.values()) <= members

    wait_for(settled, 90, interval=0.2, what=f"the group to settle after {what}")
    elapsed = time.monotonic() - started
    log.warning("group settled %.1f s after %s", elapsed, what)
    return elapsed


def worker_pids(cluster):
    return {p["id"]: p["pid"] for p in cluster.info()["processes"] if p["role"] == "worker"}


def start_extra_worker(cluster, worker_id, settings):
    code = ("import json, sys; from cluster.worker import WorkerConfig, run; "
            "run(WorkerConfig(**json.loads(sys.argv[1])))")
    config = dict(settings, worker_id=worker_id, zookeeper=cluster.zookeeper,
                  data_dir=str(cluster.data_dir))
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("protocol", ["eager", "cooperative"])
def test_group_settles_after_every_change_without_skipping(cluster_factory, protocol):
    """The paper's protocol (eager) and the default (cooperative) alike."""
    settings = {**WORKER, "rebalance": protocol}
    cluster = cluster_factory(brokers=3, workers=4, worker_settings=settings)
    client = zkmod.connect(cluster.zookeeper)
    extra = None
    try:
        topics.create(client, TOPIC, PARTITIONS)
        settle = {"start": wait_settled(client, 4, "start")}
        producer = SteadyProducer(cluster.zookeeper)
        producer.start()
        wait_for(lambda: producer.sent > 600, 30, what="traffic")

        extra = start_extra_worker(cluster, 4, settings)
        settle["worker added"] = wait_settled(client, 5, "a worker was added")

        victim = worker_pids(cluster)["1"]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: worker_pids(cluster)["1"] not in (None, victim), 30,
                 what="the supervisor to restart the worker")
        settle["worker killed"] = wait_settled(client, 5, "a worker was SIGKILLed")

        broker_pid = cluster.broker_pids()[1]
        os.kill(broker_pid, signal.SIGKILL)
        wait_for(lambda: cluster.broker_pids()[1] not in (None, broker_pid), 30,
                 what="the supervisor to restart the broker")
        wait_for(lambda: client.exists(paths.broker_topic_partitions(TOPIC, 1)), 30,
                 what="the restarted broker to host its partitions again")
        settle["broker restarted"] = wait_settled(client, 5, "a broker was restarted")
        time.sleep(2)
        producer.stop()
        sent = {b"%08d" % i for i in range(producer.sent)}

        def loaded():
            return read_loaded(cluster.data_dir / "loaded" / GROUP)

        wait_for(lambda: sent <= {v for rows in loaded().values() for _, v in rows}, 60,
                 what="every acknowledged message to be loaded")
        rows = loaded()
        values = [v for r in rows.values() for _, v in r]
        skipped = sent - set(values)
        replays = Counter((tp, off) for tp, r in rows.items() for off, _ in r)
        duplicates = sum(n - 1 for n in replays.values() if n > 1)
        log.warning("sent %d, settle times %s, consumer duplicates %d", len(sent),
                    {k: round(v, 1) for k, v in settle.items()}, duplicates)
        assert skipped == set()
        assert duplicates <= RATE * 2, "a killed worker replays at most ~one commit interval"
        for (topic, partition), r in rows.items():
            offsets = [off for off, _ in r]
            first_seen = list(dict.fromkeys(offsets))
            assert first_seen == sorted(first_seen), f"order within {topic}/{partition}"
    finally:
        if extra is not None:
            extra.terminate()
            extra.wait(30)
        client.stop()
        client.close()


def describe(zookeeper, interval):
    out = subprocess.run([sys.executable, "-m", "cluster.cli", "groups", "describe", GROUP,
                          "--zookeeper", zookeeper, "--json", "--interval", str(interval)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return {row["partition"]: row for row in json.loads(out.stdout)["partitions"]}


def test_describe_matches_zookeeper_and_flags_a_blocked_worker(cluster_factory, tmp_path):
    flag = tmp_path / "block"
    flag.write_text("hold")
    settings = dict(WORKER, handler="tests.cluster.handlers:block_while_flagged")
    cluster = cluster_factory(brokers=1, workers=2, worker_settings=settings,
                              broker_settings={"log": {"flush_ms": 200}},
                              env={BLOCK_ENV: str(flag)})
    client = zkmod.connect(cluster.zookeeper)
    try:
        topics.create(client, TOPIC, 4)
        wait_for(lambda: sorted(groups.owners(client, GROUP, TOPIC)) == [0, 1, 2, 3]
                 and len(set(groups.owners(client, GROUP, TOPIC).values())) == 2, 60,
                 what="4 partitions owned by the 2 workers")
        owners = groups.owners(client, GROUP, TOPIC)
        blocked_owner = owners[0]
        with Producer(cluster.zookeeper, acks=1) as producer:
            producer.send(TOPIC, b"block", partition=0)
        stop = threading.Event()

        def trickle():
            with Producer(cluster.zookeeper, acks=1, linger_ms=5) as producer:
                i = 0
                while not stop.is_set():
                    for partition in range(4):
                        producer.send(TOPIC, b"m%d" % i, partition=partition)
                    i += 1
                    time.sleep(0.05)

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        time.sleep(3)
        report = describe(cluster.zookeeper, interval=3)
        stop.set()
        thread.join(30)
        blocked = [p for p, o in owners.items() if o == blocked_owner]
        healthy = [p for p in range(4) if p not in blocked]
        assert all(report[p]["stuck"] for p in blocked), report
        assert not any(report[p]["stuck"] for p in healthy), json.dumps(report, indent=1)
        assert all(report[p]["consume_msgs_per_s"] > 0 for p in healthy)
        assert report[0]["lag_messages"] > 0

        time.sleep(3)  # traffic stopped: the healthy worker commits what it has, then all is still
        report = describe(cluster.zookeeper, interval=0)
        committed = OffsetStore(client, GROUP).committed(TOPIC)
        for partition, row in report.items():
            assert row["committed"] == committed.get(partition)
            assert row["owner"] == owners[partition]
            assert row["lag_bytes"] == row["log_end"] - (row["committed"] or 0)
            assert (row["lag_bytes"] == 0) == (partition not in blocked)
    finally:
        flag.unlink(missing_ok=True)
        client.stop()
        client.close()


def test_cli_consume_with_a_group(cluster_factory):
    cluster = cluster_factory(brokers=1)
    client = zkmod.connect(cluster.zookeeper)
    try:
        topics.create(client, "lines", 2)
    finally:
        client.stop()
        client.close()
    with Producer(cluster.zookeeper, acks=1) as producer:
        for i in range(50):
            producer.send("lines", b"line-%d" % i)
    out = subprocess.run([sys.executable, "-m", "cluster.cli", "consume", "lines", "--group", "g",
                          "--zookeeper", cluster.zookeeper, "--timeout-ms", "5000",
                          "--max-messages", "50"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.split()) == sorted(f"line-{i}" for i in range(50))
