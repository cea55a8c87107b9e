"""``sluice dump-log`` and ``sluice scrub``: segment files read straight from disk.

``dump-log`` decodes one segment, bad entries included, so a person can see a torn tail;
``scrub`` CRC-checks every segment under the local cluster's broker dirs. Both read files only,
through descriptors of their own, so they are safe beside a running broker.

``dump-log`` reads the segment a chunk (4 MiB) at a time and streams what it finds: a run of
good messages is found in one tight walk over the chunk (sizes, magic, C-speed CRCs over
slices of it, no per-message objects), and a bad range is judged by broker/scrub.py's rules,
so ``dump-log`` and ``scrub`` agree on where damage starts and where data resumes. A 1 GiB
segment is never held in memory, and ``--summary`` formats nothing per message.
``--offset START`` must be a message boundary: segments have no index (as in the paper), so the
boundary is found by walking the size fields from the segment's start (CRCs are not checked
on the way; past damage the walk is scrub's), and an offset inside a message is refused naming
the boundaries around it.
"""
from __future__ import annotations

import base64
import errno
import json
import os
import struct
import sys
import zlib
from pathlib import Path

from broker import message
from broker import scrub as scrubbing
from broker.segment import FileReader
from cluster.cli.output import err, print_json, print_table
from coordinator.errors import InvalidArgument, UnknownTopicOrPartition

CHUNK = 4 << 20
_unpack = message.HEADER.unpack_from
_unpack_size = struct.Struct(">I").unpack_from
_crc32 = zlib.crc32


def dump_log(args) -> int:
    path = Path(args.segment)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    try:
        base = int(path.stem)
    except ValueError:
        raise InvalidArgument(f"{path.name} is not a segment file (expected <20-digit "
                              "offset>.log)") from None
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        reader = FileReader(fd)
        size = os.fstat(fd).st_size
        start = seek(reader, size, base, args.offset)
        pieces = walk(reader, size, start, args.max_messages)
        if args.summary:
            summary = summarize(pieces, base, start)
            summary = {"segment": str(path), "segment_bytes": size, **summary}
            if args.json:
                print_json(summary)
            else:
                sys.stdout.write(summary_line(summary) + "\n")
            return 0
        if args.json:
            _print_json(pieces, base)
        else:
            _print_rows(pieces, base, size, args.preview, f"{path} ({size} bytes)")
    finally:
        os.close(fd)
    return 0


def seek(reader, size: int, base: int, offset: int | None) -> int:
    """The position in the segment of ``offset`` (a partition offset), refused unless it is a
    message boundary (or the segment's end, which shows nothing).

    The size fields are followed from the segment's start (fast: no CRCs); an offset they
    land on is taken. A refusal, or a size field that cannot be right on the way, is left to
    scrub's CRC walk (``scrub.locate``), so what is refused is what a fetch would refuse."""
    if offset is None:
        return 0
    pos = offset - base
    if not 0 <= pos <= size:
        raise InvalidArgument(f"--offset {offset} is outside this segment, which holds offsets "
                              f"{base} to {base + size}")
    at = 0
    while at < pos:
        walked, landed = _walk_sizes(reader.read(at, min(CHUNK, size - at)), pos - at,
                                     size - at)
        if landed:
            return pos
        if not walked:
            break
        at += walked
    if at == pos:
        return pos
    where = scrubbing.locate(reader, size, pos)
    if where.kind in ("message", "corrupt"):
        return pos
    raise scrubbing.read_error(where, offset, base, base + size)


def _walk_sizes(buf, target: int, left: int) -> tuple[int, bool]:
    """Follow the size fields of ``buf`` (a chunk starting at a boundary, ``left`` bytes
    before the segment's end): ``(bytes walked, True)`` when a message starts at ``target``;
    ``(bytes walked, False)`` when the walk stops first (the chunk's end, a size that cannot
    be right, or ``target`` inside a message).

    >>> _walk_sizes(message.encode(b"ab") * 3, 22, 33), _walk_sizes(message.encode(b"ab"), 5, 11)
    ((22, True), (0, False))
    """
    end = len(buf)
    pos = 0
    unpack = _unpack_size
    while end - pos >= message.HEADER_SIZE:
        size = unpack(buf, pos)[0]
        nxt = pos + message.SIZE_FIELD + size
        if pos == target:
            return pos, True
        if size < message.MIN_SIZE or nxt > left or buf[pos + 4] > message.MAX_MAGIC \
                or nxt > target or nxt > end:
            return pos, False
        pos = nxt
    return pos, pos == target


