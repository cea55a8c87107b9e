"""ClientContext: the ZeroMQ context of a client's BrokerPool, which holds its sockets.

pyzmq's Context keeps its sockets only weakly. When a client dropped without close() sits in a
reference cycle, the cycle collector clears those weak references before it runs any
finalizer, so the Context's own ``__del__`` finds no socket to close and its ``term()`` waits
forever for the sockets libzmq still has (their ``__del__`` would come later, in the same
collection): the process hangs in ``gc.collect()``. Held strongly here, the sockets stay
outside the collected cycle, and ``release``, run by the owner's finalizer (BrokerPool's
weakref.finalize) or its close(), closes them with linger 0 and only then terminates.

The owner's finalizer cannot run while a thread of the client still uses a socket: such a
thread (a producer's sender, a consumer's rebalance thread) holds the client, so the client is
reachable and is not collected.
"""
from __future__ import annotations

import threading

import zmq


class ClientContext(zmq.Context):
    """A ZeroMQ context that holds every socket it made until the socket is closed (see the
    module docstring for why)."""

    held: set
    _held_lock: threading.Lock

    def __init__(self) -> None:
        super().__init__()
        self.held = set()
        self._held_lock = threading.Lock()

    def socket(self, socket_type: int, *args, **kwargs) -> zmq.Socket:
        sock = super().socket(socket_type, *args, **kwargs)
        with self._held_lock:
            self.held.difference_update([s for s in self.held if s.closed])
            self.held.add(sock)
        return sock

    def release(self) -> None:
        """Close the sockets still open, with linger 0 (nothing waits for a peer), then
        terminate: returns at once, whatever libzmq had queued."""
        with self._held_lock:
            held = list(self.held)
            self.held.clear()
        for sock in held:
            if not sock.closed:
                sock.close(linger=0)
        self.term()
