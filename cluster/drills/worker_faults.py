"""The worker family of faults: group workers killed, also right after a revoke.

| drill                    | fault                                         | must hold             |
| ------------------------ | --------------------------------------------- | --------------------- |
| kill-worker              | SIGKILL a random group worker                 | the group re-settles; |
|                          |                                               | duplicates bounded    |
| kill-worker-after-revoke | SIGKILL a worker, then another the moment it  | lost = 0 across the   |
|                          | gives a partition up to the restarted one     | rebalance             |

The rolling restart (SIGTERM every worker in turn) is a drill of its own, with figures of its
own: cluster/drills/rolling.py.
"""
from __future__ import annotations

import os
import signal
import time

from kazoo.exceptions import NoNodeError

from cluster.drills.context import Check, Context
from cluster.drills.faults import kill_and_replace
from cluster.drills.verdict import lost_is_zero, restarts
from coordinator import paths


def kill_worker(ctx: Context, record: dict) -> None:
    _, fault_t, new_pid = kill_and_replace(ctx, record, "worker")
    back_t = ctx.watch.wait(lambda look: new_pid in look.members.values(), fault_t,
                            ctx.settings.recovery_timeout_s,
                            f"the restarted worker (pid {new_pid}) a member of the group")
    ctx.recover(record, fault_t, back_t)


def duplicate_bound(ctx: Context) -> int:
    """At most one commit interval of the whole topic's traffic replayed per killed worker."""
    s = ctx.settings
    return len(ctx.faults) * -(-s.rate * s.commit_ms // 1000)


def kill_worker_checks(ctx: Context, result: dict, report) -> list[Check]:
    bound = duplicate_bound(ctx)
    result["duplicate_bound"] = bound
    return [
        Check("supervisor restarted the worker each time",
              restarts(ctx, "worker") == len(ctx.faults),
              f"{restarts(ctx, 'worker')} restart(s) for {len(ctx.faults)} kill(s)"),
        Check("the group re-settles after every kill",
              all("owned_s" in f for f in ctx.faults), ""),
        lost_is_zero(report),
        Check(f"duplicates bounded by the commit interval (<= {bound})",
              report.duplicates <= bound,
              f"{report.duplicates} duplicate(s) ({report.redeliveries} redelivered offsets, "
              f"{report.stored_twice} stored twice); bound = kills x rate x commit interval"),
    ]


def kill_worker_after_revoke(ctx: Context, record: dict) -> None:
    """SIGKILL a worker; the moment another worker gives a partition up to the restarted one
    (its owner node changes), SIGKILL that worker too: a revoke's commit must not run ahead
    of what the worker has made durable.

    The first victim is never the member with the highest id: the cooperative planner breaks
    ties by member id, so a live member (not the dead one) is then the one that gives up a
    partition to the newcomer. A fault whose rebalance moved nothing off a live member records
    ``second_target: None`` and counts as an ordinary kill.
    """
    look = ctx.watch.latest()
    by_pid = {pid: member for member, pid in look.members.items()}
    workers = {e["id"]: e["pid"] for e in ctx.procs.entries("worker")}
    highest = max(look.members)
    choices = sorted(i for i, pid in workers.items() if by_pid.get(pid) != highest)
    first = ctx.rng.choice(choices or sorted(workers))
    fault_t = time.monotonic()
    pid = ctx.procs.kill("worker", first)
    record.update(target=f"worker {first}", pid=pid, second_target=None)
    ctx.emit("fault", detail=f"SIGKILLed worker {first} (pid {pid}); watching for a revoke")
    watched = {p: m for p, m in look.owners.items() if look.members.get(m) != pid}
    client = ctx.zk()
    deadline = time.monotonic() + ctx.settings.recovery_timeout_s
    second = None
    while second is None and time.monotonic() < deadline:
        for partition, member in watched.items():
            try:
                holder = client.get(paths.owner(ctx.group, ctx.topic, partition))[0].decode()
            except NoNodeError:
                holder = None
            if holder != member:
                second = (partition, member)
                break
        else:
            latest = ctx.watch.latest()
            if latest.t > fault_t + 1 and latest.complete:
                break       # settled again without a live member giving anything up
            time.sleep(0.005)
    pids = [(first, pid)]
    if second is not None:
        victim_pid = look.members[second[1]]
        victim = next((i for i, p in workers.items() if p == victim_pid), None)
        try:
            os.kill(victim_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pids.append((victim, victim_pid))
        record.update(second_target=f"worker {victim}", second_pid=victim_pid,
                      revoked=f"{ctx.topic}/{second[0]}",
                      second_after_s=round(time.monotonic() - fault_t, 3))
        ctx.emit("fault", detail=f"worker {victim} gave {ctx.topic}/{second[0]} up: "
                 f"SIGKILLed it (pid {victim_pid})")
    new_pids = {ctx.procs.wait_replaced("worker", i, p, ctx.settings.recovery_timeout_s)
                for i, p in pids}
    back_t = ctx.watch.wait(lambda look: new_pids <= set(look.members.values()), fault_t,
                            ctx.settings.recovery_timeout_s,
                            "the restarted workers members of the group")
    ctx.recover(record, fault_t, back_t)


def kill_worker_after_revoke_checks(ctx: Context, result: dict, report) -> list[Check]:
    caught = sum(1 for f in ctx.faults if f.get("second_target"))
    result["killed_right_after_a_revoke"] = caught
    return [
        Check("a worker was killed right after giving a partition up", caught > 0,
              f"{caught} of {len(ctx.faults)} fault(s)"),
        Check("the group re-settles after every kill",
              all("owned_s" in f for f in ctx.faults), ""),
        lost_is_zero(report),
    ]