def good_run(buf) -> list[int]:
    """``[0, end of message 1, end of message 2, ...]``: the whole valid messages at the start
    of ``buf`` (message.validate_set's checks, in one walk that keeps the positions), so
    message i is ``buf[s[i]:s[i+1]]``.

    >>> good_run(message.encode(b"ab") + message.encode(b"c") + b"torn")
    [0, 11, 21]
    """
    starts = [0]
    append = starts.append
    end = len(buf)
    last = end - message.HEADER_SIZE
    pos = 0
    unpack, unpack_size, crc32 = _unpack, _unpack_size, _crc32
    while pos <= last:
        size, magic, crc = unpack(buf, pos)
        nxt = pos + 4 + size
        if not (5 <= size and nxt <= end and magic <= 2) \
                or crc32(buf[pos + 9:nxt]) != crc \
                or magic == 1 and (size < 10 or 14 + unpack_size(buf, pos + 10)[0] > nxt - pos) \
                or magic == 2 and _bad_record(buf, pos, nxt):
            break
        pos = nxt
        append(pos)
    return starts


def _bad_record(buf, pos: int, nxt: int) -> bool:
    """Whether the magic 2 entry at ``pos`` (CRC good) has a key or headers that do not fit."""
    if nxt - pos < message.SIZE_FIELD + message.RECORD_MIN_SIZE:
        return True
    try:
        message.record_fields(memoryview(buf)[pos + message.HEADER_SIZE:nxt])
    except (ValueError, struct.error, UnicodeDecodeError):
        return True
    return False


def walk(reader, size: int, start: int, limit: int | None = None):
    """What the segment holds from ``start``, in order: ``("run", pos, buf, starts)`` for good
    messages (``good_run``'s ``starts`` into ``buf``, which begins at segment position
    ``pos``), ``("big", pos, length, head)`` for a good message longer than a chunk (its first
    bytes), ``("bad", pos, end, reason, buf)`` for a bad range (its bytes when it fits in a
    chunk). At most ``limit`` messages."""
    pos = start
    left = limit
    while pos < size and (left is None or left > 0):
        buf = reader.read(pos, min(CHUNK, size - pos))
        starts = good_run(buf)
        if len(starts) > 1:
            if left is not None:
                starts = starts[:left + 1]
                left -= len(starts) - 1
            yield "run", pos, buf, starts
            pos += starts[-1]
            continue
        length, reason = scrubbing.entry_at(reader, size, pos)
        if length:
            yield "big", pos, length, buf[:1 << 16]
            pos += length
            left = None if left is None else left - 1
            continue
        resume, _ = scrubbing.resume_after(reader, size, pos)
        yield "bad", pos, resume, reason, buf[:resume - pos] if resume - pos <= len(buf) else None
        pos = resume


def summarize(pieces, base: int, start: int) -> dict:
    """Count, bytes, first and last offset, CRC failures and other bad ranges of a walk."""
    count = good_bytes = crc_failures = 0
    first = last = None
    bad = []
    end = start
    for piece in pieces:
        if piece[0] == "run":
            _, pos, _, starts = piece
            count += len(starts) - 1
            good_bytes += starts[-1]
            if first is None:
                first = base + pos
            last = base + pos + starts[-2]
            end = pos + starts[-1]
        elif piece[0] == "big":
            _, pos, length, _ = piece
            count += 1
            good_bytes += length
            first = base + pos if first is None else first
            last = base + pos
            end = pos + length
        else:
            _, pos, resume, reason, _ = piece
            if reason == "crc":
                crc_failures += 1
            bad.append({"offset": base + pos, "size": resume - pos, "reason": reason})
            end = resume
    return {"messages": count, "bytes": good_bytes, "first_offset": first, "last_offset": last,
            "next_offset": base + end, "crc_failures": crc_failures, "bad_ranges": bad}


def summary_line(s: dict) -> str:
    text = (f"{s['segment']}: {s['messages']} message(s), {s['bytes']} bytes of messages in "
            f"{s['segment_bytes']}")
    if s["messages"]:
        text += f", offsets {s['first_offset']} to {s['last_offset']}"
    text += f", {s['crc_failures']} CRC failure(s)"
    others = [b for b in s["bad_ranges"] if b["reason"] != "crc"]
    if others:
        text += f", {len(others)} other bad range(s) (" + ", ".join(
            f"{b['reason']} at {b['offset']}, {b['size']} bytes" for b in others[:3]) + \
            (", ..." if len(others) > 3 else "") + ")"
    return text + f"; next offset {s['next_offset']}"


def _fields(buf, pos: int):
    """(magic, key, value) of the whole entry at ``pos``; key and value None when its key or
    headers do not fit (a damaged entry)."""
    magic = buf[pos + 4]
    try:
        key, value = message.key_value(buf, pos)
    except (ValueError, IndexError, UnicodeDecodeError, struct.error):
        return magic, None, None
    return magic, key, value


def _big_key(head, length: int) -> tuple[bytes | None, int]:
    """(key, value bytes; a record's headers count as value) of a message longer than a chunk,
    from its first bytes ``head`` (the key when it lies in them, else None)."""
    magic = head[4]
    pos = message.HEADER_SIZE
    if magic == message.MAGIC_KEYED:
        keylen = _unpack_size(head, pos + 1)[0]
        start = pos + message.KEY_HEADER.size
    elif magic == message.MAGIC_RECORD:
        keylen = _unpack_size(head, pos + 9)[0]
        keylen = 0 if keylen == message.NULL_LENGTH else keylen
        start = pos + message.RECORD_HEADER.size
    else:
        return None, length - pos
    key = bytes(head[start:start + keylen]) if start + keylen <= len(head) else None
    return key, length - start - keylen


