"""SASL on the Kafka listener (issue 14 item 4): SaslHandshake (17) and SaslAuthenticate (36),
and the gate in front of every other API.

A listener with ``kafka_sasl`` gives each connection a ``SaslState``. Until it is done, the
connection may send ApiVersions, SaslHandshake and SaslAuthenticate only, as Kafka's broker
allows; the states and what moves them on::

    start      --SaslHandshake v1, PLAIN or SCRAM-SHA-256--> handshaken
    handshaken --SaslAuthenticate (PLAIN: the one message)--> done, principal = the user
    handshaken --SaslAuthenticate (SCRAM client-first)--> scram --(client-final)--> done

Every other step is refused and the connection closed once the answer is sent: a wrong
password or unknown user gets SASL_AUTHENTICATION_FAILED (58) with a message naming the user;
any other API before ``done``, a second handshake or an authenticate before the handshake gets
ILLEGAL_SASL_STATE (34) (in its response's top-level error code; an API without one gets no
answer, as from Kafka's broker); an unknown mechanism UNSUPPORTED_SASL_MECHANISM (33) and the
list. Each refusal is counted as ``authentication_failed`` and logged at most once per 5 s
(broker/error_counts.py); the broker serves everyone else meanwhile. SaslHandshake v0 (its
SASL bytes then sent unframed, without SaslAuthenticate) is advertised but refused with
ILLEGAL_SASL_STATE: librdkafka (before 2.x, e.g. Debian's kcat) enables SASL PLAIN only when
the advertised range includes v0, while kafka-python and librdkafka send v1 whenever
ApiVersions lists SaslAuthenticate. Sessions do not expire (SessionLifetimeMs 0: no
KIP-368 re-authentication).

The users (coordinator/sasl_users.py) are read from ZooKeeper and watched, so ``sluice users
add|remove`` applies to the next authentication. A connection that authenticated stays so
after its user is removed until it closes (as Kafka's without re-authentication).
"""
from __future__ import annotations

import logging
import secrets

from kafka.protocol.sasl import SaslAuthenticateResponse, SaslHandshakeResponse

from broker.kafka.request import CloseAfter, KafkaContext, KafkaRequest
from coordinator import scram
from coordinator.errors import AuthenticationFailed
from coordinator.sasl_users import SaslUsers

logger = logging.getLogger(__name__)

SASL_HANDSHAKE_KEY = 17
SASL_AUTHENTICATE_KEY = 36
API_VERSIONS_KEY = 18
BEFORE_AUTHENTICATION = frozenset({API_VERSIONS_KEY, SASL_HANDSHAKE_KEY, SASL_AUTHENTICATE_KEY})

UNSUPPORTED_SASL_MECHANISM = 33
ILLEGAL_SASL_STATE = 34
SASL_AUTHENTICATION_FAILED = 58

START, HANDSHAKEN, SCRAM, DONE = "start", "handshaken", "scram", "done"


class SaslState:
    """One connection's place in the SASL exchange."""

    __slots__ = ("step", "mechanism", "exchange")

    def __init__(self):
        self.step = START
        self.mechanism: str | None = None
        self.exchange: scram.ScramExchange | None = None

    @property
    def done(self) -> bool:
        return self.step == DONE


class Users:
    """The SASL users as this broker knows them: one dict, replaced whole by the watch."""

    def __init__(self):
        self.by_name: dict[str, scram.ScramCredential] = {}
        self.plain_logins: dict = {}     # PLAIN logins that succeeded (coordinator/scram.py)

    def changed(self, users: dict) -> None:
        self.by_name = users
        logger.info("%d SASL user(s) known to the Kafka listener", len(users))

    def lookup(self, name: str) -> scram.ScramCredential | None:
        return self.by_name.get(name)


def setup(ctx: KafkaContext) -> None:
    """Watch the users when the listener asks for SASL."""
    users = ctx.state["sasl"] = Users()
    if ctx.config.kafka_sasl:
        SaslUsers(ctx.zk).watch(users.changed)


