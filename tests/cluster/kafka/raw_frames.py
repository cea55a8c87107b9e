"""Kafka requests written and answers read on a bare socket, for the tests that must play a
client no real one is (one that never re-authenticates, or speaks before SASL): kafka-python's
request classes encode, the length-prefixed framing is done here."""
from __future__ import annotations

import struct


def frame(request, correlation_id: int) -> bytes:
    """``request`` with its header, framed as it goes on the wire."""
    request.with_header(correlation_id=correlation_id, client_id="raw")
    return bytes(request.encode(header=True, framed=True))


def read_frame(sock) -> bytes | None:
    """The next answer's bytes (its header included), or None when the broker closed."""
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (size,) = struct.unpack(">i", head)
    body = b""
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        if not chunk:
            return None
        body += chunk
    return body
