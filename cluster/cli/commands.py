"""What each ``sluice`` command does; cluster/cli.py parses arguments and calls these.

Every command prints a table for a person or, with ``--json``, machine-readable output; a user
error is raised as one of USER_ERRORS and printed by the CLI as one line.
"""
from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from broker import message, protocol
from broker.protocol import SluiceError
from coordinator import topics, zk

from cluster.errors import ClusterError

USER_ERRORS = (SluiceError, topics.TopicError, zk.NoCluster, ClusterError, ValueError, TypeError,
               OSError, message.InvalidMessage)

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False)


def _print_json(value) -> None:
    sys.stdout.write(json.dumps(value) + "\n")


def _table(title: str, columns: list[str], rows: list[list]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[str(cell) for cell in row])
    out.print(table)


# --- cluster ------------------------------------------------------------------------------

def cluster_up(args) -> int:
    from cluster.supervision import ClusterConfig, up
    workers = {"topic": args.topic, "group": args.group, "handler": args.handler,
               "rebalance": args.rebalance, "static": args.static}
    config = ClusterConfig(args.data_dir, brokers=args.brokers, zookeeper=args.zookeeper,
                           zk_ensemble=args.zk_ensemble, workers=args.workers,
                           worker_settings=workers,
                           dashboard_port=None if args.no_dashboard else args.dashboard_port)
    result = up(config, detach=args.detach,
                on_ready=lambda status: _print_status(status, as_json=False))
    if args.detach:
        _print_status(result, as_json=False)
    return 0


def cluster_down(args) -> int:
    from cluster.supervision import down
    down(args.data_dir)
    err.print(f"cluster in {args.data_dir} stopped")
    return 0


def cluster_status(args) -> int:
    from cluster.supervision import status
    _print_status(status(args.data_dir), args.json)
    return 0


def _print_status(status: dict, as_json: bool) -> None:
    if as_json:
        _print_json(status)
        return
    out.print(f"zookeeper: {status['zookeeper']}")
    if status.get("dashboard"):
        out.print(f"dashboard: {status['dashboard']}  (Prometheus: {status['dashboard']}metrics;"
                  f" terminal: sluice dashboard)")
    _table("processes", ["role", "id", "pid", "endpoint", "alive"],
           [[p["role"], p["id"], p["pid"], p.get("endpoint") or "", p["alive"]]
            for p in status["processes"]])


# --- topics -------------------------------------------------------------------------------

def _zk(args):
    return zk.connect(args.zookeeper, args.data_dir)


def topics_create(args) -> int:
    client = _zk(args)
    try:
        placement = topics.create(client, args.topic, args.partitions)
    finally:
        client.stop()
    if args.json:
        _print_json({"topic": args.topic, "partitions": placement.partitions,
                     "placement": list(placement.brokers)})
    else:
        err.print(f"created topic {args.topic} with {placement.partitions} partition(s) on "
                  f"broker(s) {', '.join(map(str, sorted(set(placement.brokers))))}")
    return 0


def topics_list(args) -> int:
    client = _zk(args)
    try:
        rows = [(name, topics.get(client, name).partitions) for name in topics.names(client)]
    finally:
        client.stop()
    if args.json:
        _print_json([{"topic": name, "partitions": count} for name, count in rows])
    else:
        _table("topics", ["topic", "partitions"], rows)
    return 0


def topics_describe(args) -> int:
    from clients.brokers import BrokerPool
    pool = BrokerPool(args.zookeeper, args.data_dir, request_timeout_ms=2000)
    try:
        placement = pool.view.placement(args.topic)
        live = pool.view.brokers()
        rows = []
        for partition, broker_id in enumerate(placement.brokers):
            row = {"partition": partition, "broker": broker_id, "alive": broker_id in live,
                   "start_offset": None, "end_offset": None}
            if row["alive"]:
                try:
                    row["start_offset"] = _offset_of(pool, args.topic, partition, protocol.EARLIEST)
                    row["end_offset"] = _offset_of(pool, args.topic, partition, protocol.LATEST)
                except SluiceError as exc:
                    row["error"] = str(exc)
            rows.append(row)
    finally:
        pool.close()
    if args.json:
        _print_json({"topic": args.topic, "partitions": rows})
    else:
        _table(f"topic {args.topic}", ["partition", "broker", "alive", "start offset",
                                        "end offset"],
               [[r["partition"], r["broker"], r["alive"], _blank(r["start_offset"]),
                 _blank(r["end_offset"])] for r in rows])
    return 0


def _blank(value) -> str:
    return "" if value is None else str(value)


