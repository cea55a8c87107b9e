"""The audit trail's running totals for the dashboards and ``/metrics``: the sampler tails
``__audit`` (each tick, one fetch per partition that does not wait) and sums every count
record since the log start: per topic, acknowledged and sent without ack; per group and topic,
consumed. They only grow (Prometheus counters, ``_total``); a restarted supervisor counts again
from the log start. The per-window verdict, which needs the logs' stored counts, is ``sluice
audit``'s.

>>> totals = AuditTotals()
>>> totals.add({"source": "producer", "topic": "t", "acknowledged": 4, "unacknowledged": 1})
>>> totals.add({"source": "consumer", "group": "g", "topic": "t", "consumed": 3})
>>> totals.as_dict()
{'produced': [{'topic': 't', 'acknowledged': 4, 'unacknowledged': 1}], \
'consumed': [{'group': 'g', 'topic': 't', 'consumed': 3}], 'records': 2, 'bad_records': 0}
"""
from __future__ import annotations

import logging

from broker import protocol
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
