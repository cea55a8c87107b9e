"""Finding the broker of a partition and keeping sockets to it.

Clients learn everything from ZooKeeper (the ClusterView); this pool turns "topic, partition"
into an open Connection to the broker that leads it, and follows a broker that came back on
another endpoint or a leadership that moved. Per broker there are up to three sockets:

- the stream Connection (``connection()``): the Fetcher's parked long-polls and the Producer's
  acks=1 window, many requests in flight, replies taken by correlation id by their owner;
- the control Connection (``call()``): one synchronous request at a time (offsets, metadata,
  a consumer's seek or start resolution), on a socket of its own so that waiting for its reply
  never reads, and drops, a reply the stream is waiting for, and a call that times out resets
  only its own socket, not the parked fetches;
- a PUSH socket (``push()``) for fire-and-forget produce.

A separate socket rather than routing replies by correlation id: the stream's readers (Fetcher,
Producer) each poll their sockets in their own loop, and a call made from another thread (a
rebalance callback, a lag sampler) would need a shared dispatcher between them.

Secured clusters (issue 14): the pool loads the client's key (``credentials``, else
``$SLUICE_CREDENTIALS``), authenticates to ZooKeeper with the digest it finds
(coordinator/zk.py) and reads the brokers' server key there; every socket it opens then speaks
CURVE. A ZooKeeper that refuses the client (no digest) is an AuthenticationFailed too.

Following the leader. Every client path looks its partition's broker up here for each request
(the Producer and Fetcher cache only what the view's listeners clear), so once the view names
the new leader the next request goes there. A broker may know first, though: an answer that
says the leadership moved (NOT_LEADER, FENCED_LEADER_EPOCH) or a broker that cannot be reached
(BROKER_UNAVAILABLE) goes to ``leader_failed``, which re-reads the view if it still names that
broker; the caller then retries the same request (the same offset, the same sequenced batches)
after its usual back-off, and is routed to whoever leads by then.
"""
from __future__ import annotations

import threading
import weakref

import zmq
from kazoo.exceptions import NoAuthError

from broker import protocol
from clients.config import REQUEST_TIMEOUT_MS
from clients.connection import Connection, Handshake
from clients.context import ClientContext
from coordinator import allow_list, credentials as keyfiles, topics, zk
from coordinator.errors import AuthenticationFailed, ErrorCode, InvalidArgument, SluiceError
from coordinator.registry import BrokerInfo, ClusterView

# Answers that say the partition's leader is elsewhere, or unreachable: look it up again.
LEADER_MOVED = frozenset({ErrorCode.NOT_LEADER, ErrorCode.FENCED_LEADER_EPOCH,
                          ErrorCode.BROKER_UNAVAILABLE, ErrorCode.NOT_COORDINATOR})


def leader_moved(error: BaseException) -> bool:
    """Whether ``error`` means the partition must be routed anew.

    >>> from coordinator.errors import NotLeader, OffsetGap
    >>> leader_moved(NotLeader("broker 1 does not lead clicks/0")), leader_moved(OffsetGap("gap"))
    (True, False)
    """
    return isinstance(error, SluiceError) and error.code in LEADER_MOVED


