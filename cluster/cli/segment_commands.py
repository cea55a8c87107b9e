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

A compacted segment (README "How compaction works") holds gap markers: each is a row of its
own, and the offsets after it jump to its resume offset (the walk keeps a running ``offset -
position``). Its gap index (the ``<start>.gaps`` sidecar) maps an offset to a file position as
the broker does: ``--offset`` walks only from the start of the run holding it, and an offset
the cleaner removed starts at the marker of its gap, as a fetch there does. A pending or
damaged sidecar is rebuilt from a walk of the file's framing, as the broker's open does.
"""
from __future__ import annotations

import base64
import bisect
import errno
import json
import os
import struct
import sys
import zlib
from pathlib import Path

from broker import gap_index, message
from broker import scrub as scrubbing
from broker.segment import FileReader
from cluster.cli.output import err, print_json, print_table
from coordinator.errors import InvalidArgument, UnknownTopicOrPartition

CHUNK = 4 << 20
_unpack = message.HEADER.unpack_from
_unpack_size = struct.Struct(">I").unpack_from
_crc32 = zlib.crc32
_MAGIC_GAP, _GAP_SIZE = message.MAGIC_GAP, message.GAP_SIZE


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
        index, source = load_gap_index(reader, path, base, size)
        if source not in ("sidecar", "none"):
            err.print(f"note: the gap index {gap_index.path_of(path.parent, base).name} is not "
                      f"usable ({source}); offsets follow the gap markers in the file",
                      markup=False, soft_wrap=True)
        start, delta, index = seek(reader, size, index, args.offset)
        head = reader.read(start, message.GAP_ENTRY) if args.offset is not None else b""
        if _is_marker(head):
            err.print(f"note: offset {args.offset} was compacted away (the gap {start + delta} "
                      f"to {message.gap_resume(head)}): starting at the gap's marker, as a "
                      "fetch there does", markup=False, soft_wrap=True)
        pieces = walk(reader, size, start, delta, args.max_messages,
                      index if source == "sidecar" else None)
        if args.summary:
            summary = summarize(pieces, start + delta)
            summary = {"segment": str(path), "segment_bytes": size, **summary}
            if args.json:
                print_json(summary)
            else:
                sys.stdout.write(summary_line(summary) + "\n")
            return 0
        if args.json:
            _print_json(pieces)
        else:
            _print_rows(pieces, max(base + size, index.end(size)), args.preview,
                        f"{path} ({size} bytes)")
    finally:
        os.close(fd)
    return 0


def load_gap_index(reader, path: Path, base: int, size: int) -> tuple[gap_index.GapIndex, str]:
    """The segment's gap index and where it came from: ``sidecar`` (complete: it also
    re-anchors offsets after a bad range, where the walk may have lost a marker), ``none`` (no
    sidecar, so no markers: a trivial index; ``seek`` walks the file if it meets one), or, for
    a pending or damaged sidecar, the reason: the index is rebuilt from the file's framing,
    as the broker's open does."""
    try:
        index = gap_index.read(path.parent, base, size)
    except ValueError as exc:
        return gap_index.runs_of(reader.read, size, base), str(exc)
    if index is None:
        return gap_index.GapIndex(base), "none"
    return index, "sidecar"


