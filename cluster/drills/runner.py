"""Running one drill: a cluster, steady traffic, K faults, recovery times, the ledger, a verdict.

    run(drill, Settings(count=5, interval=2.0))             # a fresh cluster in a temp dir
    run(drill, Settings(count=5), data_dir=".sluice")         # a running cluster with workers

Phases, each announced to ``on_event`` (the terminal display listens):

    starting   fresh: ``cluster.supervision.up`` (detached) with the drill's brokers, ZooKeeper and
               workers in a temp dir; the topic is created and the group must settle
    warming    the producer runs; the group must be complete and its lag known
    fault i    wait ``interval`` (the group complete), take the lag level of the last seconds,
               inject the fault (the drill's ``inject``), then measure, from the fault:
               process back (the drill says when), partitions owned again (a complete look),
               lag back to its level (a complete look with lag <= the level)
    draining   stop the producer (flush); wait until the workers loaded every promised id
    verdict    read every partition back, stop the fresh cluster, join the ledger, check the
               drill's must-holds

The result is one dict (``--json`` prints it); ``ok`` is whether every check held.
"""
from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from broker import message, protocol
from clients.brokers import BrokerPool
from clients.simple_consumer import SimpleConsumer
from cluster.supervision import ClusterConfig, down, up
from cluster.supervision.files import ClusterFiles
from cluster.drills.faults import ClusterProcesses, FaultError
from cluster.drills.ledger import Ledger
from cluster.drills.traffic import GroupWatch, SteadyProducer
from cluster.workers.loader import read_loaded
from coordinator import group as groups, paths, topics, zk as zkconnect
from coordinator.errors import InvalidArgument, SluiceError

log = logging.getLogger("sluice.drill")
TOPIC = "drill"
GROUP = "drill-loaders"


@dataclass(frozen=True)
class Settings:
    """How a drill runs; every figure lands in the result so a table can be reproduced."""

    count: int = 5
    interval: float = 2.0
    rate: int = 200
    partitions: int = 6
    brokers: int = 3
    workers: int = 3
    commit_ms: int = 1000
    session_timeout_ms: int = 4000
    flush_ms: int = 500
    recovery_timeout_s: float = 60.0
    warmup_s: float = 2.0
    drain_timeout_s: float = 90.0
    zookeeper: str | None = None
    keep: bool = False
    seed: int | None = None
    rebalance: str | None = None      # the workers' protocol (None: the worker's default)
    static: bool = False              # static members (instance id per worker slot)

    def __post_init__(self):
        if self.rebalance not in (None, "eager", "cooperative"):
            raise InvalidArgument(f"rebalance must be 'eager' or 'cooperative', not {self.rebalance!r}")
        if not isinstance(self.count, int) or self.count < 1:
            raise InvalidArgument(f"count must be a whole number >= 1, not {self.count!r}")
        if not self.interval >= 0:
            raise InvalidArgument(f"interval must be >= 0 seconds, not {self.interval!r}")
        for name in ("rate", "partitions", "brokers", "workers", "commit_ms",
                     "session_timeout_ms", "flush_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{name} must be a whole number >= 1, not {value!r}")


class Unsupported(SluiceError):
    """The drill cannot run honestly here (the message says why); it is reported, not faked."""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Context:
    """What a drill's hooks get: the cluster, the traffic, the eyes, and a place for notes."""

    drill: object
    settings: Settings
    data_dir: Path
    zookeeper: str
    topic: str
    group: str
    fresh: bool
    procs: ClusterProcesses
    ledger: Ledger
    rng: random.Random
    emit: Callable[..., None]
    watch: GroupWatch | None = None
    producer: SteadyProducer | None = None
    notes: dict = field(default_factory=dict)
    faults: list = field(default_factory=list)
    _pool: BrokerPool | None = None
    _zk: object = None

    @property
    def session_timeout_s(self) -> float:
        return self.settings.session_timeout_ms / 1000

    def log_end(self, partition: int) -> int:
        """The partition's visible end (the offsets API's latest), asked now."""
        if self._pool is None:
            self._pool = BrokerPool(self.zookeeper, request_timeout_ms=2000)
        frames = self._pool.call(self.topic, partition, lambda corr: protocol.encode_offsets(
            corr, self.topic, partition, protocol.LATEST))
        return protocol.decode_response(frames[0].buffer, protocol.OFFSETS_REPLY)[1][0]

    def zk(self):
        """A ZooKeeper client of the drill's own (the watch's stays with the watch)."""
        if self._zk is None:
            self._zk = zkconnect.connect(self.zookeeper)
        return self._zk

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._zk is not None:
            self._zk.stop()
            self._zk.close()
            self._zk = None

    def placement(self):
        return self.watch.placement

    def recover(self, record: dict, fault_t: float, back_t: float) -> None:
        """Wait for partitions owned and lag back, and put the times into ``record``."""
        timeout = self.settings.recovery_timeout_s
        level = record["lag_level"]
        remaining = lambda: max(0.1, fault_t + timeout - time.monotonic())  # noqa: E731
        record["process_back_s"] = round(back_t - fault_t, 3)
        self.emit("waiting", detail="partitions owned again")
        owned_t = self.watch.wait(lambda look: look.complete, back_t, remaining(),
                                  "every partition owned by a live member")
        record["owned_s"] = round(owned_t - fault_t, 3)
        self.emit("waiting", detail=f"lag back to {level} bytes")
        lag_t = self.watch.wait(lambda look: look.complete and look.lag is not None
                                and look.lag <= level, owned_t, remaining(),
                                f"lag back to its level before the fault ({level} bytes)")
        record["recovery_s"] = round(lag_t - fault_t, 3)