class BrokerPool:
    def __init__(self, zookeeper: str | None = None, data_dir=None,
                 request_timeout_ms: float = REQUEST_TIMEOUT_MS,
                 session_timeout_ms: float = zk.DEFAULT_SESSION_TIMEOUT_MS,
                 credentials: str | None = None, push_hwm: int = 10_000,
                 session_of: "BrokerPool | None" = None):
        """``push_hwm``: requests each PUSH socket (``push``) queues before a send blocks.
        ``session_of``: another pool whose ZooKeeper session, cluster view and keys this one
        uses, with sockets of its own (a client's audit publisher: a session of its own would
        watch every topic's config node again); closing this pool leaves them to that one."""
        self._owns_session = session_of is None
        if session_of is None:
            keys = keyfiles.resolve(credentials)
            self.zk = zk.connect(zookeeper, data_dir, session_timeout=session_timeout_ms / 1000,
                                 keys=keys)
            try:
                server_key = allow_list.server_key(self.zk)
                self.view = ClusterView(self.zk)
            except NoAuthError:
                self.zk.stop()
                self.zk.close()
                raise AuthenticationFailed(
                    "ZooKeeper refused to show the cluster: it is secured and this client has "
                    "no digest (the local cluster's data dir, $SLUICE_ZK_DIGEST or the "
                    "credentials' zookeeper_digest)") from None
            self.principal = keys.name if keys is not None and server_key else ""
            self.keys = keys
            self.secured = server_key is not None
            self._curve = ({} if keys is None or server_key is None
                           else keyfiles.curve_client_options(keys, server_key))
        else:
            self.zk, self.view = session_of.zk, session_of.view
            self.principal, self.keys = session_of.principal, session_of.keys
            self.secured, self._curve = session_of.secured, session_of._curve
        self.context = ClientContext()
        # a pool dropped without close() closes its sockets when it is collected; not at exit,
        # when threads of its own may still be using them (and exit needs no term())
        self._release = weakref.finalize(self, self.context.release)
        self._release.atexit = False
        self.request_timeout_ms = request_timeout_ms
        self._connections: dict[str, Connection] = {}
        self._controls: dict[str, tuple[Connection, threading.Lock]] = {}
        self._pushes: dict[str, zmq.Socket] = {}
        self._push_hwm = push_hwm
        self._lock = threading.Lock()

    def partitions(self, topic: str) -> int:
        return self._placement(topic).partitions

    def available_partitions(self, topic: str) -> tuple[int, ...]:
        """The topic's partitions whose leader is registered now."""
        live = self.view.brokers()
        return tuple(p for p in range(self._placement(topic).partitions)
                     if self.view.state(topic, p).leader in live)

    def _placement(self, topic: str) -> topics.Placement:
        """Raises topics.UnknownTopic (an UnknownTopicOrPartition) for a topic not created."""
        if not isinstance(topic, str):
            raise InvalidArgument(f"topic must be a topic name (str), not {topic!r}")
        return self.view.placement(topic)

    def leader(self, topic: str, partition: int) -> BrokerInfo:
        return self.view.leader(topic, partition)

    def leader_failed(self, topic: str, partition: int, endpoint: str | None,
                      error: BaseException) -> bool:
        """A request for (topic, partition) to the broker at ``endpoint`` (None: none was
        named) failed with ``error``. When the error says the leadership moved and the view
        still names that broker, re-read the view (once: its watches may not have fired yet).
        Whether the error was of that kind: the caller retries after its back-off and the
        lookup then routes to the new leader."""
        if not leader_moved(error):
            return False
        self._moved(topic, partition, endpoint)
        return True

    def _moved(self, topic: str, partition: int, endpoint: str | None) -> None:
        if endpoint is None:
            return
        try:
            named = self.view.leader(topic, partition).endpoint
        except SluiceError:
            return          # the view knows already that the broker does not lead
        if named == endpoint:
            self.view.refresh()

    def connection(self, topic: str, partition: int) -> Connection:
        endpoint = self.leader(topic, partition).endpoint
        with self._lock:
            conn = self._connections.get(endpoint)
            if conn is None:
                conn = self._connections[endpoint] = self.open_connection(endpoint)
            return conn

    def open_connection(self, endpoint: str) -> Connection:
        """A Connection, CURVE and its handshake watched when the cluster is secured."""
        return Connection(self.context, endpoint, self._curve, self.secured,
                          self.request_timeout_ms)

    def existing(self, endpoint: str) -> Connection | None:
        """The open Connection to ``endpoint``, if any."""
        with self._lock:
            return self._connections.get(endpoint)

    def push(self, topic: str, partition: int) -> zmq.Socket:
        """A PUSH socket to the partition's broker for fire-and-forget produce."""
        endpoint = self.leader(topic, partition).produce_endpoint
        with self._lock:
            sock = self._pushes.get(endpoint)
            if sock is None:
                sock = self.context.socket(zmq.PUSH)
                sock.setsockopt(zmq.LINGER, 2000)
                sock.setsockopt(zmq.SNDHWM, self._push_hwm)
                sock.setsockopt(zmq.SNDTIMEO, self.request_timeout_ms)
                for option, value in self._curve.items():
                    sock.setsockopt(option, value)
                if self.secured:
                    handshake = Handshake(sock, endpoint, bool(self._curve))
                    sock.connect(endpoint)
                    try:
                        handshake.wait(self.request_timeout_ms)
                    except AuthenticationFailed:
                        sock.close(linger=0)
                        raise
                    finally:
                        handshake.close()
                else:
                    sock.connect(endpoint)
                self._pushes[endpoint] = sock
            return sock

    def call(self, topic: str, partition: int, header_for, body=None,
             timeout_ms: float | None = None) -> list:
        """One request to the partition's broker on its control socket (one call at a time per
        broker, from any thread); refreshes the view when it times out."""
        endpoint = self.leader(topic, partition).endpoint
        with self._lock:
            control = self._controls.get(endpoint)
            if control is None:
                control = self._controls[endpoint] = (self.open_connection(endpoint),
                                                      threading.Lock())
        conn, lock = control
        try:
            with lock:
                frames = conn.call(header_for, body, timeout_ms or self.request_timeout_ms)
        except protocol.RequestTimedOut:
            self.view.refresh()
            raise
        code = protocol.RESPONSE.unpack_from(frames[0].buffer)[1]
        if code in LEADER_MOVED:
            self._moved(topic, partition, endpoint)
        return frames

    def offset(self, topic: str, partition: int, when: int,
               timeout_ms: float | None = None) -> int:
        """The offsets API on the partition's broker: ``protocol.EARLIEST``, ``protocol.LATEST``
        or the offset to read from for messages after a time in ms (segment granularity)."""
        frames = self.call(topic, partition,
                           lambda corr: protocol.encode_offsets(corr, topic, partition, when),
                           timeout_ms=timeout_ms)
        return protocol.decode_response(frames[0].buffer, protocol.OFFSETS_REPLY)[1][0]

    def offset_for_time(self, topic: str, partition: int, time_ms: int,
                        timeout_ms: float | None = None) -> tuple[int, int]:
        """``(offset, timestamp)`` of the partition's first message stamped at or after
        ``time_ms`` (magic 2 timestamps), ``(-1, -1)`` when there is none."""
        frames = self.call(topic, partition, lambda corr: protocol.encode_offset_for_time(
            corr, topic, partition, time_ms), timeout_ms=timeout_ms)
        return protocol.decode_response(frames[0].buffer, protocol.OFFSET_FOR_TIME_REPLY)[1]

    @property
    def discarded_replies(self) -> int:
        """Replies a call dropped while waiting for its own (on the control sockets only late
        replies to calls that timed out; on a stream socket, replies its owner waited for)."""
        with self._lock:
            conns = list(self._connections.values()) + [c for c, _ in self._controls.values()]
        return sum(conn.discarded for conn in conns)

    def close(self, keep_session: bool = False) -> None:
        """Close every socket and the ZooKeeper session, unless it is another pool's
        (``session_of``) or ``keep_session`` leaves it to expire on its own when the process
        exits (a static member's ephemeral nodes outlive it that long)."""
        with self._lock:
            for conn in self._connections.values():
                conn.close()
            for conn, _ in self._controls.values():
                conn.close()
            for sock in self._pushes.values():
                sock.close()
            self._connections.clear()
            self._controls.clear()
            self._pushes.clear()
        self._release()
        if self._owns_session and not keep_session:
            self.zk.stop()
            self.zk.close()
