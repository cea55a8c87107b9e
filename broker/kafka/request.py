"""What a Kafka API handler gets and may return.

``def handle(req: KafkaRequest, ctx: KafkaContext) -> object | None | Deferred``: a response
struct of the request's version (sent at once), ``None`` (no response at all: Produce with
acks=0), ``CLOSE`` (no response, and the connection is closed: an acks=0 Produce that failed,
the only way its client learns of it), ``CloseAfter(response)`` (answered, then closed: a
refused SASL client), or ``DEFERRED``: the handler keeps ``req`` and later
calls ``ctx.reply(req, response)``
from the loop (a long-poll fetch, an acks=all produce, a group's join or sync). A connection's
responses go out in request order, so a deferred request holds back the later ones of its
connection, as Kafka clients require.

Modules that keep timers register ``tick(now) -> next_deadline | None`` with ``ctx.add_ticker``;
the listener calls every ticker once per loop turn, and the broker's poll timeout takes the
smallest deadline.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable


class Deferred:
    """The type of ``DEFERRED``: the handler answers later with ``ctx.reply``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFERRED"


DEFERRED = Deferred()


class Close:
    """The type of ``CLOSE``: no response, and the listener closes the connection (as Kafka's
    broker does when an acks=0 produce fails: the client reconnects and refreshes its
    metadata)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "CLOSE"


CLOSE = Close()


@dataclass(frozen=True, slots=True)
class CloseAfter:
    """A response (a struct of the request's version, or bytes already framed) after which the
    listener closes the connection, serving nothing more of it: a refused SASL client's
    answer (Kafka's broker closes such a connection too)."""

    response: Any


@dataclass(eq=False, slots=True)
class KafkaRequest:
    """One decoded request: its header fields, its body (the kafka.protocol struct), its
    connection (opaque to handlers) and, once deferred, the slot its response fills."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: Any
    conn: Any
    slot: Any = None


@dataclass(eq=False)
class KafkaContext:
    """The broker's pieces, as the Kafka handlers see them.

    ``logs`` the LogManager, ``handlers`` the native RequestHandlers (their purgatories and
    counters), ``replicas`` the ReplicaManager, ``config`` the BrokerConfig, ``zk`` the broker's
    kazoo client, ``endpoint`` this broker's Kafka ``host:port``. ``reply`` is set by the
    listener, and so is ``close`` (close a connection now, unanswered: a SASL session that
    ended). Modules keep their per-broker state in ``state`` under their own name.
    """

    logs: Any
    handlers: Any
    replicas: Any
    config: Any
    zk: Any
    broker_id: int
    endpoint: str = ""
    reply: Callable[[KafkaRequest, object], None] = lambda req, response: None
    close: Callable[[Any], None] = lambda conn: None
    versions: dict = field(default_factory=dict)    # api key -> (min, max) advertised
    state: dict = field(default_factory=dict)
    tickers: list = field(default_factory=list)

    @staticmethod
    def now() -> float:
        """The loop's clock (monotonic seconds), the one deadlines are in."""
        return time.monotonic()

    def add_ticker(self, tick: Callable[[float], float | None]) -> None:
        self.tickers.append(tick)

    def tick(self, now: float) -> float | None:
        """Run every ticker; the nearest deadline any of them has, or None."""
        deadlines = [d for d in (tick(now) for tick in self.tickers) if d is not None]
        return min(deadlines) if deadlines else None

    def waiting(self) -> bool:
        """Whether anything is parked (the flusher then wakes the loop after a flush)."""
        return any(getattr(s, "waiting", lambda: False)() for s in self.state.values())
