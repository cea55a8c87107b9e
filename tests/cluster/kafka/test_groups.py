"""Kafka clients' consumer groups on sluice: real kafka-python and confluent-kafka consumers
against real brokers, judged by their own behaviour (assignments, rebalances, commits)."""
import time

import pytest

from tests.cluster.kafka.member_output import MemberOutput
from tests.helpers import GroupOffsets

TOPIC = "clicks"
GROUP_MESSAGES = 100_000     # the count for the group of three with one killed


def wait_for(condition, timeout=60.0, step=None, what="condition", interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if step is not None:
            step()
        value = condition()
        if value:
            return value
        if step is None:
            time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


class Member:
    """A confluent-kafka consumer in a group, with what its rebalance callbacks saw."""

    def __init__(self, bootstrap, group, strategy, **extra):
        from confluent_kafka import Consumer
        self.strategy = strategy
        self.owned = set()
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "partition.assignment.strategy": strategy,
                                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 300,
                                  "enable.auto.commit": False, **extra})
        self.consumer.subscribe([TOPIC], on_assign=self._assigned, on_revoke=self._revoked)

    def _assigned(self, consumer, partitions):
        self.owned |= {p.partition for p in partitions}
        if self.strategy == "cooperative-sticky":
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    def _revoked(self, consumer, partitions):
        self.owned -= {p.partition for p in partitions}
        if self.strategy == "cooperative-sticky":
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    def poll(self):
        self.consumer.poll(0.05)


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_confluent_kafka_group_splits_partitions_and_rebalances_on_leave(kafka_broker, strategy):
    proc = kafka_broker(TOPIC, 3)
    bootstrap = proc.info["kafka_endpoint"]
    members = [Member(bootstrap, "g1", strategy) for _ in range(3)]

    def step():
        for m in members:
            m.poll()

    def split():
        owned = [m.owned for m in members]
        return all(len(o) == 3 // len(members) for o in owned) and \
            set().union(*owned) == {0, 1, 2}
    try:
        wait_for(split, step=step, what="three members, one partition each")
        leaving = members.pop()
        leaving.consumer.close()
        wait_for(lambda: set().union(*[m.owned for m in members]) == {0, 1, 2}
                 and all(m.owned for m in members), step=step, what="two members own all")
    finally:
        for m in members:
            m.consumer.close()
    print(proc.log_text()[-2000:])


def produce_native(zk, partition, count):
    """``count`` messages to one partition with sluice's own producer; their Message objects."""
    from clients.producer import Producer
    from clients.simple_consumer import SimpleConsumer
    with Producer(zk, acks=1) as producer:
        for i in range(count):
            producer.send(TOPIC, f"event-{partition}-{i}".encode(), key=b"k", partition=partition)
        producer.flush()
    consumer = SimpleConsumer(TOPIC, partition, zookeeper=zk, timeout_ms=10_000)
    got = []
    try:
        while len(got) < count:
            got += consumer.fetch()
    finally:
        consumer.close()
    return got


def test_commits_are_message_boundaries_in_the_native_offset_nodes(kafka_broker, zk, zk_client):
    """confluent-kafka commits "last consumed + 1" and a plain boundary; ZooKeeper holds the
    boundaries (the group is recorded ``zookeeper``, as one from before the log store is, and
    keeps that record), OffsetFetch answers them, and a commit inside a message is refused."""
    import json
    import subprocess
    import sys
    from confluent_kafka import TopicPartition as TP
    from coordinator import offset_store_choice, paths
    from coordinator.offsets import OffsetStore
    offset_store_choice.flip(zk_client, "gc", offset_store_choice.ZOOKEEPER)
    proc = kafka_broker(TOPIC, 2)
    p0, p1 = produce_native(zk, 0, 10), produce_native(zk, 1, 5)
    member = Member(proc.info["kafka_endpoint"], "gc", "range")
    try:
        wait_for(lambda: member.owned == {0, 1}, step=member.poll, what="assignment")
        done = member.consumer.commit(offsets=[TP(TOPIC, 0, p0[4].offset + 1),
                                               TP(TOPIC, 1, p1[2].offset)], asynchronous=False)
        assert all(tp.error is None for tp in done)
        store = OffsetStore(zk_client, "gc")
        assert store.fetch(TOPIC, 0) == p0[4].next_offset      # the boundary after message 4
        assert store.fetch(TOPIC, 1) == p1[2].offset           # a boundary stays itself
        committed = member.consumer.committed([TP(TOPIC, 0), TP(TOPIC, 1)], timeout=10)
        assert [tp.offset for tp in committed] == [p0[4].next_offset, p1[2].offset]
        from confluent_kafka import KafkaException
        with pytest.raises(KafkaException) as bad:
            member.consumer.commit(offsets=[TP(TOPIC, 0, p0[6].offset + 3)], asynchronous=False)
        assert "OFFSET_OUT_OF_RANGE" in str(bad.value)
        assert store.fetch(TOPIC, 0) == p0[4].next_offset
        member_ids = zk_client.get_children(paths.kafka_members("gc"))
        assert len(member_ids) == 1
        out = subprocess.run([sys.executable, "-m", "cluster.cli", "groups", "describe", "gc",
                              "--interval", "0", "--json", "--zookeeper", zk],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        rows = {r["partition"]: r for r in json.loads(out.stdout)["partitions"]}
        assert rows[0]["owner"] == member_ids[0] and rows[1]["owner"] == member_ids[0]
        assert rows[0]["committed"] == p0[4].next_offset
        assert rows[0]["lag_bytes"] == p0[-1].next_offset - p0[4].next_offset
        assert rows[0]["lag_messages"] == 5 and rows[1]["lag_messages"] == 3
        out = subprocess.run([sys.executable, "-m", "cluster.cli", "groups", "list", "--json",
                              "--zookeeper", zk], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        listed = {r["group"]: r for r in json.loads(out.stdout)}
        assert listed["gc"]["members"] == member_ids and listed["gc"]["topics"] == [TOPIC]
    finally:
        member.consumer.close()
    wait_for(lambda: not zk_client.get_children(paths.kafka_members("gc")),
             what="the member's node to go when it leaves")


def three_brokers(kafka_broker, zk, partitions=3):
    from tests.helpers import create_topic
    procs = [kafka_broker(broker_id=b) for b in range(3)]
    create_topic(zk, TOPIC, partitions, procs)
    return procs


def test_every_broker_names_the_same_coordinator_and_the_others_refuse(kafka_broker, zk):
    """kafka-python's own protocol classes, sent to each broker: FindCoordinator answers the
    same broker everywhere; JoinGroup anywhere else is NOT_COORDINATOR."""
    from kafka.net.compat import KafkaNetClient as KafkaClient
    from kafka.protocol.consumer.group import JoinGroupRequest
    from kafka.protocol.metadata import FindCoordinatorRequest
    procs = three_brokers(kafka_broker, zk)
    client = KafkaClient(bootstrap_servers=procs[0].info["kafka_endpoint"],
                         request_timeout_ms=10_000)
    try:
        client._manager.bootstrap(timeout_ms=10_000)
        answers = []
        for b in range(3):
            response = client.send_and_receive(b, FindCoordinatorRequest(
                version=2, key="orders", key_type=0))
            answers.append((response.error_code, response.node_id,
                            f"{response.host}:{response.port}"))
        ((code, node, endpoint),) = set(answers)
        assert code == 0 and endpoint == procs[node].info["kafka_endpoint"]
        for b in range(3):
            join = JoinGroupRequest(
                version=5, group_id="orders", session_timeout_ms=6000,
                rebalance_timeout_ms=6000, member_id="", group_instance_id=None,
                protocol_type="consumer",
                protocols=[JoinGroupRequest.JoinGroupRequestProtocol(name="range",
                                                                     metadata=b"")])
            response = client.send_and_receive(b, join)
            if b == node:
                assert response.error_code == 79 and response.member_id   # MEMBER_ID_REQUIRED
            else:
                assert response.error_code == 16                          # NOT_COORDINATOR
    finally:
        client.close()


def test_a_group_across_brokers_commits_boundaries_of_partitions_led_elsewhere(
        kafka_broker, zk, zk_client):
    """Three brokers, each leading one partition: the coordinator resolves the commits of the
    partitions other brokers lead by asking them."""
    from confluent_kafka import TopicPartition as TP
    procs = three_brokers(kafka_broker, zk)
    sent = {p: produce_native(zk, p, 6) for p in range(3)}
    members = [Member(procs[i].info["kafka_endpoint"], "g3", "cooperative-sticky")
               for i in range(2)]
    try:
        wait_for(lambda: set().union(*[m.owned for m in members]) == {0, 1, 2}
                 and all(m.owned for m in members),
                 step=lambda: [m.poll() for m in members], what="two members own all")
        for m in members:
            done = m.consumer.commit(offsets=[TP(TOPIC, p, sent[p][p + 1].offset + 1)
                                              for p in sorted(m.owned)], asynchronous=False)
            assert all(tp.error is None for tp in done)
        store = GroupOffsets(zk, "g3")         # the log store: a new group's
        assert {p: store.fetch(TOPIC, p) for p in range(3)} == {
            p: sent[p][p + 1].next_offset for p in range(3)}
    finally:
        for m in members:
            m.consumer.close()


def produce_keyed(zk, count, first=0, partitions=3):
    """Keyed messages m<first>..m<first + count - 1> with sluice's producer, after ``first``
    before them; every message of the topic, ``{partition: [Message, ...]}`` in order."""
    from clients.producer import Producer
    from clients.simple_consumer import SimpleConsumer
    with Producer(zk, acks=1, batch_size=200, linger_ms=5) as producer:
        for i in range(first, first + count):
            producer.send(TOPIC, f"m{i}".encode(), key=f"user-{i % 17}".encode())
        producer.flush()
    consumers = {p: SimpleConsumer(TOPIC, p, zookeeper=zk, timeout_ms=2000)
                 for p in range(partitions)}
    sent = {p: [] for p in range(partitions)}
    try:
        wait_for(lambda: [sent[p].extend(c.fetch()) for p, c in consumers.items()] and
                 sum(map(len, sent.values())) >= first + count, what="the messages readable")
    finally:
        for c in consumers.values():
            c.close()
    assert sum(map(len, sent.values())) == first + count
    return sent


class MemberProcess:
    def __init__(self, client, bootstrap, group, out, strategy):
        import subprocess
        import sys
        from pathlib import Path
        self.out = Path(out)
        self.out.touch()
        self.output = MemberOutput(self.out)
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.cluster.kafka.group_member",
                                      client, bootstrap, group, TOPIC, str(out), strategy],
                                     cwd=Path(__file__).parents[3])

    def records(self):
        return self.output.records()

    def stop(self):
        self.proc.terminate()
        return self.proc.wait(30)


# at the 100,000 for one client and strategy; test_group_matrix.py runs every client
# (kafka-python, confluent-kafka, kcat, kafkajs) the same way with fewer messages
@pytest.mark.parametrize("client,strategy", [("confluent", "cooperative-sticky")])
def test_a_group_of_three_consumes_everything_with_one_killed_mid_stream(
        kafka_broker, zk, zk_client, tmp_path, client, strategy):
    """Three member processes share 3 partitions; one is SIGKILLed once it has consumed some:
    after its session times out the others take its partitions from its last commit. Every
    message is consumed (a few twice: the killed member's uncommitted tail), in order per
    partition and member, and at the end the committed offsets are the log ends."""
    proc = kafka_broker(TOPIC, 3)
    bootstrap = proc.info["kafka_endpoint"]
    sent = produce_keyed(zk, GROUP_MESSAGES)
    members = [MemberProcess(client, bootstrap, "g-kill", tmp_path / f"m{i}.txt", strategy)
               for i in range(3)]
    try:
        victim = wait_for(lambda: next((m for m in members if len(m.records()) >= 100), None),
                          timeout=90, what="a member consuming")
        victim.proc.kill()
        victim.proc.wait(10)
        survivors = [m for m in members if m is not victim]
        expected = {(p, m.offset) for p, msgs in sent.items() for m in msgs}

        def consumed():
            return {(p, o) for m in members for p, o, _ in m.records()}
        # a look builds a set of 100,000 pairs: twice a second, not twenty times
        wait_for(lambda: consumed() >= expected, timeout=120, interval=0.5,
                 what="every message consumed")
        store = GroupOffsets(zk, "g-kill")
        ends = {p: msgs[-1].next_offset for p, msgs in sent.items()}
        wait_for(lambda: {p: store.fetch(TOPIC, p) for p in range(3)} == ends, timeout=30,
                 what="commits at the log ends")
        for m in survivors:
            assert m.stop() == 0
    finally:
        for m in members:
            if m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait(10)
    values = {(p, m.offset): m.value.decode() for p, msgs in sent.items() for m in msgs}
    index = {(p, m.offset): i for p, msgs in sent.items() for i, m in enumerate(msgs)}
    seen_by = [{(p, index[(p, o)]) for p, o, _ in m.records()} for m in members]
    for k, m in enumerate(members):
        seen = m.records()
        assert all(values[(p, o)] == v for p, o, v in seen)          # none changed
        others = set().union(*(s for j, s in enumerate(seen_by) if j != k))
        last = {}
        for p, o, _ in seen:   # in order per partition: each step is the next message, a rewind
            i = index[(p, o)]  # (redelivery after a rebalance), or a jump over messages another
            if p in last and i > last[p] + 1:                   # member consumed meanwhile
                assert all((p, j) in others for j in range(last[p] + 1, i)), (p, last[p], i)
            last[p] = i
    assert consumed() == expected


def test_kafka_and_native_consumers_of_one_group_resume_from_each_others_commits(
        kafka_broker, zk):
    """A confluent-kafka consumer reads and commits; a native sluice Consumer of the same group
    then reads only what came after; a kafka-python consumer after it only what came after that."""
    from confluent_kafka import Consumer as ConfluentConsumer
    from clients.consumer import Consumer as NativeConsumer
    from kafka import KafkaConsumer
    proc = kafka_broker(TOPIC, 3)
    bootstrap = proc.info["kafka_endpoint"]

    def values(sent):
        return {m.value.decode() for msgs in sent.values() for m in msgs}

    first = values(produce_keyed(zk, 30))
    kafka = ConfluentConsumer({"bootstrap.servers": bootstrap, "group.id": "g-share",
                               "auto.offset.reset": "earliest", "enable.auto.commit": False,
                               "session.timeout.ms": 6000})
    kafka.subscribe([TOPIC])
    got = []
    try:
        def step():
            for r in kafka.consume(100, 0.2):
                assert r.error() is None, r.error()
                got.append(r.value().decode())
        wait_for(lambda: len(got) >= 30, step=step, what="30 messages")
        kafka.commit(asynchronous=False)
    finally:
        kafka.close()
    assert set(got) == first and len(got) == 30

    second = values(produce_keyed(zk, 30, 30)) - first
    native = NativeConsumer([TOPIC], "g-share", zk, auto_commit_ms=None)
    got = []
    try:
        wait_for(lambda: got.extend(m.value.decode() for m in native.poll(200)) or
                 len(got) >= 30, what="the next 30 natively")
        native.commit()
    finally:
        native.close()
    assert set(got) == second and len(got) == 30

    third = values(produce_keyed(zk, 15, 60)) - first - second
    kp = KafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id="g-share",
                       auto_offset_reset="earliest", enable_auto_commit=False,
                       session_timeout_ms=6000)
    got = []
    try:
        # before its first join (see group_member.py: kafka-python 3.0.12 can lose its own
        # assignment when it leads a join made before its metadata had the partitions)
        wait_for(lambda: kp.partitions_for_topic(TOPIC), what="kafka-python's topic metadata")
        wait_for(lambda: [got.extend(r.value.decode() for r in rs)
                          for rs in kp.poll(timeout_ms=200).values()] is not None
                 and len(got) >= 15, what="the last 15 with kafka-python")
    finally:
        kp.close()
    assert set(got) == third and len(got) == 15


