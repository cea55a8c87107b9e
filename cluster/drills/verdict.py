"""A drill's verdict: the partitions read back, the ledger joined, the must-holds checked.

Every drill shares the checks of ``common_checks`` (every fault injected and recovered, skipped
= 0, order_violations = 0, partitions read back with valid CRCs, acknowledged ids at their
acknowledged offsets); a drill adds its own (cluster/drills/*_faults.py), built from the
helpers here (``restarts``, ``lost_is_zero``).
"""
from __future__ import annotations

from dataclasses import asdict

from broker import message, protocol
from clients.simple_consumer import SimpleConsumer
from cluster.drills.context import Check, Context
from cluster.drills.ledger import parse_id
from cluster.workers.loader import read_loaded


def consumed_ids(ctx: Context) -> set[int]:
    """The ids of this run the group's workers loaded."""
    root = ctx.loaded_dir
    tag = ctx.ledger.tag.encode()
    found = set()
    for tp, rows in read_loaded(root).items():
        if tp[0] != ctx.topic:
            continue
        for _, value in rows:
            seq = parse_id(tag, value)
            if seq is not None:
                found.add(seq)
    return found


def read_stored(zookeeper: str, topic: str, partitions: int) -> tuple[dict, list[str]]:
    """Every (offset, value) in every partition, and a line per partition that failed (a CRC
    that does not match, a broker that does not answer)."""
    stored, problems = {}, []
    for partition in range(partitions):
        rows = stored[(topic, partition)] = []
        try:
            with SimpleConsumer(topic, partition, "earliest", zookeeper, max_wait_ms=0,
                                request_timeout_ms=3000) as consumer:
                end = consumer.offset_of("latest")
                while consumer.position < end:
                    batch = consumer.fetch()
                    if not batch:
                        problems.append(f"{topic}/{partition}: no data at {consumer.position} "
                                        f"before the end {end}")
                        break
                    rows.extend((m.offset, m.value) for m in batch)
        except (protocol.SluiceError, message.InvalidMessage) as exc:
            problems.append(f"{topic}/{partition}: {exc}")
    return stored, problems


def judge(ctx: Context, result: dict, stored, problems: list[str]) -> None:
    consumed = {tp: rows for tp, rows in read_loaded(ctx.loaded_dir).items()
                if tp[0] == ctx.topic}
    report = ctx.ledger.report(consumed, stored, ctx.notes.get("_expected_lost", set()),
                               ctx.notes.get("_reused"))
    recoveries = [f["recovery_s"] for f in ctx.faults if "recovery_s" in f]
    producer = ctx.producer
    result.update(
        acks=ctx.drill.acks, sent=report.sent,
        acked=report.acked if ctx.drill.acks else 0,
        lost=report.lost, skipped=report.skipped, duplicates=report.duplicates,
        order_violations=report.order_violations,
        recovery_s_max=max(recoveries) if recoveries else None,
        recovery_s_mean=round(sum(recoveries) / len(recoveries), 2) if recoveries else None,
        rebalances=ctx.watch.rebalances,
        consumed_unacked=report.consumed_unacked, redeliveries=report.redeliveries,
        stored_twice=report.stored_twice, not_stored=report.not_stored,
        offset_mismatches=report.offset_mismatches, consumed=report.consumed,
        reused_loads=report.reused_loads,
        stored=report.stored, send_failed=report.send_failed,
        send_errors=dict(producer.send_errors) if producer else {},
        delivery_errors=dict(ctx.ledger.errors),
        retried=producer.retried if producer else 0,
        dropped=producer.dropped if producer else 0,
        read_back_problems=problems,
        ledger=report.as_dict(), fault_log=ctx.faults,
        notes={k: v for k, v in ctx.notes.items() if not k.startswith("_")})
    checks = common_checks(ctx, report, problems) + ctx.drill.checks(ctx, result, report)
    result["checks"] = [asdict(c) for c in checks]
    result["ok"] = all(c.ok for c in checks)


def common_checks(ctx: Context, report, problems: list[str]) -> list[Check]:
    not_recovered = [f for f in ctx.faults if not f.get("recovered")]
    checks = [
        Check("faults injected", len(ctx.faults) == ctx.settings.count,
              f"{len(ctx.faults)} of {ctx.settings.count}"),
        Check("every fault recovered (process back, partitions owned, lag back)",
              not not_recovered,
              "; ".join(f"fault {f['n']}: {f.get('error')}" for f in not_recovered)),
        Check("skipped = 0", report.skipped == 0, ", ".join(report.skipped_sample)),
        Check("order_violations = 0", report.order_violations == 0,
              "; ".join(report.violation_sample)),
        Check("every partition reads back with valid CRCs", not problems, "; ".join(problems)),
    ]
    if ctx.drill.acks:
        checks.append(Check("acknowledged ids stored at their acknowledged offsets",
                            report.offset_mismatches == 0,
                            f"{report.offset_mismatches} mismatch(es)"))
    return checks


def restarts(ctx: Context, role: str) -> int:
    """The supervisor's restarts of ``role`` during the faults."""
    before = ctx.notes["restarts_before"][role]
    after = ctx.notes.get("restarts_after", {}).get(role, before)
    return sum(after.get(i, 0) - before.get(i, 0) for i in after)


def lost_is_zero(report) -> Check:
    return Check("lost = 0", report.lost == 0,
                 f"{report.lost} acknowledged id(s) never consumed, e.g. "
                 f"{', '.join(report.lost_sample)}" if report.lost else "")