def _offset_of(pool, topic: str, partition: int, when: int) -> int:
    frames = pool.call(topic, partition,
                       lambda corr: protocol.encode_offsets(corr, topic, partition, when))
    return protocol.decode_response(frames[0].buffer, protocol.OFFSETS_REPLY)[1][0]


# --- produce / consume ----------------------------------------------------------------------

def produce(args) -> int:
    from clients.producer import Producer
    separator = args.key_separator.encode() if args.key_separator else None
    count = 0
    with Producer(args.zookeeper, batch_size=args.batch_size, linger_ms=args.linger_ms,
                  acks=args.acks, data_dir=args.data_dir) as producer:
        for line in sys.stdin.buffer:
            line = line.rstrip(b"\r\n")
            key = None
            if separator is not None:
                if separator not in line:
                    raise ValueError(f"line {count + 1} has no key separator {args.key_separator!r}")
                key, line = line.split(separator, 1)
            producer.send(args.topic, line, key=key, partition=args.partition)
            count += 1
        producer.flush()
        acked, dropped = producer.acked, producer.dropped
    summary = {"topic": args.topic, "messages": count, "acks": args.acks,
               "acked": acked if args.acks else None, "dropped": dropped}
    if args.json:
        _print_json(summary)
    else:
        detail = f", {acked} acknowledged" if args.acks else ""
        err.print(f"produced {count} message(s) to {args.topic}{detail}")
    return 0


def consume(args) -> int:
    if (args.partition is None) == (args.group is None):
        raise ValueError("give either --partition (with --offset) or --group")
    if args.group is not None:
        return _consume_group(args)
    from clients.simple_consumer import SimpleConsumer
    consumer = SimpleConsumer(args.topic, args.partition, args.offset, args.zookeeper,
                              max_bytes=args.max_bytes, timeout_ms=args.timeout_ms,
                              max_wait_ms=min(500, args.timeout_ms or 500),
                              data_dir=args.data_dir)
    try:
        _print_messages(consumer, args)
    finally:
        consumer.close()
    return 0


def _consume_group(args) -> int:
    """Print the group's messages and commit exactly what was printed: a message counts once
    its line is flushed to stdout (every second and at the end, also on Ctrl-C or a closed
    pipe), never the rest of a polled batch."""
    from clients.consumer import Consumer
    consumer = Consumer([args.topic], args.group, args.zookeeper, max_bytes=args.max_bytes,
                        data_dir=args.data_dir, auto_commit_ms=None)
    printed = _Printed(consumer)
    try:
        _print_messages(_until_idle(consumer, args.timeout_ms), args, printed.note)
    finally:
        try:
            printed.commit()
        finally:
            consumer.close()
    return 0


class _Printed:
    """The last message printed, committed once stdout has it."""

    def __init__(self, consumer, every_s: float = 1.0):
        self.consumer = consumer
        self.every_s = every_s
        self.last = None
        self.next_commit = time.monotonic() + every_s

    def note(self, m) -> None:
        self.last = m
        if time.monotonic() >= self.next_commit:
            self.commit()

    def commit(self) -> None:
        self.next_commit = time.monotonic() + self.every_s
        if self.last is not None:
            sys.stdout.flush()
            self.consumer.commit(self.last)


def _until_idle(consumer, timeout_ms):
    """A group consumer's messages until none came for timeout_ms (forever when None)."""
    last = time.monotonic()
    while True:
        batch = consumer.poll(200)
        for m in batch:
            yield m
        if batch:
            last = time.monotonic()
        elif timeout_ms is not None and (time.monotonic() - last) * 1000 >= timeout_ms:
            return


# --- groups -------------------------------------------------------------------------------

def groups_list(args) -> int:
    from coordinator import group as groups
    client = _zk(args)
    try:
        rows = [{"group": g, "members": groups.members(client, g),
                 "topics": groups.topics_of(client, g)} for g in groups.groups(client)]
    finally:
        client.stop()
    if args.json:
        _print_json(rows)
    else:
        _table("consumer groups", ["group", "members", "topics"],
               [[r["group"], len(r["members"]), ", ".join(r["topics"])] for r in rows])
    return 0


