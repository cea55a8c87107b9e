"""TLS on the Kafka listener: the server's SSLContext, from the broker's KafkaTlsConfig.

TLS 1.2 or later, Python's default server ciphers; no client certificates (clients
authenticate with SASL inside the TLS session). The listener (broker/kafka/listener.py) wraps
each accepted socket with ``do_handshake_on_connect=False`` and drives the handshake from the
loop's readiness events, so a slow or hostile client never blocks the loop.
"""
from __future__ import annotations

import ssl

from broker.config import KafkaTlsConfig
from coordinator.errors import InvalidArgument


def server_context(config: KafkaTlsConfig) -> ssl.SSLContext:
    """The listener's context; a certificate and key that do not load (or do not match) are
    refused in one line."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.certificate, config.private_key)
    except (ssl.SSLError, OSError) as exc:
        raise InvalidArgument(f"the Kafka listener's certificate {config.certificate} and key "
                              f"{config.private_key} do not load: {exc}") from None
    return context
