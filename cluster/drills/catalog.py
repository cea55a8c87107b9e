"""The drills: what each one breaks, how it knows the process is back, and what must hold.

Each drill is a ``Drill``: ``inject(ctx, record)`` causes one fault, waits until the process is
back (its own notion of "back"), then calls ``ctx.recover`` for the rest of the recovery
(partitions owned, lag back), writing what it saw into ``record``; ``checks(ctx, result,
report)`` turns the run into the issue's must-holds. The runner adds the checks every drill
shares (every fault recovered, skipped = 0, order_violations = 0, partitions read back with
valid CRCs, acknowledged ids at their acknowledged offsets).

| drill              | fault                                                   | K  |
| ------------------ | ------------------------------------------------------- | -- |
| kill-broker        | SIGKILL a random broker                                 | 20 |
| pause-broker       | SIGSTOP a broker until its registry node expires, SIGCONT | 5 |
| kill-worker        | SIGKILL a random group worker                           | 20 |
| kill-worker-after-revoke | SIGKILL a worker, then another the moment it gives a partition up | 5 |
| kill-zookeeper     | 3-node ensemble: SIGKILL the leader, then a follower, ... after the last returned | 5 |
| restart-zookeeper  | single ZooKeeper: SIGKILL it; the supervisor starts it with its data | 5 |
| torn-segment       | stop a broker, flip a byte in one unflushed message and cut the last one in half, kill it | 5 |
| disk-full          | fill the tmpfs under broker 0's data dir, then free it   | 5  |
| acks0-kill-broker  | kill-broker with an acks=0 producer                     | 5  |
| rolling-restart    | SIGTERM every worker in turn (not in ``all``; rolling.py) | = workers |
"""
from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from broker import message
from kazoo.exceptions import NoNodeError

from cluster.drills import rolling
from cluster.drills.faults import FaultError, zookeeper_mode
from cluster.drills.ledger import parse_id
from cluster.drills.runner import Check, Context, Unsupported
from coordinator import paths

TMPFS_BYTES = 4 << 20
REROUTE_S = 2.0        # a paused broker stays paused this long after its registry node expired
REROUTE_SHARE = 0.5
VIEW_LAG_S = 0.5       # time allowed for clients to see a registry change
FILLER = ".drill-filler"


@dataclass(frozen=True)
class Drill:
    name: str
    fault: str
    must_hold: str
    default_count: int
    inject: Callable[[Context, dict], None]
    checks: Callable[[Context, dict, object], list[Check]]
    acks: int = 1
    zk_ensemble: int = 1
    needs_embedded_zookeeper: bool = False
    broker_log: dict = field(default_factory=dict)
    prepare: Callable[[Context], None] | None = None
    cleanup: Callable[[Context], None] | None = None
    handler: str | None = None              # the workers' handler (None: the loader)
    library_worker_defaults: bool = False   # workers keep the library's session/rebalance defaults
    defaults: dict = field(default_factory=dict)   # Settings the command starts from
    in_all: bool = True                     # part of ``sluice drill all`` / ``make drill``


# --- shared pieces ------------------------------------------------------------------------

def _restarts(ctx: Context, role: str) -> int:
    before = ctx.notes["restarts_before"][role]
    after = ctx.notes.get("restarts_after", {}).get(role, before)
    return sum(after.get(i, 0) - before.get(i, 0) for i in after)


def _kill_and_replace(ctx: Context, record: dict, role: str) -> tuple[str, float, int]:
    """SIGKILL a random ``role``; returns (id, fault time, new pid) once the supervisor
    started it again."""
    target = ctx.rng.choice(ctx.procs.ids(role))
    fault_t = time.monotonic()
    pid = ctx.procs.kill(role, target)
    record.update(target=f"{role} {target}", pid=pid)
    ctx.emit("fault", detail=f"SIGKILLed {role} {target} (pid {pid})")
    new_pid = ctx.procs.wait_replaced(role, target, pid, ctx.settings.recovery_timeout_s)
    record["new_pid"] = new_pid
    return target, fault_t, new_pid


def _wait_broker_back(ctx: Context, broker: int, pid: int, after: float) -> float:
    hosted = set(ctx.placement().hosted_by(broker))
    return ctx.watch.wait(lambda look: look.brokers.get(broker) == pid and hosted <= look.hosted,
                          after, ctx.settings.recovery_timeout_s,
                          f"broker {broker} registered under pid {pid} and hosting its partitions")