def test_the_group_moves_to_another_broker_when_its_coordinator_stops(kafka_broker, zk,
                                                                      zk_client):
    """The coordinator stops: the members find the next one (every broker computes it from the
    live brokers), rejoin there, and it publishes them."""
    import json
    from coordinator import paths
    from coordinator.group_coordinator_choice import coordinator_of
    procs = three_brokers(kafka_broker, zk)
    first = coordinator_of("g-move", [0, 1, 2])
    bootstrap = ",".join(p.info["kafka_endpoint"] for p in procs)
    members = [Member(bootstrap, "g-move", "range") for _ in range(2)]

    def step():
        for m in members:
            m.poll()

    def published_by():
        try:
            ids = zk_client.get_children(paths.kafka_members("g-move"))
            return {json.loads(zk_client.get(paths.kafka_member("g-move", i))[0])["coordinator"]
                    for i in ids} if len(ids) == 2 else None
        except Exception:
            return None
    try:
        wait_for(lambda: set().union(*[m.owned for m in members]) == {0, 1, 2}
                 and published_by() == {first}, step=step, what="the group on its coordinator")
        assert procs[first].stop() == 0
        second = coordinator_of("g-move", [b for b in range(3) if b != first])
        from coordinator import topics
        gone = set(topics.get(zk_client, TOPIC).hosted_by(first))
        wait_for(lambda: published_by() == {second}
                 and set().union(*[m.owned for m in members]) >= {0, 1, 2} - gone,
                 step=step, timeout=90, what="the group on the next coordinator")
    finally:
        for m in members:
            m.consumer.close()


