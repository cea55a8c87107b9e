"""Running one drill: a cluster, steady traffic, K faults, recovery times, the ledger, a verdict.

    run(drill, Settings(count=5, interval=2.0))             # a fresh cluster in a temp dir
    run(drill, Settings(count=5), data_dir=".sluice")         # a running cluster with workers

Phases, each announced to ``on_event`` (the terminal display listens):

    starting   fresh: ``cluster.supervision.up`` (detached) with the drill's brokers,
               ZooKeeper and workers in a temp dir; the topic is created and the group must
               settle
    warming    the producer runs; the group must be complete and its lag known
    fault i    wait ``interval`` (the group complete), take the lag level of the last seconds,
               inject the fault (the drill's ``inject``), then measure, from the fault:
               process back (the drill says when), partitions owned again (a complete look),
               lag back to its level (a complete look with lag <= the level)
    draining   stop the producer (flush); wait until the workers loaded every promised id
    verdict    read every partition back, stop the fresh cluster, join the ledger, check the
               drill's must-holds

The result is one dict (``--json`` prints it); ``ok`` is whether every check held
(cluster/drills/verdict.py).
"""
from __future__ import annotations

import logging
import random
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from cluster.drills.context import Context, Settings, Unsupported
from cluster.drills.faults import ClusterProcesses, FaultError
from cluster.drills.ledger import Ledger
from cluster.drills.traffic import GroupWatch, SteadyProducer
from cluster.drills.verdict import consumed_ids, judge, read_stored
from cluster.supervision import ClusterConfig, down, up
from coordinator import consumer_registry as groups, topics, zk as zkconnect

log = logging.getLogger(__name__)
TOPIC = "drill"
GROUP = "drill-loaders"


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
                       **ctx.drill.broker_settings,
                       "log": {"flush_ms": s.flush_ms, **ctx.drill.broker_log}}
    consumer = {"auto_commit_ms": s.commit_ms}
    if not ctx.drill.library_worker_defaults:
        consumer.update(session_timeout_ms=s.session_timeout_ms, rebalance_max_tries=20,
                        rebalance_backoff_ms=300)
    if s.rebalance is not None:
        consumer["rebalance"] = s.rebalance
    worker_settings = {"topic": ctx.topic, "group": ctx.group, "consumer": consumer}
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
    overrides = ctx.drill.broker_overrides(ctx, zookeeper) if ctx.drill.broker_overrides else {}
    config = ClusterConfig(ctx.data_dir, brokers=s.brokers, zookeeper=zookeeper,
                           zk_ensemble=ctx.drill.zk_ensemble, broker_settings=broker_settings,
                           broker_overrides=overrides,
                           workers=s.workers, worker_settings=worker_settings,
                           dashboard_port=None)
    up(config, detach=True, timeout=120, die_with_parent=True)
    ctx.zookeeper = zkconnect.resolve(None, ctx.data_dir)
    client = zkconnect.connect(ctx.zookeeper)
    try:
        topics.create(client, ctx.topic, s.partitions, replication_factor=s.replication_factor,
                      min_insync_replicas=s.min_insync_replicas)
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
            for data in groups.registrations(client, group).values():
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
    while not consumed_ids(ctx):
        if time.monotonic() > deadline:
            raise Unsupported(f"the workers of group {ctx.group} loaded none of the drill's "
                              f"messages into {ctx.loaded_dir} within "
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
    promised = ctx.ledger.promised() - ctx.notes.get("_expected_lost", set())
    deadline = time.monotonic() + ctx.settings.drain_timeout_s
    last_progress, last_count = time.monotonic(), -1
    while time.monotonic() < deadline:
        consumed = consumed_ids(ctx)
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
        if ctx.fresh and ctx.files.lock_file.exists():
            ctx.emit("verdict", detail="stopping the cluster")
            if ctx.files.running_pid() is not None:
                down(ctx.data_dir, timeout=90)   # failing, it keeps the data dir
        if ctx.watch is not None and result.get("status") == "judging":
            judge(ctx, result, stored, problems)
    finally:
        if ctx.drill.cleanup is not None:
            ctx.drill.cleanup(ctx)
