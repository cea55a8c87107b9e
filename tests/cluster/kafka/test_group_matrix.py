"""Each Kafka client in a group of three consumers, each its own process, one SIGKILLed
mid-stream (the issue's matrix): its partitions go to the survivors, which start from its last
commit (a message boundary in ZooKeeper's offset nodes), so what it had consumed past that commit
is delivered again (at least once) and nothing is missing; at the end the commits are the log
ends. Judged by what each client's members deliver and commit."""
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from clients.producer import Producer
from clients.simple_consumer import SimpleConsumer
from coordinator import consumer_registry
from tests.cluster.kafka.kafka_clients import KAFKAJS_HOME, KAFKAJS_SCRIPT, needs_kafkajs, needs_kcat
from tests.cluster.kafka.member_output import MemberOutput
from tests.helpers import GroupOffsets, wait_for

# Messages in the topic: half before the kill, half from a producer running across it.
GROUP_MESSAGES = int(os.environ.get("SLUICE_MATRIX_GROUP_MESSAGES", "6000"))

TOPIC = "shared"
PARTITIONS = 3
ROOT = Path(__file__).resolve().parents[3]


def member_argv(client: str, bootstrap: str, group: str, out: Path) -> list[str]:
    if client == "kcat":
        return ["kcat", "-b", bootstrap, "-G", group, "-q", "-u", "-f", "%p %o %s\\n",
                "-X", "auto.offset.reset=earliest", "-X", "auto.commit.interval.ms=200",
                "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500", TOPIC]
    if client == "kafkajs":
        return ["node", str(KAFKAJS_SCRIPT), "member", bootstrap, TOPIC, group, str(out)]
    return [sys.executable, "-m", "tests.cluster.kafka.group_member", client, bootstrap, group,
            TOPIC, str(out)]


class Member:
    """One member process; ``records()`` are the ``(partition, offset, value)`` it consumed,
    in the order it consumed them. Its stderr goes to ``<out>.err`` (the client's DEBUG log
    with SLUICE_MEMBER_DEBUG=1)."""

    def __init__(self, client: str, bootstrap: str, group: str, out: Path):
        self.out = out
        out.touch()
        self.output = MemberOutput(out)
        env = dict(os.environ, KAFKAJS_HOME=str(KAFKAJS_HOME))
        stdout = open(out, "ab") if client == "kcat" else subprocess.DEVNULL
        stderr = open(f"{out}.err", "ab")
        self.proc = subprocess.Popen(member_argv(client, bootstrap, group, out), cwd=ROOT,
                                     env=env, stdout=stdout, stderr=stderr)
        stderr.close()
        if client == "kcat":
            stdout.close()

    def records(self) -> list[tuple[int, int, str]]:
        return self.output.records()

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(30)


