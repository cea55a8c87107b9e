"""What every system module provides, and the helpers they share (ports, disk, waiting)."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Protocol

from coordinator.errors import SluiceError

#: The produce rows, in the order they run: (row, batch, acknowledged).
PRODUCE_ROWS = (("batch1", 1, False), ("batch50", 50, False), ("batch50_ack", 50, True))
#: Messages per consumer pull (the paper's figure).
PULL_MESSAGES = 1000
#: Batches of an acknowledged producer left unacknowledged at most (the sluice Producer's).
WINDOW_BATCHES = 32
START_TIMEOUT_S = 60.0
STORED_TIMEOUT_S = 60.0


class PeerError(SluiceError):
    """A peer server would not start, or did not hold what was sent to it."""


class System(Protocol):
    """One system under test; ``start`` before the rows, ``stop`` after (always)."""

    name: str           # the table's column, e.g. "NATS JetStream"
    client: str         # the client library and how it is used, for the report

    @staticmethod
    def missing() -> str | None:
        """Why this system cannot run here (its server is not installed), or None."""

    def start(self) -> None: ...

    def produce(self, stream: str, messages: int, value: bytes, batch: int,
                acknowledged: bool) -> float:
        """Send ``messages`` copies of ``value`` to a fresh ``stream``; the seconds from the
        first send until the broker holds all of them."""

    def consume(self, stream: str, messages: int) -> float:
        """Read ``messages`` from ``stream`` from its start, ~PULL_MESSAGES per pull; seconds."""

    def disk_bytes(self, stream: str) -> int:
        """Bytes on disk that hold ``stream`` (every message of it flushed)."""

    def stop(self) -> None: ...


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_bytes(root: Path) -> int:
    """Sum of the sizes of the files under ``root``."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass
    return total


def settled_bytes(root: Path, quiet_s: float = 1.0, timeout: float = 15.0) -> int:
    """``tree_bytes(root)`` once it has not changed for ``quiet_s`` (a server's asynchronous
    flush is done), or at ``timeout``."""
    last, since = tree_bytes(root), time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = tree_bytes(root)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return last


def wait_until(check: Callable[[], bool], what: str, timeout: float = STORED_TIMEOUT_S,
               interval: float = 0.002) -> None:
    """Poll ``check`` until true; PeerError naming ``what`` at ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise PeerError(f"{what} within {timeout:g} s")
        time.sleep(interval)


def wait_port(port: int, process: subprocess.Popen, name: str,
              timeout: float = START_TIMEOUT_S) -> None:
    """Until something listens on ``port``; PeerError if ``process`` exits first."""
    def listening():
        if process.poll() is not None:
            raise PeerError(f"{name} exited with {process.returncode} before listening")
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_until(listening, f"{name} did not listen on port {port}", timeout, 0.1)


def stop_process(process: subprocess.Popen | None, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; the process we started, by its handle."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