def groups_describe(args) -> int:
    from clients.brokers import BrokerPool
    from cluster.observe import lag
    from coordinator import group as groups
    if args.interval < 0:
        raise ValueError("--interval must not be negative")
    pool = BrokerPool(args.zookeeper, args.data_dir, request_timeout_ms=2000)
    try:
        if args.group not in groups.groups(pool.zk):
            raise ValueError(f"unknown group {args.group}")
        with err.status(f"sampling group {args.group} for {args.interval:g} s"):
            rows = lag.describe(pool, args.group, args.interval)
    finally:
        pool.close()
    if args.json:
        _print_json({"group": args.group, "interval_s": args.interval,
                     "partitions": lag.as_dicts(rows)})
        return 0
    _table(f"group {args.group} (lag per partition; messages estimated from the mean size of "
           f"the messages after the committed offset)",
           ["topic", "partition", "owner", "committed", "log end", "lag bytes", "lag msgs",
            "msgs/s", "state"],
           [[r.topic, r.partition, r.owner or "-", _blank(r.committed), _blank(r.log_end),
             _blank(r.lag_bytes), _blank(r.lag_messages), _blank(r.consume_msgs_per_s),
             _state(r)] for r in rows])
    return 0


def _state(row) -> str:
    if row.error:
        return f"error: {row.error}"
    if row.data_loss:
        return f"DATA LOSS: {loss_summary(row.data_loss)}"
    if row.stuck:
        return "STUCK"
    return "ok" if row.owner else "unowned"


def loss_summary(loss: dict) -> str:
    """A data-loss note in one line: events and bytes per kind, e.g. ``skipped 1 (15 B)``."""
    parts = [f"{kind} {total['events']} ({total['bytes']} B)"
             for kind, total in loss.get("totals", {}).items()]
    if "unread_deleted" in loss:
        parts.append(f"unread deleted by retention ({loss['unread_deleted']['bytes']} B)")
    return ", ".join(parts) or f"{loss.get('lost_bytes', 0)} B"


def _print_messages(messages, args, on_printed=None) -> None:
    """One line per message until --max-messages; ``on_printed(m)`` after each line."""
    printed = 0
    write = sys.stdout.write
    for m in messages:
        if args.json:
            write(json.dumps(message_json(m)) + "\n")
        else:
            write(m.value.decode("utf-8", "replace") + "\n")
        printed += 1
        if on_printed is not None:
            on_printed(m)
        if args.max_messages is not None and printed >= args.max_messages:
            break
    sys.stdout.flush()


