"""The Kafka APIs this broker serves: the dispatch table and the ApiVersions table.

``HANDLERS`` maps an api key to its handler (the signature is broker/kafka/request.py's);
``VERSIONS`` the versions of each that are advertised in ApiVersions, which are the versions
the handlers decode and encode (kafka-python's classes define more; clients pick the highest
common one). A request for an api key not here, or at a version outside its range, gets the
protocol's error, UNSUPPORTED_VERSION (35), never a dropped connection: ApiVersions at an
unsupported version is answered as v0 with that error and the table (as Kafka does, so a
client newer than the broker learns what to use); any other api with its response struct at
that version when kafka-python defines it, else a bare header and error code.
"""
from __future__ import annotations

import logging

import kafka.protocol.admin  # noqa: F401  (every API's classes, for REQUEST_CLASSES)
import kafka.protocol.consumer  # noqa: F401
import kafka.protocol.metadata  # noqa: F401
import kafka.protocol.producer  # noqa: F401,E501
import kafka.protocol.sasl  # noqa: F401
from kafka.protocol.api_message import ApiMessage

from broker.kafka import data_apis, group_apis, sasl, wire
from broker.kafka.errors import UNSUPPORTED_VERSION, error_response
from broker.kafka.request import CloseAfter, KafkaContext, KafkaRequest
from coordinator.errors import MalformedRequest

logger = logging.getLogger(__name__)

HANDLERS = dict(data_apis.DATA_HANDLERS)

VERSIONS: dict[int, tuple[int, int]] = dict(data_apis.DATA_VERSIONS)

HANDLERS.update(group_apis.GROUP_HANDLERS)
VERSIONS.update(group_apis.GROUP_VERSIONS)
HANDLERS.update(sasl.SASL_HANDLERS)
VERSIONS.update(sasl.SASL_VERSIONS)

SETUPS = [data_apis.setup, group_apis.setup, sasl.setup]          # each ``setup(ctx)`` keeps its module's state in ctx.state


def _classes(kind: str) -> dict:
    def below(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from below(sub)
    return {cls.API_KEY: cls for cls in below(ApiMessage)
            if cls._class_version is None and cls.type == kind}


REQUEST_CLASSES = _classes("request")     # api key -> kafka-python's request class
RESPONSE_CLASSES = _classes("response")


def setup(ctx: KafkaContext) -> None:
    """Give every API module its per-broker state (purgatories, tickers) on ``ctx``, and the
    ApiVersions table."""
    ctx.versions = VERSIONS
    for one in SETUPS:
        one(ctx)


def dispatch(frame: bytes, conn, ctx: KafkaContext) -> tuple[KafkaRequest | None, object]:
    """Decode one request frame and run its handler: ``(request, result)``. On a SASL
    listener, a request other than ApiVersions and SASL's own before the connection
    authenticated is refused (broker/kafka/sasl.py) and its connection closed, and so is a
    connection whose SASL session ended."""
    api_key, version, correlation_id = wire.peek(frame)
    if conn.sasl is not None and sasl.expired(conn, ctx):
        return None, CloseAfter(None)
    if not sasl.gate(conn, api_key):
        return None, _before_authentication(conn, ctx, api_key, version, correlation_id)
    entry = HANDLERS.get(api_key)
    request_class = REQUEST_CLASSES.get(api_key)
    if entry is None or request_class is None:
        logger.info("kafka: api key %d is not served (correlation id %d)", api_key,
                    correlation_id)
        return None, wire.error_only(correlation_id, UNSUPPORTED_VERSION)
    low, high = VERSIONS[api_key]
    if not low <= version <= high:
        return None, _unsupported(api_key, version, correlation_id)
    try:
        header, body = wire.decode_request(request_class, frame, version)
    except MalformedRequest as exc:
        logger.warning("kafka: %s", exc)
        return None, _unsupported(api_key, version, correlation_id)
    req = KafkaRequest(api_key, version, correlation_id, header.client_id, body, conn)
    return req, entry(req, ctx)


def _before_authentication(conn, ctx: KafkaContext, api_key: int, version: int,
                           correlation_id: int) -> CloseAfter:
    """ILLEGAL_SASL_STATE in the API's top-level error code when it has one (else no answer,
    as Kafka's broker gives none), then the connection closes; counted and logged."""
    sasl.refuse(ctx, conn, f"api {api_key} before SASL authentication")
    response = error_response(RESPONSE_CLASSES.get(api_key), version, sasl.ILLEGAL_SASL_STATE)
    if response is None:
        return CloseAfter(None)
    return CloseAfter(wire.encode_response(response, version, correlation_id))


def _unsupported(api_key: int, version: int, correlation_id: int) -> bytes:
    if api_key == data_apis.API_VERSIONS_KEY:
        return wire.encode_response(data_apis.api_versions_response(0, VERSIONS,
                                                                    UNSUPPORTED_VERSION),
                                    0, correlation_id)
    response = error_response(RESPONSE_CLASSES.get(api_key), version,
                              UNSUPPORTED_VERSION)
    if response is None:
        return wire.error_only(correlation_id, UNSUPPORTED_VERSION)
    return wire.encode_response(response, version, correlation_id)
