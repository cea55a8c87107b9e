"""The rolling-restart drill: restart every group worker in turn, measure what the group felt.

Each fault is a SIGTERM to the next worker slot (0, 1, 2, ...): the worker hands off (flush,
commit, release and leave; a static worker keeps its partitions for its successor), the
supervisor starts a replacement, and the drill waits until the replacement's pid is a member
of the group and the group is settled, then lets ``ctx.recover`` wait for the lag. The
**restart phase** runs from the first SIGTERM to the moment the last replacement is back in a
settled group. Workers run ``cluster.drills.handlers:timed_files``, so every consumption has a
wall-clock time; ZooKeeper is sampled by ``GroupWatch`` every 0.25 s. Over the restart phase:

| figure                 | meaning                                                              |
| ---------------------- | -------------------------------------------------------------------- |
| blackout_s             | the sum of the group-wide consumption gaps longer than 0.5 s: the     |
|                        | times between consecutive consumptions of any partition by any worker |
|                        | (and from the phase's start to the first, the last to its end)        |
| max_partition_gap_s    | the longest time one partition went without a consumption while a     |
|                        | message was waiting for it (from the later of its previous consumption |
|                        | and the acknowledgement of the next message's batch; edges too)       |
| partition_blackout_s   | the sum over partitions of those waiting gaps longer than 0.5 s        |
| unowned_partition_s    | partition-seconds with no owner node, from the ZooKeeper samples      |
| rebalances             | ``GroupWatch`` rebalances that started inside the phase                |
| peak_lag               | the highest total lag of a sample, in messages (acknowledged ids at or |
|                        | after the committed offset)                                           |
| restart_s_mean / _max  | per worker: SIGTERM to its replacement back in a settled group        |
| untouched_reassignments| partitions of the workers not being restarted whose owner node changed |
|                        | (owner or creation zxid) between a SIGTERM and the group settling     |
| exclusive_violations   | consumptions (whole run) by a process while the ZooKeeper samples      |
|                        | 0.3 s before and after show another member's owner node throughout     |
"""
from __future__ import annotations

import bisect
import signal
import time
from collections import defaultdict

from cluster.drills.handlers import read_times
from cluster.drills.context import Check, Context, Unsupported

BLACKOUT_GAP_S = 0.5
HANDLER = "cluster.drills.handlers:timed_files"


def prepare(ctx: Context) -> None:
    if not ctx.fresh:
        raise Unsupported("rolling-restart needs a fresh cluster: its workers must run the "
                          f"timing handler ({HANDLER})")


def _member_of(look, pid: int) -> str | None:
    return next((m for m, p in look.members.items() if p == pid), None)


def rolling_restart(ctx: Context, record: dict) -> None:
    ids = sorted(ctx.procs.ids("worker"), key=int)
    target = ids[len(ctx.faults) % len(ids)]
    timeout = ctx.settings.recovery_timeout_s
    pid = ctx.procs.pid("worker", target)
    before = ctx.watch.latest()
    fault_t = time.monotonic()
    ctx.notes.setdefault("_phase", [fault_t, fault_t])
    ctx.procs.signal("worker", target, signal.SIGTERM)
    record.update(target=f"worker {target}", pid=pid)
    ctx.emit("fault", detail=f"SIGTERMed worker {target} (pid {pid})")
    new_pid = ctx.procs.wait_replaced("worker", target, pid, timeout)
    record["new_pid"] = new_pid
    ctx.emit("fault", detail=f"worker {target} replaced (pid {new_pid}); waiting for the group")
    back_t = ctx.watch.wait(lambda look: look.settled and new_pid in look.members.values(),
                            fault_t, timeout, f"worker {target}'s replacement in a settled group")
    record["restart_s"] = round(back_t - fault_t, 3)
    ctx.notes["_phase"][1] = back_t
    ctx.notes.setdefault("_restarts", []).append(
        (fault_t, back_t, _member_of(before, pid), dict(before.owners), dict(before.owner_zxids)))
    ctx.recover(record, fault_t, back_t)


def _gaps(times: list[float], start: float, end: float) -> list[float]:
    edges = [start] + [t for t in times if start <= t <= end] + [end]
    return [b - a for a, b in zip(edges, edges[1:])]


