"""The broker family of faults: a broker killed, or paused past its ZooKeeper session.

| drill             | fault                                                | must hold            |
| ----------------- | ---------------------------------------------------- | -------------------- |
| kill-broker       | SIGKILL a random broker; the supervisor restarts it  | lost = 0 (acks=1);   |
|                   |                                                      | producers retry      |
| acks0-kill-broker | the same under an acks=0 producer                    | the loss is measured |
| pause-broker      | SIGSTOP a broker until its registry node expired and | clients reroute and  |
|                   | ``REROUTE_S`` more, then SIGCONT                     | return; lost = 0     |
"""
from __future__ import annotations

import time

from cluster.drills.context import Check, Context
from cluster.drills.faults import kill_and_replace, wait_broker_back
from cluster.drills.verdict import lost_is_zero, restarts

REROUTE_S = 2.0        # a paused broker stays paused this long after its registry node expired
REROUTE_SHARE = 0.5
VIEW_LAG_S = 0.5       # time allowed for clients to see a registry change


def kill_broker(ctx: Context, record: dict) -> None:
    target, fault_t, new_pid = kill_and_replace(ctx, record, "broker")
    back_t = wait_broker_back(ctx, int(target), new_pid, fault_t)
    ctx.recover(record, fault_t, back_t)


def kill_broker_checks(ctx: Context, result: dict, report) -> list[Check]:
    return [
        Check("supervisor restarted the broker each time",
              restarts(ctx, "broker") == len(ctx.faults),
              f"{restarts(ctx, 'broker')} restart(s) for {len(ctx.faults)} kill(s)"),
        lost_is_zero(report),
        Check("producers retry (and no batch is given up)",
              result["retried"] > 0 and report.send_failed == 0,
              f"{result['retried']} retried batch(es), {report.send_failed} id(s) given up "
              f"({result['delivery_errors']})"),
    ]


def acks0_checks(ctx: Context, result: dict, report) -> list[Check]:
    sent = report.sent
    result["loss_rate"] = round(report.lost / sent, 6) if sent else None
    return [
        Check("supervisor restarted the broker each time",
              restarts(ctx, "broker") == len(ctx.faults),
              f"{restarts(ctx, 'broker')} restart(s) for {len(ctx.faults)} kill(s)"),
        Check("the loss is measured: sent = consumed + lost, nothing consumed was never sent",
              report.consumed + report.lost == sent,
              f"sent {sent}, consumed {report.consumed}, lost {report.lost} "
              f"({result['loss_rate']:.4%} of sent; {result['dropped']} dropped by the "
              f"producer)" if sent else "nothing sent"),
        Check("every lost id is missing from the log (lost in transit, not by the consumers)",
              report.not_stored == report.lost,
              f"{report.lost} lost, {report.not_stored} not in the log"),
    ]


def pause_broker(ctx: Context, record: dict) -> None:
    """SIGSTOP until the registry node expired and ``REROUTE_S`` more, then SIGCONT."""
    target = ctx.rng.choice(ctx.procs.ids("broker"))
    broker = int(target)
    others = set(range(ctx.settings.partitions)) - set(ctx.placement().hosted_by(broker))
    before_t = time.monotonic()
    before = ctx.producer.acked_between(before_t - ctx.settings.interval, before_t, others)
    pid = ctx.procs.pause("broker", target)
    paused_t = time.monotonic()
    record.update(target=f"broker {target}", pid=pid)
    ctx.emit("fault", detail=f"SIGSTOPped broker {target} (pid {pid}); waiting for its "
             "registry node to expire")
    try:
        expired_t = ctx.watch.wait(lambda look: broker not in look.brokers, paused_t,
                                   3 * ctx.session_timeout_s + 10,
                                   f"broker {broker}'s registry node to expire")
        record["expired_after_s"] = round(expired_t - paused_t, 3)
        time.sleep(max(0.0, expired_t + REROUTE_S - time.monotonic()))
    finally:
        ctx.procs.resume(pid)
    resumed_t = time.monotonic()
    record["paused_s"] = round(resumed_t - paused_t, 3)
    ctx.emit("fault", detail=f"SIGCONT broker {target}; waiting for it to register again")
    back_t = wait_broker_back(ctx, broker, pid, resumed_t)
    normal = before / ctx.settings.interval if ctx.settings.interval else None
    settled_t = expired_t + VIEW_LAG_S
    record["batches_acked_per_s_elsewhere"] = {
        "before": round(normal, 1) if normal is not None else None,
        "registered": round(ctx.producer.acked_between(paused_t, expired_t, others)
                            / max(expired_t - paused_t, 1e-3), 1),
        "expired": round(ctx.producer.acked_between(settled_t, resumed_t, others)
                         / max(resumed_t - settled_t, 1e-3), 1)}
    record["longest_ack_gap_while_paused_s"] = round(
        ctx.producer.max_ack_gap(paused_t, resumed_t, others), 2)
    ctx.notes.setdefault("_pauses", []).append(
        (broker, back_t, ctx.producer.sent_between(settled_t, resumed_t)))
    ctx.recover(record, resumed_t, back_t)


def pause_broker_checks(ctx: Context, result: dict, report) -> list[Check]:
    expired = [f for f in ctx.faults if "expired_after_s" in f]
    returned = [f for f in ctx.faults if "owned_s" in f]
    came_back, misrouted = [], []
    acked = dict(ctx.ledger.acked)
    for (broker, back_t, sent), f in zip(ctx.notes.get("_pauses", []), ctx.faults):
        hosted = set(ctx.placement().hosted_by(broker))
        came_back.append(ctx.producer.acked_between(back_t, time.monotonic(), hosted) > 0)
        wrong = sum(1 for seq in sent if seq in acked and acked[seq][0][1] in hosted)
        f["sent_while_expired"] = len(sent)
        f["sent_to_expired_broker"] = wrong
        misrouted.append(wrong)
    rates = [f.get("batches_acked_per_s_elsewhere", {}) for f in ctx.faults]
    kept_up = [bool(r.get("before")) and r["expired"] >= REROUTE_SHARE * r["before"]
               for r in rates]
    result["longest_ack_gap_while_paused_s"] = max(
        (f.get("longest_ack_gap_while_paused_s", 0) for f in ctx.faults), default=None)
    return [
        Check("the registry node expired during every pause", len(expired) == len(ctx.faults),
              ", ".join(f"{f['expired_after_s']:.1f} s" for f in expired)),
        Check("the same process registered again after SIGCONT", len(returned) == len(ctx.faults)
              and restarts(ctx, "broker") == 0, f"{restarts(ctx, 'broker')} broker restart(s)"),
        Check(f"clients reroute: once the node expired, the other brokers ack >= "
              f"{REROUTE_SHARE:.0%} of their batches/s before the pause", all(kept_up),
              "; ".join(f"{r.get('before')} -> {r.get('expired')} batches/s (still registered: "
                        f"{r.get('registered')})" for r in rates)),
        Check("clients reroute: no message sent while the broker was unregistered went to its "
              "partitions", not any(misrouted),
              "; ".join(f"{f.get('sent_to_expired_broker')} of {f.get('sent_while_expired')}"
                        for f in ctx.faults)),
        Check("clients return: acks from the paused broker's partitions after every return",
              all(came_back) and len(came_back) == len(ctx.faults), str(came_back)),
        lost_is_zero(report),
    ]
