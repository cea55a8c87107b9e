"""What bare Python allows on this machine, with no broker: the ceilings the issue measures
sluice against.

``pipeline_batch1``: the batch-1 producer's ceiling. One process encodes each 200-byte message
on its own (``broker.message.encode``: header and CRC, as ``Producer.send`` does) and hands it
to a sender thread that takes every message already waiting and sends them as one ZeroMQ frame
over PUSH/PULL on loopback (coalescing of waiting sends: nothing waits for company, the sender
sleeps only when nothing is waiting). A second process receives each frame, checks every
message's CRC on its own, and writes the frame to a file. The clock runs from the first encode
to the receiver's word that it wrote the last message.

``consumer_decode``: the consumer's ceiling on one core: ``broker.message.decode_set`` (what
``SimpleConsumer`` runs on every fetch) over a 1 MiB message set, every message CRC-checked,
its value's length summed, again and again.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
import zlib
from pathlib import Path

from broker import message

FETCH_BYTES = 1 << 20


def pipeline_batch1(messages: int, size: int = 200, workdir: Path | None = None) -> float:
    """Messages per second through encode, coalesced send, receive, CRC check and write."""
    import shutil
    import tempfile

    import zmq
    made = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="peers-ceiling-"))
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    port = push.bind_to_random_port("tcp://127.0.0.1")
    done = multiprocessing.get_context("spawn").Queue()
    receiver = multiprocessing.get_context("spawn").Process(
        target=_receive, args=(port, messages, str(workdir / "ceiling.log"), done))
    receiver.start()
    try:
        if done.get(timeout=60) != "ready":
            raise RuntimeError("the receiver did not start")
        push.send(b"")                          # the first frame, before the clock runs
        if done.get(timeout=60) != "connected":
            raise RuntimeError("the receiver did not connect")
        value = os.urandom(size)
        pending: list[bytes] = []
        wake = threading.Event()
        finished = [False]

        def sender() -> None:
            while True:
                if not pending:
                    if finished[0]:
                        return
                    wake.clear()
                    if not pending and not finished[0]:
                        wake.wait()
                    continue
                n = len(pending)            # each slice is atomic under the GIL: an append
                waiting = pending[:n]       # in between lands past n and stays for the next
                del pending[:n]
                push.send(b"".join(waiting), copy=False)

        thread = threading.Thread(target=sender, name="ceiling-sender", daemon=True)
        encode = message.encode
        started = time.perf_counter()
        thread.start()
        for _ in range(messages):
            pending.append(encode(value))
            if not wake.is_set():
                wake.set()
        finished[0] = True
        wake.set()
        thread.join()
        if done.get(timeout=120) != messages:
            raise RuntimeError("the receiver lost messages")
        elapsed = time.perf_counter() - started
    finally:
        receiver.join(30)
        if receiver.is_alive():
            receiver.kill()
        push.close()
        context.term()
        if made:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            try:
                os.unlink(workdir / "ceiling.log")
            except FileNotFoundError:
                pass
    return messages / elapsed


def _receive(port: int, messages: int, path: str, done) -> None:
    """The receiving end: every message's CRC checked, every frame written; reports the count."""
    import struct

    import zmq
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.connect(f"tcp://127.0.0.1:{port}")
    done.put("ready")
    pull.recv()
    done.put("connected")
    unpack = struct.Struct(">IBI").unpack_from
    crc32 = zlib.crc32
    header = message.HEADER_SIZE
    count = 0
    with open(path, "wb") as out:
        while count < messages:
            frame = pull.recv(copy=False).buffer
            end, pos = len(frame), 0
            while pos < end:
                size, _, crc = unpack(frame, pos)
                nxt = pos + 4 + size
                if crc32(frame[pos + header:nxt]) != crc:
                    raise message.InvalidMessage("crc", pos, "CRC mismatch")
                pos = nxt
                count += 1
            out.write(frame)
    pull.close()
    context.term()
    done.put(count)


def consumer_decode(messages: int, size: int = 200) -> float:
    """Messages per second decoded and CRC-checked from 1 MiB message sets, one core."""
    value = os.urandom(size)
    fetch = message.encode_set([(None, value)] * (FETCH_BYTES // (message.HEADER_SIZE + size)))
    decode = message.decode_set
    count = nbytes = 0
    started = time.perf_counter()
    while count < messages:
        for m in decode(fetch, "ceiling", 0, 0):
            nbytes += len(m.value)
            count += 1
    return count / (time.perf_counter() - started)
