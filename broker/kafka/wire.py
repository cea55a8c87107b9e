"""Kafka's framing and headers: nothing about any one API.

Every request and response is a 4-byte big-endian size and that many bytes. A request starts
with ``api_key int16, api_version int16, correlation_id int32``, then the client id (header
v1) and, in an API's flexible versions, tagged fields (header v2); a response starts with the
correlation id (header v0) and, flexible, tagged fields (header v1). The structures themselves
are kafka-python's ``kafka.protocol`` classes (Apache-2.0), generated from Kafka's own JSON
schemas, so the header version follows each API's ``flexibleVersions`` as Kafka's does.
"""
from __future__ import annotations

import struct

from coordinator.errors import MalformedRequest

SIZE = struct.Struct(">i")
REQUEST_PREFIX = struct.Struct(">hhi")       # api_key, api_version, correlation_id
_ERROR_ONLY = struct.Struct(">iih")          # size, correlation_id, error_code


class FrameTooLarge(MalformedRequest):
    """A request frame larger than the broker takes (Kafka closes such a connection too)."""


def take_frames(buf: bytearray, max_size: int) -> list[bytes]:
    """Remove the whole frames at the start of ``buf`` and return their payloads.

    >>> buf = bytearray(b"\\x00\\x00\\x00\\x08request1\\x00\\x00\\x00\\x08requ")
    >>> take_frames(buf, 100), bytes(buf)
    ([b'request1'], b'\\x00\\x00\\x00\\x08requ')
    """
    frames = []
    pos, end = 0, len(buf)
    with memoryview(buf) as view:       # one copy per frame (a bytearray slice is a copy too)
        while end - pos >= 4:
            (size,) = SIZE.unpack_from(buf, pos)
            if size < REQUEST_PREFIX.size or size > max_size:
                raise FrameTooLarge(f"a request frame of {size} bytes (the limit is {max_size})")
            if end - pos - 4 < size:
                break
            frames.append(bytes(view[pos + 4:pos + 4 + size]))
            pos += 4 + size
    if pos:
        del buf[:pos]
    return frames


def peek(frame: bytes) -> tuple[int, int, int]:
    """(api_key, api_version, correlation_id) of a request frame, whatever its API."""
    return REQUEST_PREFIX.unpack_from(frame)


def decode_request(request_class, frame: bytes, version: int):
    """The request header and body, decoded at ``version`` (header v1 or v2 as the API's
    flexible versions say). Raises MalformedRequest for bytes that do not decode."""
    try:
        body = request_class.decode(frame, version=version, header=True)
    except Exception as exc:   # the library raises whatever its decoders hit on bad bytes
        raise MalformedRequest(f"{request_class.name} v{version} does not decode: "
                               f"{type(exc).__name__}: {exc}") from None
    return body.header, body


def encode_response(response, version: int, correlation_id: int) -> bytes:
    """A response framed with its header (v0, or v1 in flexible versions; ApiVersions always
    v0, as Kafka's)."""
    response.API_VERSION = version     # before the header: kafka-python's setter would write
    response.with_header(correlation_id=correlation_id)   # a request field into it
    return bytes(response.encode(header=True, framed=True))


def error_only(correlation_id: int, error_code: int) -> bytes:
    """A bare response (header v0 and an int16 error code) for a request whose API has no
    struct here: an unknown api key."""
    return _ERROR_ONLY.pack(_ERROR_ONLY.size - 4, correlation_id, error_code)
