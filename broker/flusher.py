"""The flusher thread: fsyncs logs off the request loop, as the paper's brokers flush
asynchronously.

The LogManager submits a log whose flush policy (broker/flush.py) is due; the flusher runs
``Log.flush`` and, when a fetch is parked (``wanted()``), wakes the request loop over an inproc
PAIR socket, since a parked fetch may now see data. Under load a flush comes every few hundred
messages, and a wake-up of the loop for nobody costs as much as a request, hence ``wanted``.

What can go wrong is never swallowed:

- a failed flush goes to ``on_error("flush", exc)`` (counted and logged by the broker); the
  log's policy stays due, so the LogManager submits it again;
- a wake-up that finds the socket full (``zmq.Again``) is not sent, and counted in
  ``wakeups_dropped``: the loop has a wake-up waiting already, and one is as good as many;
- the ZeroMQ context terminated means the broker is closing: a wake-up then ends the thread
  (it says so), and a socket cannot be had at all (the thread flushes on without one);
- any other ZeroMQ error, of a wake-up or of opening the wake-up socket, goes to
  ``on_error("flusher_wake", exc)`` and the thread goes on flushing (without wake-ups when it
  has no socket: parked fetches are then answered at their deadline).

The thread ends at ``stop()``, after what was submitted before it.
"""
from __future__ import annotations

import logging
import queue
import threading

import zmq

from coordinator.errors import SluiceError

logger = logging.getLogger(__name__)


class Flusher(threading.Thread):
    """fsyncs the logs submitted to it, one at a time, each at most once in the queue."""

    def __init__(self, context: zmq.Context, wake_endpoint: str, wanted=lambda: True,
                 on_error=None):
        super().__init__(name="flusher", daemon=True)
        self.context = context
        self.wake_endpoint = wake_endpoint
        self.wanted = wanted
        self.on_error = on_error or (lambda task, exc: logger.error("%s failed: %s", task, exc))
        self.pending: queue.Queue = queue.Queue()
        self.wakeups_dropped = 0
        self._queued: set[int] = set()
        self._queued_lock = threading.Lock()

    def submit(self, log_) -> None:
        with self._queued_lock:
            if id(log_) in self._queued:
                return
            self._queued.add(id(log_))
        self.pending.put(log_)

    def stop(self) -> None:
        self.pending.put(None)

    def run(self) -> None:
        wake = self._open_wake()
        try:
            while (item := self.pending.get()) is not None:
                with self._queued_lock:
                    self._queued.discard(id(item))
                try:
                    item.flush()
                except (OSError, SluiceError) as exc:
                    self.on_error("flush", exc)
                if wake is not None and self.wanted() and not self._wake(wake):
                    return
        finally:
            if wake is not None:
                wake.close(linger=0)

    def _open_wake(self) -> zmq.Socket | None:
        """The PAIR socket to the loop; None (flushing goes on without wake-ups) when ZeroMQ
        refuses it: reported, or only logged when the context is gone (the broker closes)."""
        wake = None
        try:
            wake = self.context.socket(zmq.PAIR)
            wake.connect(self.wake_endpoint)
            return wake
        except zmq.ZMQError as exc:
            if wake is not None:
                wake.close(linger=0)
            if exc.errno == zmq.ETERM or self.context.closed:
                logger.info("flusher goes on without wake-ups: the broker's ZeroMQ context "
                            "was terminated")
            else:
                self.on_error("flusher_wake", exc)
            return None

    def _wake(self, wake: zmq.Socket) -> bool:
        """Wake the loop; False when the context is gone (the broker is closing)."""
        try:
            wake.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            self.wakeups_dropped += 1      # the socket is full: the loop has one waiting
        except zmq.ZMQError as exc:
            if exc.errno == zmq.ETERM:
                logger.info("flusher stops: the broker's ZeroMQ context was terminated")
                return False
            self.on_error("flusher_wake", exc)
        return True
