"""The flush policy: when a partition's log should be fsynced.

As in the paper and Kafka 0.7, a log is flushed after N messages or T ms since the first
unflushed message, whichever comes first. This is pure bookkeeping: no I/O, and the time
(monotonic seconds) is always passed in, so it is tested with made-up clocks.

An fsync runs on a background thread while appends continue, so a flush is two steps:
``begin()`` when the log snapshots its end offset (the messages counted so far are "in
flight"), then ``done()`` once the fsync returned, or ``abort()`` if it failed. Messages
recorded in between stay pending for the next flush, with their own start time::

    policy = FlushPolicy(messages=500, ms=3000)
    policy.record(200, now=10.0)
    policy.due(11.0)        # False: 200 < 500 and 1 s < 3 s
    policy.due(13.0)        # True: the first unflushed message is 3 s old
    policy.begin()          # 200 messages in flight
    policy.record(10, now=13.5)
    policy.done()           # 10 pending, counted from 13.5
    policy.due(16.5)        # True
"""
from __future__ import annotations

from coordinator.errors import InvalidArgument


class FlushPolicy:
    """Counts unflushed messages and says when a flush is due."""

    __slots__ = ("messages", "seconds", "pending", "pending_since", "in_flight",
                 "in_flight_since", "flushing")

    def __init__(self, messages: int, ms: int):
        if messages <= 0 or ms <= 0:
            raise InvalidArgument("flush messages and flush ms must be positive")
        self.messages = messages
        self.seconds = ms / 1000.0
        self.pending = 0
        self.pending_since: float | None = None
        self.in_flight = 0
        self.in_flight_since: float | None = None
        self.flushing = False

    @property
    def unflushed(self) -> int:
        """Messages not yet known to be on disk (pending plus in flight)."""
        return self.pending + self.in_flight

    def record(self, count: int, now: float) -> None:
        """``count`` messages were appended at ``now``."""
        if count <= 0:
            return
        if self.pending_since is None:
            self.pending_since = now
        self.pending += count

    def due(self, now: float) -> bool:
        """True when the pending messages reach the count or the oldest reaches the age."""
        if self.pending_since is None:
            return False
        return self.pending >= self.messages or now - self.pending_since >= self.seconds

    def seconds_until_due(self, now: float) -> float | None:
        """How long a flusher may sleep: 0 when due, None when nothing is pending."""
        if self.pending_since is None:
            return None
        if self.pending >= self.messages:
            return 0.0
        return max(0.0, self.pending_since + self.seconds - now)

    def begin(self) -> int:
        """A flush snapshotted the log: everything pending is now in flight. Returns its count."""
        if self.flushing:
            raise RuntimeError("a flush is already in flight")
        self.in_flight, self.pending = self.pending, 0
        self.in_flight_since, self.pending_since = self.pending_since, None
        self.flushing = True
        return self.in_flight

    def done(self) -> None:
        """The in-flight messages are on disk."""
        self.in_flight = 0
        self.in_flight_since = None
        self.flushing = False

    def abort(self) -> None:
        """The fsync failed: the in-flight messages are pending again, with their old age."""
        if not self.flushing:
            return
        if self.in_flight:
            self.pending += self.in_flight
            self.pending_since = self.in_flight_since
        self.done()