def _lost_is_zero(report) -> Check:
    return Check("lost = 0", report.lost == 0,
                 f"{report.lost} acknowledged id(s) never consumed, e.g. "
                 f"{', '.join(report.lost_sample)}" if report.lost else "")


# --- kill-broker / acks0-kill-broker ------------------------------------------------------

def kill_broker(ctx: Context, record: dict) -> None:
    target, fault_t, new_pid = _kill_and_replace(ctx, record, "broker")
    back_t = _wait_broker_back(ctx, int(target), new_pid, fault_t)
    ctx.recover(record, fault_t, back_t)


def kill_broker_checks(ctx: Context, result: dict, report) -> list[Check]:
    return [
        Check("supervisor restarted the broker each time", _restarts(ctx, "broker") == len(ctx.faults),
              f"{_restarts(ctx, 'broker')} restart(s) for {len(ctx.faults)} kill(s)"),
        _lost_is_zero(report),
        Check("producers retry (and no batch is given up)",
              result["retried"] > 0 and report.send_failed == 0,
              f"{result['retried']} retried batch(es), {report.send_failed} id(s) given up "
              f"({result['delivery_errors']})"),
    ]


def acks0_checks(ctx: Context, result: dict, report) -> list[Check]:
    sent = report.sent
    result["loss_rate"] = round(report.lost / sent, 6) if sent else None
    return [
        Check("supervisor restarted the broker each time", _restarts(ctx, "broker") == len(ctx.faults),
              f"{_restarts(ctx, 'broker')} restart(s) for {len(ctx.faults)} kill(s)"),
        Check("the loss is measured: sent = consumed + lost, nothing consumed was never sent",
              report.consumed + report.lost == sent,
              f"sent {sent}, consumed {report.consumed}, lost {report.lost} "
              f"({result['loss_rate']:.4%} of sent; {result['dropped']} dropped by the "
              f"producer)" if sent else "nothing sent"),
        Check("every lost id is missing from the log (lost in transit, not by the consumers)",
              report.not_stored == report.lost,
              f"{report.lost} lost, {report.not_stored} not in the log"),
    ]


# --- pause-broker -------------------------------------------------------------------------

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
    back_t = _wait_broker_back(ctx, broker, pid, resumed_t)
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
              and _restarts(ctx, "broker") == 0, f"{_restarts(ctx, 'broker')} broker restart(s)"),
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
        _lost_is_zero(report),
    ]


# --- kill-worker --------------------------------------------------------------------------

def kill_worker(ctx: Context, record: dict) -> None:
    _, fault_t, new_pid = _kill_and_replace(ctx, record, "worker")
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
        Check("supervisor restarted the worker each time", _restarts(ctx, "worker") == len(ctx.faults),
              f"{_restarts(ctx, 'worker')} restart(s) for {len(ctx.faults)} kill(s)"),
        Check("the group re-settles after every kill",
              all("owned_s" in f for f in ctx.faults), ""),
        _lost_is_zero(report),
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
        _lost_is_zero(report),
    ]


# --- kill-zookeeper (3 nodes) -------------------------------------------------------------

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
    died = _restarts(ctx, "broker") + _restarts(ctx, "worker")
    return [
        Check("the supervisor brought every killed node back into the quorum",
              _restarts(ctx, "zookeeper") == len(ctx.faults),
              f"{_restarts(ctx, 'zookeeper')} restart(s); killed: {', '.join(kinds)}"),
        Check("nothing stops: no broker or worker died", died == 0,
              f"{died} broker/worker restart(s)"),
        Check("nothing stops: acks kept coming (no gap over 2 s while a node was down)",
              bool(gaps) and max(gaps) <= 2.0, f"longest gap {max(gaps, default=0):.2f} s"),
        _lost_is_zero(report),
    ]


# --- restart-zookeeper (1 node) -----------------------------------------------------------

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
    died = _restarts(ctx, "broker") + _restarts(ctx, "worker")
    return [
        Check("the supervisor started ZooKeeper again with its data each time",
              _restarts(ctx, "zookeeper") == len(ctx.faults),
              f"{_restarts(ctx, 'zookeeper')} restart(s)"),
        Check("brokers and consumers registered again after every restart",
              all("process_back_s" in f for f in ctx.faults),
              f"{result['sessions_lost']} session(s) lost and re-registered; ZooKeeper "
              "restores sessions from its data, so most survive a restart"),
        Check("brokers and consumers ride it out: none died", died == 0,
              f"{died} broker/worker restart(s)"),
        _lost_is_zero(report),
    ]