def _as_text(name: str, data, out: dict) -> None:
    if data is None:
        out[name] = None
        return
    try:
        out[name] = bytes(data).decode()
    except UnicodeDecodeError:
        out[name + "_b64"] = base64.b64encode(data).decode()


def _entry_json(buf, pos: int, end: int, offset: int, crc_ok: bool) -> dict:
    magic, key, value = _fields(buf, pos)
    entry = {"offset": offset, "next_offset": offset + end - pos, "size": end - pos - 4,
             "magic": magic, "crc_ok": crc_ok}
    _as_text("key", key, entry)
    _as_text("value", value, entry)
    return entry


def _bad_json(pos: int, resume: int, reason: str, base: int) -> dict:
    return {"offset": base + pos, "size": resume - pos,
            "error": f"{reason}: {resume - pos} byte(s) up to offset {base + resume} cannot be "
            "read"}


def _crc_bad_entry(chunk, pos: int, resume: int):
    """The bytes of a bad range that is one whole message with a wrong CRC (its size field
    intact), so it can be shown; None otherwise."""
    if chunk is None or len(chunk) < message.HEADER_SIZE:
        return None
    if message.SIZE_FIELD + _unpack_size(chunk, 0)[0] != resume - pos:
        return None
    return chunk


def _print_json(pieces, base: int) -> None:
    write = sys.stdout.write
    dumps = json.dumps
    for piece in pieces:
        if piece[0] == "run":
            _, pos, buf, starts = piece
            write("".join(dumps(_entry_json(buf, a, b, base + pos + a, True)) + "\n"
                          for a, b in zip(starts, starts[1:])))
        elif piece[0] == "big":
            _, pos, length, head = piece
            key, value_bytes = _big_key(head, length)
            entry = {"offset": base + pos, "next_offset": base + pos + length,
                     "size": length - 4, "magic": head[4], "crc_ok": True}
            _as_text("key", key, entry)
            write(dumps({**entry, "value_bytes": value_bytes}) + "\n")
        else:
            _, pos, resume, reason, chunk = piece
            whole = _crc_bad_entry(chunk, pos, resume) if reason == "crc" else None
            if whole is not None:
                write(dumps(_entry_json(whole, 0, resume - pos, base + pos, False)) + "\n")
            else:
                write(dumps(_bad_json(pos, resume, reason, base)) + "\n")


def _cell(data, width: int) -> str:
    """Text of a key or value for a row, cut at ``width`` characters."""
    if data is None:
        return "(null)"
    head = bytes(data[:4 * width + 4])
    try:
        text = head.decode()
    except UnicodeDecodeError as exc:
        if len(head) < len(data) and exc.start >= len(head) - 3:
            text = head[:exc.start].decode(errors="replace")
        else:
            return f"<{len(data)} bytes>"
    return text if len(text) <= width and len(head) == len(data) else text[:width] + "..."


KEY_WIDTH = 16


def _print_rows(pieces, base: int, size: int, preview: int, title: str) -> None:
    """One line per entry, streamed a chunk at a time; a total line at the end."""
    write = sys.stdout.write
    w = len(str(base + size))
    row = f"{{:>{w}}}  {{:>8}}  {{:<3}}  {{:<{KEY_WIDTH}}}  {{}}".format
    write(title + "\n" + row("offset", "size", "crc", "key", "value") + "\n")
    count = bad = 0
    for piece in pieces:
        if piece[0] == "run":
            _, pos, buf, starts = piece
            lines = []
            for a, b in zip(starts, starts[1:]):
                _, key, value = _fields(buf, a)
                lines.append(row(base + pos + a, b - a - 4, "ok",
                                 "" if key is None else _cell(key, KEY_WIDTH),
                                 _cell(value, preview)))
            count += len(lines)
            write("\n".join(lines) + "\n")
        elif piece[0] == "big":
            _, pos, length, head = piece
            count += 1
            key, value_bytes = _big_key(head, length)
            write(row(base + pos, length - 4, "ok", "" if key is None else _cell(key, KEY_WIDTH),
                      f"<{value_bytes} bytes>") + "\n")
        else:
            _, pos, resume, reason, chunk = piece
            whole = _crc_bad_entry(chunk, pos, resume) if reason == "crc" else None
            if whole is not None:
                _, key, value = _fields(whole, 0)
                write(row(base + pos, resume - pos - 4, "BAD",
                          "" if key is None else _cell(key, KEY_WIDTH),
                          _cell(value, preview)) + "\n")
            else:
                write(row(base + pos, resume - pos, "", "",
                          f"[{reason}: {resume - pos} byte(s) cannot be read]") + "\n")
            bad += 1
    write(f"{count} message(s) and {bad} bad range(s) shown\n")


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