def test_a_static_member_restarting_keeps_its_partitions_without_a_rebalance(kafka_broker,
                                                                           zk_client):
    """confluent-kafka with group.instance.id: a member closes (a static member sends no
    LeaveGroup) and comes back within its session: same generation, same partitions, and the
    other member is never revoked."""
    import json
    from coordinator import paths
    proc = kafka_broker(TOPIC, 4)
    bootstrap = proc.info["kafka_endpoint"]
    revoked = []

    class Static(Member):
        def _revoked(self, consumer, partitions):
            revoked.append((self.name, sorted(p.partition for p in partitions)))
            super()._revoked(consumer, partitions)

    def static(name):
        m = Static(bootstrap, "g-static", "range", **{"group.instance.id": name})
        m.name = name
        return m

    def generations():
        ids = zk_client.get_children(paths.kafka_members("g-static"))
        return sorted(json.loads(zk_client.get(paths.kafka_member("g-static", i))[0])
                      ["generation"] for i in ids)

    a, b = static("a"), static("b")
    members = [a, b]
    try:
        wait_for(lambda: len(a.owned) == 2 and len(b.owned) == 2,
                 step=lambda: [m.poll() for m in members], what="two static members")
        generation = generations()
        b_owned = set(b.owned)
        revoked.clear()
        b.consumer.close()
        members = [a]
        b2 = static("b")
        members = [a, b2]
        wait_for(lambda: b2.owned == b_owned, step=lambda: [m.poll() for m in members],
                 what="b back with its partitions")
        for _ in range(20):
            a.poll()
        assert generations() == generation and len(generation) == 2
        assert "a" not in [name for name, _ in revoked] and len(a.owned) == 2   # b revokes its own on close
    finally:
        for m in members:
            m.consumer.close()


