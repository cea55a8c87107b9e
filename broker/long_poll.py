"""Long-poll: fetches parked until their log grows or their deadline passes (Kafka's purgatory).

A fetch whose log has fewer than ``min_bytes`` visible past its offset, and that may wait
(``max_wait_ms`` > 0), is parked as a ``Waiter`` instead of answered empty, so an idle consumer
costs the broker nothing until data comes. It is answered at the first of:

- its log's visible end moved far enough (``satisfied``): after an append when messages are
  visible at once, after a flush otherwise (the flusher wakes the request loop);
- its deadline (``max_wait_ms``, bounded by the broker's ``max_wait_ms_limit``), with whatever
  is visible then.

The ``Purgatory`` keeps the parked waiters per log (checked together when their log grows) and
in a deadline heap (the loop sleeps no longer than until the nearest). A waiter it lets go
either way is ``done`` and is kept nowhere after: a waiter expired on an idle log does not stay
listed under it. Pure: no sockets, the time is passed in. ::

    purgatory = Purgatory()
    waiter = Waiter(b"client-1", request, log, deadline=10.5)   # offset 100, min_bytes 1
    purgatory.park(waiter)
    purgatory.ready([log])         # []: the log's visible end is still 100
    # ... a flush moves the visible end to 160
    purgatory.ready([log])         # [waiter], now done: answer it
    purgatory.expired(now=11.0)    # []: it was let go already
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

from broker.protocol import Request


class Readable(Protocol):
    """What the purgatory needs of a Log."""

    @property
    def visible_end(self) -> int: ...


@dataclass(eq=False, slots=True)
class Waiter:
    """One parked fetch: who asked (the ROUTER identity), what, on which log, until when
    (monotonic seconds), and whether it has been let go."""

    identity: bytes
    request: Request
    log: Readable
    deadline: float
    done: bool = False


def satisfied(waiter: Waiter, visible_end: int) -> bool:
    """Whether a log visible up to ``visible_end`` gives the waiter its ``min_bytes`` (at
    least one byte) past its offset.

    >>> from broker.protocol import Api
    >>> waiter = Waiter(b"c", Request(Api.FETCH, 1, offset=100, min_bytes=50), None, 0.0)
    >>> satisfied(waiter, 120), satisfied(waiter, 150)
    (False, True)
    >>> satisfied(Waiter(b"c", Request(Api.FETCH, 2, offset=100), None, 0.0), 101)
    True
    """
    request = waiter.request
    return visible_end - request.offset >= max(request.min_bytes, 1)


def replica_fetch_due(available: int, min_bytes: int, acks_waiting: bool) -> bool:
    """Whether a parked replica fetch with ``available`` bytes to copy is answered now.

    A follower asks for ``replica_fetch_min_bytes``: each answered fetch costs both brokers a
    round trip (a request, a read, a send, a loop turn each), so while producers only want
    acks=1 the leader lets data gather, for ``replica_fetch_linger_ms`` at most (the
    deadline the handlers give it once there is something to copy). An acks=all request
    is answered only once the followers have its set: ``acks_waiting`` (one waits for a set
    past this follower's offset) makes it get whatever there is at once.

    >>> replica_fetch_due(0, 65536, acks_waiting=True)       # nothing to copy yet
    False
    >>> replica_fetch_due(300, 65536, acks_waiting=True)     # a producer waits on the ISR
    True
    >>> replica_fetch_due(300, 65536, acks_waiting=False)    # acks=1: gather, or linger
    False
    >>> replica_fetch_due(70000, 65536, acks_waiting=False)  # enough for one round trip
    True
    """
    return available > 0 and (acks_waiting or available >= min_bytes)


def _visible_end(log: Readable) -> int:
    return log.visible_end


class Deadlines:
    """Waiters (anything with ``deadline`` and ``done``) by deadline, in a heap; a waiter let
    go another way (``done``) stays until its time comes and is skipped then. Both
    purgatories (this one and broker/delayed_produce.py's) keep their deadlines here."""

    def __init__(self):
        self._heap: list[tuple[float, int, object]] = []
        self._order = itertools.count()

    def push(self, waiter) -> None:
        heapq.heappush(self._heap, (waiter.deadline, next(self._order), waiter))

    def due(self, now: float) -> list:
        """The waiters not yet let go whose deadline is at or before ``now``, marked done."""
        let_go = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            waiter = heapq.heappop(heap)[2]
            if not waiter.done:
                waiter.done = True
                let_go.append(waiter)
        return let_go

    def next_deadline(self) -> float | None:
        """The nearest deadline of a waiter not yet let go, or None. Entries of waiters let go
        another way are dropped from the top here: the loop sleeps until this deadline, and
        under load most parked fetches are answered long before theirs."""
        heap = self._heap
        while heap and heap[0][2].done:
            heapq.heappop(heap)
        return heap[0][0] if heap else None


class Purgatory:
    """The parked waiters, per log and by deadline. ``end_of(log)``: how far the waiters may
    read (a consumer: the visible end, bounded by the high watermark of a replicated
    partition; a follower: the log end)."""

    def __init__(self, end_of: Callable[[Readable], int] | None = None):
        self._end_of = end_of or _visible_end
        self._by_log: dict[Readable, list[Waiter]] = {}
        self._deadlines = Deadlines()

    def __bool__(self) -> bool:
        """Whether any fetch is parked (the flusher asks, from its own thread)."""
        return bool(self._by_log)

    def __len__(self) -> int:
        return sum(len(waiters) for waiters in self._by_log.values())

    def park(self, waiter: Waiter) -> None:
        self._deadlines.push(waiter)
        self._by_log.setdefault(waiter.log, []).append(waiter)

    def waiting_on(self, log: Readable) -> bool:
        return log in self._by_log

    def end_of(self, log: Readable) -> int:
        """How far this purgatory's waiters may read ``log``."""
        return self._end_of(log)

    def logs(self) -> list[Readable]:
        """The logs some waiter is parked on."""
        return list(self._by_log)

    def ready(self, logs: Iterable[Readable],
              due: Callable[[Waiter, int], bool] = satisfied) -> list[Waiter]:
        """The waiters on ``logs`` that their log's end (``end_of``: the visible end unless
        told otherwise) now satisfies, let go; ``due(waiter, end)`` decides (default:
        ``satisfied``, each request's ``min_bytes``)."""
        let_go = []
        for log in logs:
            waiters = self._by_log.get(log)
            if waiters is None:
                continue
            visible = self._end_of(log)
            keep = []
            for waiter in waiters:
                if due(waiter, visible):
                    waiter.done = True
                    let_go.append(waiter)
                else:
                    keep.append(waiter)
            if keep:
                self._by_log[log] = keep
            else:
                del self._by_log[log]
        return let_go

    def linger(self, log: Readable, until: float) -> None:
        """Answer the waiters on ``log`` that have something to read by ``until`` at the
        latest (an earlier deadline of theirs stays)."""
        end = self._end_of(log)
        for waiter in self._by_log.get(log, ()):
            if waiter.deadline > until and end > waiter.request.offset:
                waiter.deadline = until
                self._deadlines.push(waiter)

    def drop(self, log: Readable) -> list[Waiter]:
        """Every waiter on ``log``, let go (its partition's leadership moved away)."""
        let_go = self._by_log.pop(log, [])
        for waiter in let_go:
            waiter.done = True
        return let_go

    def expired(self, now: float) -> list[Waiter]:
        """The waiters whose deadline is at or before ``now``, let go."""
        let_go = self._deadlines.due(now)
        for waiter in let_go:
            waiters = self._by_log[waiter.log]
            waiters.remove(waiter)
            if not waiters:
                del self._by_log[waiter.log]
        return let_go

    def next_deadline(self) -> float | None:
        return self._deadlines.next_deadline()
