"""The audit trail's running totals for the dashboards and ``/metrics``: the sampler tails
``__audit`` (each tick, one fetch per partition that does not wait) and sums every count
record since the log start: per topic, acknowledged and sent without ack; per group and topic,
consumed. They only grow (Prometheus counters, ``_total``); a restarted supervisor counts again
from the log start. The per-window verdict, which needs the logs' stored counts, is ``sluice
audit``'s.

``KafkaRelay`` publishes, for brokers with ``kafka_audit`` on, what Kafka clients' produces
added to each closed window since the last look (the brokers' running totals in METADATA,
broker/kafka/audit_tally.py), as producer records of ``kafka-listener-<broker>``.

>>> totals = AuditTotals()
>>> totals.add({"source": "producer", "topic": "t", "acknowledged": 4, "unacknowledged": 1})
>>> totals.add({"source": "consumer", "group": "g", "topic": "t", "consumed": 3})
>>> totals.as_dict()
{'produced': [{'topic': 't', 'acknowledged': 4, 'unacknowledged': 1}], \
'consumed': [{'group': 'g', 'topic': 't', 'consumed': 3}], 'records': 2, 'bad_records': 0}
"""
from __future__ import annotations

import logging
from contextlib import nullcontext

from broker import protocol
from clients import audit as audits
from clients.audit import AUDIT_TOPIC, decode_record
from clients.simple_consumer import SimpleConsumer

log = logging.getLogger(__name__)
MAX_FETCHES_PER_TICK = 8        # per partition: a long backlog is caught up over a few ticks


class AuditTotals:
    """Sums of count records (pure)."""

    def __init__(self):
        self.produced: dict[str, list[int]] = {}
        self.consumed: dict[tuple[str, str], int] = {}
        self.records = 0
        self.bad_records = 0

    def add(self, record: dict) -> None:
        self.records += 1
        if record["source"] == "producer":
            entry = self.produced.setdefault(record["topic"], [0, 0])
            entry[0] += record["acknowledged"]
            entry[1] += record["unacknowledged"]
        else:
            key = (record["group"], record["topic"])
            self.consumed[key] = self.consumed.get(key, 0) + record["consumed"]

    def as_dict(self) -> dict:
        return {"produced": [{"topic": t, "acknowledged": a, "unacknowledged": u}
                             for t, (a, u) in sorted(self.produced.items())],
                "consumed": [{"group": g, "topic": t, "consumed": n}
                             for (g, t), n in sorted(self.consumed.items())],
                "records": self.records, "bad_records": self.bad_records}


class AuditTail:
    """Follows ``__audit`` through the sampler's pool; ``sample`` reads what is new."""

    def __init__(self):
        self.totals = AuditTotals()
        self._readers: dict[int, SimpleConsumer] = {}

    def sample(self, pool) -> dict:
        try:
            partitions = pool.partitions(AUDIT_TOPIC)
        except protocol.UnknownTopicOrPartition:
            return self.totals.as_dict()        # no audited client has published yet
        for partition in range(partitions):
            reader = self._readers.get(partition)
            if reader is None:
                reader = self._readers[partition] = SimpleConsumer(
                    AUDIT_TOPIC, partition, "earliest", pool=pool, max_wait_ms=0)
            try:
                for _ in range(MAX_FETCHES_PER_TICK):
                    messages = reader.fetch()
                    if not messages:
                        break
                    for m in messages:
                        try:
                            self.totals.add(decode_record(m.value))
                        except ValueError:
                            self.totals.bad_records += 1
            except protocol.SluiceError as exc:
                if not exc.retriable:
                    raise
                log.debug("audit tail: %s/%d not readable this tick (%s)", AUDIT_TOPIC,
                          partition, exc)
        return self.totals.as_dict()

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()


SETTLE_MS = 2000     # a window is published this long after it closed (acks=all in flight)


def kafka_deltas(seen: dict, counts: list, window_ms: int, now_ms: int) -> dict:
    """What each closed window gained since ``seen`` (updated in place), as a Tally's counts.

    >>> seen = {}
    >>> kafka_deltas(seen, [["t", 0, 5, 1], ["t", 1000, 2, 0]], 1000, 3000)
    {('t', 0): [5, 1]}
    >>> kafka_deltas(seen, [["t", 0, 7, 1], ["t", 1000, 2, 0]], 1000, 5000)
    {('t', 0): [2, 0], ('t', 1000): [2, 0]}
    """
    deltas = {}
    for topic, window, acked, unacked in counts:
        if window + window_ms + SETTLE_MS > now_ms:
            continue
        before = seen.get((topic, window), (0, 0))
        gained = [acked - before[0], unacked - before[1]]
        if gained[0] > 0 or gained[1] > 0:
            deltas[(topic, window)] = gained
        seen[(topic, window)] = (acked, unacked)
    return deltas


class KafkaRelay:
    """Publishes the Kafka listeners' counts (see the module docstring); one publisher and
    one memory of what was published per broker process (a restarted broker counts anew)."""

    def __init__(self, zookeeper, data_dir, credentials):
        self._where = (zookeeper, data_dir, credentials)
        self._seen: dict[tuple[int, int], dict] = {}
        self._publishers: dict[tuple[int, int], audits.Publisher] = {}

    def sample(self, brokers: list[dict], now_ms: int) -> None:
        for row in brokers:
            audit = row.get("kafka_audit")
            if not audit:
                continue        # no listener audit, or no answer this time
            key = (row["broker"], audit["pid"])
            for old in [k for k in self._seen if k[0] == key[0] and k != key]:
                self._seen.pop(old)         # the broker restarted: its totals start anew
                if old in self._publishers:
                    self._publishers.pop(old).close()
            seen = self._seen.setdefault(key, {})
            deltas = kafka_deltas(seen, audit["counts"], audit["window_ms"], now_ms)
            if not deltas:
                continue
            publisher = self._publishers.get(key)
            if publisher is None:
                source = audits.source_fields(audits.PRODUCER,
                                              producer_id=f"kafka-listener-{row['broker']}")
                source["pid"] = audit["pid"]
                publisher = self._publishers[key] = audits.Publisher(
                    *self._where, source, audit["window_ms"])
            tally = audits.Tally()
            if not audits.publish_or_keep(publisher, tally, deltas, nullcontext()):
                for (topic, window), (acked, unacked) in deltas.items():
                    before = seen[(topic, window)]       # not published: look again next time
                    seen[(topic, window)] = (before[0] - acked, before[1] - unacked)

    def close(self) -> None:
        for publisher in self._publishers.values():
            publisher.close()
        self._publishers.clear()
