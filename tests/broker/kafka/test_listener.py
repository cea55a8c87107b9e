"""The Kafka listener on a real TCP socket: a response that cannot be encoded (a bug of ours)
closes that one connection with a logged traceback; the listener goes on serving the others."""
from __future__ import annotations

import socket
import struct
import threading

import pytest
import zmq

from broker.kafka import apis
from broker.kafka.listener import KafkaListener
from broker.kafka.request import DEFERRED, KafkaContext

_SIZE = struct.Struct(">i")


class _Unencodable:
    """Not a response struct: encoding it raises, as a handler's malformed response would."""

    API_VERSION = 0

    def with_header(self, **kwargs):
        raise TypeError("not a response struct")


def _dispatch(frame: bytes, conn, ctx):
    """apis.dispatch, except that client id 'now' gets an unencodable answer at once and
    'later' gets it through ctx.reply, as a deferred handler would."""
    req, result = apis.dispatch(frame, conn, ctx)
    if req is not None and req.client_id == "now":
        return req, _Unencodable()
    if req is not None and req.client_id == "later":
        ctx.state["later"] = req
        return req, DEFERRED
    return req, result


def _api_versions(client_id: str, correlation_id: int) -> bytes:
    """An ApiVersions v0 request, framed (v0 body is empty; header v1 has the client id)."""
    cid = client_id.encode()
    body = struct.pack(">hhih", 18, 0, correlation_id, len(cid)) + cid
    return _SIZE.pack(len(body)) + body


def _answer(sock: socket.socket) -> bytes:
    """One framed response's body, or b'' when the listener closed the connection."""
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return b""
        head += chunk
    (size,) = _SIZE.unpack(head)
    body = b""
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        assert chunk, "closed mid-response"
        body += chunk
    return body


@pytest.fixture
def listener():
    lis = KafkaListener("127.0.0.1", 0, "127.0.0.1", 1 << 20)
    ctx = KafkaContext(logs=None, handlers=None, replicas=None, config=None, zk=None,
                       broker_id=0, versions=dict(apis.VERSIONS))
    lis.attach(ctx, _dispatch)
    poller = zmq.Poller()
    lis.register(poller)
    stop = threading.Event()
    failures: list[BaseException] = []

    def loop():
        try:
            while not stop.is_set():
                events = dict(poller.poll(20))
                lis.handle({fd: ev for fd, ev in events.items() if fd in lis.fds()})
                later = ctx.state.pop("later", None)
                if later is not None:
                    ctx.reply(later, _Unencodable())
        except BaseException as exc:   # the test asserts the loop never gets here
            failures.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield lis, failures
    stop.set()
    thread.join(5)
    lis.close()


@pytest.mark.parametrize("when", ["now", "later"])
def test_an_unencodable_response_closes_only_its_connection(listener, when):
    lis, failures = listener
    bad = socket.create_connection(("127.0.0.1", lis.port), timeout=10)
    good = socket.create_connection(("127.0.0.1", lis.port), timeout=10)
    bad.sendall(_api_versions(when, 7))
    assert _answer(bad) == b""                       # closed, not left hanging
    good.sendall(_api_versions("fine", 8))
    body = _answer(good)
    assert struct.unpack_from(">ih", body) == (8, 0)  # correlation id 8, no error
    assert failures == []
    bad.close()
    good.close()