def test_kafka_python_admin_lists_and_describes_a_group(kafka_broker):
    """kafka-python's admin client: ListGroups names the group, DescribeGroups shows it Stable
    with its member, the member's subscription and assignment (decoded by the client)."""
    from kafka import KafkaAdminClient
    proc = kafka_broker(TOPIC, 2)
    bootstrap = proc.info["kafka_endpoint"]
    member = Member(bootstrap, "g-admin", "range", **{"client.id": "reader-1"})
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        wait_for(lambda: member.owned == {0, 1}, step=member.poll, what="assignment")
        listed = {g["group_id"]: g for g in admin.list_groups()}
        assert listed["g-admin"]["protocol_type"] == "consumer"
        described = admin.describe_groups(["g-admin"])["g-admin"]
        assert described["error"] is None and described["group_state"] == "Stable"
        assert described["protocol_data"] == "range"
        (m,) = described["members"]
        assert m["client_id"] == "reader-1"
        assert "clicks" in str(m["member_metadata"]) and "clicks" in str(m["member_assignment"])
        assert admin.describe_groups(["nobody"])["nobody"]["group_state"] == "Dead"
    finally:
        admin.close()
        member.consumer.close()


def test_kcat_balanced_consumer_commits_and_resumes(kafka_broker, zk, zk_client):
    """kcat -G (librdkafka's balanced consumer) reads everything, commits on exit, and a second
    run of the same group reads only what came after."""
    import shutil
    import subprocess
    if shutil.which("kcat") is None:
        pytest.skip("Debian's kcat is not installed (make test installs it)")
    proc = kafka_broker(TOPIC, 3)
    bootstrap = proc.info["kafka_endpoint"]

    def kcat():
        out = subprocess.run(["kcat", "-b", bootstrap, "-G", "g-kcat", "-X",
                              "auto.offset.reset=earliest", "-e", "-q", "-f", "%p %o %s\\n",
                              TOPIC], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return [line.split() for line in out.stdout.splitlines() if line.strip()]
    sent = produce_keyed(zk, 30)
    assert sorted(v for _, _, v in kcat()) == sorted(m.value.decode()
                                                     for msgs in sent.values() for m in msgs)
    store = GroupOffsets(zk, "g-kcat")
    assert {p: store.fetch(TOPIC, p) for p in range(3)} == {
        p: msgs[-1].next_offset for p, msgs in sent.items()}
    after = produce_keyed(zk, 10, 30)
    assert sorted(v for _, _, v in kcat()) == sorted(f"m{i}" for i in range(30, 40))
    assert {p: store.fetch(TOPIC, p) for p in range(3)} == {
        p: msgs[-1].next_offset for p, msgs in after.items()}


JS_DIR = __import__("pathlib").Path(__file__).parent / "js"


def test_kafkajs_group_of_two_splits_the_partitions_and_commits(kafka_broker, zk, zk_client):
    """Two kafkajs consumers of one group (in one node process): they split the partitions,
    read every message in order per partition, and their commits are the log ends."""
    import json
    import shutil
    import subprocess
    if shutil.which("node") is None or not (JS_DIR / "node_modules" / "kafkajs").is_dir():
        pytest.skip("kafkajs is not installed (make test installs it with npm where node exists)")
    proc = kafka_broker(TOPIC, 4)
    sent = produce_keyed(zk, 600, partitions=4)
    out = subprocess.run(["node", str(JS_DIR / "group.js"), proc.info["kafka_endpoint"],
                          "g-js", TOPIC, "600"], capture_output=True, text=True, timeout=150)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout)
    assert all({p for p, _, _ in rows} for rows in seen.values())          # both got some
    index = {(p, m.offset): (i, m.value.decode()) for p, msgs in sent.items()
             for i, m in enumerate(msgs)}
    for rows in seen.values():
        last = {}
        for p, o, v in rows:
            i, value = index[(p, o)]
            assert v == value and i > last.get(p, -1)           # unchanged, in order
            last[p] = i
    assert {(p, o) for rows in seen.values() for p, o, _ in rows} == set(index)
    store = GroupOffsets(zk, "g-js")
    assert {p: store.fetch(TOPIC, p) for p in range(4)} == {
        p: msgs[-1].next_offset for p, msgs in sent.items()}


