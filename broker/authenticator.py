"""The secured broker's gate (issue 14): CURVE on its sockets and a ZAP handler that lets in
only the keys of the allow list.

libzmq does the CURVE handshake (and all encryption) in its I/O threads and asks the ZAP
handler, bound on the broker's context at ``inproc://zeromq.zap.01``, whether a client key may
in. This handler runs in a thread of its own, so handshakes never wait for the request loop
and a refused client hammering the broker costs the loop nothing. It answers:

| mechanism | key                        | answer                                            |
| --------- | -------------------------- | ------------------------------------------------- |
| CURVE     | on the allow list as NAME  | 200, User-Id NAME (the requests' ``principal``)    |
| CURVE     | unknown or revoked         | 400: refused, counted and logged                   |
| NULL      | (the broker's inproc PAIR) | 200 for any domain but the secured sockets'        |

A client without CURVE never reaches ZAP: its handshake fails on the mechanism; a monitor on
the broker's sockets counts and logs those refusals too. Counts go to the broker's ErrorCounts
as ``authentication_failed`` (METADATA's ``errors``), logged at most once per interval. Only a
key's public half and the peer's address are ever logged.
"""
from __future__ import annotations

import logging
import threading

import zmq
import zmq.utils.z85
from zmq.utils.monitor import recv_monitor_message

from broker.config import SecurityConfig
from broker.error_counts import ErrorCounts
from coordinator import credentials
from coordinator.allow_list import AllowList
from coordinator.errors import AuthenticationFailed

logger = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
DOMAIN = b"sluice"
_TICK_MS = 250
_PLAIN_REFUSED = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL


def server_options(server: credentials.KeyPair) -> dict:
    """Socket options of a CURVE server socket in the secured domain."""
    return {zmq.CURVE_SERVER: 1, zmq.CURVE_SECRETKEY: server.secret_key.encode("ascii"),
            zmq.CURVE_PUBLICKEY: server.public_key.encode("ascii"), zmq.ZAP_DOMAIN: DOMAIN}


client_options = credentials.curve_client_options


def apply(sock: zmq.Socket, options: dict) -> zmq.Socket:
    for option, value in options.items():
        sock.setsockopt(option, value)
    return sock


class BrokerKeys:
    """A secured broker's keys, read from the files its SecurityConfig names."""

    def __init__(self, security: SecurityConfig):
        self.server = credentials.load(security.server_key)
        self.own = credentials.load(security.credentials)
        self.digest = (None if security.zookeeper_digest_file is None
                       else credentials.read_digest(security.zookeeper_digest_file))


class Authenticator:
    """The ZAP handler thread and the monitors of the secured sockets."""

    def __init__(self, context: zmq.Context, allow: AllowList, errors: ErrorCounts):
        self.allow = allow
        self.errors = errors
        self._zap = context.socket(zmq.ROUTER)
        self._zap.setsockopt(zmq.LINGER, 0)
        self._zap.bind(ZAP_ENDPOINT)
        self._monitors: list[zmq.Socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zap", daemon=True)

    def watch(self, sock: zmq.Socket) -> None:
        """Count the handshakes ``sock`` refuses without asking ZAP (clients without CURVE).
        Call before ``start``."""
        self._monitors.append(sock.get_monitor_socket(_PLAIN_REFUSED))

    def start(self) -> "Authenticator":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for monitor in self._monitors:
            monitor.close(linger=0)
        self._zap.close(linger=0)

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._zap, zmq.POLLIN)
        for monitor in self._monitors:
            poller.register(monitor, zmq.POLLIN)
        while not self._stop.is_set():
            try:
                ready = dict(poller.poll(_TICK_MS))
            except zmq.ContextTerminated:
                return
            for sock in ready:
                try:
                    if sock is self._zap:
                        self._answer(sock.recv_multipart(zmq.NOBLOCK))
                    else:
                        self._plain_refused(recv_monitor_message(sock, zmq.NOBLOCK))
                except zmq.Again:
                    continue
                except zmq.ContextTerminated:
                    return

    def _answer(self, frames: list[bytes]) -> None:
        """One ZAP request: [routing id.., b"", version, request id, domain, address,
        identity, mechanism, credentials..]; the reply names the principal as User-Id."""
        split = frames.index(b"")
        route, body = frames[:split + 1], frames[split + 1:]
        _version, request_id, domain, address, _identity, mechanism = body[:6]
        status, user = b"200", b""
        if domain == DOMAIN:
            name = None
            if mechanism == b"CURVE" and len(body) > 6:
                public = zmq.utils.z85.encode(body[6]).decode("ascii")
                name = self.allow.name_of(public)
                refused = f"key {public[:8]}... is not on the allow list"
            else:
                refused = f"mechanism {mechanism.decode('ascii', 'replace')} is not CURVE"
            if name is None:
                status = b"400"
                self.errors.connection_refused(AuthenticationFailed(
                    f"connection from {address.decode('ascii', 'replace')} refused: "
                    f"{refused}"))
            else:
                user = name.encode("utf-8")
        self._zap.send_multipart(route + [b"1.0", request_id, status,
                                          b"OK" if status == b"200" else b"refused", user, b""])

    def _plain_refused(self, event: dict) -> None:
        self.errors.connection_refused(AuthenticationFailed(
            f"connection to {event['endpoint'].decode('ascii', 'replace')} refused: the client "
            f"does not use CURVE (no credentials)"))
