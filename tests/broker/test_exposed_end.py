"""The exposed end: no offset told to a client is ever handed out again."""
import errno
import os

import pytest

from broker import exposed_end
from broker import segment as segment_module
from broker.config import LogConfig
from broker.log import Log
from broker.protocol import OffsetGap, StorageError
from broker.segment import segment_name
from tests.broker.logs import append_each, crash, make_log, msg


def test_an_acknowledged_append_is_exposed_before_any_flush(log_path):
    """acks=1 tells the producer its next offset: append(expose=True) records it at once."""
    log = Log(log_path, LogConfig(flush_ms=60_000, flush_messages=1000))
    append_each(log, [msg(i) for i in range(3)])
    assert log.append(msg(3), 1, expose=True) == (327, 436)
    assert log.visible_end == 0
    crash(log)
    os.truncate(log_path / segment_name(0), 200)
    again = Log(log_path, LogConfig())
    assert again.end_offset == 436 and again.segment_starts == [0, 436]
    with pytest.raises(OffsetGap) as info:
        again.read(109, 100)
    assert info.value.resume_offset == 436
    base, _ = again.append(msg(4), 1)
    assert base == 436, "an offset handed out before the crash is never handed out again"
    again.close()


def test_visible_at_append_exposes_at_append(log_path):
    log = make_log(log_path)
    append_each(log, [msg(i) for i in range(4)])
    crash(log)
    os.truncate(log_path / segment_name(0), 2 * 109)
    again = make_log(log_path)
    assert again.segment_starts == [0, 436] and again.end_offset == 436
    again.close()


def test_the_exposed_end_is_written_only_when_it_grows(log_path, monkeypatch):
    log = Log(log_path, LogConfig(flush_ms=60_000))
    writes = []
    real = os.pwrite
    monkeypatch.setattr(exposed_end.os, "pwrite",
                        lambda fd, data, pos: writes.append(bytes(data)) or real(fd, data, pos))
    log.append(msg(0), 1)
    assert writes == [], "acks=0 exposes nothing"
    log.append(msg(1), 1, expose=True)
    log.flush()
    log.flush()
    log.append(msg(2), 1)
    log.flush()
    assert [int(w) for w in writes] == [218, 327]
    log.close()


def test_a_failed_append_takes_its_exposure_back(log_path, monkeypatch):
    log = make_log(log_path)
    log.append(msg(0), 1)
    monkeypatch.setattr(segment_module.os, "write",
                        lambda fd, data: (_ for _ in ()).throw(OSError(errno.EIO, "I/O")))
    with pytest.raises(StorageError):
        log.append(msg(1), 1, expose=True)
    monkeypatch.undo()
    assert int((log_path / exposed_end.FILE_NAME).read_text()) == 109
    crash(log)
    again = make_log(log_path)
    assert again.end_offset == 109 and again.gaps == []
    again.close()
