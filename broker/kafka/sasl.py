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
ApiVersions lists SaslAuthenticate.

Re-authentication (KIP-368), with the broker setting ``connections_max_reauth_ms`` (Kafka's
connections.max.reauth.ms; 0, the default, turns it off as in Kafka). Each authentication's
SaslAuthenticate answer (v1+) carries SessionLifetimeMs = that setting, and the session ends
that long after it: a client re-authenticates on its connection before then (kafka-python
and librdkafka at 85-95% and 90% of the lifetime) with a new SaslHandshake and
SaslAuthenticate, which renew it::

    done --SaslHandshake, same mechanism, lifetime on--> handshaken (re-authenticating)
    ... --SaslAuthenticate, same user--> done, the session renewed

A connection whose session ends without a renewal is closed (``Sessions.tick`` at the
deadline, or a request that comes after it), counted as ``kafka_sessions_expired`` in the
broker's stats; a renewal is counted as ``kafka_sasl_reauthentications``. A re-authentication
must finish within ``_REAUTH_S`` of its handshake, use the same mechanism and prove the same
user; otherwise it is refused (58 or 34) and the connection closed. Without the setting a
second SaslHandshake is ILLEGAL_SASL_STATE, as before.

The users (coordinator/sasl_users.py) are read from ZooKeeper and watched, so ``sluice users
add|remove`` applies to the next authentication, re-authentications included: with a lifetime,
a removed user loses its open connections within one lifetime; without one, a connection that
authenticated stays so until it closes (as Kafka's).
"""
from __future__ import annotations

import heapq
import itertools
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
_REAUTH_S = 10.0      # a re-authentication's time from its SaslHandshake to its end


class SaslState:
    """One connection's place in the SASL exchange; once authenticated, its ``user`` and,
    with a session lifetime, when the session ends (``expires_at``, the loop's clock)."""

    __slots__ = ("step", "mechanism", "exchange", "user", "expires_at")

    def __init__(self):
        self.step = START
        self.mechanism: str | None = None
        self.exchange: scram.ScramExchange | None = None
        self.user: str | None = None
        self.expires_at: float | None = None

    @property
    def done(self) -> bool:
        return self.step == DONE

    @property
    def reauthenticating(self) -> bool:
        return self.user is not None and self.step != DONE


class Sessions:
    """The sessions with a lifetime (KIP-368), by deadline: a heap of (deadline, n, conn);
    an entry whose connection's ``expires_at`` moved on since (renewed) is stale, skipped.

    >>> sessions, closed = Sessions(2000, stats={}), []
    >>> class Conn: closed = False; sasl = SaslState()
    >>> sessions.started(Conn, now=10.0)
    >>> Conn.sasl.expires_at, sessions.tick(11.0, closed.append)
    (12.0, 12.0)
    >>> sessions.started(Conn, now=11.5)          # renewed before the deadline
    >>> sessions.tick(12.0, closed.append), closed
    (13.5, [])
    >>> sessions.tick(13.5, closed.append) is None, closed == [Conn], sessions.stats
    (True, True, {'kafka_sessions_expired': 1})
    """

    def __init__(self, lifetime_ms: int, stats):
        self.lifetime_ms = lifetime_ms
        self.stats = stats        # the broker's stats counter (METADATA's "stats")
        self._heap: list = []
        self._n = itertools.count()

    def started(self, conn, now: float, seconds: float | None = None) -> None:
        """The connection's session (or its re-authentication, given ``seconds``) runs from
        ``now``."""
        state = conn.sasl
        state.expires_at = now + (self.lifetime_ms / 1000 if seconds is None else seconds)
        heapq.heappush(self._heap, (state.expires_at, next(self._n), conn))

    def tick(self, now: float, close) -> float | None:
        """Close (``close(conn)``) the connections whose session ended; the next deadline."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, conn = heapq.heappop(heap)
            if conn.closed or conn.sasl.expires_at != deadline:
                continue
            self.expired(conn)
            close(conn)
        return heap[0][0] if heap else None

    def expired(self, conn) -> None:
        self.stats["kafka_sessions_expired"] = self.stats.get("kafka_sessions_expired", 0) + 1
        logger.info("kafka client %s: the SASL session of %s ended without a "
                    "re-authentication; closing", _peer(conn), conn.sasl.user)


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
    """Watch the users when the listener asks for SASL; keep the sessions' deadlines when
    they have a lifetime."""
    users = ctx.state["sasl"] = Users()
    lifetime = ctx.config.connections_max_reauth_ms if ctx.config.kafka_sasl else 0
    ctx.state["sasl_sessions"] = sessions = Sessions(lifetime, ctx.logs.stats) if lifetime \
        else None
    if ctx.config.kafka_sasl:
        SaslUsers(ctx.zk).watch(users.changed)
    if sessions is not None:
        ctx.add_ticker(lambda now: sessions.tick(now, ctx.close))


def expired(conn, ctx: KafkaContext) -> bool:
    """Whether ``conn``'s session ended (a request that comes after: the connection is closed
    unanswered, as Kafka's broker does), counted."""
    state = conn.sasl
    if state is None or state.expires_at is None or ctx.now() < state.expires_at:
        return False
    ctx.state["sasl_sessions"].expired(conn)
    return True


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
    sessions: Sessions | None = ctx.state.get("sasl_sessions")
    if state.step == DONE and sessions is not None:
        if mechanism != state.mechanism:
            _refuse(ctx, req, f"a re-authentication with {mechanism!r} after "
                              f"{state.mechanism!r}")
            return CloseAfter(SaslHandshakeResponse(version=req.api_version,
                                                    error_code=ILLEGAL_SASL_STATE,
                                                    mechanisms=[state.mechanism]))
        state.step = HANDSHAKEN
        sessions.started(req.conn, ctx.now(), seconds=_REAUTH_S)
        return SaslHandshakeResponse(version=req.api_version, error_code=0,
                                     mechanisms=list(scram.MECHANISMS))
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
    if state.reauthenticating and user != state.user:
        why = f"re-authentication as {user!r} on a session of {state.user!r}"
        _refuse(ctx, req, why)
        return CloseAfter(_auth_response(req, SASL_AUTHENTICATION_FAILED, why))
    sessions: Sessions | None = ctx.state.get("sasl_sessions")
    if state.reauthenticating:
        ctx.logs.stats["kafka_sasl_reauthentications"] += 1
        logger.debug("kafka client %s re-authenticated as %s", _peer(req.conn), user)
    else:
        logger.info("kafka client %s authenticated as %s (%s)", _peer(req.conn), user,
                    state.mechanism)
    state.step, state.exchange, state.user = DONE, None, user
    req.conn.principal = user
    if sessions is not None:
        sessions.started(req.conn, ctx.now())
    return _auth_response(req, 0, None, reply, sessions.lifetime_ms if sessions else 0)


def _auth_response(req: KafkaRequest, code: int, message: str | None, data: bytes = b"",
                   lifetime_ms: int = 0):
    return SaslAuthenticateResponse(version=req.api_version, error_code=code,
                                    error_message=message, auth_bytes=data,
                                    session_lifetime_ms=lifetime_ms)


SASL_HANDLERS = {SASL_HANDSHAKE_KEY: handshake, SASL_AUTHENTICATE_KEY: authenticate}
SASL_VERSIONS = {SASL_HANDSHAKE_KEY: (0, 1), SASL_AUTHENTICATE_KEY: (0, 2)}
