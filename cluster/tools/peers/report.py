"""The pure part of ``make bench-peers``: medians over runs, the best peer of each row, sluice's
ratio to it, the issue's targets, the ``.bench/peers.json`` document and its table.

A row's figures are keyed as ``make bench`` keys its own (so bench.py can show a peer beside
its row). Higher is better for throughput; for disk overhead lower is better and the ratio is
turned round (best peer / sluice), so a ratio above 1 always means sluice is ahead::

    >>> row = ROWS[1]
    >>> compare(row, {"sluice": 300.0, "Redis Streams": 100.0, "NATS JetStream": 150.0})["ratio"]
    2.0
    >>> compare(ROWS[4], {"sluice": 9.0, "NATS JetStream": 36.0})["ratio"]
    4.0
"""
from __future__ import annotations

import statistics
from typing import NamedTuple

SLUICE = "sluice"
NATS = "NATS JetStream"


class Row(NamedTuple):
    key: str
    label: str
    higher_is_better: bool
    target: float               # sluice / reference at least this
    against: str | None         # the reference: a peer's name, or None for the best peer


ROWS = (
    Row("producer_batch1_msgs_per_s", "producer, batch 1, no ack (msg/s)", True, 1.0, NATS),
    Row("producer_batch50_msgs_per_s", "producer, batch 50, no ack (msg/s)", True, 1.5, None),
    Row("producer_acks1_batch50_msgs_per_s", "producer, batch 50, acknowledged (msg/s)", True,
        1.5, None),
    Row("consumer_200kb_msgs_per_s", "consumer, ~1,000 messages per pull (msg/s)", True, 1.5,
        None),
    Row("storage_overhead_bytes_per_msg", "disk overhead beyond the value (bytes/msg)", False,
        1.5, None),
)
#: produce row of the harness -> result key
PRODUCE_KEYS = {"batch1": ROWS[0].key, "batch50": ROWS[1].key, "batch50_ack": ROWS[2].key}
#: (result key, label, sluice's figure, the ceiling's figure, target or None)
CEILINGS = (
    ("batch1_vs_pipeline_ceiling", "sluice batch 1 / bare-Python batch-1 pipeline",
     ROWS[0].key, "pipeline_batch1_msgs_per_s", None),
    ("consumer_vs_decode_ceiling", "sluice consumer / bare decode + CRC of 1 MiB fetches",
     ROWS[3].key, "consumer_decode_msgs_per_s", 0.8),
)


def medians(samples: list[dict]) -> dict:
    """The median of every figure over the runs (each run one dict of key -> figure).

    >>> medians([{"a": 1.0}, {"a": 5.0}, {"a": 2.0}])
    {'a': 2.0}
    """
    return {key: round(statistics.median(s[key] for s in samples), 1 if key.endswith("_s")
                       else 3) for key in samples[0]}


def run_figures(messages: int, size: int, seconds: dict[str, float], consume_seconds: float,
                disk_bytes: int) -> dict:
    """One run's figures from its timings: rates, and disk bytes per message beyond the value.

    >>> run_figures(1000, 200, {"batch1": 0.5, "batch50": 0.1, "batch50_ack": 0.2}, 0.25, 209000)
    ... # doctest: +NORMALIZE_WHITESPACE
    {'producer_batch1_msgs_per_s': 2000.0, 'producer_batch50_msgs_per_s': 10000.0,
     'producer_acks1_batch50_msgs_per_s': 5000.0, 'consumer_200kb_msgs_per_s': 4000.0,
     'storage_overhead_bytes_per_msg': 9.0}
    """
    figures = {PRODUCE_KEYS[row]: round(messages / max(s, 1e-9), 1)
               for row, s in seconds.items()}
    figures[ROWS[3].key] = round(messages / max(consume_seconds, 1e-9), 1)
    figures[ROWS[4].key] = round(disk_bytes / messages - size, 3)
    return figures


def best_peer(row: Row, figures: dict[str, float | None]) -> tuple[str | None, float | None]:
    """The best peer's (name, figure) in a row; sluice and missing figures left out.

    >>> best_peer(ROWS[4], {"sluice": 9.0, "A": 36.0, "B": 4.0, "C": None})
    ('B', 4.0)
    """
    peers = [(v, name) for name, v in figures.items() if name != SLUICE and v is not None]
    if not peers:
        return None, None
    value, name = (max if row.higher_is_better else min)(peers)
    return name, value


def ratio(row: Row, ours: float | None, theirs: float | None) -> float | None:
    """sluice's figure over the peer's (turned round where lower is better); None without
    both figures.

    >>> ratio(ROWS[0], 300.0, 200.0), ratio(ROWS[4], 9.0, 4.5), ratio(ROWS[4], 0.0, 4.5)
    (1.5, 0.5, None)
    """
    if ours is None or theirs is None:
        return None
    top, bottom = (ours, theirs) if row.higher_is_better else (theirs, ours)
    return round(top / bottom, 3) if bottom > 0 else None


