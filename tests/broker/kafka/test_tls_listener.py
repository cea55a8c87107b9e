"""The Kafka listener with TLS on a real TCP socket, its loop in a thread as the broker's: the
handshake is driven by readiness, bytes TLS decrypted beyond a turn's read bound (left in the
SSL object, the fd no longer readable) are still served, and a connection that never
handshakes is closed and counted after its time."""
from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from types import SimpleNamespace

import pytest
import zmq

from broker.error_counts import ErrorCounts
from broker.kafka import apis, listener as listener_module, tls
from broker.kafka.listener import KafkaListener
from broker.kafka.request import KafkaContext
from cluster.supervision import certificates
from tests.broker.kafka.test_listener import _answer, _api_versions


@pytest.fixture
def tls_listener(tmp_path, monkeypatch):
    """A TLS listener reading at most 1 KiB per connection per turn, 256 bytes at a time."""
    monkeypatch.setattr(listener_module, "_READ_CHUNK", 256)
    monkeypatch.setattr(listener_module, "_READ_PER_TURN", 1024)
    monkeypatch.setattr(listener_module, "_PROVE_S", 1.0)
    config = certificates.ensure(tmp_path)
    lis = KafkaListener("127.0.0.1", 0, "127.0.0.1", 1 << 20, tls=tls.server_context(config))
    errors = ErrorCounts()
    ctx = KafkaContext(logs=None, handlers=SimpleNamespace(errors=errors), replicas=None,
                       config=None, zk=None, broker_id=0, versions=dict(apis.VERSIONS))
    lis.attach(ctx, apis.dispatch)
    poller = zmq.Poller()
    lis.register(poller)
    stop = threading.Event()
    failures: list[BaseException] = []

    def loop():
        try:
            while not stop.is_set():
                events = dict(poller.poll(0 if lis.has_pending() else 20))
                lis.handle({fd: ev for fd, ev in events.items() if fd in lis.fds()})
                lis.tick(time.monotonic())
        except BaseException as exc:   # the test asserts the loop never gets here
            failures.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield lis, config.ca_certificate, failures, errors
    stop.set()
    thread.join(5)
    lis.close()


def test_requests_beyond_the_read_bound_inside_one_tls_record_are_all_answered(tls_listener):
    lis, ca, failures, _ = tls_listener
    context = ssl.create_default_context(cafile=ca)
    raw = socket.create_connection(("127.0.0.1", lis.port), timeout=10)
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        burst = b"".join(_api_versions("c", i) for i in range(300))   # one write, ~6 KiB
        assert len(burst) > 4 * 1024
        sock.sendall(burst)
        ids = [struct.unpack_from(">i", _answer(sock))[0] for _ in range(300)]
    assert ids == list(range(300))
    assert failures == []


def test_a_connection_that_never_handshakes_is_closed_and_counted(tls_listener):
    lis, ca, failures, errors = tls_listener
    with socket.create_connection(("127.0.0.1", lis.port), timeout=10) as idle:
        assert idle.recv(1) == b""                    # closed by the listener, not the timeout
    assert errors.snapshot() == {"authentication_failed": 1}
    assert not lis.unproven and failures == []