def run(drill, settings: Settings, data_dir: str | Path | None = None,
        on_event: Callable[[dict], None] | None = None) -> dict:
    """Run ``drill`` (a ``catalog.Drill``) and return its result dict (never raises for a
    failing cluster: that is a result with ``status`` "error" and the reason)."""
    emit = _emitter(drill.name, on_event)
    started = time.monotonic()
    result = {"drill": drill.name, "status": "error", "ok": False, "faults": 0,
              "settings": asdict(settings)}
    fresh = data_dir is None
    ctx = None
    try:
        if fresh:
            root = Path(tempfile.mkdtemp(prefix=f"sluice-drill-{drill.name}-"))
        else:
            root = Path(data_dir).resolve()
        result["data_dir"] = str(root)
        ctx = _context(drill, settings, root, fresh, emit)
        if drill.prepare is not None:
            drill.prepare(ctx)
        if fresh:
            _start_cluster(ctx)
        else:
            _attach(ctx)
        _exercise(ctx, result)
        result["status"] = "judging"
    except Unsupported as exc:
        result.update(status="unsupported", ok=None, reason=str(exc))
    except Exception as exc:  # one line in the result; the traceback in the log
        log.exception("drill %s failed to run", drill.name)
        result.update(status="error", ok=False, reason=f"{type(exc).__name__}: {exc}")
    finally:
        if ctx is not None:
            try:
                _tear_down(ctx, result)
            except Exception as exc:  # noqa: BLE001 - the verdict could not be reached
                log.exception("drill %s: tear-down failed", drill.name)
                result.update(status="error", ok=False, reason=f"{type(exc).__name__}: {exc}")
    if result["status"] == "judging":
        result["status"] = "ok" if result["ok"] else "failed"
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    if fresh and result.get("status") == "ok" and not settings.keep and "data_dir" in result:
        shutil.rmtree(result["data_dir"], ignore_errors=True)
        result["data_dir"] = None
    emit("done", result=result)
    return result


def _emitter(name: str, on_event):
    def emit(phase: str, **fields) -> None:
        if on_event is not None:
            on_event({"drill": name, "phase": phase, **fields})
    return emit


def _context(drill, settings: Settings, root: Path, fresh: bool, emit) -> Context:
    tag = "d" + uuid.uuid4().hex[:8]
    return Context(drill=drill, settings=settings, data_dir=root, zookeeper="",
                   topic=TOPIC, group=GROUP, fresh=fresh, procs=ClusterProcesses(root),
                   ledger=Ledger(tag, acks=drill.acks), rng=random.Random(settings.seed),
                   emit=emit)


def _start_cluster(ctx: Context) -> None:
    s = ctx.settings
    ctx.emit("starting", detail=f"{s.brokers} brokers, {s.workers} workers, ZooKeeper "
             f"{'x' + str(ctx.drill.zk_ensemble) if not s.zookeeper else s.zookeeper}")
    broker_settings = {"session_timeout_ms": s.session_timeout_ms,
                       "log": {"flush_ms": s.flush_ms, **ctx.drill.broker_log}}
    worker_settings = {"topic": ctx.topic, "group": ctx.group, "commit_ms": s.commit_ms}
    if not ctx.drill.library_worker_defaults:
        worker_settings.update(session_timeout_ms=s.session_timeout_ms,
                               rebalance_max_tries=20, rebalance_backoff_ms=300)
    if s.rebalance is not None:
        worker_settings["rebalance"] = s.rebalance
    if s.static:
        worker_settings["static"] = True
    if ctx.drill.handler is not None:
        worker_settings["handler"] = ctx.drill.handler
    zookeeper = s.zookeeper
    if zookeeper and ctx.drill.zk_ensemble != 1:
        raise Unsupported(f"{ctx.drill.name} needs its own {ctx.drill.zk_ensemble}-node "
                          f"ZooKeeper ensemble, not the external {zookeeper}")
    if zookeeper and ctx.drill.needs_embedded_zookeeper:
        raise Unsupported(f"{ctx.drill.name} kills the cluster's own ZooKeeper; it cannot "
                          f"use the external {zookeeper}")
    if zookeeper:
        zookeeper = f"{zookeeper.rstrip('/')}/drill-{uuid.uuid4().hex[:8]}"
    config = ClusterConfig(ctx.data_dir, brokers=s.brokers, zookeeper=zookeeper,
                           zk_ensemble=ctx.drill.zk_ensemble, broker_settings=broker_settings,
                           workers=s.workers, worker_settings=worker_settings,
                           dashboard_port=None)
    up(config, detach=True, timeout=120, die_with_parent=True)
    ctx.zookeeper = zkconnect.resolve(None, ctx.data_dir)
    client = zkconnect.connect(ctx.zookeeper)
    try:
        topics.create(client, ctx.topic, s.partitions)
    finally:
        client.stop()
        client.close()


