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
protocol's error by the dispatcher; only a handler's bug closes the connection, logged. A
``CloseAfter`` result (a refused SASL client) is answered, then the connection is closed once
the answer is sent; nothing the connection sent after it is served.

TLS (``tls``, an SSLContext: broker/kafka/tls.py): each accepted socket is wrapped with
``do_handshake_on_connect=False`` and its handshake is driven by readiness: ``do_handshake``
is called on each event of the fd and asks, through SSLWantReadError / SSLWantWriteError,
for POLLIN or POLLOUT next. Reads go through ``recv_into`` as for plain sockets; TLS decrypts
whole records, so bytes can wait in the SSL object (``pending()``) with nothing left to read
on the fd: a connection left so (the per-turn read bound stopped it) is read again next turn
without an event, and ``has_pending`` makes the broker's poll not wait. A handshake that
fails (a plaintext client on the TLS port, a client that does not trust the certificate) is
counted as a refused connection (``authentication_failed``) and closed; the loop goes on.
So is a connection that has not finished its TLS handshake and SASL authentication within
``_PROVE_S`` (30 s) of its accept: an idle stranger holds no descriptor for long.
"""
from __future__ import annotations

import errno
import logging
import socket
import ssl
from collections import deque

import zmq

from broker.kafka import wire
from broker.kafka.request import CLOSE, DEFERRED, CloseAfter, KafkaContext, KafkaRequest
from coordinator.authorizer import ANONYMOUS
from coordinator.errors import AuthenticationFailed

logger = logging.getLogger(__name__)

_READ_CHUNK = 1 << 16
_READ_PER_TURN = 4 << 20      # bytes read from one connection per turn, so none starves others
_ACCEPT_PER_TURN = 64
_LINGER_S = 0.2               # a refused client's time to read its answer before the close
_PROVE_S = 30.0               # a new connection's time to finish TLS and SASL


class _Slot:
    __slots__ = ("data",)

    def __init__(self, data: bytes | None = None):
        self.data = data


class Connection:
    """One client connection: its socket, read buffer, response slots and write queue; its TLS
    handshake's state, and its SASL state (``sasl``: None when the listener asks for none,
    else broker/kafka/sasl.py's per-connection state; ``principal`` once authenticated, and
    ``ANONYMOUS`` on a listener without SASL)."""

    __slots__ = ("sock", "fd", "peer", "inbuf", "slots", "out", "closed", "writing",
                 "handshaking", "events", "closing", "sasl", "principal", "linger_until")

    def __init__(self, sock: socket.socket, peer):
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.inbuf = bytearray()
        self.slots: deque[_Slot] = deque()
        self.out: deque[memoryview] = deque()
        self.closed = False
        self.writing = False
        self.handshaking = isinstance(sock, ssl.SSLSocket)
        self.events = zmq.POLLIN
        self.closing = False     # answered a refusal: closed once it is sent
        self.sasl = None
        self.principal = ""
        self.linger_until: float | None = None     # refused and answered: closed then

    def __repr__(self) -> str:
        return f"Connection({self.peer})"


class KafkaListener:
    """Accepts Kafka connections and runs their requests through ``dispatch``.

    ``dispatch(frame, conn) -> (req, result)`` (broker/kafka/apis.py): the request decoded and
    its handler's result (a response struct, bytes already framed, None, or DEFERRED).
    """

    def __init__(self, host: str, port: int, advertised_host: str, max_request_bytes: int,
                 tls: ssl.SSLContext | None = None, sasl_state=None):
        self.tls = tls
        self.sasl_state = sasl_state     # () -> a new connection's SASL state, or None
        self.pending: set[Connection] = set()     # TLS bytes decrypted but not yet read
        self.lingering: set[Connection] = set()   # refused, waiting for the client's close
        self.unproven: dict[Connection, float] = {}   # TLS or SASL not done yet: deadline
        self._scratch = bytearray(_READ_CHUNK)
        self._scratch_view = memoryview(self._scratch)
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
        ctx.close = lambda conn: self._close(conn, None)

    def register(self, poller: zmq.Poller) -> None:
        self.poller = poller
        poller.register(self.sock.fileno(), zmq.POLLIN)

    def fds(self) -> set[int]:
        return {self.sock.fileno(), *self.conns}

    def has_pending(self) -> bool:
        """Whether a connection has bytes TLS decrypted and the loop has not read yet: the
        poll must then not wait (the fd may never be readable again for them)."""
        return bool(self.pending)

    def handle(self, events: dict) -> None:
        """Serve the listener's fds among a poll's ``events`` (fd -> flags), and the
        connections with pending TLS bytes."""
        listen_fd = self.sock.fileno()
        if self.pending:
            for conn in list(self.pending):
                if conn.fd not in events:
                    events[conn.fd] = zmq.POLLIN
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
            if conn.handshaking:
                self._handshake(conn)
                continue
            if conn.linger_until is not None:
                self._discard(conn)
                continue
            if flags & zmq.POLLIN and not conn.closing:
                self._read(conn)
            if flags & zmq.POLLOUT and not conn.closed:
                self._write(conn)

    def tick(self, now: float) -> float | None:
        """The loop's turn for timers: every ticker the handlers registered, the refused
        connections whose linger is over, and the connections that did not finish TLS and
        SASL in time."""
        for conn in [c for c in self.lingering if now >= c.linger_until]:
            self._close(conn, None)
        deadlines = [c.linger_until for c in self.lingering]
        for conn, deadline in list(self.unproven.items()):
            if not conn.handshaking and (conn.sasl is None or conn.sasl.done):
                del self.unproven[conn]
            elif now >= deadline:
                self.refused(conn, f"{conn.peer[0]}:{conn.peer[1]} did not finish "
                             f"{'its TLS handshake' if conn.handshaking else 'SASL'} within "
                             f"{_PROVE_S:g} s")
            else:
                deadlines.append(deadline)
        handlers = self.ctx.tick(now)
        if handlers is not None:
            deadlines.append(handlers)
        return min(deadlines) if deadlines else None

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
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True,
                                            do_handshake_on_connect=False)
            conn = Connection(sock, peer)
            if self.sasl_state is not None:
                conn.sasl = self.sasl_state()
            else:
                conn.principal = ANONYMOUS      # as Kafka's: nobody proved who it is
            if self.tls is not None or conn.sasl is not None:
                self.unproven[conn] = self.ctx.now() + _PROVE_S
            self.conns[conn.fd] = conn
            self.poller.register(conn.fd, zmq.POLLIN)

    def _want(self, conn: Connection, events: int) -> None:
        if events != conn.events:
            conn.events = events
            self.poller.register(conn.fd, events)

    def _handshake(self, conn: Connection) -> None:
        """One step of the TLS handshake; once done, whatever the client sent already is
        served (a TLS 1.3 client's first request can come with its last handshake flight)."""
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(conn, zmq.POLLIN)
            return
        except ssl.SSLWantWriteError:
            self._want(conn, zmq.POLLIN | zmq.POLLOUT)
            return
        except (ssl.SSLError, OSError) as exc:
            self.refused(conn, f"TLS handshake with {conn.peer[0]}:{conn.peer[1]} failed "
                          f"({getattr(exc, 'reason', None) or exc})")
            return
        conn.handshaking = False
        self._want(conn, zmq.POLLIN)
        self._read(conn)

    def refused(self, conn: Connection, why: str) -> None:
        """A connection that failed to authenticate: counted and logged at most once per
        interval by the broker's ErrorCounts, then closed."""
        self.ctx.handlers.errors.connection_refused(AuthenticationFailed(why))
        self._close(conn, None)

    def _read(self, conn: Connection) -> None:
        """Read what the socket has (up to a bound per turn) and serve its whole requests; a
        client that sent requests and closed (acks=0 produce) has them served first."""
        got = 0
        ended = None
        sock, scratch, view = conn.sock, self._scratch, self._scratch_view
        tls = self.tls is not None
        self.pending.discard(conn)
        while True:
            if got >= _READ_PER_TURN:
                if tls and sock.pending():
                    self.pending.add(conn)
                break
            try:
                n = sock.recv_into(scratch)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:     # a TLS read that must write first (key update)
                self._want(conn, zmq.POLLIN | zmq.POLLOUT)
                break
            except OSError as exc:            # ssl.SSLError included: a bad record
                ended = f"read failed: {exc}"
                break
            if not n:
                ended = ""
                break
            conn.inbuf += view[:n]
            got += n
        try:
            frames = wire.take_frames(conn.inbuf, self.max_request_bytes)
        except wire.FrameTooLarge as exc:
            self._close(conn, str(exc))
            return
        for frame in frames:
            self._request(conn, frame)
            if conn.closed or conn.closing:
                break
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
        if isinstance(result, CloseAfter):
            conn.closing = True
            self.pending.discard(conn)
            result = result.response
            if result is None:
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
        if conn.handshaking:
            self._handshake(conn)
            return
        out = conn.out
        while out:
            view = out[0]
            try:
                sent = conn.sock.send(view)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError,
                    ssl.SSLWantReadError):
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
        if not out and conn.closing and not conn.slots:
            self._linger(conn)
            return
        want = bool(out)
        conn.writing = want
        self._want(conn, (0 if conn.closing else zmq.POLLIN) | (zmq.POLLOUT if want else 0))

    def _linger(self, conn: Connection) -> None:
        """After a refusal's answer: read nothing more of the connection and close it when
        the client does or ``_LINGER_S`` later, as Kafka's broker waits
        ``connection.failed.authentication.delay.ms`` (100 ms): a close right after the answer
        reaches some clients (kafka-python) before they read the answer, and they report a
        lost connection instead of the refusal. The wait also slows a client that retries a
        wrong password at once."""
        conn.linger_until = self.ctx.now() + _LINGER_S
        self.lingering.add(conn)
        self._want(conn, zmq.POLLIN)

    def _discard(self, conn: Connection) -> None:
        try:
            while conn.sock.recv_into(self._scratch):
                pass
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError:
            pass
        self._close(conn, None)

    def _close(self, conn: Connection, why: str | None) -> None:
        if conn.closed:
            return
        if why:
            logger.warning("kafka listener: closing %s: %s", conn.peer, why)
        conn.closed = True
        self.pending.discard(conn)
        self.lingering.discard(conn)
        self.unproven.pop(conn, None)
        self.conns.pop(conn.fd, None)
        if self.poller is not None:
            self.poller.unregister(conn.fd)
        conn.sock.close()