def _waits(rows, acked, start: float, end: float) -> list[float]:
    """A partition's gaps inside [start, end] while a message was waiting: between
    consecutive consumptions a, b, the stretch from max(a, when b's batch was acknowledged)
    to b; after the last consumption, from when the next acknowledged batch came to the end.
    A partition nobody produced to is not waiting."""
    bases = [base for base, _ in acked]
    def available(offset: int) -> float:
        i = bisect.bisect_right(bases, offset) - 1
        return acked[i][1] if i >= 0 else float("-inf")
    result = []
    previous = float("-inf")
    for r in rows:
        lo, hi = max(previous, available(r.offset), start), min(r.t, end)
        if hi > lo:
            result.append(hi - lo)
        previous = r.t
        if previous >= end:
            break
    else:
        last = rows[-1].offset if rows else -1
        later = [t for base, t in acked if base > last]
        if later:
            lo = max(previous, min(later), start)
            if end > lo:
                result.append(end - lo)
    return result


def measure(ctx: Context, report=None) -> dict:
    """The drill's figures (see the module docstring) from the logs and the samples."""
    s = ctx.settings
    start_m, end_m = ctx.notes["_phase"]
    to_wall = time.time() - time.monotonic()
    start, end = start_m + to_wall, end_m + to_wall
    rows = [r for r in read_times(ctx.loaded_dir) if r.topic == ctx.topic]
    in_phase = [r for r in rows if start <= r.t <= end]
    group_gaps = _gaps([r.t for r in in_phase], start, end)
    blackout = sum(g for g in group_gaps if g > BLACKOUT_GAP_S)
    acked = defaultdict(list)                 # partition -> [(base offset, wall time)]
    for t, p, base in list(ctx.producer.acked_at) if ctx.producer is not None else []:
        acked[p].append((base, t + to_wall))
    for values in acked.values():
        values.sort()
    per_partition = defaultdict(list)
    for r in rows:
        per_partition[r.partition].append(r)
    waits = {p: _waits(per_partition.get(p, []), acked.get(p, []), start, end)
             for p in range(s.partitions)}
    partition_gaps = {p: max(w, default=0.0) for p, w in waits.items()}
    partition_blackout = sum(g for w in waits.values() for g in w if g > BLACKOUT_GAP_S)

    looks = [look for look in list(ctx.watch.looks) if start_m <= look.t <= end_m]
    unowned = sum((b.t - a.t) * sum(1 for p in range(s.partitions) if p not in a.owners)
                  for a, b in zip(looks, looks[1:]))
    offsets = defaultdict(list)
    for (tp, offset) in list(ctx.ledger.acked.values()):
        if tp[0] == ctx.topic:
            offsets[tp[1]].append(offset)
    for values in offsets.values():
        values.sort()
    lags = []
    for look in looks:
        if look.lag is None:        # a log end or the committed offsets unread
            continue
        lags.append(sum(bisect.bisect_left(offsets[p], look.log_end[p])
                        - bisect.bisect_left(offsets[p], look.committed.get(p, 0))
                        for p in range(s.partitions)))
    rebalances = sum(1 for t in ctx.watch.rebalance_times if start_m <= t <= end_m + 1.0)

    untouched = 0
    for fault_t, back_t, member, owners, zxids in ctx.notes.get("_restarts", []):
        moved = set()
        for look in ctx.watch.since(fault_t):
            if look.t > back_t:
                break
            for p, owner in owners.items():
                if owner != member and (look.owners.get(p) != owner
                                        or look.owner_zxids.get(p) != zxids.get(p)):
                    moved.add(p)
        untouched += len(moved)

    restarts = [f["restart_s"] for f in ctx.faults if "restart_s" in f]
    return {
        "protocol": s.rebalance or "cooperative", "static": s.static,
        "workers": s.workers, "partitions": s.partitions, "restarts": len(restarts),
        "blackout_s": round(blackout, 2),
        "max_group_gap_s": round(max(group_gaps), 3),
        "max_partition_gap_s": round(max(partition_gaps.values()), 2) if partition_gaps else None,
        "partition_blackout_s": round(partition_blackout, 2),
        "unowned_partition_s": round(unowned, 2),
        "rebalances": rebalances,
        "peak_lag": max(lags) if lags else None,
        "restart_s_mean": round(sum(restarts) / len(restarts), 2) if restarts else None,
        "restart_s_max": round(max(restarts), 2) if restarts else None,
        "untouched_reassignments": untouched,
        "restart_phase_s": round(end - start, 2),
        "exclusive_violations": exclusive_violations(rows, list(ctx.watch.looks), to_wall),
    }


