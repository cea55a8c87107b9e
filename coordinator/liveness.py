"""Poll-interval liveness (Kafka's max.poll.interval.ms) as pure timer logic.

A ZooKeeper session only proves the process is alive; a handler stuck for minutes keeps its
partitions stuck too. The consumer ``touch``es the timer on every poll; when the time since the
last poll passes the bound, the member gives its partitions up and rejoins on its next poll.
Time is passed in, so the logic is tested without clocks or I/O.
"""
from __future__ import annotations

from coordinator.errors import InvalidArgument


class PollTimer:
    def __init__(self, max_interval_s: float | None, now: float):
        if max_interval_s is not None and max_interval_s <= 0:
            raise InvalidArgument("max_poll_interval must be positive (or None to turn it off)")
        self.max_interval_s = max_interval_s
        self.last_poll = now

    def touch(self, now: float) -> None:
        self.last_poll = now

    def expired(self, now: float) -> bool:
        return self.max_interval_s is not None and now - self.last_poll > self.max_interval_s

    def remaining(self, now: float) -> float | None:
        """Seconds until expiry (0 when expired), None when the bound is off."""
        if self.max_interval_s is None:
            return None
        return max(0.0, self.last_poll + self.max_interval_s - now)
