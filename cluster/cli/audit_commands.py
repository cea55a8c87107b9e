"""``sluice audit``: the audit trail reconciled, one row per (topic, window): produced
(acknowledged, and sent without ack), stored in the log, consumed by each group, and the loss
by stage (cluster/observe/audit_verdict.py says how each is counted). Exits
AUDIT_FOUND_LOSS when a window that closed more than ``--grace`` seconds ago lost acknowledged
or stored messages."""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from cluster.cli.output import err, print_json, print_table
from coordinator.errors import InvalidArgument

AUDIT_FOUND_LOSS = 3
DEFAULT_GRACE_S = 120
_AGO = re.compile(r"^(\d+)([smhd])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_since(text: str, now_ms: int) -> int:
    """``--since``: a span back from now (``90s``, ``15m``, ``2h``, ``1d``) or an ISO 8601 time
    (local time without a zone), as ms since the epoch.

    >>> parse_since("15m", 1_000_000_000), parse_since("2026-01-01T00:00:00Z", 0)
    (999100000, 1767225600000)
    """
    match = _AGO.match(text)
    if match:
        return now_ms - int(match.group(1)) * _UNIT_MS[match.group(2)]
    from cluster.cli.offset_reset import parse_datetime
    return parse_datetime(text)


def _window_text(start_ms: int, window_ms: int) -> str:
    start = datetime.fromtimestamp(start_ms / 1000, tz=timezone.utc)
    return f"{start:%Y-%m-%d %H:%M:%S} +{window_ms // 1000}s"


def audit(args) -> int:
    from clients.brokers import BrokerPool
    from clients.audit import DEFAULT_WINDOW_MS
    from cluster.observe import audit_trail, audit_verdict
    if args.grace < 0:
        raise InvalidArgument("--grace must not be negative")
    now_ms = int(time.time() * 1000)
    since_ms = args.since
    pool = BrokerPool(args.zookeeper, args.data_dir, request_timeout_ms=5000)
    try:
        with err.status("reading __audit and the logs"):
            records, bad = audit_trail.read_records(pool)
            totals = audit_verdict.sum_records(records, args.topic, args.group, since_ms)
            window_ms = {topic: entry.window_ms for (topic, _), entry in totals.items()}
            if args.topic is not None:
                window_ms.setdefault(args.topic, DEFAULT_WINDOW_MS)
            stored = {}
            for topic, length in sorted(window_ms.items()):
                for key, count in audit_trail.stored_counts(pool, topic, length,
                                                            since_ms).items():
                    if since_ms is None or key[1] + length > since_ms:
                        stored[key] = count
    finally:
        pool.close()
    verdicts = audit_verdict.reconcile(totals, stored, now_ms, int(args.grace * 1000))
    lossy = [v for v in verdicts if v.loss]
    if args.json:
        print_json({"now_ms": now_ms, "grace_s": args.grace, "since_ms": since_ms,
                    "bad_records": bad, "loss": bool(lossy),
                    "windows": [v.to_dict() for v in verdicts]})
    else:
        groups = sorted({g for v in verdicts for g in v.consumed})
        print_table(
            "audit per window (UTC; produced by audited producers, stored by the messages' "
            "timestamps, consumed = committed)",
            ["topic", "window", "acked", "sent no ack", "stored", *[f"consumed {g}" for g in
                                                                       groups],
             "lost no ack", "lost acked", *[f"lost {g}" for g in groups], "extra", "verdict"],
            [[v.topic, _window_text(v.window_start, v.window_ms), v.acknowledged,
              v.unacknowledged, v.stored, *[_or_dash(v.consumed, g) for g in groups],
              v.unacked_lost, v.broker_lost, *[_or_dash(v.consumer_lost, g) for g in groups],
              v.extra, _verdict(v)] for v in verdicts])
        if bad:
            err.print(f"{bad} value(s) in __audit were not count records and were left out")
        if lossy:
            err.print(f"LOSS in {len(lossy)} window(s) closed more than {args.grace:g} s ago")
    return AUDIT_FOUND_LOSS if lossy else 0


def _or_dash(values: dict, group: str):
    return values.get(group, "-")


def _verdict(v) -> str:
    if v.loss:
        return "LOSS"
    if not v.closed:
        return "open"
    return "ok" if not v.unacked_lost else "ok (acks=0 loss)"