def compare(row: Row, figures: dict[str, float | None]) -> dict:
    """One row of the table: every system's figure, the best peer, the ratio, the target."""
    name, value = best_peer(row, figures)
    ours = figures.get(SLUICE)
    out = {"key": row.key, "label": row.label, "figures": dict(figures), "best_peer": name,
           "best_peer_figure": value, "ratio": ratio(row, ours, value),
           "target": row.target, "target_against": row.against or "best peer"}
    reference = figures.get(row.against) if row.against else value
    out["target_ratio"] = ratio(row, ours, reference)
    out["met"] = None if out["target_ratio"] is None else out["target_ratio"] >= row.target
    return out


def compare_ceilings(sluice: dict | None, ceilings: dict) -> list[dict]:
    """sluice's figures over the bare-Python ceilings of the same run.

    >>> compare_ceilings({"consumer_200kb_msgs_per_s": 90.0},
    ...                  {"consumer_decode_msgs_per_s": 100.0})[1]["ratio"]
    0.9
    """
    out = []
    for key, label, ours, ceiling, target in CEILINGS:
        value = (sluice or {}).get(ours)
        limit = ceilings.get(ceiling)
        r = round(value / limit, 3) if value is not None and limit else None
        out.append({"key": key, "label": label, "sluice": value, "ceiling": limit, "ratio": r,
                    "target": target,
                    "met": None if target is None or r is None else r >= target})
    return out


def document(systems: dict[str, dict], ceilings: dict, *, date: str, machine: dict,
             command: str, messages: dict, size: int, runs: int, skipped: dict,
             clients: dict, seconds: float) -> dict:
    """What ``.bench/peers.json`` holds (the shape the tests check)."""
    names = [SLUICE] + [n for n in systems if n != SLUICE]
    rows = [compare(row, {n: systems[n].get(row.key) for n in names if n in systems})
            for row in ROWS]
    return {"date": date, "machine": machine, "command": command, "seconds": round(seconds, 1),
            "messages": messages, "message_bytes": size, "runs": runs,
            "systems": systems, "clients": clients, "skipped": skipped,
            "ceilings": ceilings, "rows": rows,
            "ceiling_ratios": compare_ceilings(systems.get(SLUICE), ceilings)}


def best_peer_line(doc: dict, key: str) -> str | None:
    """``"269,000 (NATS JetStream)"``: a row's best peer in a peers.json, for ``make bench``;
    None when the document has no such row or no peer figure (an old or partial file).

    >>> best_peer_line({"rows": [{"key": "k", "best_peer": "A", "best_peer_figure": 1234.5}]}, "k")
    '1,234 (A)'
    >>> best_peer_line({"rows": [{"key": "k", "best_peer": None}]}, "k") is None
    True
    """
    for row in doc.get("rows") or ():
        if isinstance(row, dict) and row.get("key") == key and row.get("best_peer"):
            value = row.get("best_peer_figure")
            if not isinstance(value, (int, float)):
                return None
            return f"{number(value)} ({row['best_peer']})"
    return None


def number(value) -> str:
    """A figure as the tables print it.

    >>> number(269000.4), number(9.0), number(None)
    ('269,000', '9', '-')
    """
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:g}"


def table(doc: dict):
    """The one table: every system per row, the best peer, sluice's ratio, the target."""
    from rich.table import Table
    names = [SLUICE] + [n for n in doc["systems"] if n != SLUICE]
    m = doc["machine"]
    grid = Table(title=f"sluice and its peers, {doc['date']}: {m.get('cores')} cores "
                       f"({m.get('cpu_model')}), load {m.get('load_average')} at the start, "
                       f"{m.get('load_average_end', '-')} at the end; "
                       f"{doc['message_bytes']}-byte messages, median of {doc['runs']}",
                 title_justify="left")
    grid.add_column("row")
    for name in names:
        grid.add_column(name, justify="right")
    for column in ("best peer", "sluice / best", "target", "met"):
        grid.add_column(column, justify="left" if column == "best peer" else "right")
    for row in doc["rows"]:
        target = f"≥ {row['target']:g}× {'NATS' if row['target_against'] == NATS else 'best'}"
        if row["target_against"] not in ("best peer", row["best_peer"]) and row["target_ratio"]:
            target += f" (at {row['target_ratio']:.2f}×)"
        met = "-" if row["met"] is None else ("yes" if row["met"] else "NO")
        grid.add_row(row["label"], *(number(row["figures"].get(n)) for n in names),
                     row["best_peer"] or "-", "-" if row["ratio"] is None
                     else f"{row['ratio']:.2f}×", target, met)
    lines = [f"messages: {doc['messages']['sluice']:,} per sluice row, "
             f"{doc['messages']['peers']:,} per peer row; {doc['command']}"]
    for c in doc["ceiling_ratios"]:
        lines.append(f"{c['label']}: {number(c['sluice'])} / {number(c['ceiling'])} msg/s = "
                     + ("-" if c["ratio"] is None else f"{c['ratio']:.2f}")
                     + ("" if c["target"] is None else
                        f" (target ≥ {c['target']:g}: {'yes' if c['met'] else 'NO'})"))
    for name, reason in doc["skipped"].items():
        lines.append(f"{name} not measured: {reason}")
    grid.caption = "\n".join(lines)
    grid.caption_justify = "left"
    return grid
