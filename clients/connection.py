"""One request socket (ZeroMQ DEALER) to one broker, with correlation ids.

A DEALER may have several requests in flight; replies carry the request's correlation id, so
late replies to a request that already timed out are recognised and dropped. After a timeout
the socket is rebuilt, which also drops requests ZeroMQ queued for a peer that went away (they
would otherwise be delivered, as duplicates, when a broker comes back on the same port).
"""
from __future__ import annotations

import itertools
import time

import zmq

from broker import protocol

# pyzmq's Cython send, without the Python-level wrapper of zmq.Socket.send that only handles
# draft-API options (it costs about as much as the send itself for a small frame).
zmq_send = getattr(zmq.backend, "Socket", zmq.Socket).send
ZERO_COPY_BYTES = 1 << 16


class Connection:
    def __init__(self, context: zmq.Context, endpoint: str):
        self.context = context
        self.endpoint = endpoint
        self._ids = itertools.count(1)
        self.discarded = 0
        self.socket = self._open()

    def _open(self) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.connect(self.endpoint)
        return sock

    def next_id(self) -> int:
        return next(self._ids) & 0xFFFFFFFF or next(self._ids)

    def reset(self) -> None:
        """Forget queued requests and reconnect (after a timeout or a broker move)."""
        self.socket.close(linger=0)
        self.socket = self._open()

    def send(self, frames: list) -> None:
        """Send one request (ZeroMQ delivers its frames whole or not at all). Small frames are
        copied, which costs less than pyzmq's zero-copy bookkeeping; big ones are not."""
        sock = self.socket
        for frame in frames[:-1]:
            zmq_send(sock, frame, zmq.SNDMORE)
        last = frames[-1]
        zmq_send(sock, last, 0, copy=len(last) < ZERO_COPY_BYTES)

    def recv(self, timeout_ms: float) -> list | None:
        """The next reply's frames, or None after timeout_ms."""
        if self.socket.poll(max(0, int(timeout_ms))):
            return self.socket.recv_multipart(copy=False)
        return None

    def call(self, header_for, body=None, timeout_ms: float = 5000) -> list:
        """Send one request built by ``header_for(correlation_id)``; wait for its reply.

        Replies to other requests that arrive meanwhile are dropped and counted (``discarded``):
        a socket that streams requests of its own must not be used for calls."""
        corr = self.next_id()
        self.send([header_for(corr)] if body is None else [header_for(corr), body])
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            frames = self.recv((deadline - time.monotonic()) * 1000)
            if frames is None:
                self.reset()
                raise protocol.RequestTimedOut(
                    f"no reply from broker at {self.endpoint} within {timeout_ms:.0f} ms")
            if protocol.RESPONSE.unpack_from(frames[0].buffer)[0] == corr:
                return frames
            self.discarded += 1

    def close(self) -> None:
        self.socket.close(linger=0)
