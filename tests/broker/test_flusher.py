"""The flusher thread on a real Log and a real ZeroMQ socket."""
import zmq

from broker import message
from broker.config import LogConfig
from broker.flusher import Flusher
from broker.log import Log
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
    finally:
        flusher.stop()
        flusher.join(10)
        log_.close()
        loop_end.close(0)
        context.term()
