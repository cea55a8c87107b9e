"""The audit drill: lose messages on purpose at each stage and check that ``sluice audit``
names exactly that many, in the right window and stage.

| stage    | window | what is done                                  | audit must say          |
| -------- | ------ | --------------------------------------------- | ----------------------- |
| broker   | A      | acks=1 into small segments of partition 0;    | lost acked = the        |
|          |        | its first (sealed) segment deleted by hand,   | messages of the deleted |
|          |        | its broker killed (restarted without it)      | segment                 |
| producer | B      | acks=0 into partition 1 while its broker is   | lost no ack = sent -    |
|          |        | SIGKILLed                                     | what the log holds      |
| consumer | C      | acks=1; an auditing group consumer skips one  | lost by the group = 1   |
|          |        | message of C                                  |                         |

Each stage starts just after a window boundary (windows of ``WINDOW_MS``) and ends within its
window. The truth the audit is checked against is the drill's own: how many it sent and which
of its ids are in the log (read back whole), never the audit's own figures. The scenario needs
only two operations of the cluster (``Cluster``), so the same stages run under the drill runner
(a supervised cluster, ``sluice drill audit-loss``) and against test brokers.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from broker import message
from clients.audit import window_of
from clients.consumer import Consumer
from clients.producer import Producer
from clients.simple_consumer import SimpleConsumer
from cluster.drills.context import Check, Context
from coordinator import topics, zk as zkconnect
from coordinator.errors import SluiceError

log = logging.getLogger(__name__)
TOPIC = "audited"          # the drill's topic (the runner adds the fault's number)
GROUP = "audit-drill"
WINDOW_MS = 1000
SEGMENT_BYTES = 16 * 1024
STAGE_A_MESSAGES = 600         # about 5 segments of 16 KiB at ~120 bytes a message
STAGE_B_SECONDS = 0.6
STAGE_C_MESSAGES = 200


@dataclass
class Cluster:
    """What the stages need from a cluster: ``kill(broker)`` SIGKILLs a broker and returns once
    it serves its partitions again; ``partition_dir(broker, topic, partition)`` is the folder
    of that partition's segments."""

    zookeeper: str
    kill: Callable[[int], None]
    partition_dir: Callable[[int, str, int], Path]


def _next_window(window_ms: int = WINDOW_MS, margin_ms: int = 20) -> int:
    """Sleep to just after the next window boundary; its start."""
    now = time.time() * 1000
    start = window_of(int(now), window_ms) + window_ms
    time.sleep((start + margin_ms - now) / 1000)
    return start


def _ids_in_log(zookeeper: str, topic: str, partition: int) -> list[bytes]:
    values = []
    with SimpleConsumer(topic, partition, "earliest", zookeeper=zookeeper,
                        timeout_ms=1500) as consumer:
        end = consumer.offset_of("latest")
        while consumer.position < end:
            batch = consumer.fetch()
            if not batch:
                break
            values.extend(m.value for m in batch)
    return values