def produce(zk: str, first: int, count: int, chunks: int = 1) -> None:
    """Keyed messages m<first>.. with sluice's producer, flushed in ``chunks`` steps (a
    stream the consumers see arrive, not one block)."""
    with Producer(zk, acks=1, batch_size=200, linger_ms=5) as producer:
        step = -(-count // chunks)
        for start in range(first, first + count, step):
            for i in range(start, min(first + count, start + step)):
                producer.send(TOPIC, f"m{i}".encode(), key=f"user-{i % 17}".encode())
            producer.flush()


def stored(zk: str) -> dict[int, list]:
    """Every message of the topic, by partition, read with sluice's own consumer."""
    out = {}
    for p in range(PARTITIONS):
        consumer = SimpleConsumer(TOPIC, p, zookeeper=zk, timeout_ms=10_000, max_wait_ms=100)
        try:
            end = consumer.offset_of("latest")
            out[p] = []
            while consumer.position < end:
                out[p] += consumer.fetch()
        finally:
            consumer.close()
    return out


GROUP_CLIENTS = [pytest.param("kafka-python", id="kafka-python"),
                 pytest.param("confluent", id="confluent-kafka"),
                 pytest.param("kcat", id="kcat", marks=needs_kcat),
                 pytest.param("kafkajs", id="kafkajs", marks=needs_kafkajs)]


@pytest.mark.parametrize("client", GROUP_CLIENTS)
def test_a_group_of_three_with_one_killed_replays_from_its_last_commit(
        kafka_broker, zk, zk_client, tmp_path, client):
    proc = kafka_broker(TOPIC, PARTITIONS, log={"visible_after_flush": False})
    bootstrap = proc.info["kafka_endpoint"]
    group = f"matrix-{client}"
    members = [Member(client, bootstrap, group, tmp_path / f"member-{i}.txt") for i in range(3)]
    store = GroupOffsets(zk, group)          # a new Kafka group's store: the log
    try:
        # one partition each, from their start, before any message
        def settled():
            owners = consumer_registry.owners(zk_client, group, TOPIC)
            return (len(consumer_registry.kafka_members(zk_client, group)) == 3 and
                    len(owners) == PARTITIONS and len(set(owners.values())) == 3)
        wait_for(settled, timeout=90, what="three members owning a partition each")
        half = GROUP_MESSAGES // 2
        produce(zk, 0, half)
        wait_for(lambda: all(m.records() for m in members), timeout=90,
                 what="every member consuming")
        victim = members[0]
        survivors = members[1:]
        had = len(victim.records())
        stream = threading.Thread(target=produce, args=(zk, half, GROUP_MESSAGES - half, 30))
        stream.start()
        try:
            wait_for(lambda: len(victim.records()) > had, timeout=90,
                     what="the victim consuming the stream")
        finally:
            victim.proc.kill()
            victim.proc.wait(10)
            before = {id(m): m.records() for m in members}
            stream.join()
        victim_parts = {p for p, _, _ in before[id(victim)]}
        assert victim_parts and not any(p in victim_parts for m in survivors
                                        for p, _, _ in before[id(m)]), \
            "a survivor consumed the victim's partitions before the kill"
        commit_at_kill = {p: store.fetch(TOPIC, p) for p in victim_parts}
        sent = stored(zk)
        assert sum(map(len, sent.values())) == GROUP_MESSAGES
        expected = {(p, m.offset) for p, msgs in sent.items() for m in msgs}

        def consumed():
            return {(p, o) for m in members for p, o, _ in m.records()}
        wait_for(lambda: consumed() >= expected, timeout=180, what="every message consumed")
        ends = {p: msgs[-1].next_offset for p, msgs in sent.items()}
        wait_for(lambda: {p: store.fetch(TOPIC, p) for p in range(PARTITIONS)} == ends,
                 timeout=60, what="the commits at the log ends")
        codes = [m.stop() for m in survivors]
    finally:
        for m in members:
            if m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait(10)
    assert codes == [0, 0]
    values = {(p, m.offset): m.value.decode() for p, msgs in sent.items() for m in msgs}
    for m in members:
        assert all(values[(p, o)] == v for p, o, v in m.records()), "a value changed"
    assert consumed() == expected
    boundaries = {p: [m.offset for m in msgs] + [ends[p]] for p, msgs in sent.items()}
    killed = victim.records()
    replayed = 0
    for p in victim_parts:
        taken = [o for m in survivors for q, o, _ in m.records() if q == p]
        assert taken, f"no survivor took partition {p} over"
        resumed = min(taken)                       # where the group resumed p: its last commit
        assert resumed in boundaries[p]
        if commit_at_kill[p] is not None:
            assert commit_at_kill[p] in boundaries[p], "a commit inside a message"
            assert commit_at_kill[p] <= resumed
        mine = {o for q, o, _ in killed if q == p}
        # committed means processed: the victim had every message before its last commit
        assert {o for o in boundaries[p][:-1] if o < resumed} <= mine
        # at least once: what it had past its last commit is delivered again
        past = {o for o in mine if o >= resumed}
        assert past <= set(taken)
        replayed += len(past)
        # and from there on nothing of p is missing from the survivors
        assert {o for o in boundaries[p][:-1] if o >= resumed} <= set(taken)
    print(f"{client}: {replayed} message(s) delivered again after the kill")