def test_the_group_moves_to_a_broker_that_joins_and_the_old_coordinator_lets_it_go(
        kafka_broker, zk, zk_client):
    """A broker joins and the group hashes to it: the old coordinator answers NOT_COORDINATOR
    and drops the group, the members rejoin on the new one, which now publishes them."""
    import json
    from coordinator import paths
    from coordinator.group_coordinator_choice import coordinator_of
    group = next(f"g-join-{i}" for i in range(100)
                 if coordinator_of(f"g-join-{i}", [0]) == 0
                 and coordinator_of(f"g-join-{i}", [0, 1]) == 1)
    first = kafka_broker(TOPIC, 2)
    members = [Member(first.info["kafka_endpoint"], group, "cooperative-sticky")
               for _ in range(2)]

    def step():
        for m in members:
            m.poll()

    def published_by():
        try:
            ids = zk_client.get_children(paths.kafka_members(group))
            nodes = [json.loads(zk_client.get(paths.kafka_member(group, i))[0]) for i in ids]
        except Exception:
            return None
        return {n["coordinator"] for n in nodes} if len(nodes) == 2 else None
    try:
        wait_for(lambda: published_by() == {0} and all(m.owned for m in members), step=step,
                 what="the group on broker 0")
        kafka_broker(broker_id=1)
        wait_for(lambda: published_by() == {1} and all(m.owned for m in members)
                 and set().union(*[m.owned for m in members]) == {0, 1}, step=step,
                 timeout=90, what="the group on broker 1")
        for _ in range(40):         # broker 0's late clean-up must not remove broker 1's nodes
            step()
        assert published_by() == {1}
    finally:
        for m in members:
            m.consumer.close()
