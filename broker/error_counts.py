"""Error counts: what METADATA's ``errors`` holds, and the log line each kind gets.

Two kinds of error are counted by name:

- a request's error, by its wire code (``corrupt_message``, ``unknown_topic_or_partition``, ...).
  An acks=0 request has nobody to answer, so the count and the log line are all it leaves;
- an error outside any request, by its task (``placement_refresh_failed``, ``retention_failed``,
  ``flush_failed``, ``open_log_failed``, ``scrub_failed``, ...). The task is retried; it never
  ends the broker's loop or thread. Work given up on until a restart (``uncleanable_log``: the
  log cleaner met a corrupt message) is counted too and logged each time (once per log).

Each name is logged at most once every ``interval_s`` (5 s), with its count so far, so that a
flood of bad requests or a failing disk cannot flood the log. Safe from any thread: the flusher
and the scrubber report here too. Worked example, interval 5 s::

    t=0.0  corrupt_message     counted 1, logged "corrupt_message (acks=0): ... [1 so far]"
    t=1.0  corrupt_message     counted 2, not logged
    t=2.0  retention_failed    counted 1, logged (another name has its own interval)
    t=5.0  corrupt_message     counted 3, logged "[3 so far]"
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Callable

from coordinator.errors import SluiceError

logger = logging.getLogger(__name__)

LOG_INTERVAL_S = 5.0


class ErrorCounts:
    """The broker's error counters, each name logged at most once per interval."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.interval_s = interval_s
        self._clock = clock
        self._counts: Counter = Counter()
        self._logged_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def request_failed(self, exc: SluiceError, acks: int) -> None:
        """A request was refused with ``exc`` (answered, unless it was acks=0)."""
        name = exc.code.name.lower()
        count, due = self._count(name)
        if due:
            logger.warning("%s (acks=%d): %s [%d so far]", name, acks, exc, count)

    def connection_refused(self, exc: SluiceError) -> None:
        """A connection's handshake was refused (secured broker): counted under the error's
        code, as a refused request is."""
        name = exc.code.name.lower()
        count, due = self._count(name)
        if due:
            logger.warning("%s: %s [%d so far]", name, exc, count)

    def task_failed(self, task: str, exc: BaseException, retry_s: float | None = None) -> None:
        """Work outside any request failed; the caller tries again (after ``retry_s`` when it
        knows when)."""
        count, due = self._count(f"{task}_failed")
        if due:
            retry = f"; retrying in {retry_s:.1f} s" if retry_s is not None else "; will retry"
            logger.warning("%s failed (%s: %s)%s [%d so far]", task.replace("_", " "),
                           type(exc).__name__, exc, retry, count)

    def gave_up(self, name: str, what: str, exc: BaseException) -> None:
        """Work outside any request failed and is not tried again before a restart (a log the
        cleaner cannot trust): counted under ``name``, and logged every time at error level,
        since it happens once for each ``what``."""
        count, _ = self._count(name)
        logger.error("%s: %s (%s: %s); not tried again until the broker restarts "
                     "[%d so far]", name.replace("_", " "), what, type(exc).__name__, exc, count)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def _count(self, name: str) -> tuple[int, bool]:
        """Count one ``name``; return the count and whether its log line is due."""
        now = self._clock()
        with self._lock:
            self._counts[name] += 1
            due = now - self._logged_at.get(name, float("-inf")) >= self.interval_s
            if due:
                self._logged_at[name] = now
            return self._counts[name], due
