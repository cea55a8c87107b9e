"""``sluice dump-log`` and ``sluice scrub``: segment files read straight from disk.

``dump-log`` decodes one segment, bad entries included, so a person can see a torn tail;
``scrub`` CRC-checks every segment under the local cluster's broker dirs. Both read files only,
through descriptors of their own, so they are safe beside a running broker.
"""
from __future__ import annotations

import base64
import errno
import os
from pathlib import Path

from broker import message
from cluster.cli.message_commands import message_json
from cluster.cli.output import err, print_json, print_table
from coordinator.errors import InvalidArgument, UnknownTopicOrPartition


def dump_log(args) -> int:
    path = Path(args.segment)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    try:
        base = int(path.stem)
    except ValueError:
        raise InvalidArgument(f"{path.name} is not a segment file (expected <20-digit "
                              "offset>.log)") from None
    data = path.read_bytes()
    entries = list(_walk_segment(data, base))
    if args.json:
        for entry in entries:
            print_json(entry)
        return 0
    rows = []
    for e in entries:
        if "error" in e:
            rows.append([e["offset"], e.get("size", ""), "", "", f"[{e['error']}]"])
            continue
        if "gap_to" in e:
            rows.append([e["offset"], e["size"], "ok" if e["crc_ok"] else "BAD", "",
                         f"[gap: compacted away up to offset {e['gap_to']}]"])
            continue
        value = e.get("value") if "value" in e else f"<{len(base64.b64decode(e['value_b64']))} bytes>"
        rows.append([e["offset"], e["size"], "ok" if e["crc_ok"] else "BAD",
                     e.get("key") or "", _preview(value, args.preview)])
    messages = sum("error" not in e and "gap_to" not in e for e in entries)
    print_table(f"{path} ({len(data)} bytes, {messages} messages)",
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
        if magic == message.MAGIC_GAP and size == message.GAP_SIZE:
            resume = message.gap_resume(data, pos)      # the log cleaner's gap marker
            yield {"offset": base + pos, "next_offset": resume, "size": size, "magic": magic,
                   "crc_ok": message.check_crc(data, pos), "gap_to": resume}
            base, pos = resume - end, end
            continue
        entry = {"offset": base + pos, "next_offset": base + end, "size": size, "magic": magic,
                 "crc_ok": message.check_crc(data, pos)}
        m = message.Message("", 0, base + pos, base + end, *message.key_value(data, pos))
        entry.update({k: v for k, v in message_json(m).items() if k in ("key", "value",
                                                                        "key_b64", "value_b64")})
        yield entry
        pos = end


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
        print_json({"data_dir": str(data_dir), **checked, "clean": not findings,
                     "findings": findings})
    elif findings:
        print_table(f"scrub of {data_dir}: {len(findings)} bad range(s) in {summary}",
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
        raise InvalidArgument(f"no broker data in {data_dir} (expected "
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
        raise UnknownTopicOrPartition(f"unknown topic {topic}: no partition of it under "
                         f"{data_dir}/broker-*/")
    return targets


def _scrub_segment(path: Path, start: int, last: bool, checked: dict, on_progress) -> list:
    """The bad ranges of one segment file as rows (offset, size, reason)."""
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
