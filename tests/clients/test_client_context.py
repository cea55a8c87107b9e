"""ClientContext (clients/context.py): it holds every socket it made until the socket is
closed, and ``release`` closes what is left with linger 0 before terminating, so that an owner
freed in a reference cycle never leaves ``term()`` waiting. No broker is needed: a DEALER
connected to a port nobody listens on keeps its queued request forever, which is what made
``term()`` wait. Each blocking step runs in a daemon thread whose end is the condition; the
join's timeout is only the failure signal."""
from __future__ import annotations

import gc
import threading
import weakref

import zmq

from clients.context import ClientContext
from cluster.supervision.zookeeper import free_ports

FAILED_AFTER_S = 30


def _finishes(step) -> bool:
    """Whether ``step()`` returned (in a daemon thread, so that a hang fails the test)."""
    thread = threading.Thread(target=step, daemon=True)
    thread.start()
    thread.join(FAILED_AFTER_S)
    return not thread.is_alive()


def _stuck_dealer(context: zmq.Context) -> zmq.Socket:
    """A socket with a request queued for a peer that never comes, lingering forever."""
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, -1)
    sock.connect(f"tcp://127.0.0.1:{free_ports(1)[0]}")
    sock.send(b"never delivered")
    return sock


def test_release_closes_every_open_socket_with_linger_0_then_terminates():
    context = ClientContext()
    sockets = [_stuck_dealer(context) for _ in range(3)]
    sockets[0].get_monitor_socket()          # pyzmq makes the monitor's PAIR in the context too
    assert len(context.held) == 4
    assert _finishes(context.release), "release() waited on a queued request"
    assert context.closed and all(s.closed for s in sockets)
    assert not context.held


def test_closed_sockets_are_let_go_when_the_next_one_is_made():
    context = ClientContext()
    try:
        for _ in range(5):                   # a Connection reset closes one and makes one
            context.socket(zmq.DEALER).close(linger=0)
        kept = context.socket(zmq.DEALER)
        assert context.held == {kept}
    finally:
        context.release()


class _Owner:
    """A client's shape: sockets reachable only through it, itself in a reference cycle."""

    def __init__(self):
        self.context = ClientContext()
        self.sockets = [_stuck_dealer(self.context) for _ in range(2)]
        self.me = self
        finalizer = weakref.finalize(self, self.context.release)
        finalizer.atexit = False


def test_an_owner_collected_in_a_cycle_closes_its_sockets_before_its_context_terminates():
    owner = _Owner()
    context, dropped = owner.context, weakref.ref(owner)
    del owner
    assert _finishes(gc.collect), "the collection hung in term()"
    assert dropped() is None
    assert context.closed
