"""The ZooKeeper family of faults: a node of a 3-node ensemble, or the only one, killed.

| drill             | fault                                                  | must hold          |
| ----------------- | ------------------------------------------------------ | ------------------ |
| kill-zookeeper    | 3 nodes: SIGKILL the leader, then a follower, ... each | nothing stops;     |
|                   | after the last one returned                            | lost = 0           |
| restart-zookeeper | 1 node: SIGKILL it; the supervisor starts it with its  | everyone registers |
|                   | data                                                   | again; lost = 0    |
"""
from __future__ import annotations

import time

from cluster.drills.context import Check, Context
from cluster.drills.faults import zookeeper_mode
from cluster.drills.verdict import lost_is_zero, restarts


def kill_zookeeper(ctx: Context, record: dict) -> None:
    nodes = ctx.procs.entries("zookeeper")
    modes = {n["id"]: zookeeper_mode(n["port"]) for n in nodes}
    want = "leader" if len(ctx.faults) % 2 == 0 else "follower"
    last = ctx.faults[-1]["target"].split()[-1] if ctx.faults else None
    candidates = [i for i, m in modes.items() if m == want and i != last] or \
                 [i for i in modes if i != last]
    target = ctx.rng.choice(sorted(candidates))
    fault_t = time.monotonic()
    pid = ctx.procs.kill("zookeeper", target)
    record.update(target=f"zookeeper {target}", pid=pid, was=modes.get(target))
    ctx.emit("fault", detail=f"SIGKILLed zookeeper {target} ({modes.get(target)}, pid {pid})")
    ctx.procs.wait_replaced("zookeeper", target, pid, ctx.settings.recovery_timeout_s)
    ctx.procs.wait_zookeeper_serving(target, ctx.settings.recovery_timeout_s)
    back_t = time.monotonic()
    ctx.notes.setdefault("_windows", []).append((fault_t, back_t))
    ctx.recover(record, fault_t, back_t)


def kill_zookeeper_checks(ctx: Context, result: dict, report) -> list[Check]:
    gaps = [ctx.producer.max_ack_gap(a, b + 1.0) for a, b in ctx.notes.get("_windows", [])]
    for f, gap in zip(ctx.faults, gaps):
        f["max_ack_gap_s"] = round(gap, 3)
    result["max_ack_gap_s"] = round(max(gaps), 3) if gaps else None
    kinds = sorted({f.get("was") for f in ctx.faults if f.get("was")})
    died = restarts(ctx, "broker") + restarts(ctx, "worker")
    return [
        Check("the supervisor brought every killed node back into the quorum",
              restarts(ctx, "zookeeper") == len(ctx.faults),
              f"{restarts(ctx, 'zookeeper')} restart(s); killed: {', '.join(kinds)}"),
        Check("nothing stops: no broker or worker died", died == 0,
              f"{died} broker/worker restart(s)"),
        Check("nothing stops: acks kept coming (no gap over 2 s while a node was down)",
              bool(gaps) and max(gaps) <= 2.0, f"longest gap {max(gaps, default=0):.2f} s"),
        lost_is_zero(report),
    ]


def restart_zookeeper(ctx: Context, record: dict) -> None:
    target = ctx.procs.ids("zookeeper")[0]
    before = ctx.watch.latest()
    fault_t = time.monotonic()
    pid = ctx.procs.kill("zookeeper", target)
    record.update(target=f"zookeeper {target}", pid=pid)
    ctx.emit("fault", detail=f"SIGKILLed the only ZooKeeper (pid {pid})")
    ctx.procs.wait_replaced("zookeeper", target, pid, ctx.settings.recovery_timeout_s)
    ctx.procs.wait_zookeeper_serving(target, ctx.settings.recovery_timeout_s)
    serving_t = time.monotonic()
    record["zookeeper_back_s"] = round(serving_t - fault_t, 3)
    workers = ctx.settings.workers
    brokers = {int(i) for i in ctx.procs.ids("broker")}
    back_t = ctx.watch.wait(
        lambda look: set(look.brokers) == brokers and len(look.live_members) == workers
        and set(look.members) == look.live_members, serving_t, ctx.settings.recovery_timeout_s,
        "every broker and worker registered again")
    after = ctx.watch.since(back_t)[0]
    record["sessions_lost"] = (
        sum(after.broker_sessions.get(b) != s for b, s in before.broker_sessions.items())
        + sum(after.member_sessions.get(m) != s for m, s in before.member_sessions.items()))
    ctx.recover(record, fault_t, back_t)


def restart_zookeeper_checks(ctx: Context, result: dict, report) -> list[Check]:
    result["sessions_lost"] = sum(f.get("sessions_lost", 0) for f in ctx.faults)
    died = restarts(ctx, "broker") + restarts(ctx, "worker")
    return [
        Check("the supervisor started ZooKeeper again with its data each time",
              restarts(ctx, "zookeeper") == len(ctx.faults),
              f"{restarts(ctx, 'zookeeper')} restart(s)"),
        Check("brokers and consumers registered again after every restart",
              all("process_back_s" in f for f in ctx.faults),
              f"{result['sessions_lost']} session(s) lost and re-registered; ZooKeeper "
              "restores sessions from its data, so most survive a restart"),
        Check("brokers and consumers ride it out: none died", died == 0,
              f"{died} broker/worker restart(s)"),
        lost_is_zero(report),
    ]
