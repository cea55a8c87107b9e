"""The flush policy with made-up monotonic times (N messages or T ms, whichever first), and
the Log's flush on real files: visibility, fsyncs, a failed fsync retried."""
import errno
import os
import time

import pytest

from broker import log as log_module
from broker.config import LogConfig
from broker.flush import FlushPolicy
from broker.log import Log
from broker.protocol import OffsetOutOfRange, StorageError
from tests.broker.logs import KIB, append_each, make_log, msg


def test_nothing_pending_is_never_due():
    policy = FlushPolicy(messages=3, ms=1000)
    assert not policy.due(0.0)
    assert not policy.due(1e9)
    assert policy.seconds_until_due(5.0) is None
    policy.record(0, now=1.0)
    assert not policy.due(1e9)
    assert policy.unflushed == 0


def test_due_by_count():
    policy = FlushPolicy(messages=3, ms=1000)
    policy.record(2, now=10.0)
    assert not policy.due(10.0)
    policy.record(1, now=10.1)
    assert policy.due(10.1)
    assert policy.seconds_until_due(10.1) == 0.0


def test_one_big_batch_is_due_at_once():
    policy = FlushPolicy(messages=500, ms=3000)
    policy.record(800, now=1.0)
    assert policy.due(1.0)


def test_due_by_time_since_the_first_unflushed_message():
    policy = FlushPolicy(messages=500, ms=3000)
    policy.record(1, now=10.0)
    policy.record(1, now=12.5)
    assert not policy.due(12.999)
    assert policy.seconds_until_due(11.0) == pytest.approx(2.0)
    assert policy.due(13.0)
    assert policy.seconds_until_due(14.0) == 0.0


def test_flush_resets_both_rules():
    policy = FlushPolicy(messages=3, ms=1000)
    policy.record(5, now=0.0)
    assert policy.begin() == 5
    policy.done()
    assert policy.unflushed == 0
    assert not policy.due(100.0)
    policy.record(1, now=100.0)
    assert not policy.due(100.5)
    assert policy.due(101.0)


def test_messages_appended_during_a_flush_keep_their_own_age():
    """The docstring's example: 10 messages arrive while 200 are being fsynced."""
    policy = FlushPolicy(messages=500, ms=3000)
    policy.record(200, now=10.0)
    assert not policy.due(11.0)
    assert policy.due(13.0)
    assert policy.begin() == 200
    assert not policy.due(13.0)
    policy.record(10, now=13.5)
    assert policy.unflushed == 210
    policy.done()
    assert policy.unflushed == 10
    assert not policy.due(16.4)
    assert policy.due(16.5)


def test_count_during_a_flush_counts_only_new_messages():
    policy = FlushPolicy(messages=3, ms=60_000)
    policy.record(3, now=0.0)
    policy.begin()
    policy.record(2, now=0.1)
    assert not policy.due(0.1)
    policy.record(1, now=0.2)
    assert policy.due(0.2)


def test_abort_puts_the_messages_back_with_their_age():
    policy = FlushPolicy(messages=100, ms=1000)
    policy.record(4, now=5.0)
    policy.begin()
    policy.record(1, now=5.8)
    policy.abort()
    assert policy.unflushed == 5
    assert policy.pending == 5
    assert policy.due(6.0)
    assert not policy.flushing


def test_abort_without_a_flush_changes_nothing():
    policy = FlushPolicy(messages=100, ms=1000)
    policy.record(2, now=1.0)
    policy.abort()
    assert (policy.pending, policy.pending_since) == (2, 1.0)


def test_empty_flush_keeps_later_records_timed_from_themselves():
    policy = FlushPolicy(messages=100, ms=1000)
    assert policy.begin() == 0
    policy.record(1, now=50.0)
    policy.done()
    assert not policy.due(50.9)
    assert policy.due(51.0)


def test_only_one_flush_in_flight():
    policy = FlushPolicy(messages=1, ms=1)
    policy.begin()
    with pytest.raises(RuntimeError):
        policy.begin()
    policy.done()
    policy.begin()


@pytest.mark.parametrize("messages, ms", [(0, 1000), (1, 0), (-1, 5)])
def test_rejects_non_positive_settings(messages, ms):
    with pytest.raises(ValueError):
        FlushPolicy(messages, ms)


def test_messages_become_visible_only_after_a_flush_by_default(log_path):
    log = Log(log_path, LogConfig(flush_messages=1000, flush_ms=60_000))
    assert log.config.visible_after_flush
    log.append(msg(0), 1)
    log.append(msg(1), 1)
    assert (log.end_offset, log.visible_end) == (218, 0)
    assert log.read(0, 1000) == b""
    with pytest.raises(OffsetOutOfRange):
        log.read(109, 1000)
    log.flush()
    assert log.visible_end == 218
    assert len(log.read(0, 1000)) == 218
    log.append(msg(2), 1)
    assert log.read(218, 1000) == b""
    assert len(log.read(0, 1000)) == 218
    log.close()


def test_visible_immediately_when_configured(log_path):
    log = make_log(log_path, visible_after_flush=False)
    log.append(msg(0), 1)
    assert log.visible_end == 109
    assert len(log.read(0, 1000)) == 109
    assert log.flushed_end == 0
    log.close()


def test_flush_due_by_count(log_path):
    log = make_log(log_path, flush_messages=3, flush_ms=60_000)
    now = time.monotonic()
    log.append(msg(0) + msg(1), 2)
    assert not log.flush_due(now)
    log.append(msg(2), 1)
    assert log.flush_due(now)
    log.flush()
    assert not log.flush_due(time.monotonic())
    assert log.flush_count == 1
    log.close()


def test_flush_due_by_time(log_path):
    log = make_log(log_path, flush_messages=1000, flush_ms=200)
    before = time.monotonic()
    log.append(msg(0), 1)
    after = time.monotonic()
    assert not log.flush_due(before + 0.1)
    assert log.flush_due(after + 0.2)
    assert 0 < log.seconds_until_flush(before) <= 0.2 + (after - before)
    log.flush()
    assert not log.flush_due(after + 100)
    assert log.seconds_until_flush(after) is None
    log.close()


def test_flush_without_new_data_does_not_fsync(log_path, monkeypatch):
    log = make_log(log_path)
    log.flush()
    assert log.flush_count == 0
    log.append(msg(0), 1)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(log_module.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    log.flush()
    log.flush()
    assert len(synced) == 2, "the segment and the exposed-end file, once"
    assert log.flush_count == 1
    assert log.flush_seconds >= 0
    log.close()


def test_flush_syncs_rolled_segments_too(log_path, monkeypatch):
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(20)])
    assert log.segment_count == 3
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(log_module.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    log.flush()
    assert len(synced) == 4, "three segments and the exposed-end file"
    assert log.flushed_end == log.end_offset
    log.close()


def test_a_failed_fsync_keeps_data_invisible_and_is_retried(log_path, monkeypatch):
    log = Log(log_path, LogConfig(flush_messages=1, segment_bytes=KIB))
    append_each(log, [msg(i) for i in range(12)])
    real_fsync = os.fsync

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(log_module.os, "fsync", broken)
    with pytest.raises(StorageError, match="disk error"):
        log.flush()
    assert log.visible_end == 0
    assert log.policy.pending == 12 and log.flush_due(time.monotonic())
    synced = []
    monkeypatch.setattr(log_module.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    log.flush()
    assert len(synced) == 3, "two segments and the exposed-end file"
    assert log.visible_end == 12 * 109
    log.close()
