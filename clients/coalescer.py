"""The sender of a batch-1 acks=0 producer: one-message sets that are already waiting leave in
one PRODUCE_SETS request (broker/protocol.py), as a NATS client writes the publishes that piled
up while it was busy with one socket write.

``put()`` (the producer's send()) only queues the framed message on its partition's queue and,
when the sender thread is idle, wakes it and lets go of the GIL once (``time.sleep(0)``); it
takes no lock and sends nothing. The sender, once awake, takes everything queued on each
partition and sends it: one message as an ordinary PRODUCE (two frames), several as one
PRODUCE_SETS (three frames, at most ``FRAME_BYTES``), so that each costs neither its own socket
sends nor its own receives at the broker, which still judges and stores each set as one. Then
it looks again, and sleeps only once every queue is empty.

No message waits for others to come: a message that finds the sender idle leaves as soon as the
sender thread runs. That is at once when the calling thread then blocks or waits (on I/O, a
sleep, flush()); a caller that goes on computing keeps the GIL, and the sender would get it only
after the interpreter's switch interval (``sys.getswitchinterval()``, 5 ms by default), hence
the one ``sleep(0)`` on waking it: measured here, a lone message from a caller spinning in
Python reached the socket after 0.15 ms at the median (5.3 ms without it), though the OS may
still not run the woken thread in time, and then the switch interval is the bound. Messages
queued while the sender was sending (or waiting for the GIL) go in its next request: the
busier the caller, the more each request holds (in a tight loop every request is full: about
75 messages of 200 bytes).

Bounds: a partition's queue holds at most ``QUEUE_BOUND`` messages (the old per-message
send's ZeroMQ high-water mark); ``put()`` on a full queue waits up to the request timeout for
the sender to take it, then drops the message and counts it (``dropped``). The sender's PUSH
sockets keep at most ``PUSH_HWM`` requests each, about 8 MiB, instead of 10,000 one-message
ones; a send that stays blocked for the request timeout drops its request, counted. Requests
are small (``FRAME_BYTES``) because the broker's PULL queue is bounded in requests, not bytes:
1000 of them are at most 16 MiB there (measured: 256 KiB requests raised the broker's peak
RSS in the batch-1 row from 55 to 100-125 MB on a loaded machine, 16 KiB ones to about 75 MB).
A partition with no broker to go to, or a socket error, drops what was taken (counted); an
error that does not pass goes to ``on_error`` (the producer raises it from its next call).

``flush()`` takes and sends, in the caller's thread, whatever is queued; taking and sending are
one step under one lock in either thread, so a partition's messages leave in ``put()`` order.

Taking a partition's queue is what "the batch is sent" means for the sticky partitioner
(clients/partitioner.py): ``taken(topic, partition)`` is told then, once per queue taken, so
unkeyed messages keep going to one partition until its queue leaves. Told per message
instead, a producer over 64 partitions scattered its messages over every queue: requests were
still full, but each take was of all 64 queues, so takes were few and long and the queues grew
(measured, 300,000 messages: 3 to 16 takes of 16,000 to 143,000 messages, 1.4 to 1.8 s of
producer CPU; sticky per take: 258 to 669 takes of 300 to 1,400 messages, 1.0 s).
"""
from __future__ import annotations

import bisect
import itertools
import logging
import operator
import threading
import time
from collections import deque

import zmq

from broker import protocol
from clients.connection import zmq_send

log = logging.getLogger(__name__)

FRAME_BYTES = 16 << 10       # a PRODUCE_SETS request's bytes at most (or max_request_bytes):
                             # the broker's PULL queue holds 1000 requests, so at most 16 MiB
PUSH_HWM = 512               # requests a sender's PUSH socket queues (512 x 16 KiB = 8 MiB)
QUEUE_BOUND = 10_000         # messages queued per partition before put() waits

_repeat = itertools.repeat
_yield_gil = time.sleep     # sleep(0): lets a thread that waits for the GIL have it now
_sizes = protocol.encode_set_sizes


