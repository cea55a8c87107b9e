"""One request socket (ZeroMQ DEALER) to one broker, with correlation ids.

A DEALER may have several requests in flight; replies carry the request's correlation id, so
late replies to a request that already timed out are recognised and dropped. After a timeout
the socket is rebuilt, which also drops requests ZeroMQ queued for a peer that went away (they
would otherwise be delivered, as duplicates, when a broker comes back on the same port).

To a secured cluster (issue 14) the socket speaks CURVE with the client's key (``curve``, the
socket options; none when the client has no key). A broker that refuses the key, or a client
without one, gets no reply at the ZeroMQ level: the handshake fails. So that this is a typed
error and not a timeout, a new socket waits for its handshake's outcome (a monitor's events,
until the handshake succeeds, fails or the connection attempt fails, at most the request
timeout) and raises AuthenticationFailed when it was refused; a call that later times out asks
the monitor again (the broker may have restarted and refused the key on reconnecting).

The context passed in is the pool's ClientContext (clients/context.py), which holds every
socket made in it until the socket is closed.
"""
from __future__ import annotations

import itertools
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from broker import protocol
from coordinator.errors import AuthenticationFailed

# pyzmq's Cython send, without the Python-level wrapper of zmq.Socket.send that only handles
# draft-API options (it costs about as much as the send itself for a small frame).
zmq_send = getattr(zmq.backend, "Socket", zmq.Socket).send
ZERO_COPY_BYTES = 1 << 16
_REFUSED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
_OUTCOME = _REFUSED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_CONNECT_RETRIED


class Handshake:
    """The outcome of a secured socket's handshakes, from its monitor."""

    def __init__(self, sock: zmq.Socket, endpoint: str, has_key: bool):
        self.monitor = sock.get_monitor_socket(_OUTCOME)
        self.endpoint = endpoint
        self.has_key = has_key

    def wait(self, timeout_ms: float) -> None:
        """Until the first handshake's outcome (or a failed connection attempt, or the
        timeout); raises AuthenticationFailed when the broker refused it."""
        deadline = time.monotonic() + timeout_ms / 1000
        while (left := deadline - time.monotonic()) > 0 and self.monitor.poll(left * 1000):
            event = recv_monitor_message(self.monitor)["event"]
            if event & _REFUSED:
                raise self.refused()
            if event & (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_CONNECT_RETRIED):
                return

    def check(self) -> None:
        """Raise AuthenticationFailed if a handshake was refused since the last look."""
        refused = False
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)["event"]
            if event & _REFUSED:
                refused = True
            elif event & zmq.EVENT_HANDSHAKE_SUCCEEDED:
                refused = False
        if refused:
            raise self.refused()

    def refused(self) -> AuthenticationFailed:
        why = ("its key is not on the cluster's allow list (unknown or revoked)" if self.has_key
               else "the cluster is secured and this client has no key: pass credentials=PATH, "
                    "--credentials or $SLUICE_CREDENTIALS")
        return AuthenticationFailed(f"the broker at {self.endpoint} refused the connection: {why}")

    def close(self) -> None:
        self.monitor.close(linger=0)


class Connection:
    def __init__(self, context: zmq.Context, endpoint: str, curve: dict | None = None,
                 secured: bool = False, handshake_timeout_ms: float = 5000):
        """``curve``: the client's CURVE socket options; ``secured``: the cluster is (watch the
        handshakes even without a key, so a refusal is reported as one)."""
        self.context = context
        self.endpoint = endpoint
        self._curve = curve or {}
        self._secured = secured or bool(curve)
        self._handshake_timeout_ms = handshake_timeout_ms
        self._handshake: Handshake | None = None
        self._ids = itertools.count(1)
        self.discarded = 0
        self.socket = self._open()

    def _open(self) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 1000)
        for option, value in self._curve.items():
            sock.setsockopt(option, value)
        if self._secured:
            self._handshake = Handshake(sock, self.endpoint, bool(self._curve))
        sock.connect(self.endpoint)
        if self._handshake is not None:
            try:
                self._handshake.wait(self._handshake_timeout_ms)
            except AuthenticationFailed:
                self._close_socket(sock)
                raise
        return sock

    def _close_socket(self, sock: zmq.Socket) -> None:
        if self._handshake is not None:
            self._handshake.close()
            self._handshake = None
        sock.close(linger=0)

    def next_id(self) -> int:
        return next(self._ids) & 0xFFFFFFFF or next(self._ids)

    def reset(self) -> None:
        """Forget queued requests and reconnect (after a timeout or a broker move)."""
        self._close_socket(self.socket)
        self.socket = self._open()

    def check_refused(self) -> None:
        """Raise AuthenticationFailed if the broker refused this socket's key since the last
        look (a secured cluster; a no-op otherwise)."""
        if self._handshake is not None:
            self._handshake.check()

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
                self.check_refused()
                self.reset()
                raise protocol.RequestTimedOut(
                    f"no reply from broker at {self.endpoint} within {timeout_ms:.0f} ms")
            if protocol.RESPONSE.unpack_from(frames[0].buffer)[0] == corr:
                return frames
            self.discarded += 1

    def close(self) -> None:
        self._close_socket(self.socket)