def _stored_values(zookeeper: str, topic: str, timeout: float = 30.0) -> list[bytes]:
    """Every value in the topic once every acknowledged C message is visible and two reads
    in a row agree (the restarted broker has taken what ZeroMQ still delivered to it)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        values = _ids_in_log(zookeeper, topic, 0) + _ids_in_log(zookeeper, topic, 1)
        complete = sum(1 for v in values if v.startswith(b"C")) == STAGE_C_MESSAGES
        if complete and values == last:
            return values
        if time.monotonic() > deadline:
            raise TimeoutError(f"the topic's acknowledged messages not all visible within "
                               f"{timeout:g} s")
        last = values
        time.sleep(0.3)


def run_stages(cluster: Cluster, topic: str = TOPIC) -> dict:
    """Run the three stages and the group's consumption; returns the truth per stage:
    window starts, how many were lost (by the drill's own count) and where."""
    zk = cluster.zookeeper
    client = zkconnect.connect(zk)
    try:
        placement = topics.create(client, topic, 2, replication_factor=1)
        topics.configure(client, topic, {"segment.bytes": SEGMENT_BYTES})
        leaders = [replicas[0] for replicas in placement.replicas]
    finally:
        client.stop()
        client.close()
    truth: dict = {"leaders": leaders}
    payload = b"x" * 80
    # stage A: the broker loses a segment of acknowledged messages
    with Producer(zk, acks=1, audit=True, audit_window_ms=WINDOW_MS, batch_size=20) as p:
        p.send(topic, b"warm", partition=1)
        p.flush()
        truth["warm_window"] = window_of(int(time.time() * 1000), WINDOW_MS)
        a = _next_window()
        for i in range(STAGE_A_MESSAGES):
            p.send(topic, b"A%05d" % i + payload, partition=0)
        p.flush()
        if window_of(int(time.time() * 1000), WINDOW_MS) != a:
            raise RuntimeError("stage A overran its window: the machine is too slow for "
                               f"{WINDOW_MS} ms windows")
    folder = cluster.partition_dir(leaders[0], topic, 0)
    segments = sorted(folder.glob("*.log"))
    if len(segments) < 2:
        raise RuntimeError(f"stage A made {len(segments)} segment(s) in {folder}, not >= 2")
    doomed = segments[0].read_bytes()
    deleted = sum(1 for _ in message.decode_set(doomed, topic, 0, 0))
    segments[0].unlink()
    cluster.kill(leaders[0])
    truth["A"] = {"window": a, "broker_lost": deleted, "segment": segments[0].name}
    # stage B: acks=0 messages sent while their broker is killed
    with Producer(zk, acks=0, audit=True, audit_window_ms=WINDOW_MS, batch_size=10,
                  linger_ms=1) as p:
        b = _next_window()
        sent, killed = 0, False
        started = time.monotonic()
        while time.monotonic() - started < STAGE_B_SECONDS:
            p.send(topic, b"B%06d" % sent + payload, partition=1)
            sent += 1
            if not killed and time.monotonic() - started > STAGE_B_SECONDS / 3:
                killed = True
                log.info("audit drill: killing broker %d under acks=0 traffic", leaders[1])
                threading.Thread(target=cluster.kill, args=(leaders[1],), daemon=True).start()
            if sent % 20 == 0:
                time.sleep(0.001)
        p.flush()
    truth["B_sent"] = sent
    # stage C: acks=1 messages; the group skips one of them
    _wait_serving(zk, topic, 1)
    with Producer(zk, acks=1, audit=True, audit_window_ms=WINDOW_MS, batch_size=20) as p:
        c = _next_window()
        for i in range(STAGE_C_MESSAGES):
            p.send(topic, b"C%05d" % i + payload, partition=i % 2)
        p.flush()
    stored = _stored_values(zk, topic)
    stored_b = {v[:7] for v in stored if v.startswith(b"B")}
    truth["B"] = {"window": b, "unacked_lost": sent - len(stored_b), "sent": sent}
    skip = b"C%05d" % (STAGE_C_MESSAGES // 2)
    truth["C"] = {"window": c, "consumer_lost": 1, "skipped": skip.decode()}
    consumed = 0
    with Consumer([topic], GROUP, zk, audit=True, audit_window_ms=WINDOW_MS,
                  auto_commit_ms=200) as consumer:
        for m in consumer:
            consumed += 1
            if m.value.startswith(skip):
                consumer.note_skipped(m, RuntimeError("skipped on purpose by the audit drill"))
            if consumed == len(stored):
                break
        consumer.commit()
    truth["consumed"] = consumed
    truth["stored"] = len(stored)
    return truth


def _wait_serving(zookeeper: str, topic: str, partition: int, timeout: float = 60.0) -> None:
    """Until an acks=1 send to the partition is acknowledged (its broker is back)."""
    deadline = time.monotonic() + timeout
    with Producer(zookeeper, acks=1, retries=0, request_timeout_ms=1000) as p:
        while True:
            try:
                p.send(topic, b"probe", partition=partition)
                p.flush()
                return
            except SluiceError as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"partition {partition} not writable within "
                                       f"{timeout:g} s ({exc})") from None
                time.sleep(0.2)


def judge(truth: dict, report: dict) -> list[Check]:
    """The audit's report (``sluice audit --json``) against the drill's truth. Pure.

    >>> truth = {"A": {"window": 0, "broker_lost": 5}, "B": {"window": 1000,
    ...          "unacked_lost": 2}, "C": {"window": 2000, "consumer_lost": 1}}
    >>> def w(start, **lost):
    ...     return {"window_start": start, "broker_lost": 0, "unacked_lost": 0,
    ...             "consumer_lost": {"audit-drill": 0}, **lost}
    >>> report = {"windows": [w(0, broker_lost=5), w(1000, unacked_lost=2),
    ...                       w(2000, consumer_lost={"audit-drill": 1})], "exit": 3}
    >>> all(c.ok for c in judge(truth, report))
    True
    """
    windows = {w["window_start"]: w for w in report["windows"]}
    checks = []
    expected = {truth["A"]["window"]: ("broker_lost", truth["A"]["broker_lost"]),
                truth["B"]["window"]: ("unacked_lost", truth["B"]["unacked_lost"]),
                truth["C"]["window"]: ("consumer_lost", truth["C"]["consumer_lost"])}
    for start, w in sorted(windows.items()):
        figures = {"broker_lost": w["broker_lost"], "unacked_lost": w["unacked_lost"],
                   "consumer_lost": w["consumer_lost"].get(GROUP, 0)}
        stage, count = expected.get(start, (None, 0))
        want = {name: (count if name == stage else 0) for name in figures}
        checks.append(Check(f"window {start}: the audit names {stage or 'no'} loss"
                            f"{f' of {count}' if stage else ''}", figures == want,
                            f"audit {figures}, drill {want}"))
    missing = [s for s in expected if s not in windows]
    checks.append(Check("every stage's window is in the audit", not missing,
                        f"missing {missing}" if missing else "all three"))
    checks.append(Check("sluice audit exits with the loss code", report["exit"] == 3,
                        f"exit {report['exit']}"))
    return checks


def audit_report(zookeeper: str, truth: dict, topic: str = TOPIC,
                 timeout: float = 30.0) -> dict:
    """``sluice audit --topic audited --grace 0 --json`` once the last records are in (the
    producer's and the group's of window C visible; at ``timeout`` the report as it is)."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run([sys.executable, "-m", "cluster.cli", "audit", "--topic", topic,
                              "--grace", "0", "--json", "--zookeeper", zookeeper],
                             capture_output=True, text=True, timeout=120)
        if out.returncode not in (0, 3):
            raise RuntimeError(f"sluice audit failed ({out.returncode}): {out.stderr.strip()}")
        report = json.loads(out.stdout)
        report["exit"] = out.returncode
        windows = {w["window_start"]: w for w in report["windows"]}
        c = windows.get(truth["C"]["window"])
        if c is not None and c["acknowledged"] == STAGE_C_MESSAGES and c["consumed"].get(
                GROUP) == STAGE_C_MESSAGES - truth["C"]["consumer_lost"]:
            return report
        if time.monotonic() > deadline:
            return report
        time.sleep(0.5)


# --- the drill runner's hooks (cluster/drills/catalog.py) -------------------------------------

def inject(ctx: Context, record: dict) -> None:
    """The whole scenario, once, on the runner's cluster beside its steady traffic."""
    def kill(broker: int) -> None:
        pid = ctx.procs.kill("broker", str(broker))
        ctx.procs.wait_replaced("broker", str(broker), pid, ctx.settings.recovery_timeout_s)

    cluster = Cluster(ctx.zookeeper, kill,
                      lambda b, t, p: ctx.data_dir / f"broker-{b}" / t / str(p))
    topic = f"{TOPIC}-{record['n']}"
    truth = run_stages(cluster, topic)
    record["truth"] = truth
    record["audit"] = audit_report(ctx.zookeeper, truth, topic)
    ctx.notes.setdefault("audit", []).append(record)


def checks(ctx: Context, result: dict, report) -> list[Check]:
    """Per run of the stages (one per fault): the drill's truth against the audit's report."""
    records = ctx.notes.get("audit", [])
    found = [Check("the audit stages ran once per fault", len(records) == len(ctx.faults),
                   f"{len(records)} run(s) for {len(ctx.faults)} fault(s)")]
    for record in records:
        truth = record["truth"]
        found.append(Check(f"run {record['n']}: the stages lost something to find",
                           truth["A"]["broker_lost"] > 0,
                           f"segment {truth['A']['broker_lost']}, acks=0 "
                           f"{truth['B']['unacked_lost']} of {truth['B']['sent']}, skipped 1"))
        found += [Check(f"run {record['n']}: {c.name}", c.ok, c.detail)
                  for c in judge(truth, record["audit"])]
    return found
