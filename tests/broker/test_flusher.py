"""The flusher thread on a real Log and a real ZeroMQ socket."""
import zmq

from broker import message
from broker.config import LogConfig
from broker.flusher import Flusher
from broker.log import Log
from coordinator.errors import StorageError
from tests.helpers import wait_for


def test_the_flusher_keeps_flushing_when_its_wake_up_socket_is_full(tmp_path):
    """A wake-up the loop has not read yet is enough; a full socket must not end the thread.

    Nobody reads the loop's end here, so after about SNDHWM + RCVHWM (1000 + 1) wake-ups the
    flusher's send finds the socket full."""
    context = zmq.Context()
    loop_end = context.socket(zmq.PAIR)
    loop_end.setsockopt(zmq.RCVHWM, 1)
    loop_end.bind("inproc://wake-test")
    flusher = Flusher(context, "inproc://wake-test")
    flusher.start()
    log_ = Log(tmp_path / "p0", LogConfig(flush_ms=60_000, flush_messages=10_000))
    try:
        for i in range(1500):
            log_.append(message.encode(b"x"), 1)
            flusher.submit(log_)
            wait_for(lambda: log_.visible_end == log_.end_offset, 10, interval=0.0005,
                     what=f"flush number {i + 1}")
        assert flusher.is_alive()
        assert log_.flush_count == 1500
        assert flusher.wakeups_dropped > 0, "the full socket's wake-ups are counted, not lost"
    finally:
        flusher.stop()
        flusher.join(10)
        log_.close()
        loop_end.close(0)
        context.term()


def test_a_flusher_whose_context_is_gone_still_flushes(tmp_path):
    """No wake-up socket to be had (ETERM): the flush is what matters; parked fetches then
    wait for their deadline."""
    context = zmq.Context()
    context.term()
    flusher = Flusher(context, "inproc://gone")
    log_ = Log(tmp_path / "p0", LogConfig(flush_ms=60_000, flush_messages=10_000))
    try:
        flusher.start()
        log_.append(message.encode(b"x"), 1)
        flusher.submit(log_)
        wait_for(lambda: log_.visible_end == log_.end_offset, 10, what="the flush")
    finally:
        flusher.stop()
        flusher.join(10)
        log_.close()
    assert not flusher.is_alive()


def test_a_failed_flush_is_reported_and_the_flusher_goes_on(tmp_path):
    context = zmq.Context()
    reported = []
    flusher = Flusher(context, "inproc://reported", wanted=lambda: False,
                      on_error=lambda task, exc: reported.append((task, type(exc).__name__)))
    broken, good = BrokenLog(), Log(tmp_path / "p0", LogConfig(flush_ms=60_000))
    try:
        flusher.start()
        good.append(message.encode(b"x"), 1)
        flusher.submit(broken)
        flusher.submit(good)
        wait_for(lambda: good.visible_end == good.end_offset, 10, what="the good flush")
        assert reported == [("flush", "StorageError")]
    finally:
        flusher.stop()
        flusher.join(10)
        good.close()
        context.term()


class BrokenLog:
    """A log whose disk fails at every flush."""

    def flush(self) -> None:
        raise StorageError("disk error: Input/output error (fsync failed)")