def message_json(m) -> dict:
    """One consumed message as INTERFACE.md shows it: text where it decodes, else base64."""
    value = {"topic": m.topic, "partition": m.partition, "offset": m.offset,
             "next_offset": m.next_offset}
    for name, data in (("key", m.key), ("value", m.value)):
        if data is None:
            value[name] = None
            continue
        try:
            value[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            value[f"{name}_b64"] = base64.b64encode(data).decode()
    return value


# --- dump-log -----------------------------------------------------------------------------

def dump_log(args) -> int:
    path = Path(args.segment)
    try:
        base = int(path.stem)
    except ValueError:
        raise ValueError(f"{path.name} is not a segment file (expected <20-digit offset>.log)") from None
    data = path.read_bytes()
    entries = list(_walk_segment(data, base))
    if args.json:
        for entry in entries:
            _print_json(entry)
        return 0
    rows = []
    for e in entries:
        if "error" in e:
            rows.append([e["offset"], e.get("size", ""), "", "", f"[{e['error']}]"])
            continue
        value = e.get("value") if "value" in e else f"<{len(base64.b64decode(e['value_b64']))} bytes>"
        rows.append([e["offset"], e["size"], "ok" if e["crc_ok"] else "BAD",
                     e.get("key") or "", _preview(value, args.preview)])
    _table(f"{path} ({len(data)} bytes, {sum('error' not in e for e in entries)} messages)",
           ["offset", "size", "crc", "key", "value"], rows)
    return 0


def _preview(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width] + "..."


def _walk_segment(data: bytes, base: int):
    """Every entry of a segment, bad ones included, so a person can see a torn tail."""
    pos = 0
    while pos < len(data):
        if len(data) - pos < message.HEADER_SIZE:
            yield {"offset": base + pos, "error": f"torn tail: {len(data) - pos} byte(s)"}
            return
        size, magic, crc = message.HEADER.unpack_from(data, pos)
        end = pos + message.SIZE_FIELD + size
        if size < message.MIN_SIZE or end > len(data):
            yield {"offset": base + pos, "size": size,
                   "error": f"torn tail: entry runs past the end ({len(data) - pos} byte(s) left)"}
            return
        entry = {"offset": base + pos, "next_offset": base + end, "size": size, "magic": magic,
                 "crc_ok": message.check_crc(data, pos)}
        m = message.Message("", 0, base + pos, base + end, *message.key_value(data, pos))
        entry.update({k: v for k, v in message_json(m).items() if k in ("key", "value",
                                                                        "key_b64", "value_b64")})
        yield entry
        pos = end


# --- scrub --------------------------------------------------------------------------------

SCRUB_FOUND_CORRUPTION = 3


def scrub(args) -> int:
    """CRC-check every segment under the local cluster's broker dirs (``--topic``: one topic's).

    Reads files only, through descriptors of its own, so it is safe beside a running broker. A
    torn tail in a partition's last segment is reported too (recovery cuts it at the next
    start); one that grew while it was read is looked at again, as a write in progress.
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    data_dir = Path(args.data_dir)
    targets = _scrub_targets(data_dir, args.topic)
    total = sum(path.stat().st_size for *_, segments in targets for _, path in segments)
    findings, checked = [], {"segments": 0, "bytes": 0, "messages": 0}
    columns = (TextColumn("scrubbing {task.description}"), BarColumn(), DownloadColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(str(data_dir), total=total)
        for broker_id, topic, partition, segments in targets:
            for index, (start, path) in enumerate(segments):
                done = progress.tasks[0].completed
                rows = _scrub_segment(path, start, index == len(segments) - 1, checked,
                                      lambda pos: progress.update(task, completed=done + pos))
                findings += [{"broker": broker_id, "topic": topic, "partition": partition,
                              "segment": path.name, **row} for row in rows]
    summary = (f"{checked['segments']} segment(s) of {len(targets)} partition(s), "
               f"{checked['messages']} message(s), {checked['bytes']} bytes")
    if args.json:
        _print_json({"data_dir": str(data_dir), **checked, "clean": not findings,
                     "findings": findings})
    elif findings:
        _table(f"scrub of {data_dir}: {len(findings)} bad range(s) in {summary}",
               ["broker", "topic", "partition", "segment", "offset", "size", "reason"],
               [[f["broker"], f["topic"], f["partition"], f["segment"], f["offset"], f["size"],
                 f["reason"]] for f in findings])
    else:
        err.print(f"clean: {summary} checked")
    return SCRUB_FOUND_CORRUPTION if findings else 0


def _scrub_targets(data_dir: Path, topic: str | None) -> list:
    """``(broker id, topic, partition, [(start, path), ...])`` for every partition dir of
    ``<data_dir>/broker-<id>/<topic>/<partition>/``, segments in offset order."""
    from broker.segment import SUFFIX, parse_segment_name

    broker_dirs = []
    for path in sorted(data_dir.glob("broker-*")):
        suffix = path.name[len("broker-"):]
        if path.is_dir() and suffix.isdigit():
            broker_dirs.append((int(suffix), path))
    if not broker_dirs:
        raise ValueError(f"no broker data in {data_dir} (expected "
                         f"{data_dir}/broker-<id>/<topic>/<partition>/)")
    targets = []
    for broker_id, broker_dir in sorted(broker_dirs):
        for topic_dir in sorted(p for p in broker_dir.iterdir() if p.is_dir()):
            if topic is not None and topic_dir.name != topic:
                continue
            for partition_dir in sorted((p for p in topic_dir.iterdir()
                                         if p.is_dir() and p.name.isdigit()),
                                        key=lambda p: int(p.name)):
                segments = []
                for path in partition_dir.glob("*" + SUFFIX):
                    try:
                        segments.append((parse_segment_name(path.name), path))
                    except ValueError:
                        continue
                if segments:
                    targets.append((broker_id, topic_dir.name, int(partition_dir.name),
                                    sorted(segments)))
    if topic is not None and not targets:
        raise ValueError(f"unknown topic {topic}: no partition of it under "
                         f"{data_dir}/broker-*/")
    return targets


def _scrub_segment(path: Path, start: int, last: bool, checked: dict, on_progress) -> list:
    """The bad ranges of one segment file as rows (offset, size, reason)."""
    import os

    from broker import scrub as scrubbing
    from broker.segment import FileReader

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        reader = FileReader(fd)
        report = scrubbing.scrub(reader, size, last=last, on_progress=on_progress)
        if report.torn_at is not None and os.fstat(fd).st_size > size:
            size = os.fstat(fd).st_size
            again = scrubbing.scrub(reader, size, last=True, start=report.torn_at)
            report.bad += again.bad
            report.messages += again.messages
            report.torn_at = again.torn_at
    finally:
        os.close(fd)
    checked["segments"] += 1
    checked["bytes"] += size
    checked["messages"] += report.messages
    rows = [{"offset": start + bad.position, "size": bad.size, "reason": bad.reason}
            for bad in report.bad]
    if report.torn_at is not None:
        rows.append({"offset": start + report.torn_at, "size": size - report.torn_at,
                     "reason": "torn tail"})
    return rows