def _attach(ctx: Context) -> None:
    """A running cluster: its ZooKeeper, and the group its workers form (topic from them)."""
    info = ctx.procs.info()
    if not info.get("ready"):
        raise FaultError(f"the cluster in {ctx.data_dir} is not running (or not ready)")
    ctx.zookeeper = zkconnect.resolve(None, ctx.data_dir)
    workers = {e["pid"] for e in ctx.procs.entries("worker") if e.get("pid")}
    if not workers:
        raise Unsupported(f"the cluster in {ctx.data_dir} runs no group workers: start it "
                          f"with 'sluice cluster up --workers M --topic T --group G'")
    client = zkconnect.connect(ctx.zookeeper)
    try:
        for group in groups.groups(client):
            for member in groups.members(client, group):
                data = json.loads(client.get(paths.consumer(group, member))[0])
                if data.get("pid") in workers and data.get("topics"):
                    ctx.group, ctx.topic = group, data["topics"][0]
                    break
            else:
                continue
            break
        else:
            raise Unsupported(f"no group in {ctx.zookeeper} has the workers of {ctx.data_dir} "
                              "as members yet")
        partitions = topics.get(client, ctx.topic).partitions
    finally:
        client.stop()
        client.close()
    ctx.settings = replace(ctx.settings, workers=len(workers), partitions=partitions,
                           brokers=len(ctx.procs.ids("broker")))
    needed = ctx.drill.zk_ensemble
    nodes = ctx.procs.entries("zookeeper")
    if ctx.drill.needs_embedded_zookeeper and len(nodes) != needed:
        raise Unsupported(f"{ctx.drill.name} needs a cluster with its own {needed}-node "
                          f"ZooKeeper; the one in {ctx.data_dir} has {len(nodes)} embedded node(s)")


def _exercise(ctx: Context, result: dict) -> None:
    s = ctx.settings
    drill = ctx.drill
    ctx.watch = GroupWatch(ctx.zookeeper, ctx.topic, ctx.group, s.workers)
    ctx.watch.start()
    ctx.emit("starting", detail="waiting for the group to settle")
    ctx.watch.wait(lambda look: look.complete, 0, 90, "the group settled on every partition")
    ctx.producer = SteadyProducer(ctx.zookeeper, ctx.topic, ctx.ledger, s.rate, acks=drill.acks)
    ctx.producer.start()
    ctx.emit("warming", detail=f"{s.rate} msg/s, acks={drill.acks}")
    _wait_steady(ctx, time.monotonic())
    if not ctx.fresh:
        _check_loader(ctx)
    ctx.notes["restarts_before"] = {role: ctx.procs.restarts(role)
                                    for role in ("broker", "worker", "zookeeper")}
    for i in range(s.count):
        _wait_steady(ctx, time.monotonic(), minimum_s=s.interval)
        record = {"n": i + 1, "lag_level": ctx.watch.lag_level(max(2.0, s.interval))}
        ctx.emit("fault", n=i + 1, count=s.count, detail=drill.fault)
        try:
            drill.inject(ctx, record)
            record["recovered"] = True
        except (TimeoutError, FaultError) as exc:
            record.update(recovered=False, error=str(exc))
        ctx.faults.append(record)
        result["faults"] = len(ctx.faults)
        ctx.emit("recovered" if record["recovered"] else "not recovered", n=i + 1,
                 count=s.count, record=record)
    ctx.notes["restarts_after"] = {role: ctx.procs.restarts(role)
                                   for role in ("broker", "worker", "zookeeper")}
    ctx.emit("draining", detail="producer flushing; workers loading every promised id")
    ctx.producer.stop()
    if ctx.producer.error is not None:
        raise RuntimeError(f"the drill's producer failed: {ctx.producer.error}")
    _drain(ctx)


