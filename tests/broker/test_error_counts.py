"""Error counts: every error counted by name, each name logged at most once per interval."""
import logging

from broker.error_counts import ErrorCounts
from coordinator.errors import CorruptMessage, StorageError


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "broker.error_counts"]


def test_the_worked_example_of_the_module(caplog):
    clock = Clock()
    counts = ErrorCounts(interval_s=5.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="broker.error_counts"):
        for now, kind in ((0.0, "request"), (1.0, "request"), (2.0, "task"), (5.0, "request")):
            clock.now = now
            if kind == "request":
                counts.request_failed(CorruptMessage("bad crc"), acks=0)
            else:
                counts.task_failed("retention", StorageError("disk full: no space"), 10.0)
    assert counts.snapshot() == {"corrupt_message": 3, "retention_failed": 1}
    assert lines(caplog) == [
        "corrupt_message (acks=0): bad crc [1 so far]",
        "retention failed (StorageError: disk full: no space); retrying in 10.0 s [1 so far]",
        "corrupt_message (acks=0): bad crc [3 so far]"]


def test_a_task_without_a_known_retry_time_says_it_will_retry(caplog):
    counts = ErrorCounts(clock=Clock())
    with caplog.at_level(logging.WARNING, logger="broker.error_counts"):
        counts.task_failed("placement_refresh", OSError(5, "I/O"))
    assert lines(caplog) == ["placement refresh failed (OSError: [Errno 5] I/O); will retry "
                             "[1 so far]"]


def test_a_snapshot_is_a_copy():
    counts = ErrorCounts(clock=Clock())
    counts.task_failed("flush", OSError(5, "I/O"))
    snapshot = counts.snapshot()
    counts.task_failed("flush", OSError(5, "I/O"))
    assert snapshot == {"flush_failed": 1} and counts.snapshot() == {"flush_failed": 2}
