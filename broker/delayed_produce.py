"""acks=all produce requests written and waiting for the ISR (Kafka's DelayedProduce).

An acks=all request is written as an acks=1 one; its answer waits until the partition's high
watermark reaches the request's next offset (every in-sync replica has the set). It is let go
at the first of:

- the high watermark passed its next offset (``ready``): answer its offsets;
- its deadline (``ack_timeout_ms``, ``expired``): answer REQUEST_TIMED_OUT (the set is written
  and may yet be replicated; a sequenced producer's retry is a duplicate, not a second copy);
- the broker lost the partition's leadership (``drop``): answer NOT_LEADER.

Per partition the waiters are kept in next-offset order, so ``ready`` looks only at the front
and ``waits_past`` only at the back. That is write order, but for a sequenced producer's
retry of an older write (a duplicate): it waits on its original's next offset, and goes in at
that place. Pure: no sockets, the time is passed in. ::

    purgatory = AckPurgatory()
    purgatory.park(AckWaiter(b"c", 7, ("t", 0), 0, 120, deadline=30.0))
    purgatory.ready(("t", 0), high_watermark=100)   # []: a follower has not got it all
    purgatory.ready(("t", 0), high_watermark=120)   # [the waiter]: answer (0, 120)
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from broker.long_poll import Deadlines


@dataclass(eq=False, slots=True)
class AckWaiter:
    """One written acks=all request: who asked (ROUTER identity, correlation id), on which
    partition, the offsets it was written at, until when (monotonic seconds)."""

    identity: bytes
    correlation_id: int
    key: tuple[str, int]
    base_offset: int
    next_offset: int
    deadline: float
    done: bool = False


class AckPurgatory:
    """The waiting acks=all requests, per partition and by deadline."""

    def __init__(self):
        self._by_key: dict[tuple[str, int], deque[AckWaiter]] = {}
        self._deadlines = Deadlines()

    def __len__(self) -> int:
        return sum(len(waiters) for waiters in self._by_key.values())

    def waiting_on(self, key: tuple[str, int]) -> bool:
        """Whether requests on ``key`` are parked (some perhaps let go by their deadline)."""
        return key in self._by_key

    def park(self, waiter: AckWaiter) -> None:
        self._deadlines.push(waiter)
        waiters = self._by_key.setdefault(waiter.key, deque())
        at = len(waiters)
        while at and waiters[at - 1].next_offset > waiter.next_offset:
            at -= 1          # a duplicate of an older write: rarely more than a step or two
        waiters.insert(at, waiter)

    def waits_past(self, key: tuple[str, int], offset: int) -> bool:
        """Whether an acks=all request on ``key`` waits for a set that ends past ``offset``
        (a follower fetching there lacks it). The newest waiter ends furthest; one let go by
        its deadline and not yet cleared counts too: at worst a follower is answered sooner
        than it had to be.

        >>> p = AckPurgatory()
        >>> p.park(AckWaiter(b"a", 1, ("t", 0), 0, 50, 9.0))
        >>> p.waits_past(("t", 0), 20), p.waits_past(("t", 0), 50), p.waits_past(("t", 1), 0)
        (True, False, False)
        """
        waiters = self._by_key.get(key)
        return bool(waiters) and waiters[-1].next_offset > offset

    def ready(self, key: tuple[str, int], high_watermark: int) -> list[AckWaiter]:
        """The waiters on ``key`` whose next offset the high watermark reached, let go.

        >>> p = AckPurgatory()
        >>> a, b = AckWaiter(b"a", 1, ("t", 0), 0, 50, 9.0), AckWaiter(b"b", 2, ("t", 0), 50, 80, 9.0)
        >>> p.park(a); p.park(b)
        >>> [w.correlation_id for w in p.ready(("t", 0), 60)], len(p)
        ([1], 1)
        """
        waiters = self._by_key.get(key)
        let_go = []
        while waiters and (waiters[0].done or waiters[0].next_offset <= high_watermark):
            waiter = waiters.popleft()
            if not waiter.done:
                waiter.done = True
                let_go.append(waiter)
        if waiters is not None and not waiters:
            del self._by_key[key]
        return let_go

    def drop(self, key: tuple[str, int]) -> list[AckWaiter]:
        """Every waiter on ``key``, let go (the broker no longer leads it)."""
        let_go = [w for w in self._by_key.pop(key, ()) if not w.done]
        for waiter in let_go:
            waiter.done = True
        return let_go

    def expired(self, now: float) -> list[AckWaiter]:
        """The waiters whose deadline is at or before ``now``, let go (left in their
        partition's queue as done, skipped there later)."""
        let_go = self._deadlines.due(now)
        for waiter in let_go:
            waiters = self._by_key.get(waiter.key)
            if waiters and all(w.done for w in waiters):
                del self._by_key[waiter.key]
        return let_go

    def next_deadline(self) -> float | None:
        return self._deadlines.next_deadline()