def _check_loader(ctx: Context, timeout: float = 15.0) -> None:
    """A running cluster's workers must load what they process where the ledger reads it
    (the default handler, cluster.workers.loader); otherwise the ledger would call everything lost."""
    deadline = time.monotonic() + timeout
    while not _consumed_ids(ctx, ctx.data_dir / "loaded" / ctx.group):
        if time.monotonic() > deadline:
            raise Unsupported(f"the workers of group {ctx.group} loaded none of the drill's "
                              f"messages into {ctx.data_dir / 'loaded' / ctx.group} within "
                              f"{timeout:g} s: the ledger needs the default handler "
                              "(cluster.workers.loader:hourly_files)")
        time.sleep(0.5)


def _wait_steady(ctx: Context, since: float, minimum_s: float | None = None) -> None:
    """At least ``minimum_s`` (default: the warm-up) seconds, ending with complete looks."""
    minimum_s = ctx.settings.warmup_s if minimum_s is None else minimum_s
    time.sleep(minimum_s)
    ctx.watch.wait(lambda look: look.complete and look.lag is not None, since,
                   ctx.settings.recovery_timeout_s, "the group complete with its lag known")


def _drain(ctx: Context) -> None:
    """Until every promised id was loaded; or the group caught up (a complete look with no
    lag) and no new id was loaded for 3 s; or nothing new came for 30 s; or the timeout."""
    root = ctx.data_dir / "loaded" / ctx.group
    promised = ctx.ledger.promised() - ctx.notes.get("_expected_lost", set())
    deadline = time.monotonic() + ctx.settings.drain_timeout_s
    last_progress, last_count = time.monotonic(), -1
    while time.monotonic() < deadline:
        consumed = _consumed_ids(ctx, root)
        missing = len(promised - consumed)
        ctx.emit("draining", detail=f"{missing} promised id(s) not loaded yet")
        if not missing:
            return
        now = time.monotonic()
        if len(consumed) != last_count:
            last_progress, last_count = now, len(consumed)
        idle = now - last_progress
        look = ctx.watch.latest()
        caught_up = look is not None and look.t > last_progress and look.complete \
            and look.lag == 0
        if (caught_up and idle > 3) or idle > 30:
            return
        time.sleep(0.5)


def _consumed_ids(ctx: Context, root: Path) -> set[int]:
    from cluster.drills.ledger import parse_id
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


def _tear_down(ctx: Context, result: dict) -> None:
    """Stop the traffic and the eyes, read back the log, stop a fresh cluster, judge."""
    if ctx.producer is not None and ctx.producer.is_alive():
        try:
            ctx.producer.stop()
        except RuntimeError as exc:
            log.error("%s", exc)
    stored, problems = None, []
    if ctx.watch is not None and result.get("status") == "judging" and ctx.zookeeper:
        ctx.emit("verdict", detail="reading every partition back")
        try:
            stored, problems = read_stored(ctx.zookeeper, ctx.topic, ctx.settings.partitions)
        except Exception as exc:  # noqa: BLE001 - reported as a problem of the verdict
            problems.append(f"cannot read the partitions back: {exc}")
    ctx.close()
    if ctx.watch is not None:
        ctx.watch.stop()
    try:
        files = ClusterFiles(ctx.data_dir)
        if ctx.fresh and files.lock_file.exists():
            ctx.emit("verdict", detail="stopping the cluster")
            if files.running_pid() is not None:
                down(ctx.data_dir, timeout=90)   # failing, it keeps the data dir
        if ctx.watch is not None and result.get("status") == "judging":
            _verdict(ctx, result, stored, problems)
    finally:
        if ctx.drill.cleanup is not None:
            ctx.drill.cleanup(ctx)


def _verdict(ctx: Context, result: dict, stored, problems: list[str]) -> None:
    consumed = {tp: rows for tp, rows in read_loaded(ctx.data_dir / "loaded" / ctx.group).items()
                if tp[0] == ctx.topic}
    report = ctx.ledger.report(consumed, stored, ctx.notes.get("_expected_lost", set()))
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
        stored=report.stored, send_failed=report.send_failed,
        send_errors=dict(producer.send_errors) if producer else {},
        delivery_errors=dict(ctx.ledger.errors),
        retried=producer.retried if producer else 0,
        dropped=producer.dropped if producer else 0,
        read_back_problems=problems,
        ledger=report.as_dict(), fault_log=ctx.faults,
        notes={k: v for k, v in ctx.notes.items() if not k.startswith("_")})
    checks = _common_checks(ctx, result, report, problems) + ctx.drill.checks(ctx, result, report)
    result["checks"] = [asdict(c) for c in checks]
    result["ok"] = all(c.ok for c in checks)


def _common_checks(ctx: Context, result: dict, report, problems: list[str]) -> list[Check]:
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