def gate(conn, api_key: int) -> bool:
    """Whether a request of ``api_key`` may be served on ``conn`` now.

    >>> state = SaslState()
    >>> class Conn: sasl = state
    >>> gate(Conn, 18), gate(Conn, 3)
    (True, False)
    >>> state.step = DONE
    >>> gate(Conn, 3)
    True
    """
    state = conn.sasl
    return state is None or state.done or api_key in BEFORE_AUTHENTICATION


def refuse(ctx: KafkaContext, conn, why: str) -> None:
    """Count and (at most once per interval) log a refused SASL client."""
    ctx.handlers.errors.connection_refused(AuthenticationFailed(
        f"kafka client {_peer(conn)}: {why}"))


def _refuse(ctx: KafkaContext, req: KafkaRequest, why: str) -> None:
    refuse(ctx, req.conn, why)


def _peer(conn) -> str:
    peer = getattr(conn, "peer", None)
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


def handshake(req: KafkaRequest, ctx: KafkaContext):
    state: SaslState | None = req.conn.sasl
    mechanism = req.body.mechanism
    if state is None:
        return SaslHandshakeResponse(version=req.api_version, error_code=ILLEGAL_SASL_STATE,
                                     mechanisms=[])
    if req.api_version == 0:
        _refuse(ctx, req, "SaslHandshake v0 (unframed SASL) is not served; use v1")
        return CloseAfter(SaslHandshakeResponse(version=0, error_code=ILLEGAL_SASL_STATE,
                                                mechanisms=list(scram.MECHANISMS)))
    if state.step != START:
        _refuse(ctx, req, "a second SaslHandshake")
        return CloseAfter(SaslHandshakeResponse(version=req.api_version,
                                                error_code=ILLEGAL_SASL_STATE, mechanisms=[]))
    if mechanism not in scram.MECHANISMS:
        _refuse(ctx, req, f"SASL mechanism {mechanism!r} is not served")
        return CloseAfter(SaslHandshakeResponse(version=req.api_version,
                                                error_code=UNSUPPORTED_SASL_MECHANISM,
                                                mechanisms=list(scram.MECHANISMS)))
    state.step, state.mechanism = HANDSHAKEN, mechanism
    return SaslHandshakeResponse(version=req.api_version, error_code=0,
                                 mechanisms=list(scram.MECHANISMS))


def authenticate(req: KafkaRequest, ctx: KafkaContext):
    state: SaslState | None = req.conn.sasl
    if state is None or state.step not in (HANDSHAKEN, SCRAM):
        if state is not None:
            _refuse(ctx, req, f"SaslAuthenticate in state {state.step}")
        return CloseAfter(_auth_response(req, ILLEGAL_SASL_STATE,
                                         "SaslAuthenticate before SaslHandshake"
                                         if state is None or state.step == START
                                         else "already authenticated"))
    users: Users = ctx.state["sasl"]
    message = bytes(req.body.auth_bytes or b"")
    try:
        if state.mechanism == scram.PLAIN:
            user = scram.plain(message, users.lookup, users.plain_logins)
            reply = b""
        elif state.step == HANDSHAKEN:
            state.exchange = scram.ScramExchange(users.lookup, secrets.token_urlsafe(18))
            state.step = SCRAM
            return _auth_response(req, 0, None, state.exchange.first(message))
        else:
            reply = state.exchange.final(message)
            user = state.exchange.user
    except scram.SaslRefused as exc:
        _refuse(ctx, req, str(exc))
        return CloseAfter(_auth_response(req, SASL_AUTHENTICATION_FAILED, str(exc)))
    state.step, state.exchange = DONE, None
    req.conn.principal = user
    logger.info("kafka client %s authenticated as %s (%s)", _peer(req.conn), user,
                state.mechanism)
    return _auth_response(req, 0, None, reply)


def _auth_response(req: KafkaRequest, code: int, message: str | None, data: bytes = b""):
    return SaslAuthenticateResponse(version=req.api_version, error_code=code,
                                    error_message=message, auth_bytes=data,
                                    session_lifetime_ms=0)


SASL_HANDLERS = {SASL_HANDSHAKE_KEY: handshake, SASL_AUTHENTICATE_KEY: authenticate}
SASL_VERSIONS = {SASL_HANDSHAKE_KEY: (0, 1), SASL_AUTHENTICATE_KEY: (0, 2)}
