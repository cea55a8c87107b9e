"""A loopback TCP proxy that can black-hole its traffic, as a network partition would.

A client connects to ``proxy.address`` instead of the server. ``cut()`` drops every byte in
both directions from then on, without closing anything: the client sees silence, not a refused
or reset connection, exactly what a cable pulled somewhere between two hosts looks like.
``restore()`` forwards again; a connection that lost bytes during the cut is closed then (its
stream is broken), so the client reconnects, as it would after a real partition healed.

    proxy = BlackholeProxy("127.0.0.1", zk_port).start()
    client = KazooClient(hosts=proxy.address)
    proxy.cut(); ...; proxy.restore(); proxy.stop()

``listen`` is the address it listens on (loopback unless told: the namespaced
partition-leader drill forwards ZooKeeper to its brokers' bridge with one, never cut).
The server's address may be given as a callable returning ``(host, port)``, asked at every
connection: the partition-leader drill (cluster/drills/network_faults.py) starts its proxies
before the cluster's embedded ZooKeeper has an address.
"""
from __future__ import annotations

import select
import socket
import threading
from typing import Callable

_CHUNK = 65536
_TICK_S = 0.05


class _Pipe:
    """One proxied connection: the client's socket, the server's, and whether it lost bytes."""

    def __init__(self, client: socket.socket, server: socket.socket):
        self.client = client
        self.server = server
        self.broken = False
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.server):
            try:
                sock.close()
            except OSError:
                pass


class BlackholeProxy:
    def __init__(self, host: str | Callable[[], tuple[str, int]], port: int | None = None,
                 listen: str = "127.0.0.1"):
        self.upstream = host if callable(host) else (host, port)
        self.listen = listen
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((listen, 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._pipes: list[_Pipe] = []
        self.dropped_bytes = 0
        self._thread = threading.Thread(target=self._run, name="blackhole-proxy", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.listen}:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def start(self) -> "BlackholeProxy":
        self._thread.start()
        return self

    def cut(self) -> None:
        self._cut.set()

    def restore(self) -> None:
        with self._lock:
            for pipe in self._pipes:
                if pipe.broken:
                    pipe.close()
            self._pipes = [p for p in self._pipes if not p.closed]
            self._cut.clear()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        with self._lock:
            for pipe in self._pipes:
                pipe.close()
            self._pipes.clear()
        self._listener.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                pipes = [p for p in self._pipes if not p.closed]
            sockets = [self._listener] + [s for p in pipes for s in (p.client, p.server)]
            try:
                readable, _, _ = select.select(sockets, [], [], _TICK_S)
            except (OSError, ValueError):
                continue
            for sock in readable:
                if sock is self._listener:
                    self._accept()
                    continue
                pipe = next((p for p in pipes if sock in (p.client, p.server)), None)
                if pipe is not None and not pipe.closed:
                    self._forward(pipe, sock)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        try:
            upstream = self.upstream() if callable(self.upstream) else self.upstream
            server = socket.create_connection(upstream, timeout=5)
        except (OSError, ValueError):
            client.close()
            return
        with self._lock:
            self._pipes.append(_Pipe(client, server))

    def _forward(self, pipe: _Pipe, source: socket.socket) -> None:
        target = pipe.server if source is pipe.client else pipe.client
        try:
            data = source.recv(_CHUNK)
        except OSError:
            data = b""
        if not data:
            pipe.close()
            return
        if self._cut.is_set():
            pipe.broken = True
            self.dropped_bytes += len(data)
            return
        try:
            target.sendall(data)
        except OSError:
            pipe.close()