def exclusive_violations(rows, looks, to_wall: float, margin: float = 0.3) -> list[str]:
    """Consumptions by a process while ZooKeeper said another one owned the partition.

    A consumption by pid P of partition p at wall time t is a violation when a look that had
    read the owners ``margin`` seconds before t and one that began reading them ``margin``
    seconds after t both show the same owner node of p (same owner, same creation zxid, so it
    existed throughout) held by a member whose pid is not P. Each look is timed by when its
    owner reads began and ended (``Look.owners_read``), not by when the look began: under load
    a look's other reads take long enough to make its start misleading. An owner node is one
    znode per partition, so two owners at one sample cannot happen; this checks that only the
    owner consumed."""
    looks = sorted(looks, key=lambda look: look.owners_read[0])
    began = [look.owners_read[0] + to_wall for look in looks]
    ended = [look.owners_read[1] + to_wall for look in looks]
    bad = []
    for r in rows:
        i = next((k for k in range(bisect.bisect_right(began, r.t - margin) - 1, -1, -1)
                  if ended[k] <= r.t - margin), -1)
        j = bisect.bisect_left(began, r.t + margin)
        if i < 0 or j >= len(looks):
            continue
        a, b = looks[i], looks[j]
        owner = a.owners.get(r.partition)
        if (owner is None or b.owners.get(r.partition) != owner
                or a.owner_zxids.get(r.partition) != b.owner_zxids.get(r.partition)):
            continue
        pid = a.members.get(owner)
        if pid and pid == b.members.get(owner) and pid != r.pid:
            bad.append(f"{r.topic}/{r.partition}@{r.offset}: consumed by pid {r.pid} at "
                       f"{r.t:.3f} while {owner} (pid {pid}) owned it")
    return bad


def rolling_restart_checks(ctx: Context, result: dict, report) -> list[Check]:
    figures = measure(ctx, report)
    result.update(figures)
    result["exclusive_violations"] = len(figures["exclusive_violations"])
    restart_max = figures["restart_s_max"] or 0.0
    checks = [
        Check("every worker restarted by the supervisor", len(ctx.faults) == figures["restarts"],
              f"{figures['restarts']} of {len(ctx.faults)}"),
        Check("ownership exclusive (no partition consumed by two workers at once)",
              not figures["exclusive_violations"], "; ".join(figures["exclusive_violations"][:3])),
        Check("lost = 0", report.lost == 0, ", ".join(report.lost_sample)),
    ]
    if figures["protocol"] == "eager":
        # The paper's Algorithm 1 is per member, not a group-wide barrier: members whose
        # claims do not conflict consume on, so the group as a whole rarely stops
        # (docs/rolling-restart.md); what it stops is partitions.
        checks.append(Check("eager: the paper's protocol stalls partitions at every restart "
                            "(partition blackout > 0 s)", figures["partition_blackout_s"] > 0,
                            f"partition blackout {figures['partition_blackout_s']} s, group "
                            f"blackout {figures['blackout_s']} s"))
    else:
        checks.append(Check("cooperative: group blackout 0 s", figures["blackout_s"] == 0,
                            f"{figures['blackout_s']} s"))
        checks.append(Check("cooperative: no partition gap longer than a restart + 1 s",
                            figures["max_partition_gap_s"] <= restart_max + 1.0,
                            f"max gap {figures['max_partition_gap_s']} s, longest restart "
                            f"{restart_max} s"))
    if figures["static"]:
        checks.append(Check("static: no reassignment of untouched workers' partitions",
                            figures["untouched_reassignments"] == 0,
                            f"{figures['untouched_reassignments']} partition move(s)"))
    return checks