class Coalescer:
    """The queues and the sender thread of one producer (see the module docstring).

    ``push(topic, partition)`` gives the partition's PUSH socket (``BrokerPool.push``); it is
    called, and the socket used, only by whoever holds the sending lock. ``taken(topic,
    partition)``, if given, is called under the sending lock as each queue is taken."""

    def __init__(self, push, request_timeout_s: float, max_request_bytes: int, on_error,
                 taken=None):
        self._push = push
        self._taken = taken
        self._on_error = on_error
        self._timeout_s = request_timeout_s
        self._frame_bytes = min(FRAME_BYTES, max_request_bytes)
        self._queues: dict[tuple[str, int], deque] = {}
        self._routes: dict[tuple[str, int], tuple] = {}
        self._idle = True
        self._closed = False
        self._wake = threading.Event()
        self._sending = threading.Lock()
        self._room = threading.Condition(threading.Lock())
        self._full = False
        self.requests = 0        # requests handed to ZeroMQ
        self.sent = 0            # messages handed to ZeroMQ (sender side)
        self.lost = 0            # messages taken but not handed to ZeroMQ (sender side)
        self.refused = 0         # messages put() could not queue (caller side)
        self._thread = threading.Thread(target=self._run, name="producer-sender", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        return self.lost + self.refused

    def put(self, tp: tuple[str, int], encoded: bytes) -> None:
        """Queue one framed message of partition ``tp``; wake the sender if it sleeps."""
        queue = self._queues.get(tp)
        if queue is None:
            queue = self._open(tp)
        if len(queue) >= QUEUE_BOUND and not self._wait_for_room(queue):
            return
        queue.append(encoded)
        if self._idle:
            self._idle = False
            self._wake.set()
            _yield_gil(0)

    def forget_routes(self) -> None:
        """The cluster view changed: look the partitions' brokers up anew."""
        self._routes.clear()

    def flush(self) -> None:
        """Send everything queued now, in the caller's thread."""
        self._send_waiting()

    def close(self) -> None:
        """Send what is queued, then stop the sender thread."""
        self._send_waiting()
        self._closed = True
        self._wake.set()
        self._thread.join()

    # --- the sender ------------------------------------------------------------------------

    def _open(self, tp: tuple[str, int]) -> deque:
        """A partition's first message: its queue is made under the sending lock, so the
        sender never walks the queues while one is being added."""
        with self._sending:
            return self._queues.setdefault(tp, deque())

    def _wait_for_room(self, queue: deque) -> bool:
        """The queue is full: wait for the sender to take it; False (counted) if it did not
        within the request timeout."""
        with self._room:
            self._full = True
            self._wake.set()
            if self._room.wait_for(lambda: len(queue) < QUEUE_BOUND, self._timeout_s):
                return True
            self.refused += 1
            return False

    def _run(self) -> None:
        """Wake, send what waits, and sleep only once nothing does. ``_idle`` is set before
        the last look, so a put() that comes after that look sees it and wakes the thread."""
        wake = self._wake
        while True:
            wake.wait()
            if self._closed:
                return
            wake.clear()
            self._send_waiting()
            self._idle = True
            if self._waiting():
                self._idle = False
                wake.set()

    def _waiting(self) -> bool:
        with self._sending:
            return any(self._queues.values())

    def _send_waiting(self) -> None:
        taken = self._taken
        with self._sending:
            for tp, queue in self._queues.items():
                n = len(queue)
                if n:
                    if taken is not None:
                        taken(*tp)
                    popleft = queue.popleft
                    self._send(tp, [popleft() for _ in _repeat(None, n)])
            if self._full:
                with self._room:
                    self._full = False
                    self._room.notify_all()

    def _send(self, tp: tuple[str, int], messages: list[bytes]) -> None:
        """Send a partition's taken messages: one as a PRODUCE, several as PRODUCE_SETS
        requests of at most the frame's bytes (a longer message alone, as a PRODUCE)."""
        n = len(messages)
        try:
            route = self._routes.get(tp)
            if route is None:
                route = self._routes[tp] = (self._push(*tp), protocol.encode_produce(0, *tp, 0),
                                            protocol.encode_produce_sets(0, *tp))
            sock, one, several = route
            if n == 1:
                zmq_send(sock, one, zmq.SNDMORE)
                zmq_send(sock, messages[0])
                self.sent += 1
                self.requests += 1
                return
            sizes = list(map(len, messages))
            room = self._frame_bytes - len(several)
            runs = [(0, n)] if sum(sizes) + 4 * n <= room else _runs(sizes, room)
            for start, end in runs:
                if end - start == 1:
                    zmq_send(sock, one, zmq.SNDMORE)
                    zmq_send(sock, messages[start])
                else:
                    zmq_send(sock, several, zmq.SNDMORE)
                    zmq_send(sock, _sizes(sizes[start:end]), zmq.SNDMORE)
                    zmq_send(sock, b"".join(messages[start:end]))
                self.sent += end - start
                self.requests += 1
                n -= end - start
        except zmq.Again:           # blocked for the request timeout: the broker is away
            self.lost += n
        except (protocol.SluiceError, zmq.ZMQError) as exc:
            self.lost += n
            log.warning("acks=0 send of %d message(s) to %s/%d failed: %s", n, *tp, exc)
            if isinstance(exc, protocol.SluiceError) and not exc.retriable:
                self._on_error(exc)


def _runs(sizes: list[int], room: int) -> list[tuple[int, int]]:
    """Cut messages of ``sizes`` into runs whose request (the sets plus 4 bytes of size
    each) fits in ``room`` bytes, a bigger message alone: (start, end) each, in order. One
    running sum and a bisection per run, no Python work per message.

    >>> _runs([10, 10, 10, 30, 5], 30)
    [(0, 2), (2, 3), (3, 4), (4, 5)]
    """
    ends = list(itertools.accumulate(map(operator.add, sizes, _repeat(4))))   # request bytes
    runs = []
    start, used, n = 0, 0, len(sizes)
    while start < n:
        end = max(bisect.bisect_right(ends, used + room, start), start + 1)
        runs.append((start, end))
        used = ends[end - 1]
        start = end
    return runs