def seek(reader, size: int, index: gap_index.GapIndex, offset: int | None, walked=False):
    """``(position, offset - position there, index)`` of where the dump starts: the start of
    the message at ``offset`` (a partition offset), refused unless it is a message boundary
    (or the segment's end, which shows nothing); an offset inside a gap the cleaner left
    starts at the gap's marker, as a fetch there does.

    The gap index gives the run of kept messages that holds ``offset``; the size fields are
    followed from the run's start (fast: no CRCs), and an offset they land on is taken. A
    marker met on the way, or an offset past the file's size, in a segment without a sidecar
    (which should have no markers): its index is built from a walk of the file's framing
    (returned, for the rows' offsets) and the seek done again. A refusal, or a size field
    that cannot be right on the way, is left to scrub's CRC walk (``scrub.locate``), so what
    is refused is what a fetch would refuse."""
    base = index.offsets[0]
    if offset is None:
        return 0, base, index
    end = index.end(size)
    if offset > end and not walked and len(index.offsets) == 1:
        return seek(reader, size, gap_index.runs_of(reader.read, size, base), offset, True)
    if not base <= offset <= end:
        raise InvalidArgument(f"--offset {offset} is outside this segment, which holds offsets "
                              f"{base} to {end}")
    pos = index.position(offset, size)
    run = bisect.bisect_right(index.positions, pos) - 1
    delta = index.offsets[run] - index.positions[run]
    if pos + delta != offset or pos == size:
        return pos, delta, index
        return pos, delta, index
    at = index.positions[run]
    while at < pos:
        step, landed = _walk_sizes(reader.read(at, min(CHUNK, size - at)), pos - at,
                                   size - at)
        if landed:
            return pos, delta, index
        if not step:
            break
        at += step
    if at == pos:
        return pos, delta, index
    if not walked and len(index.offsets) == 1 and _is_marker(reader.read(at, message.GAP_ENTRY)):
        return seek(reader, size, gap_index.runs_of(reader.read, size, base), offset, True)
    where = scrubbing.locate(reader, size, pos)
    if where.kind in ("message", "corrupt"):
        return pos, delta, index
    where = where._replace(before=index.offset_at(where.before) - base,
                           after=index.offset_at(where.after) - base)
    raise scrubbing.read_error(where, offset, base, end)


def _is_marker(head) -> bool:
    """Whether ``head`` starts with a gap marker's framing (size and magic; CRC unchecked)."""
    return len(head) >= message.HEADER_SIZE and _unpack(head)[:2] == (message.GAP_SIZE,
                                                                      message.MAGIC_GAP)


