"""Supervised group workers on a real cluster: 3 brokers, a 12-partition topic, 4 workers.

Asserted from ZooKeeper (who owns what) and from what the workers loaded (every message's
partition, offset and value): the group settles after every change, nothing is skipped, and
duplicates stay within what the design bounds: a rebalance replays nothing (workers flush and
commit on revoke), a SIGKILLed worker replays what it had loaded past its last commit.
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
from cluster.workers.loader import hourly_files, read_loaded
from coordinator import consumer_registry as groups, paths, topics, zk as zkmod
from tests.cluster.workers.handlers import BLOCK_ENV
from tests.helpers import GroupOffsets, ROOT, create_topic, wait_for

log = logging.getLogger(__name__)
TOPIC, GROUP, PARTITIONS = "clicks", "loaders", 12
CONSUMER = {"auto_commit_ms": 1000, "session_timeout_ms": 4000, "rebalance_max_tries": 20,
            "rebalance_backoff_ms": 300}
WORKER = {"topic": TOPIC, "group": GROUP, "consumer": CONSUMER}
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
        if _running(data["pid"]):
            alive.add(member)
    return alive


def _running(pid: int) -> bool:
    """Alive and not a zombie; a process that ends while it is looked at is not running."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


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


def member_of(client, pid):
    """The group member id of the worker process ``pid``."""
    for member in groups.members(client, GROUP):
        if json.loads(client.get(paths.consumer(GROUP, member))[0])["pid"] == pid:
            return member
    raise AssertionError(f"no member of {GROUP} has pid {pid}")


def loaded_past_commit(client, cluster, member):
    """The ledger at a kill: rows loaded for the partitions ``member`` owns, at or past their
    committed offsets. Its owner nodes outlive it until its session expires, and nobody else
    loads those partitions meanwhile, so this is what its successors may load again (read the
    offsets first: a successor's later loads only make the count larger, never smaller)."""
    committed = GroupOffsets(cluster.zookeeper, GROUP).committed(TOPIC)
    owned = [p for p, owner in groups.owners(client, GROUP, TOPIC).items() if owner == member]
    rows = read_loaded(cluster.data_dir / "loaded" / GROUP)
    return sum(1 for p in owned for offset, _ in rows.get((TOPIC, p), [])
               if offset >= committed.get(p, -1))


def worker_pids(cluster):
    return {p["id"]: p["pid"] for p in cluster.info()["processes"] if p["role"] == "worker"}


