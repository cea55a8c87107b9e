"""Kafka clients' consumer groups on sluice: real kafka-python and confluent-kafka consumers
against real brokers, judged by their own behaviour (assignments, rebalances, commits)."""
import time

import pytest

TOPIC = "clicks"


def wait_for(condition, timeout=60.0, step=None, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if step is not None:
            step()
        value = condition()
        if value:
            return value
        if step is None:
            time.sleep(0.05)
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