def _walk_sizes(buf, target: int, left: int) -> tuple[int, bool]:
    """Follow the size fields of ``buf`` (a chunk starting at a boundary, ``left`` bytes
    before the segment's end): ``(bytes walked, True)`` when a message starts at ``target``;
    ``(bytes walked, False)`` when the walk stops first (the chunk's end, a size or magic
    that cannot be right, or ``target`` inside a message). A gap marker stops it too: the
    walk starts at a run of kept messages (``seek``), and a marker ends that run.

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


def good_run(buf, gaps: list | None = None) -> list[int]:
    """``[0, end of entry 1, end of entry 2, ...]``: the whole valid entries at the start of
    ``buf`` (message.validate_set's checks, in one walk that keeps the positions), so entry i
    is ``buf[s[i]:s[i+1]]``.

    ``gaps``: gap markers (magic 3, their size, a good CRC) are valid entries too, as in
    stored data (scrub.validate_set), and the index i of each is appended to it; without it
    a marker is damage, as in a producer's set. Any other magic above MAX_MAGIC is damage.

    >>> good_run(message.encode(b"ab") + message.encode(b"c") + b"torn")
    [0, 11, 21]
    >>> gaps = []
    >>> good_run(message.encode(b"ab") + message.encode_gap(90) + message.encode(b"c"), gaps), gaps
    ([0, 11, 28, 38], [1])
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
            if magic != _MAGIC_GAP or size != _GAP_SIZE or nxt > end or gaps is None \
                    or crc32(buf[pos + 9:nxt]) != crc:
                break
            gaps.append(len(starts) - 1)
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


def walk(reader, size: int, start: int, delta: int, limit: int | None = None,
         index: gap_index.GapIndex | None = None):
    """What the segment holds from position ``start`` (a boundary; ``delta`` is offset minus
    position there), in order:

    - ``("run", at, buf, starts)``: good messages, ``buf[starts[i]:starts[i+1]]`` at offset
      ``at + starts[i]`` (``good_run``'s starts, cut at the gap markers);
    - ``("gap", offset, resume)``: a gap marker; the next entry is at offset ``resume``;
    - ``("big", offset, length, head)``: a good message longer than a chunk (its first bytes);
    - ``("bad", offset, size, next_offset, reason, buf)``: a bad range of ``size`` bytes (its
      bytes when it fits in a chunk).

    At most ``limit`` messages. ``index`` (a complete sidecar's) re-anchors the offsets after a
    bad range, which may have hidden a marker; without it they go on from the last marker."""
    pos = start
    left = limit
    while pos < size and (left is None or left > 0):
        buf = reader.read(pos, min(CHUNK, size - pos))
        gaps = []
        starts = good_run(buf, gaps)
        if len(starts) > 1:
            at = pos + delta
            first = 0
            final = len(starts) - 1
            for mark in gaps + [final]:
                if mark > first:
                    run = starts if mark - first == final else starts[first:mark + 1]
                    if left is not None:
                        if mark - first >= left:
                            yield "run", at, buf, run[:left + 1]
                            return
                        left -= mark - first
                    yield "run", at, buf, run
                if mark < final:
                    resume = message.gap_resume(buf, starts[mark])
                    yield "gap", at + starts[mark], resume
                    at = resume - starts[mark + 1]
                    first = mark + 1
            delta = at - pos
            pos += starts[-1]
            continue
        length, reason = scrubbing.entry_at(reader, size, pos)
        if length:
            yield "big", pos + delta, length, buf[:1 << 16]
            pos += length
            left = None if left is None else left - 1
            continue
        resume, _ = scrubbing.resume_after(reader, size, pos)
        offset = pos + delta
        if index is not None:
            delta = index.offset_at(resume) - resume
        yield ("bad", offset, resume - pos, resume + delta, reason,
               buf[:resume - pos] if resume - pos <= len(buf) else None)
        pos = resume


def summarize(pieces, start: int) -> dict:
    """Count, bytes, first and last offset, gap markers (and the bytes they stand for), CRC
    failures and other bad ranges of a walk from offset ``start``."""
    count = good_bytes = crc_failures = gaps = compacted = 0
    first = last = None
    bad = []
    end = start
    for piece in pieces:
        kind = piece[0]
        if kind == "run":
            _, at, _, starts = piece
            count += len(starts) - 1
            good_bytes += starts[-1] - starts[0]
            if first is None:
                first = at + starts[0]
            last = at + starts[-2]
            end = at + starts[-1]
        elif kind == "gap":
            _, offset, end = piece
            gaps += 1
            compacted += end - offset
        elif kind == "big":
            _, offset, length, _ = piece
            count += 1
            good_bytes += length
            first = offset if first is None else first
            last = offset
            end = offset + length
        else:
            _, offset, length, end, reason, _ = piece
            if reason == "crc":
                crc_failures += 1
            bad.append({"offset": offset, "size": length, "reason": reason})
    return {"messages": count, "bytes": good_bytes, "first_offset": first, "last_offset": last,
            "next_offset": end, "gaps": gaps, "compacted_bytes": compacted,
            "crc_failures": crc_failures, "bad_ranges": bad}


def summary_line(s: dict) -> str:
    text = (f"{s['segment']}: {s['messages']} message(s), {s['bytes']} bytes of messages in "
            f"{s['segment_bytes']}")
    if s["messages"]:
        text += f", offsets {s['first_offset']} to {s['last_offset']}"
    if s["gaps"]:
        text += f", {s['gaps']} gap(s) of {s['compacted_bytes']} compacted bytes"
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


def _bad_json(offset: int, size: int, resume: int, reason: str) -> dict:
    return {"offset": offset, "size": size,
            "error": f"{reason}: {size} byte(s) up to offset {resume} cannot be read"}


def _gap_json(offset: int, resume: int) -> dict:
    return {"offset": offset, "next_offset": resume, "size": message.GAP_SIZE,
            "magic": message.MAGIC_GAP, "crc_ok": True, "gap_to": resume}


def _crc_bad_entry(chunk, length: int):
    """The bytes of a bad range (``length`` bytes) that is one whole message with a wrong CRC
    (its size field intact), so it can be shown; None otherwise."""
    if chunk is None or len(chunk) < message.HEADER_SIZE:
        return None
    if message.SIZE_FIELD + _unpack_size(chunk, 0)[0] != length:
        return None
    return chunk


def _print_json(pieces) -> None:
    write = sys.stdout.write
    dumps = json.dumps
    for piece in pieces:
        kind = piece[0]
        if kind == "run":
            _, at, buf, starts = piece
            write("".join(dumps(_entry_json(buf, a, b, at + a, True)) + "\n"
                          for a, b in zip(starts, starts[1:])))
        elif kind == "gap":
            write(dumps(_gap_json(piece[1], piece[2])) + "\n")
        elif kind == "big":
            _, offset, length, head = piece
            key, value_bytes = _big_key(head, length)
            entry = {"offset": offset, "next_offset": offset + length,
                     "size": length - 4, "magic": head[4], "crc_ok": True}
            _as_text("key", key, entry)
            write(dumps({**entry, "value_bytes": value_bytes}) + "\n")
        else:
            _, offset, length, resume, reason, chunk = piece
            whole = _crc_bad_entry(chunk, length) if reason == "crc" else None
            if whole is not None:
                write(dumps(_entry_json(whole, 0, length, offset, False)) + "\n")
            else:
                write(dumps(_bad_json(offset, length, resume, reason)) + "\n")


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


def _print_rows(pieces, end: int, preview: int, title: str) -> None:
    """One line per entry, streamed a chunk at a time; a total line at the end (``end``: the
    largest offset, for the column's width)."""
    write = sys.stdout.write
    w = len(str(end))
    row = f"{{:>{w}}}  {{:>8}}  {{:<3}}  {{:<{KEY_WIDTH}}}  {{}}".format
    write(title + "\n" + row("offset", "size", "crc", "key", "value") + "\n")
    count = bad = gaps = 0
    for piece in pieces:
        kind = piece[0]
        if kind == "run":
            _, at, buf, starts = piece
            lines = []
            for a, b in zip(starts, starts[1:]):
                _, key, value = _fields(buf, a)
                lines.append(row(at + a, b - a - 4, "ok",
                                 "" if key is None else _cell(key, KEY_WIDTH),
                                 _cell(value, preview)))
            count += len(lines)
            write("\n".join(lines) + "\n")
        elif kind == "gap":
            _, offset, resume = piece
            gaps += 1
            write(row(offset, message.GAP_SIZE, "ok", "",
                      f"[gap: compacted away up to offset {resume}]") + "\n")
        elif kind == "big":
            _, offset, length, head = piece
            count += 1
            key, value_bytes = _big_key(head, length)
            write(row(offset, length - 4, "ok", "" if key is None else _cell(key, KEY_WIDTH),
                      f"<{value_bytes} bytes>") + "\n")
        else:
            _, offset, length, _, reason, chunk = piece
            whole = _crc_bad_entry(chunk, length) if reason == "crc" else None
            if whole is not None:
                _, key, value = _fields(whole, 0)
                write(row(offset, length - 4, "BAD",
                          "" if key is None else _cell(key, KEY_WIDTH),
                          _cell(value, preview)) + "\n")
            else:
                write(row(offset, length, "", "",
                          f"[{reason}: {length} byte(s) cannot be read]") + "\n")
            bad += 1
    shown = f"{count} message(s)" + (f", {gaps} gap(s)" if gaps else "")
    write(f"{shown} and {bad} bad range(s) shown\n")


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
    """The bad ranges of one segment file as rows (offset, size, reason; a compacted
    segment's positions made offsets through its gap index, as dump-log shows them)."""
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
        offset_at = load_gap_index(reader, path, start, size)[0].offset_at \
            if report.bad or report.torn_at is not None else None
    finally:
        os.close(fd)
    checked["segments"] += 1
    checked["bytes"] += size
    checked["messages"] += report.messages
    rows = [{"offset": offset_at(bad.position), "size": bad.size, "reason": bad.reason}
            for bad in report.bad]
    if report.torn_at is not None:
        rows.append({"offset": offset_at(report.torn_at), "size": size - report.torn_at,
                     "reason": "torn tail"})
    return rows
