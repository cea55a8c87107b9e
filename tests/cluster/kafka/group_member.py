"""One Kafka client consumer group member as its own process (so a test can SIGKILL it):
``python -m tests.cluster.kafka.group_member CLIENT BOOTSTRAP GROUP TOPIC OUT [STRATEGY]``.

It consumes, writes ``partition offset value`` per record to OUT (flushed per poll, before the
offsets of those records can be committed), auto-commits every 200 ms, and on SIGTERM closes
cleanly (a final commit and a LeaveGroup). With SLUICE_MEMBER_DEBUG set, the client logs at
DEBUG level on stderr."""
import logging
import os
import signal
import sys
import time

stopping = False


def stop(*_):
    global stopping
    stopping = True


def run_confluent(bootstrap, group, topic, out, strategy):
    from confluent_kafka import Consumer
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "partition.assignment.strategy": strategy,
                         "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                         "auto.offset.reset": "earliest", "enable.auto.commit": True,
                         "auto.commit.interval.ms": 200, "enable.auto.offset.store": False})
    consumer.subscribe([topic])
    while not stopping:
        records = consumer.consume(50, 0.1)
        good = [r for r in records if r.error() is None]
        for r in good:
            out.write(f"{r.partition()} {r.offset()} {r.value().decode()}\n")
        out.flush()
        for r in good:
            consumer.store_offsets(message=r)
        time.sleep(0.01 * bool(good))
    consumer.close()


def run_kafka_python(bootstrap, group, topic, out, strategy):
    from kafka import KafkaConsumer
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             session_timeout_ms=6000, heartbeat_interval_ms=500,
                             auto_offset_reset="earliest", enable_auto_commit=True,
                             auto_commit_interval_ms=200, max_poll_records=50)
    # Join only once the metadata holds the topic's partitions. A leader whose first join
    # completes before that assigns nothing, and the metadata that comes next makes it rejoin
    # through kafka-python's "assignment snapshot != metadata snapshot" check alone. Its new
    # assignment makes the snapshots equal inside the join task, so when poll's 100 ms ran
    # out before that task's SyncGroup answer, the next poll no longer sees a rejoin pending
    # and never takes the task's result: the member keeps no partition and sends no
    # heartbeat (kafka-python 3.0.12's join_group_async), the coordinator drops it after its
    # session, and it never consumes.
    while not stopping and not consumer.partitions_for_topic(topic):
        time.sleep(0.1)
    while not stopping:
        batches = consumer.poll(timeout_ms=100)      # auto-commits what the last poll gave
        for tp, records in batches.items():
            for r in records:
                out.write(f"{tp.partition} {r.offset} {r.value.decode()}\n")
        out.flush()
        time.sleep(0.01 * bool(batches))
    consumer.close()


def main():
    if os.environ.get("SLUICE_MEMBER_DEBUG"):        # the client's own log, on stderr
        logging.basicConfig(level=logging.DEBUG,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
    client, bootstrap, group, topic, path = sys.argv[1:6]
    strategy = sys.argv[6] if len(sys.argv) > 6 else "range"
    signal.signal(signal.SIGTERM, stop)
    with open(path, "a", buffering=1) as out:
        (run_confluent if client == "confluent" else run_kafka_python)(
            bootstrap, group, topic, out, strategy)


if __name__ == "__main__":
    main()