# --- torn-segment -------------------------------------------------------------------------

@dataclass
class _Entry:
    start: int      # byte position in the segment file
    end: int
    value: bytes


def _entries(data: bytes) -> list[_Entry]:
    out, pos = [], 0
    while len(data) - pos >= message.HEADER_SIZE:
        size = message.HEADER.unpack_from(data, pos)[0]
        end = pos + message.SIZE_FIELD + size
        if end > len(data) or size < message.MIN_SIZE:
            break
        out.append(_Entry(pos, end, message.key_value(data, pos)[1]))
        pos = end
    return out


def _active_segment(partition_dir: Path) -> Path:
    segments = sorted(partition_dir.glob("*.log"))
    if not segments:
        raise FaultError(f"no segment in {partition_dir}")
    return segments[-1]


def _recovery_lines(ctx: Context) -> list[str]:
    try:
        text = (ctx.data_dir / "supervisor.log").read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if "recovery cut" in line]


def torn_segment(ctx: Context, record: dict) -> None:
    brokers = ctx.procs.ids("broker")
    target = brokers[len(ctx.faults) % len(brokers)]
    broker = int(target)
    partitions = ctx.placement().hosted_by(broker)
    broker_dir = ctx.data_dir / f"broker-{broker}" / ctx.topic
    choice = None
    for _ in range(50):
        visible = {p: ctx.log_end(p) for p in partitions}
        pid = ctx.procs.pause("broker", target)
        fault_t = time.monotonic()
        choice = _choose_damage(broker_dir, visible)
        if choice is not None:
            break
        ctx.procs.resume(pid)
        time.sleep(0.2)
    if choice is None:
        raise FaultError(f"broker {broker} never had two unflushed messages to damage")
    partition, path, flip, torn = choice
    tag = ctx.ledger.tag.encode()
    torn_ids = [s for s in (parse_id(tag, e.value) for e in (flip, torn)) if s is not None]
    expected_cut = torn.start + (torn.end - torn.start) // 2 - flip.start
    record.update(target=f"broker {broker}", pid=pid, partition=partition,
                  segment=path.name, torn_messages=2, torn_ids_acked=0,
                  expected_cut_bytes=expected_cut)
    lines_before = len(_recovery_lines(ctx))
    try:
        with open(path, "r+b") as f:
            f.seek(flip.end - 1)
            byte = f.read(1)
            f.seek(flip.end - 1)
            f.write(bytes([byte[0] ^ 0xFF]))
            f.truncate(torn.start + (torn.end - torn.start) // 2)
        ctx.emit("fault", detail=f"broker {broker} stopped; flipped a byte at {path.name}+"
                 f"{flip.end - 1}, cut the last message in half; killing it")
    finally:
        os.kill(pid, signal.SIGKILL)
    new_pid = ctx.procs.wait_replaced("broker", target, pid, ctx.settings.recovery_timeout_s)
    back_t = _wait_broker_back(ctx, broker, new_pid, fault_t)
    acked = ctx.ledger.promised()
    record["torn_ids_acked"] = sum(1 for s in torn_ids if s in acked)
    ctx.notes.setdefault("_expected_lost", set()).update(torn_ids)
    cut = [line for line in _recovery_lines(ctx)[lines_before:]
           if f"/{ctx.topic}/{partition}:" in line]
    match = re.search(r"recovery cut (\d+) bytes", cut[-1]) if cut else None
    record["recovery_cut_bytes"] = int(match.group(1)) if match else None
    ctx.recover(record, fault_t, back_t)


def _choose_damage(broker_dir: Path, visible: dict[int, int]):
    """A partition whose active segment holds two messages past the visible (flushed) end:
    (partition, segment path, message to flip a byte in, last message to tear)."""
    for partition, end in sorted(visible.items()):
        path = _active_segment(broker_dir / str(partition))
        base = int(path.stem)
        entries = _entries(path.read_bytes())
        if len(entries) >= 2 and base + entries[-2].start >= end:
            return partition, path, entries[-2], entries[-1]
    return None


def torn_segment_checks(ctx: Context, result: dict, report) -> list[Check]:
    excused = ctx.notes.get("_expected_lost", set())
    result["torn_messages"] = sum(f.get("torn_messages", 0) for f in ctx.faults)
    result["torn_acked"] = sum(f.get("torn_ids_acked", 0) for f in ctx.faults)
    cut_ok = [f.get("recovery_cut_bytes") == f.get("expected_cut_bytes") for f in ctx.faults]
    return [
        Check("restart repairs it: recovery cut exactly the damaged tail each time",
              all(cut_ok) and bool(cut_ok),
              ", ".join(f"{f.get('recovery_cut_bytes')}/{f.get('expected_cut_bytes')} bytes"
                        for f in ctx.faults)),
        Check("only the torn tail is lost", report.lost == report.lost_excused,
              f"{report.lost} lost, {report.lost_excused} of them in the torn tails "
              f"({result['torn_messages']} messages torn, {result['torn_acked']} of them "
              f"acknowledged); others: {', '.join(report.lost_sample)}"),
        Check("the torn messages were not consumed before the cut",
              not (excused & set(_consumed(ctx))), ""),
    ]


def _consumed(ctx: Context) -> set[int]:
    from cluster.drills.runner import _consumed_ids
    return _consumed_ids(ctx, ctx.data_dir / "loaded" / ctx.group)


# --- disk-full ----------------------------------------------------------------------------

DISK_BROKER = 0


def disk_full_prepare(ctx: Context) -> None:
    if not ctx.fresh:
        raise Unsupported("disk-full needs a fresh cluster: its broker's data dir must sit on "
                          "a small tmpfs from the start")
    mount = ctx.data_dir / f"broker-{DISK_BROKER}"
    mount.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise Unsupported("disk-full is unsupported here: cannot mount a small tmpfs "
                          f"({(proc.stderr or proc.stdout).strip() or proc.returncode}); it "
                          "needs root (or CAP_SYS_ADMIN) to give a broker a disk that fills up")
    ctx.notes["_mount"] = mount


def disk_full_cleanup(ctx: Context) -> None:
    mount = ctx.notes.get("_mount")
    if mount is not None:
        subprocess.run(["umount", str(mount)], capture_output=True)
        if os.path.ismount(mount):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(path: Path) -> int:
    """Write zeros until the file system is full; return the bytes written."""
    chunk = b"\0" * 65536
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                written += os.write(fd, chunk)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return written
                chunk = chunk[:len(chunk) // 2]
    finally:
        os.close(fd)


def disk_full(ctx: Context, record: dict) -> None:
    mount = ctx.notes["_mount"]
    partitions = set(ctx.placement().hosted_by(DISK_BROKER))
    filler = mount / FILLER
    fault_t = time.monotonic()
    record.update(target=f"broker {DISK_BROKER}", filled_bytes=_fill(filler))
    ctx.emit("fault", detail=f"filled broker {DISK_BROKER}'s tmpfs; waiting for produce errors")
    deadline = fault_t + ctx.settings.recovery_timeout_s
    while not ctx.producer.failures_between(fault_t, time.monotonic(), partitions):
        if time.monotonic() > deadline:
            filler.unlink()
            raise FaultError("no produce error within the recovery timeout of a full disk")
        time.sleep(0.05)
    time.sleep(1.0)
    freed_t = time.monotonic()
    filler.unlink()
    errors = ctx.producer.failures_between(fault_t, freed_t, partitions)
    record.update(full_s=round(freed_t - fault_t, 3), produce_errors=len(errors),
                  error_text=errors[0])
    ctx.emit("fault", detail=f"{len(errors)} produce error(s) ('{errors[0][:60]}'); space freed")
    while not ctx.producer.acked_between(freed_t, time.monotonic(), partitions):
        if time.monotonic() > deadline:
            raise FaultError(f"broker {DISK_BROKER} took no write after space returned")
        time.sleep(0.05)
    back_t = time.monotonic()
    record["resumed_after_s"] = round(back_t - freed_t, 3)
    ctx.recover(record, fault_t, back_t)
    if len(ctx.faults) + 1 == ctx.settings.count:
        _restart_and_check_recovery(ctx, record)


def _restart_and_check_recovery(ctx: Context, record: dict) -> None:
    """After the last fault: kill the broker and see its recovery find nothing to cut."""
    lines_before = len(_recovery_lines(ctx))
    pid = ctx.procs.kill("broker", str(DISK_BROKER))
    new_pid = ctx.procs.wait_replaced("broker", str(DISK_BROKER), pid,
                                      ctx.settings.recovery_timeout_s)
    _wait_broker_back(ctx, DISK_BROKER, new_pid, time.monotonic() - 1)
    record["recovery_cut_at_restart"] = [
        line.split("WARNING: ", 1)[-1] for line in _recovery_lines(ctx)[lines_before:]
        if f"broker-{DISK_BROKER}/" in line]


def disk_full_checks(ctx: Context, result: dict, report) -> list[Check]:
    texts = [f.get("error_text", "") for f in ctx.faults]
    cuts = [f["recovery_cut_at_restart"] for f in ctx.faults if "recovery_cut_at_restart" in f]
    return [
        Check("produce gets a clear error while the disk is full",
              bool(texts) and all("disk full" in t for t in texts),
              f"e.g. '{texts[0]}'" if texts else ""),
        Check("writing resumes when space returns", all("resumed_after_s" in f for f in ctx.faults),
              ", ".join(f"{f['resumed_after_s']:.2f} s" for f in ctx.faults
                        if "resumed_after_s" in f)),
        Check("nothing already written is corrupted (recovery at a restart cuts nothing)",
              len(cuts) == 1 and not cuts[0], "; ".join(cuts[0]) if cuts else "no restart"),
        _lost_is_zero(report),
    ]


DRILLS: dict[str, Drill] = {d.name: d for d in (
    Drill("kill-broker", "SIGKILL a random broker",
          "supervisor restarts it; lost = 0 for acks=1; producers retry; the group resumes",
          20, kill_broker, kill_broker_checks),
    Drill("pause-broker", "SIGSTOP a broker past its ZooKeeper session, then SIGCONT",
          "its registry node expires and comes back; clients reroute and return; lost = 0",
          5, pause_broker, pause_broker_checks),
    Drill("kill-worker", "SIGKILL a random group worker",
          "the group re-settles; skipped = 0; duplicates bounded by the commit interval",
          20, kill_worker, kill_worker_checks),
    Drill("kill-worker-after-revoke", "SIGKILL a worker, then SIGKILL another the moment it "
          "gives a partition up to the restarted one", "skipped = 0; lost = 0 (at-least-once "
          "holds across a rebalance)", 5, kill_worker_after_revoke,
          kill_worker_after_revoke_checks),
    Drill("kill-zookeeper", "3-node ensemble: SIGKILL a node (leader, then follower, ...) "
          "after the last one returned", "nothing stops; lost = 0", 5, kill_zookeeper,
          kill_zookeeper_checks, zk_ensemble=3, needs_embedded_zookeeper=True),
    Drill("restart-zookeeper", "single ZooKeeper: SIGKILL it; started again with its data",
          "brokers and consumers re-register; lost = 0", 5, restart_zookeeper,
          restart_zookeeper_checks, needs_embedded_zookeeper=True),
    Drill("torn-segment", "stop a broker, flip a byte in an unflushed message of its active "
          "segment and cut the last message in half, then kill it",
          "restart repairs it; only the torn tail is lost, and how many messages that was",
          5, torn_segment, torn_segment_checks, broker_log={"flush_ms": 3000}),
    Drill("disk-full", "fill the small tmpfs under broker 0's data dir, then free it",
          "produce gets a clear error; nothing written is corrupted; writing resumes", 5,
          disk_full, disk_full_checks, prepare=disk_full_prepare, cleanup=disk_full_cleanup),
    Drill("acks0-kill-broker", "SIGKILL a random broker under an acks=0 producer",
          "the loss the paper accepts is measured and reported", 5, kill_broker, acks0_checks,
          acks=0),
    Drill("rolling-restart", "SIGTERM each group worker in turn; the supervisor replaces it",
          "skipped = 0; ownership exclusive; cooperative: no group blackout, no partition gap "
          "longer than a restart + 1 s; static: untouched workers keep their partitions",
          12, rolling.rolling_restart, rolling.rolling_restart_checks, handler=rolling.HANDLER, prepare=rolling.prepare,
          library_worker_defaults=True, in_all=False,
          defaults=dict(brokers=1, flush_ms=100, rate=1000, workers=12, partitions=24,
                        interval=1.0, rebalance="cooperative")),
)}
