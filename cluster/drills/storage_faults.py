"""The storage family of faults: a segment torn under a broker, a broker's disk full.

| drill        | fault                                                   | must hold             |
| ------------ | ------------------------------------------------------- | --------------------- |
| torn-segment | stop a broker, flip a byte in one unflushed message and | restart repairs it;   |
|              | cut the last one in half, kill it                       | only the torn tail    |
|              |                                                         | is lost               |
| disk-full    | fill the small tmpfs under broker 0's data dir, then    | a clear error;        |
|              | free it (needs root to mount the tmpfs)                 | nothing written       |
|              |                                                         | harmed; writes resume |
"""
from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from broker import message, protocol
from cluster.drills import leadership as lead
from cluster.drills.context import Check, Context, Unsupported
from cluster.drills.faults import FaultError, wait_broker_back
from cluster.drills.ledger import parse_id
from cluster.drills.verdict import consumed_ids, lost_is_zero

TMPFS_BYTES = 4 << 20
FILLER = ".drill-filler"
DISK_BROKER = 0
MOVED_GRACE_S = 0.2     # a stopped broker's answers already written reach the drill by then


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
    """The brokers' "recovery cut" lines so far (their stderr is the supervisor's log)."""
    try:
        text = ctx.files.log_file.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if "recovery cut" in line]


def torn_segment(ctx: Context, record: dict) -> None:
    brokers = ctx.procs.ids("broker")
    target = brokers[len(ctx.faults) % len(brokers)]
    broker = int(target)
    partitions = ctx.placement().hosted_by(broker)
    broker_dir = ctx.files.broker_dir(broker) / ctx.topic
    choice = None
    raced = 0
    for _ in range(50):
        watch = VisibleWatch(lead.endpoint(ctx.zk(), broker), ctx.topic, partitions)
        try:
            visible = watch.park()
            pid = ctx.procs.pause("broker", target)
            fault_t = time.monotonic()
            moved = watch.moved(MOVED_GRACE_S)
        finally:
            watch.close()
        choice = None if moved else _choose_damage(broker_dir, visible)
        if choice is not None:
            break
        raced += moved
        ctx.procs.resume(pid)
        time.sleep(0.2)
    if choice is None:
        raise FaultError(f"broker {broker} never had two unflushed messages to damage")
    record["visible_moved_before_pause"] = raced
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
    back_t = wait_broker_back(ctx, broker, new_pid, fault_t)
    acked = ctx.ledger.promised()
    record["torn_ids_acked"] = sum(1 for s in torn_ids if s in acked)
    ctx.notes.setdefault("_expected_lost", set()).update(torn_ids)
    cut = [line for line in _recovery_lines(ctx)[lines_before:]
           if f"/{ctx.topic}/{partition}:" in line]
    match = re.search(r"recovery cut (\d+) bytes", cut[-1]) if cut else None
    record["recovery_cut_bytes"] = int(match.group(1)) if match else None
    ctx.recover(record, fault_t, back_t)


class VisibleWatch:
    """Whether a broker's visible ends moved between the drill's look and its SIGSTOP.

    Asking the visible end and then pausing leaves a window in which a flush can make the
    "unflushed" tail visible and a consumer read it (seen in a full ``make drill`` under a load
    of 13: two torn messages consumed before the cut). So the look is a fetch parked at each
    partition's visible end (``min_bytes`` 1, the longest wait) on one socket, followed by an
    offsets request for that end: the broker handles a socket's requests in order, so its
    answer means the fetches are parked, and the ends it gives are the ones they wait at. A
    flush that makes anything more visible answers a parked fetch; ``moved`` reads the socket
    after the SIGSTOP: an answer there (or an end that changed) means the look is stale and the
    drill must look again. What remains is a flush finishing between the broker answering a
    consumer's parked fetch and the drill's, within one pass over its parked fetches."""

    def __init__(self, endpoint: str, topic: str, partitions, wait_ms: int = 30_000):
        self.topic = topic
        self.partitions = sorted(partitions)
        self.wait_ms = wait_ms
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self._offsets: dict[int, int] = {}      # correlation id -> partition
        self._fetches: set[int] = set()
        self.early = False                      # the ends moved before the pause

    def park(self, timeout_s: float = 5.0) -> dict[int, int]:
        """The visible end of each partition, with a fetch parked at it."""
        corr = 0
        for p in self.partitions:
            corr += 1
            self._offsets[corr] = p
            self.socket.send(protocol.encode_offsets(corr, self.topic, p, protocol.LATEST))
        ends = self._answers(timeout_s)
        for p in self.partitions:
            corr += 1
            self._fetches.add(corr)
            self.socket.send(protocol.encode_fetch(corr, self.topic, p, ends[p], 1 << 16,
                                                   min_bytes=1, max_wait_ms=self.wait_ms))
        for p in self.partitions:
            corr += 1
            self._offsets[corr] = p
            self.socket.send(protocol.encode_offsets(corr, self.topic, p, protocol.LATEST))
        if self._answers(timeout_s) != ends:
            self.early = True
        return ends

    def _answers(self, timeout_s: float) -> dict[int, int]:
        ends: dict[int, int] = {}
        deadline = time.monotonic() + timeout_s
        while len(ends) < len(self.partitions):
            if not self.socket.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                raise FaultError(f"no answer to the drill's offsets requests in {timeout_s} s")
            frames = self.socket.recv_multipart()
            corr = protocol.RESPONSE.unpack_from(frames[0])[0]
            if corr in self._fetches:
                self.early = True        # a parked fetch answered already: the end moved
                continue
            ends[self._offsets.pop(corr)] = protocol.decode_response(
                frames[0], protocol.OFFSETS_REPLY)[1][0]
        return ends

    def moved(self, grace_s: float) -> bool:
        """After the SIGSTOP: did anything become visible since ``park``'s look?"""
        return self.early or bool(self.socket.poll(int(grace_s * 1000)))

    def close(self) -> None:
        self.socket.close(linger=0)


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
              not (excused & consumed_ids(ctx)), ""),
    ]


def disk_full_prepare(ctx: Context) -> None:
    if not ctx.fresh:
        raise Unsupported("disk-full needs a fresh cluster: its broker's data dir must sit on "
                          "a small tmpfs from the start")
    mount = ctx.files.broker_dir(DISK_BROKER)
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
    wait_broker_back(ctx, DISK_BROKER, new_pid, time.monotonic() - 1)
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
        lost_is_zero(report),
    ]
