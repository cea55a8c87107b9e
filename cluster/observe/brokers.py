"""The brokers' own counters: one METADATA request to every registered broker per sample, all
in flight at once, so one slow broker costs the sample its timeout once, not once per broker.

Per broker: up, errors by type, messages and bytes in, bytes out (and their rates); per
partition: everything METADATA reports (offsets, size, segments, flushes and flush time,
messages and bytes in, bytes out, fetches) and the same rates. A broker that does not answer
within the timeout is a row with ``up`` false and the reason.
"""
from __future__ import annotations

import json
import time

import zmq

from broker import protocol
from clients.brokers import BrokerPool
from clients.connection import Connection
from cluster.observe.rates import rate, rounded

BROKER_TIMEOUT_MS = 800


class BrokerStats:
    """One METADATA request to every registered broker per tick, all in flight at once."""

    COUNTERS = ("messages_in", "bytes_in", "bytes_out")

    def __init__(self, timeout_ms: int = BROKER_TIMEOUT_MS):
        self.timeout_ms = timeout_ms
        self._connections: dict[str, Connection] = {}
        self._previous: dict = {}

    def sample(self, pool: BrokerPool, now: float) -> tuple[list[dict], list[dict]]:
        infos = pool.view.brokers()
        pending = {}
        for broker_id, info in sorted(infos.items()):
            conn = self._connections.get(info.endpoint)
            if conn is None:
                conn = self._connections[info.endpoint] = pool.open_connection(info.endpoint)
            corr = conn.next_id()
            conn.send([protocol.encode_metadata(corr)])
            pending[broker_id] = (conn, corr)
        for endpoint in set(self._connections) - {i.endpoint for i in infos.values()}:
            self._connections.pop(endpoint).close()
        replies = self._collect(pending)
        brokers, partitions = [], []
        for broker_id, info in sorted(infos.items()):
            reply = replies.get(broker_id)
            if isinstance(reply, str) or reply is None:
                brokers.append({"broker": broker_id, "endpoint": info.endpoint, "up": False,
                                "error": reply or "no reply", "errors": {}})
                continue
            brokers.append(self._broker_row(broker_id, info.endpoint, reply, now))
            for entry in reply.get("partitions", []):
                partitions.append(self._partition_row(broker_id, entry, now))
        return brokers, partitions

    def _collect(self, pending: dict) -> dict:
        replies: dict[int, dict | str] = {}
        poller = zmq.Poller()
        by_socket = {}
        for broker_id, (conn, _) in pending.items():
            poller.register(conn.socket, zmq.POLLIN)
            by_socket[conn.socket] = broker_id
        deadline = time.monotonic() + self.timeout_ms / 1000
        waiting = dict(pending)
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for sock, _ in poller.poll(left * 1000):
                broker_id = by_socket[sock]
                conn, corr = pending[broker_id]
                frames = sock.recv_multipart()
                if protocol.RESPONSE.unpack_from(frames[0])[0] != corr:
                    continue  # a late reply to an earlier tick
                try:
                    replies[broker_id] = json.loads(protocol.decode_metadata_response(frames[0])[1])
                except (protocol.SluiceError, ValueError) as exc:
                    replies[broker_id] = f"bad metadata reply: {exc}"
                waiting.pop(broker_id, None)
                poller.unregister(sock)
        for broker_id, (conn, _) in waiting.items():
            replies[broker_id] = f"no reply within {self.timeout_ms} ms"
            conn.reset()
        return replies

    def _broker_row(self, broker_id: int, endpoint: str, reply: dict, now: float) -> dict:
        stats = reply.get("stats", {})
        row = {"broker": broker_id, "endpoint": endpoint, "up": True, "error": None,
               "errors": dict(reply.get("errors", {})), "kafka_audit": reply.get("kafka_audit")}
        row.update(self._with_rates(("broker", broker_id), stats, now))
        return row

    def _partition_row(self, broker_id: int, entry: dict, now: float) -> dict:
        row = {"broker": broker_id, **{k: v for k, v in entry.items()}}
        for name in self.COUNTERS + ("fetches",):
            row.setdefault(name, 0)
        row.update(self._with_rates(("partition", broker_id, entry["topic"], entry["partition"]),
                                    entry, now))
        return row

    def _with_rates(self, key, counters: dict, now: float) -> dict:
        previous = self._previous.get(key)
        values = {name: int(counters.get(name, 0)) for name in self.COUNTERS}
        out = dict(values)
        for name in self.COUNTERS:
            out[f"{name}_per_s"] = rounded(rate(previous[name] if previous else None, values[name],
                                               now - previous["time"] if previous else 0))
        self._previous[key] = {"time": now, **values}
        return out

    def forget(self, keep: set) -> None:
        for key in set(self._previous) - keep:
            del self._previous[key]

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()
