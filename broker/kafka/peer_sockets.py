"""The Kafka listener's own requests to other brokers' native endpoints: one DEALER socket per
endpoint, opened on first use, answers taken without blocking the broker's loop, correlation
ids that wrap at 32 bits. Shared by the boundary lookups (boundaries.py) and the log store's
offset requests (offset_log.py), which differ only in what they ask and how they retry."""
from __future__ import annotations

from typing import Callable, Iterator

import zmq


class PeerSockets:
    def __init__(self, context: zmq.Context | None = None):
        self.context = context or zmq.Context.instance()
        self._sockets: dict[str, zmq.Socket] = {}
        self._corr = 0

    def send(self, endpoint: str, frame_for: Callable[[int], bytes]) -> int:
        """Send ``frame_for(corr)`` to ``endpoint``; return the correlation id ``corr``."""
        sock = self._sockets.get(endpoint)
        if sock is None:
            sock = self._sockets[endpoint] = self.context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
        self._corr = (self._corr + 1) & 0xFFFFFFFF
        sock.send_multipart([frame_for(self._corr)])
        return self._corr

    @property
    def last_corr(self) -> int:
        """The correlation id of the request sent last."""
        return self._corr

    def answers(self) -> Iterator[tuple[str, list]]:
        """``(endpoint, frames)`` of every answer that has arrived."""
        for endpoint, sock in list(self._sockets.items()):
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                yield endpoint, frames

    def drop(self, endpoint: str) -> None:
        """Forget ``endpoint``'s socket: late answers on it can match nothing sent later."""
        sock = self._sockets.pop(endpoint, None)
        if sock is not None:
            sock.close(0)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close(0)
        self._sockets.clear()
