"""The Kafka listener: non-blocking TCP sockets polled by the broker's own zmq.Poller loop.

No threads: the LogManager and the purgatories are single-threaded, so the listener's sockets
are raw file descriptors registered in the broker's poller beside its ZeroMQ sockets, and every
handler runs on the loop's thread. Per connection there is a read buffer (whole frames are
taken from it), a queue of response slots in request order (a slot is filled at once or, for a
deferred request, by ``ctx.reply`` later) and a write queue of memoryviews sent as far as the
socket takes them (POLLOUT is asked for only while something is left). A slot that is not yet
filled holds back the responses behind it: Kafka clients match responses to requests by order
per connection. A request with no response (Produce acks=0) takes no slot; one that failed
(the handler returns CLOSE) closes its connection.

A frame larger than ``max_request_bytes`` closes its connection (as Kafka's broker does: it
cannot be skipped without reading it); a request that does not decode is answered with the
protocol's error by the dispatcher; only a handler's bug closes the connection, logged.
"""
from __future__ import annotations

import errno
import logging
import socket
from collections import deque

import zmq

from broker.kafka import wire
from broker.kafka.request import CLOSE, DEFERRED, KafkaContext, KafkaRequest

logger = logging.getLogger(__name__)

_READ_CHUNK = 1 << 16
_READ_PER_TURN = 4 << 20      # bytes read from one connection per turn, so none starves others
_ACCEPT_PER_TURN = 64


class _Slot:
    __slots__ = ("data",)

    def __init__(self, data: bytes | None = None):
        self.data = data


class Connection:
    """One client connection: its socket, read buffer, response slots and write queue."""

    __slots__ = ("sock", "fd", "peer", "inbuf", "slots", "out", "closed", "writing")

    def __init__(self, sock: socket.socket, peer):
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.inbuf = bytearray()
        self.slots: deque[_Slot] = deque()
        self.out: deque[memoryview] = deque()
        self.closed = False
        self.writing = False

    def __repr__(self) -> str:
        return f"Connection({self.peer})"