def start_extra_worker(cluster, worker_id, settings):
    code = ("import json, sys; from cluster.workers.worker import WorkerConfig, run; "
            "run(WorkerConfig.from_dict(json.loads(sys.argv[1])))")
    config = dict(settings, worker_id=worker_id, zookeeper=cluster.zookeeper,
                  data_dir=str(cluster.data_dir))
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("protocol", ["eager", "cooperative"])
def test_group_settles_after_every_change_without_skipping(cluster_factory, protocol):
    """The paper's protocol (eager) and the default (cooperative) alike."""
    settings = {**WORKER, "consumer": {**CONSUMER, "rebalance": protocol}}
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
        victim_id = member_of(client, victim)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not _running(victim), 30, what="the worker to die")
        replayable = loaded_past_commit(client, cluster, victim_id)
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
        log.warning("sent %d, settle times %s, consumer duplicates %d (bound %d)", len(sent),
                    {k: round(v, 1) for k, v in settle.items()}, duplicates, replayable)
        assert skipped == set()
        assert duplicates <= replayable, \
            "only the killed worker's loads past its last commit may be loaded again"
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
    settings = dict(WORKER, handler="tests.cluster.workers.handlers:block_while_flagged")
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
        committed = GroupOffsets(cluster.zookeeper, GROUP).committed(TOPIC)
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
    create_topic(cluster.zookeeper, "lines", 2)
    with Producer(cluster.zookeeper, acks=1) as producer:
        for i in range(50):
            producer.send("lines", b"line-%d" % i)
    out = subprocess.run([sys.executable, "-m", "cluster.cli", "consume", "lines", "--group", "g",
                          "--zookeeper", cluster.zookeeper, "--timeout-ms", "5000",
                          "--max-messages", "50"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.split()) == sorted(f"line-{i}" for i in range(50))


def fail_on_poison(message):
    """Load like the default handler, but fail on the message b"poison"."""
    if message.value == b"poison":
        raise ValueError("cannot load a poison message")
    hourly_files(message)


fail_on_poison.flush = hourly_files.flush
POISON_VALUES = [b"ok-%d" % i for i in range(5)] + [b"poison"] + [b"ok-%d" % i
                                                                  for i in range(6, 10)]


def poisoned_cluster(cluster_factory, on_error):
    settings = dict(WORKER, handler="tests.cluster.workers.test_worker:fail_on_poison",
                    on_error=on_error)
    cluster = cluster_factory(brokers=1, workers=1, worker_settings=settings,
                              broker_settings={"log": {"flush_ms": 50}})
    client = zkmod.connect(cluster.zookeeper)
    topics.create(client, TOPIC, 1)
    wait_for(lambda: groups.owners(client, GROUP, TOPIC), 60, what="the worker to own the topic")
    with Producer(cluster.zookeeper, acks=1, batch_size=1, linger_ms=0) as producer:
        for value in POISON_VALUES:
            producer.send(TOPIC, value)
    return cluster, client


def all_logs(cluster):
    return "".join((cluster.data_dir / name).read_text(errors="replace")
                   for name in ("supervisor.log", "supervisor.out"))


def test_a_failing_handler_stops_the_worker_at_the_message_and_it_is_restarted(cluster_factory):
    cluster, client = poisoned_cluster(cluster_factory, "stop")
    try:
        wait_for(lambda: all_logs(cluster).count("died with exit code 3") >= 2, 90,
                 what="the worker to fail, be restarted and fail again")
        poison_offset = 5 * (9 + 4)
        assert GroupOffsets(cluster.zookeeper, GROUP).fetch(TOPIC, 0) == poison_offset, \
            "committed up to the message before the failing one"
        loaded = read_loaded(cluster.data_dir / "loaded" / GROUP)[(TOPIC, 0)]
        assert [v for _, v in loaded] == POISON_VALUES[:5], "nothing after it, nothing twice"
        text = all_logs(cluster)
        assert f"handler failed on {TOPIC}/0 at offset {poison_offset}" in text
        assert "ValueError: cannot load a poison message" in text, "with the traceback"
    finally:
        client.stop()
        client.close()


def test_on_error_skip_notes_the_message_and_goes_on(cluster_factory):
    cluster, client = poisoned_cluster(cluster_factory, "skip")
    try:
        end = sum(9 + len(v) for v in POISON_VALUES)
        wait_for(lambda: GroupOffsets(cluster.zookeeper, GROUP).fetch(TOPIC, 0) == end, 60,
                 what="the worker to commit the whole partition")
        loaded = read_loaded(cluster.data_dir / "loaded" / GROUP)[(TOPIC, 0)]
        assert [v for _, v in loaded] == [v for v in POISON_VALUES if v != b"poison"]
        [event] = GroupOffsets(cluster.zookeeper, GROUP).data_loss(TOPIC)[0]["events"]
        assert (event["kind"], event["offset"], event["bytes"], event["messages"]) == \
            ("skipped", 5 * (9 + 4), 9 + 6, 1)
        assert event["error"] == "ValueError: cannot load a poison message"
        assert "died with exit code" not in all_logs(cluster)
        row = describe(cluster.zookeeper, interval=0)[0]
        assert row["data_loss"]["totals"]["skipped"]["events"] == 1
        out = subprocess.run([sys.executable, "-m", "cluster.cli", "groups", "describe", GROUP,
                              "--zookeeper", cluster.zookeeper, "--interval", "0"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "skipped 1" in out.stdout, out.stdout
    finally:
        client.stop()
        client.close()


@pytest.mark.parametrize("setting, words", [({"on_error": "ignore"}, ["on_error", "stop", "skip"]),
                                            ({"on_stop": "later"}, ["on_stop", "finish"])])
def test_worker_config_refuses_unknown_policies(setting, words):
    from cluster.workers.worker import WorkerConfig
    with pytest.raises(ValueError) as refused:
        WorkerConfig(worker_id=0, zookeeper="", topic=TOPIC, group=GROUP, data_dir="", **setting)
    assert all(word in str(refused.value) for word in words)
