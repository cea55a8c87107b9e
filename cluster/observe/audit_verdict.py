"""The audit's reconciliation, pure: count records summed per (topic, window), set beside what
the log stores, turned into one verdict per window with the loss named by stage.

The stages, per (topic, window):

- ``unacked_lost``: sent with acks=0 and not stored. The messages that are missing from the log,
  ``acknowledged + unacknowledged - stored`` when positive, are put first on the acks=0 ones
  (the paper's producer gives them no promise); this loss is reported, not judged.
- ``broker_lost``: acknowledged and not stored: what is missing beyond the acks=0 messages.
- ``consumer_lost[g]``: stored and not consumed by group g (``min(stored, sent) - consumed``
  when positive), so a message the broker already lost is not blamed on the group as well.
  A group is judged from the first window it has a record in for the topic (a group that
  started at "latest" owes nothing before it).
- ``extra``: stored beyond what audited producers sent (unaudited producers of magic 2
  messages such as Kafka clients, or a batch whose acknowledgement was lost and was stored
  anyway); ``duplicates[g]``: consumed beyond what is stored (redeliveries).

A window is judged once it ended more than ``grace_ms`` ago: then broker or consumer loss in it
is a loss (``WindowVerdict.loss``); before that it is only shown.

>>> totals = sum_records([
...     {"source": "producer", "topic": "t", "window_start": 0, "window_ms": 60000,
...      "acknowledged": 10, "unacknowledged": 5},
...     {"source": "consumer", "group": "g", "topic": "t", "window_start": 0,
...      "window_ms": 60000, "consumed": 11}])
>>> v, = reconcile(totals, {("t", 0): 12}, now_ms=200_000, grace_ms=60_000)
>>> v.unacked_lost, v.broker_lost, v.consumer_lost, v.loss
(3, 0, {'g': 1}, True)
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class WindowTotals:
    """What the records say about one (topic, window)."""

    topic: str
    window_start: int
    window_ms: int
    acknowledged: int = 0
    unacknowledged: int = 0
    consumed: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WindowVerdict:
    topic: str
    window_start: int
    window_ms: int
    acknowledged: int
    unacknowledged: int
    stored: int
    consumed: dict[str, int]
    unacked_lost: int
    broker_lost: int
    consumer_lost: dict[str, int]
    extra: int
    duplicates: dict[str, int]
    closed: bool

    @property
    def loss(self) -> bool:
        """A judged window (closed past the grace) lost acknowledged or stored messages."""
        return self.closed and (self.broker_lost > 0 or any(self.consumer_lost.values()))

    def to_dict(self) -> dict:
        return {"topic": self.topic, "window_start": self.window_start,
                "window_ms": self.window_ms, "acknowledged": self.acknowledged,
                "unacknowledged": self.unacknowledged, "stored": self.stored,
                "consumed": dict(self.consumed), "unacked_lost": self.unacked_lost,
                "broker_lost": self.broker_lost, "consumer_lost": dict(self.consumer_lost),
                "extra": self.extra, "duplicates": dict(self.duplicates),
                "closed": self.closed, "loss": self.loss}


def sum_records(records, topic: str | None = None, group: str | None = None,
                since_ms: int | None = None) -> dict[tuple[str, int], WindowTotals]:
    """Sum count records (clients/audit.py's, already decoded) per (topic, window start),
    keeping only ``topic``, consumer records of ``group`` and windows ending after
    ``since_ms`` when given.

    >>> t = sum_records([{"source": "producer", "topic": "a", "window_start": 0,
    ...                   "window_ms": 1000, "acknowledged": 2, "unacknowledged": 0}] * 2)
    >>> t[("a", 0)].acknowledged
    4
    """
    totals: dict[tuple[str, int], WindowTotals] = {}
    for record in records:
        if topic is not None and record["topic"] != topic:
            continue
        if since_ms is not None and record["window_start"] + record["window_ms"] <= since_ms:
            continue
        consumer = record["source"] == "consumer"
        if consumer and group is not None and record["group"] != group:
            continue
        key = (record["topic"], record["window_start"])
        entry = totals.get(key)
        if entry is None:
            entry = totals[key] = WindowTotals(record["topic"], record["window_start"],
                                               record["window_ms"])
        if consumer:
            entry.consumed[record["group"]] = (entry.consumed.get(record["group"], 0)
                                               + record["consumed"])
        else:
            entry.acknowledged += record["acknowledged"]
            entry.unacknowledged += record["unacknowledged"]
    return totals


def reconcile(totals: dict[tuple[str, int], WindowTotals], stored: dict[tuple[str, int], int],
              now_ms: int, grace_ms: int) -> list[WindowVerdict]:
    """One verdict per window that has a record or stored messages, by topic then window.

    >>> t = sum_records([{"source": "producer", "topic": "t", "window_start": 0,
    ...                   "window_ms": 1000, "acknowledged": 4, "unacknowledged": 0},
    ...                  {"source": "consumer", "group": "g", "topic": "t",
    ...                   "window_start": 1000, "window_ms": 1000, "consumed": 2}])
    >>> [(v.window_start, v.broker_lost, v.consumer_lost, v.extra, v.closed)
    ...  for v in reconcile(t, {("t", 0): 3, ("t", 1000): 2}, 2500, 1000)]
    [(0, 1, {}, 0, True), (1000, 0, {'g': 0}, 2, False)]
    """
    first_window: dict[tuple[str, str], int] = {}
    for (topic, window), entry in totals.items():
        for group in entry.consumed:
            known = first_window.get((topic, group))
            if known is None or window < known:
                first_window[(topic, group)] = window
    window_ms = {topic: entry.window_ms for (topic, _), entry in totals.items()}
    verdicts = []
    for key in sorted(set(totals) | set(stored)):
        topic, window = key
        entry = totals.get(key) or WindowTotals(topic, window, window_ms.get(topic, 0))
        kept = stored.get(key, 0)
        sent = entry.acknowledged + entry.unacknowledged
        missing = max(0, sent - kept)
        unacked_lost = min(missing, entry.unacknowledged)
        expected = min(kept, sent) if sent else kept
        groups = sorted(g for (t, g), first in first_window.items()
                        if t == topic and first <= window)
        consumed = {g: entry.consumed.get(g, 0) for g in groups}
        verdicts.append(WindowVerdict(
            topic, window, entry.window_ms, entry.acknowledged, entry.unacknowledged, kept,
            consumed, unacked_lost, missing - unacked_lost,
            {g: max(0, expected - n) for g, n in consumed.items()}, max(0, kept - sent),
            {g: max(0, n - kept) for g, n in consumed.items()},
            window + entry.window_ms + grace_ms <= now_ms))
    return verdicts