class KafkaListener:
    """Accepts Kafka connections and runs their requests through ``dispatch``.

    ``dispatch(frame, conn) -> (req, result)`` (broker/kafka/apis.py): the request decoded and
    its handler's result (a response struct, bytes already framed, None, or DEFERRED).
    """

    def __init__(self, host: str, port: int, advertised_host: str, max_request_bytes: int):
        self.ctx: KafkaContext | None = None
        self.dispatch = None
        self.max_request_bytes = max_request_bytes
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"{advertised_host}:{self.port}"
        self.conns: dict[int, Connection] = {}
        self.poller: zmq.Poller | None = None

    def attach(self, ctx: KafkaContext, dispatch) -> None:
        """Serve requests with ``dispatch(frame, conn, ctx)`` (bound once the broker's pieces
        exist: the port is bound first, to be registered)."""
        self.ctx = ctx
        self.dispatch = dispatch
        ctx.endpoint = self.endpoint
        ctx.reply = self.reply

    def register(self, poller: zmq.Poller) -> None:
        self.poller = poller
        poller.register(self.sock.fileno(), zmq.POLLIN)

    def fds(self) -> set[int]:
        return {self.sock.fileno(), *self.conns}

    def handle(self, events: dict) -> None:
        """Serve the listener's fds among a poll's ``events`` (fd -> flags)."""
        listen_fd = self.sock.fileno()
        for fd, flags in events.items():
            if fd == listen_fd:
                self._accept()
                continue
            conn = self.conns.get(fd)
            if conn is None:
                continue
            if flags & zmq.POLLERR:
                self._close(conn, "socket error")
                continue
            if flags & zmq.POLLIN:
                self._read(conn)
            if flags & zmq.POLLOUT and not conn.closed:
                self._write(conn)

    def tick(self, now: float) -> float | None:
        """The loop's turn for timers: every ticker the handlers registered."""
        return self.ctx.tick(now)

    def reply(self, req: KafkaRequest, response) -> None:
        """Answer a deferred request (``response`` a struct of its version)."""
        conn = req.conn
        if conn.closed:
            return
        data = self._encode(req, response)
        if data is None:
            return
        req.slot.data = data
        self._flush(conn)

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self._close(conn, None)
        if self.poller is not None:
            self.poller.unregister(self.sock.fileno())
        self.sock.close()

    # --- the connections -------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(_ACCEPT_PER_TURN):
            try:
                sock, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:   # EMFILE and the like: the client sees a refused connection
                logger.warning("kafka listener: accept failed: %s", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(sock, peer)
            self.conns[conn.fd] = conn
            self.poller.register(conn.fd, zmq.POLLIN)

    def _read(self, conn: Connection) -> None:
        """Read what the socket has (up to a bound per turn) and serve its whole requests; a
        client that sent requests and closed (acks=0 produce) has them served first."""
        got = 0
        ended = None
        while got < _READ_PER_TURN:
            try:
                chunk = conn.sock.recv(_READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                ended = f"read failed: {exc}"
                break
            if not chunk:
                ended = ""
                break
            conn.inbuf += chunk
            got += len(chunk)
        try:
            frames = wire.take_frames(conn.inbuf, self.max_request_bytes)
        except wire.FrameTooLarge as exc:
            self._close(conn, str(exc))
            return
        for frame in frames:
            self._request(conn, frame)
            if conn.closed:
                return
        if ended is not None:
            self._close(conn, ended or None)
            return
        self._flush(conn)

    def _request(self, conn: Connection, frame: bytes) -> None:
        try:
            req, result = self.dispatch(frame, conn, self.ctx)
        except Exception:
            logger.exception("kafka request from %s failed; closing the connection", conn.peer)
            self._close(conn, None)
            return
        if result is None:
            return
        if result is CLOSE:
            logger.info("kafka listener: closing %s after a failed request it expects no "
                        "answer to", conn.peer)
            self._close(conn, None)
            return
        if result is DEFERRED:
            req.slot = _Slot()
            conn.slots.append(req.slot)
        elif isinstance(result, bytes):
            conn.slots.append(_Slot(result))
        else:
            data = self._encode(req, result)
            if data is not None:
                conn.slots.append(_Slot(data))

    def _encode(self, req: KafkaRequest, response) -> bytes | None:
        """The framed response, or None when it cannot be encoded (a handler's bug): that is
        logged with its traceback and closes the request's connection, as a failed dispatch
        does, so one bad answer never stops the broker's loop."""
        try:
            return wire.encode_response(response, req.api_version, req.correlation_id)
        except Exception:
            logger.exception("kafka: the answer to api %d v%d from %s could not be encoded; "
                             "closing the connection", req.api_key, req.api_version,
                             req.conn.peer)
            self._close(req.conn, None)
            return None

    def _flush(self, conn: Connection) -> None:
        """Move the filled slots at the head to the write queue, and send."""
        slots = conn.slots
        while slots and slots[0].data is not None:
            conn.out.append(memoryview(slots.popleft().data))
        if conn.out:
            self._write(conn)

    def _write(self, conn: Connection) -> None:
        out = conn.out
        while out:
            view = out[0]
            try:
                sent = conn.sock.send(view)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                    logger.warning("kafka listener: send to %s failed: %s", conn.peer, exc)
                self._close(conn, None)
                return
            if sent < len(view):
                out[0] = view[sent:]
                break
            out.popleft()
        want = bool(out)
        if want != conn.writing:
            conn.writing = want
            self.poller.register(conn.fd, zmq.POLLIN | (zmq.POLLOUT if want else 0))

    def _close(self, conn: Connection, why: str | None) -> None:
        if conn.closed:
            return
        if why:
            logger.warning("kafka listener: closing %s: %s", conn.peer, why)
        conn.closed = True
        self.conns.pop(conn.fd, None)
        if self.poller is not None:
            self.poller.unregister(conn.fd)
        conn.sock.close()
