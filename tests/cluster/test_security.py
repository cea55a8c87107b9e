"""``cluster up --secure`` (issue 14) against real processes: digest ACLs on every ZooKeeper
node sluice creates, the keys CLI, CURVE between brokers, and no secret where others can see."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from clients.producer import Producer
from clients.simple_consumer import SimpleConsumer
from coordinator import credentials, topics, zk as zkconnect
from coordinator.errors import AuthenticationFailed
from tests.helpers import wait_for

REPO = Path(__file__).resolve().parents[2]
DIGEST = "ops:not-a-real-secret-7c1e"


def sluice(data_dir, *args, env=None):
    return subprocess.run([sys.executable, "-m", "cluster.cli", "--data-dir", str(data_dir),
                           *args], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def secured(cluster_factory):
    cluster = cluster_factory(brokers=2, secure=True, env={credentials.DIGEST_ENV: DIGEST})
    client = zkconnect.connect(cluster.zookeeper, cluster.data_dir)
    topics.create(client, "clicks", partitions=1, replication_factor=2)
    client.stop()
    client.close()
    return cluster


def test_a_stranger_to_zookeeper_can_read_and_change_nothing(secured, zk_server):
    hosts, chroot = zkconnect.split_chroot(secured.zookeeper)
    raw = KazooClient(hosts=hosts)
    raw.start()
    try:
        for path in ("/brokers/ids", "/brokers/topics", "/config/topics", "/config/cluster",
                     "/consumers", "/security/allowed", "/controller"):
            full = chroot + path
            if not raw.exists(full):
                continue
            with pytest.raises(NoAuthError):
                raw.get(full)
            with pytest.raises(NoAuthError):
                raw.get_children(full)
            with pytest.raises(NoAuthError):
                raw.set(full, b"x")
            with pytest.raises(NoAuthError):
                raw.create(full + "/intruder", b"x")
        with pytest.raises(NoAuthError):
            raw.delete(chroot + "/config/topics/clicks")
        with pytest.raises(NoAuthError):
            raw.get(chroot)
    finally:
        raw.stop()
        raw.close()


def test_keys_cli_lets_a_client_in_and_revoke_shuts_it_out(secured):
    data_dir = secured.data_dir
    made = sluice(data_dir, "keys", "create", "alice", "--json")
    assert made.returncode == 0, made.stderr
    path = json.loads(made.stdout)["path"]
    assert "secret" not in made.stdout
    with pytest.raises(AuthenticationFailed):
        producer = Producer(secured.zookeeper, data_dir=data_dir, acks=1, credentials=path)
        producer.send("clicks", b"early", partition=0)
        producer.flush()
    producer.close()
    assert sluice(data_dir, "keys", "allow", "alice").returncode == 0
    granted = sluice(data_dir, "acl", "add", "alice", "produce", "consume", "--topic", "clicks")
    assert granted.returncode == 0, granted.stderr

    def produced():
        producer = Producer(secured.zookeeper, data_dir=data_dir, acks="all", credentials=path)
        try:
            producer.send("clicks", b"hello", partition=0)
            producer.flush()
            return True
        except AuthenticationFailed:
            return None
        finally:
            producer.close()
    wait_for(produced, 20, what="alice to be let in")
    consumer = SimpleConsumer("clicks", 0, zookeeper=secured.zookeeper, data_dir=data_dir,
                              credentials=path, timeout_ms=10_000)
    assert b"hello" in [m.value for m in consumer]
    consumer.close()
    # the follower copied it over CURVE with its own broker key
    wait_for(lambda: all(sum(f.stat().st_size for f in (data_dir / f"broker-{b}").rglob("*.log"))
                         for b in (0, 1)), 20, what="both replicas to hold the message")
    assert sluice(data_dir, "keys", "revoke", "alice").returncode == 0
    wait_for(lambda: sluice(data_dir, "--credentials", path, "topics", "describe", "clicks")
             .returncode != 0 or None, 20, what="alice to be shut out")
    described = sluice(data_dir, "topics", "describe", "clicks", "--json")
    assert described.returncode == 0, described.stderr


def test_no_secret_in_status_logs_or_world_readable_files(secured):
    data_dir = secured.data_dir
    status = sluice(data_dir, "cluster", "status", "--json")
    assert status.returncode == 0, status.stderr
    root = credentials.security_dir(data_dir)
    secrets = [DIGEST, DIGEST.partition(":")[2]] + [
        credentials.load(p).secret_key for p in root.rglob("*.key")] + [
        p.read_text().splitlines()[1] for p in root.rglob("*-key.pem")]   # the Kafka TLS keys
    assert len(secrets) > 2 + len(list(root.rglob("*.key")))
    seen = status.stdout
    for path in data_dir.rglob("*"):
        if path.is_file() and root not in path.parents and path.stat().st_size < 50 << 20:
            seen += path.read_text(errors="replace")
            assert path.stat().st_mode & 0o004 == 0 or not any(
                s in path.read_text(errors="replace") for s in secrets), path
    for secret in secrets:
        assert secret not in seen
    for path in [root, *root.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, path
