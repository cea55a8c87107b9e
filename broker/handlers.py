"""Request handlers: one per request type, as Kafka 0.7's KafkaRequestHandlers.

The server (broker/server.py) receives a request, checks its size, parses its header and calls
the handler its ``HANDLERS`` table names for the api. A handler checks the rest of its request,
makes one call into the LogManager (a fetch that must wait goes to the purgatory) and answers on
the ROUTER; a SluiceError it raises is answered by the server with the error's code.

| api      | handler  | the call                                 | answered                          |
| -------- | -------- | ---------------------------------------- | --------------------------------- |
| PRODUCE  | produce  | LogManager.route (the set validated now) | at the end of the turn (acks=all: |
|          |          |                                          | once the high watermark passed it) |
| PRODUCE_SETS_ACKED | produce_sets_acked | as PRODUCE, per set | one answer, once every set is |
| FETCH    | fetch    | LogManager.log, else Purgatory.park      | now, or when the purgatory lets go |
| OFFSETS  | offsets  | Log.offset_before                        | now                               |
| METADATA | metadata | LogManager.metadata_rows (secured: the   | now                               |
|          |          | topics the principal may describe)       |                                   |
| OFFSET_FOR_EPOCH | offset_for_epoch | LeaderEpochs.end_offset_for | now                         |
| OFFSET_FOR_TIME | offset_for_time | time_lookup.offset_for_time  | now                          |
| OFFSET_COMMIT | offset_commit | LogManager.route of the group's    | as PRODUCE with acks=all      |
|               |               | ``__consumer_offsets`` partition   |                               |
| OFFSET_FETCH  | offset_fetch  | CommittedOffsets.current           | now                           |

Replication (broker/replica_manager.py says who leads what): produce, consumer fetches and
offsets are served by a partition's leader only, NOT_LEADER elsewhere. A consumer reads below
the high watermark (and the visible end of the flush policy); a replica fetch (``replica_id``
a broker id) reads up to the leader's log end, tells the leader the follower's log end (its
offset) and is parked in a purgatory of its own until the log grows. An acks=all request is
refused unwritten with NOT_ENOUGH_REPLICAS when the ISR is smaller than the topic's
``min_insync_replicas``, and any produce with BACKLOG_QUOTA_EXCEEDED while a group protected
with ``refuse`` is at risk on the partition (broker/backlog_guard.py); else written as acks=1 and answered from the acks purgatory
(broker/delayed_produce.py) when the high watermark reaches its next offset, with
REQUEST_TIMED_OUT after ``ack_timeout_ms``, or with NOT_LEADER when the leadership is lost.

Produce requests are validated as they come (one walk over the set, CRCs in C) and written at
the end of the turn with one write per log for all of them, so a thousand one-message requests
cost one write: ``write_produced`` for the acks=1 requests the ROUTER brought (each answered
with the offsets where it lies in that write), ``write_unacked`` for the acks=0 ones of the
PULL socket (nobody waits for an answer there: errors are counted and logged).
"""
from __future__ import annotations

import dataclasses
import json
import time

import zmq

from broker import committed_offsets, compaction, message, protocol, time_lookup
from broker.config import BrokerConfig
from broker.error_counts import ErrorCounts
from broker.log import Log
from broker.log_manager import LogManager, Route
from broker.delayed_produce import AckPurgatory, AckWaiter
from broker.long_poll import Purgatory, Waiter, replica_fetch_due, satisfied
from broker.protocol import ACKS_ALL, CONSUMER, Api, Request
from coordinator import paths
from coordinator.offset_store_choice import OFFSETS_TOPIC, offsets_partition
from broker.replica_manager import Replica, ReplicaManager
from coordinator.errors import (CorruptMessage, FencedLeaderEpoch, InvalidArgument, InvalidOffset,
                                InvalidRecord, MalformedRequest, MessageTooLarge, NotCoordinator,
                                NotEnoughReplicas, NotLeader, OffsetOutOfRange, RequestTimedOut,
                                SluiceError, UnknownTopicOrPartition)

# pyzmq's Cython send, without zmq.Socket.send's Python wrapper (draft-API options only).
_zmq_send = getattr(zmq.backend, "Socket", zmq.Socket).send
_COPY_BELOW = 65536      # a fetched set smaller than this is copied into its frame (cheaper)


class RequestHandlers:
    """The handlers of one broker, answering on its ROUTER socket."""

    def __init__(self, config: BrokerConfig, logs: LogManager, purgatory: Purgatory,
                 errors: ErrorCounts, router: zmq.Socket, endpoints: dict,
                 replicas: ReplicaManager, replica_waiters: Purgatory, acks: AckPurgatory):
        self.config = config
        self.logs = logs
        self.purgatory = purgatory
        self.errors = errors
        self.router = router
        self.endpoints = endpoints
        self.replicas = replicas
        self.replica_waiters = replica_waiters
        self.acks = acks
        self.other_acks: list = []     # more AckPurgatories (the Kafka listener's) followers serve
        self._visible_at_once = not config.log.visible_after_flush
        self.authorization = None   # the server's RequestAuthorizer: what METADATA may show
        self.kafka_audit = None     # broker/kafka/audit_tally.AuditTally with kafka_audit on
        self._replica_linger_s = config.replica_fetch_linger_ms / 1000
        replicas.on_high_watermark = self.high_watermark_moved
        replicas.on_lost_leadership = self.leadership_lost
        self.committed = committed_offsets.CommittedOffsets(errors.task_failed)

    # --- the request types (the server's HANDLERS) -----------------------------------------

    def produce(self, identity: bytes, request: Request, frames: list, turn: dict) -> None:
        """Validate the set now; ``write_produced`` writes and answers it with the turn's."""
        if len(frames) != 3:
            raise MalformedRequest("produce needs a header and a message set")
        route = self.logs.route(request.topic, request.partition)
        replica = self.replicas.leader_of(request.topic, request.partition)
        if request.acks == ACKS_ALL and len(
                isr := self.replicas.in_sync_for_acks(replica)) < replica.min_insync_replicas:
            raise NotEnoughReplicas(
                f"{request.topic}/{request.partition} has {len(isr)} in-sync "
                f"replica(s) {list(isr)}, fewer than its min_insync_replicas="
                f"{replica.min_insync_replicas}; the set was not written")
        refusal = self.logs.backlog.refusal(request.topic, request.partition)
        if refusal is not None:
            raise refusal
        count = self.validate(route, frames[2])
        turn.setdefault(route, []).append(
            (identity, request.correlation_id, request, frames[2], count))

    def produce_sets_acked(self, identity: bytes, request: Request, frames: list,
                           turn: dict) -> None:
        """Several acks=1 sets of one partition (broker/protocol.py): each validated now and
        put in the turn as the PRODUCE of its own sequence it stands for; a bad one is refused
        alone. ``SetsAnswer`` gathers the outcomes into the request's one answer."""
        if len(frames) != 4:
            raise MalformedRequest("PRODUCE_SETS_ACKED needs a header, set sizes and sets")
        sizes = protocol.decode_set_sizes(frames[2], len(frames[3]))
        if request.sequence + len(sizes) > 1 << 32:
            raise MalformedRequest(f"{len(sizes)} sets from sequence {request.sequence} run "
                                   f"past the last sequence (2**32 - 1)")
        route = self.logs.route(request.topic, request.partition)
        self.replicas.leader_of(request.topic, request.partition)
        refusal = self.logs.backlog.refusal(request.topic, request.partition)
        if refusal is not None:
            raise refusal
        answer = SetsAnswer(self, identity, request.correlation_id, len(sizes))
        entries = turn.setdefault(route, [])
        for index, one in enumerate(_split(frames[3], sizes)):
            try:
                count = self.validate(route, one)
            except SluiceError as exc:
                answer.settle(index, exc)
                continue
            entries.append((answer, index, dataclasses.replace(
                request, api=Api.PRODUCE, sequence=request.sequence + index), one, count))
        if not entries:
            del turn[route]

    def fetch(self, identity: bytes, request: Request, frames: list, turn: dict) -> None:
        """Answer now when enough is visible or the fetch may not wait; else park it."""
        _one_frame(request, frames)
        log = self.logs.log(request.topic, request.partition)
        if min(request.max_bytes, self.config.max_fetch_bytes) <= 0:
            raise MalformedRequest("max_bytes must be positive")
        replica = self.replicas.leader_of(request.topic, request.partition)
        if request.replica_id != CONSUMER:
            self._replica_fetch(identity, request, replica)
            return
        _check_in_log(request, log)
        self._answer_or_park(identity, request, log, self.purgatory)

    def _replica_fetch(self, identity: bytes, request: Request, replica: Replica) -> None:
        """A follower's fetch: check its epoch, record its log end (the offset), answer what
        it lacks now or park it until the leader's log grows."""
        if request.leader_epoch != replica.epoch:
            if request.leader_epoch > replica.epoch:
                self.replicas.reread(replica.key)   # this broker is the stale side
            raise FencedLeaderEpoch(
                f"broker {request.replica_id} fetches {request.topic}/{request.partition} in "
                f"leader epoch {request.leader_epoch}; its leader here is in epoch "
                f"{replica.epoch}")
        log = replica.log
        _check_in_log(request, log)
        self.replicas.follower_fetched(replica, request.replica_id, request.offset,
                                       replica_end(log))
        available = replica_end(log) - request.offset
        if replica_fetch_due(available, request.min_bytes,
                             self.acks_wait_past(replica.key, request.offset)):
            self.answer_fetch(Waiter(identity, request, log, 0.0))
            return
        self._answer_or_park(identity, request, log, self.replica_waiters)
        if available > 0:
            self.replica_waiters.linger(log, time.monotonic() + self._replica_linger_s)

    def _answer_or_park(self, identity: bytes, request: Request, log: Log,
                        purgatory: Purgatory) -> None:
        """Answer a fetch now when what ``purgatory`` lets it read satisfies it or it may not
        wait; else park it there until then or its deadline."""
        waiter = Waiter(identity, request, log, 0.0)
        if request.max_wait_ms == 0 or satisfied(waiter, purgatory.end_of(log)):
            self.answer_fetch(waiter)
            return
        wait_ms = min(request.max_wait_ms, self.config.max_wait_ms_limit)
        waiter.deadline = time.monotonic() + wait_ms / 1000
        purgatory.park(waiter)
        if purgatory is self.purgatory and satisfied(waiter, purgatory.end_of(log)):
            self.wake([log])  # the end moved since the check (a flush ended), and no wake saw it

    def offsets(self, identity: bytes, request: Request, frames: list, turn: dict) -> None:
        _one_frame(request, frames)
        log = self.logs.log(request.topic, request.partition)
        self.replicas.leader_of(request.topic, request.partition)
        offset = log.offset_before(request.time, self.replicas.consumer_end(log))
        self.router.send_multipart([identity, protocol.encode_response(
            request.correlation_id, protocol.OFFSETS_REPLY.pack(offset))])

    def offset_for_time(self, identity: bytes, request: Request, frames: list,
                        turn: dict) -> None:
        """The first message at or after a time (the lookup the Kafka listener's ListOffsets
        uses): ``sluice groups reset-offsets --to-datetime``."""
        _one_frame(request, frames)
        if request.time < 0:
            raise InvalidOffset(f"OFFSET_FOR_TIME needs a time in ms >= 0, not {request.time}")
        log = self.logs.log(request.topic, request.partition)
        self.replicas.leader_of(request.topic, request.partition)
        found = time_lookup.offset_for_time(log, request.time, self.replicas.consumer_end(log))
        self.router.send_multipart([identity, protocol.encode_response(
            request.correlation_id, protocol.OFFSET_FOR_TIME_REPLY.pack(*found))])

    def offset_for_epoch(self, identity: bytes, request: Request, frames: list,
                         turn: dict) -> None:
        """A follower asks where its latest epoch ends on this log (KIP-101): the largest epoch
        known at or before it and that epoch's end (leader_epochs.LeaderEpochs.end_offset_for)."""
        _one_frame(request, frames)
        log = self.logs.log(request.topic, request.partition)
        self.replicas.leader_of(request.topic, request.partition)
        found, end = log.epochs.end_offset_for(request.leader_epoch, log.end_offset)
        self.router.send_multipart([identity, protocol.encode_response(
            request.correlation_id, protocol.EPOCH_ENTRY.pack(found, end))])

    def offset_commit(self, identity: bytes, request: Request, frames: list,
                      turn: dict) -> None:
        """A group's commit, as keyed messages appended with acks=all to its partition of
        ``__consumer_offsets``; ``write_produced`` writes and answers it with the turn's."""
        _one_frame(request, frames)
        replica = self._offsets_leader(request)
        for topic, _, _ in request.entries:
            _check_name("topic", topic)
        if len(replica.isr) < replica.min_insync_replicas:
            raise NotEnoughReplicas(
                f"{replica.topic}/{replica.partition} has {len(replica.isr)} in-sync replica(s), "
                f"fewer than its min_insync_replicas={replica.min_insync_replicas}; the commit "
                f"of group {request.group} was not written")
        if not request.entries:
            self.router.send_multipart([identity, protocol.encode_response(
                request.correlation_id, protocol.PRODUCE_REPLY.pack(0, 0))])
            return
        data = committed_offsets.commit_set(request.group, request.entries,
                                            int(time.time() * 1000))
        route = self.logs.route(replica.topic, replica.partition)
        produce = Request(Api.PRODUCE, request.correlation_id, replica.topic, replica.partition,
                          acks=ACKS_ALL, principal=request.principal)
        turn.setdefault(route, []).append(
            (identity, request.correlation_id, produce, data, len(request.entries)))

    def offset_fetch(self, identity: bytes, request: Request, frames: list,
                     turn: dict) -> None:
        """The group's committed offsets from this leader's memory of its partition. A new
        leader answers only once its high watermark reached its epoch's start (Kafka's
        COORDINATOR_LOAD_IN_PROGRESS, here a retriable NOT_COORDINATOR): below it, the last
        commits of the previous leader may not be known committed yet, and the map would miss
        them."""
        _one_frame(request, frames)
        replica = self._offsets_leader(request)
        entries = replica.log.epochs.entries
        epoch_start = entries[-1][1] if entries and entries[-1][0] == replica.epoch else 0
        if replica.hw < epoch_start:
            raise NotCoordinator(
                f"broker {self.config.broker_id} leads {replica.topic}/{replica.partition} in "
                f"epoch {replica.epoch} from offset {epoch_start}, and its high watermark "
                f"{replica.hw} is still below it: the commits of earlier leaders are not "
                f"known to be in every in-sync replica yet (loading; retry)")
        held = self.committed.current(replica.partition, replica.log, replica.epoch, replica.hw)
        found = held.committed(request.group, request.entries)
        self.router.send_multipart([identity, protocol.encode_response(request.correlation_id),
                                    protocol.encode_committed(found)])

    def _offsets_leader(self, request: Request):
        """The replica of the group's ``__consumer_offsets`` partition if this broker leads
        it; NotCoordinator otherwise (the client looks the leader up again)."""
        _check_name("group", request.group)
        view = self.logs.view
        if view is None:
            raise NotCoordinator(f"broker {self.config.broker_id} is starting; it does not "
                                 f"lead {OFFSETS_TOPIC} yet")
        try:
            count = view.partitions(OFFSETS_TOPIC)
        except UnknownTopicOrPartition:
            raise NotCoordinator(f"{OFFSETS_TOPIC} does not exist yet (its first user creates "
                                 f"it)") from None
        partition = offsets_partition(request.group, count)
        try:
            replica = self.replicas.leader_of(OFFSETS_TOPIC, partition)
        except NotLeader as exc:
            raise NotCoordinator(f"{exc}: the offsets partition of group {request.group}") \
                from None
        if replica is None:
            raise NotCoordinator(f"broker {self.config.broker_id} has no replica of "
                                 f"{OFFSETS_TOPIC}/{partition}, the offsets partition of group "
                                 f"{request.group}")
        return replica

    def offsets_maintain(self, now: float) -> None:
        """Keep the memory of every led ``__consumer_offsets`` partition current (built at
        start-up and when leadership comes, dropped when it goes)."""
        if not self.committed.due(now):
            return
        led = {replica.partition: (replica.log, replica.epoch, replica.hw)
               for (topic, _), replica in self.replicas.partitions.items()
               if topic == OFFSETS_TOPIC and replica.is_leader}
        self.committed.maintain(led)

    def metadata(self, identity: bytes, request: Request, frames: list, turn: dict) -> None:
        _one_frame(request, frames)
        document = self.describe()
        if self.authorization is not None and self.authorization.enabled:
            may = self.authorization.may_describe
            document["partitions"] = [row for row in document["partitions"]
                                      if may(request.principal, row["topic"])]
        self.router.send_multipart([identity, protocol.encode_metadata_response(
            request.correlation_id, json.dumps(document))])

    def describe(self) -> dict:
        """The METADATA document: this broker, its partitions, its error counts and counters."""
        rows = self.logs.metadata_rows()
        for row in rows:
            replica = self.replicas.get(row["topic"], row["partition"])
            if replica is not None:
                row.update(replica.describe())
        document = {**self.endpoints, "partitions": rows,
                    "errors": self.errors.snapshot(), "stats": dict(self.logs.stats)}
        if self.kafka_audit is not None:
            document["kafka_audit"] = self.kafka_audit.describe()
        return document

    # --- produce: the writes at the end of a turn ------------------------------------------

    def validate(self, route: Route, message_set) -> int:
        """The number of messages in a produce request's set; the typed error when it is bad
        (a message without a key, on a compacted topic, among them)."""
        try:
            count = message.validate_set(message_set, self.config.log.max_message_bytes)
        except message.InvalidMessage as bad:
            raise rejection(route, bad) from None
        compaction.refuse_unkeyed(route.topic, route.log.config, message_set)
        return count

    def write_produced(self, turn: dict[Route, list]) -> None:
        """Write the ROUTER's produce requests of a turn, one write per log, and answer each
        (sequenced ones judged first: LogManager.append_sequenced)."""
        router = self.router
        for route, requests in turn.items():
            answers = self.logs.append_sequenced(route, requests)
            replica = self.replicas.by_log[route.log]
            self.replicas.appended(replica)
            deadline = None
            for identity, corr, acks, outcome in answers:
                if type(identity) is SetsAnswer:
                    identity.settle(corr, outcome)
                elif type(outcome) is not tuple:
                    self.answer_error(identity, corr, outcome, protocol.PRODUCE_REPLY)
                elif acks == ACKS_ALL and outcome[1] > replica.hw:
                    if deadline is None:
                        deadline = time.monotonic() + self.config.ack_timeout_ms / 1000
                    self.acks.park(AckWaiter(identity, corr, replica.key, *outcome, deadline))
                elif acks:
                    _zmq_send(router, identity, zmq.SNDMORE)
                    _zmq_send(router, protocol.encode_response(
                        corr, protocol.PRODUCE_REPLY.pack(*outcome)))
            self.appended(route.log, replica)

    def unacked_route(self, header: bytes, principal: str = "") -> Route:
        """Where an acks=0 request with this header, sent by ``principal``, goes; raises when
        the header is bad."""
        request = protocol.decode_request(header, principal)
        if request.api is not Api.PRODUCE and request.api is not Api.PRODUCE_SETS:
            raise MalformedRequest("only produce requests go to the produce socket")
        route = self.logs.route(request.topic, request.partition)
        self.replicas.leader_of(request.topic, request.partition)
        return route

    def write_unacked(self, route: Route, sets: list) -> None:
        """Validate and append the acks=0 MessageSets of one log with one walk and one write.

        An entry of ``sets`` is one set's bytes (PRODUCE) or ``(sets, sizes)`` of a
        PRODUCE_SETS request (``_write_packed``). Should the joined walk hit a bad entry, each
        set is judged alone so that only the bad requests are dropped (and counted), and the
        good ones still go in with one write.
        """
        replica = self.replicas.by_log[route.log]
        if not replica.is_leader:
            self.errors.request_failed(replica.not_leader(self.config.broker_id), acks=0)
            return
        refusal = self.logs.backlog.refusal(route.topic, route.partition)
        if refusal is not None:
            for one in sets:
                for _ in range(1 if type(one) is bytes else len(one[1])):
                    self.errors.request_failed(refusal, acks=0)
            return
        if not all(type(one) is bytes for one in sets):
            self._write_packed(route, replica, sets)
            return
        data = sets[0] if len(sets) == 1 else b"".join(sets)
        try:
            count = message.validate_set(data, self.config.log.max_message_bytes)
            compaction.refuse_unkeyed(route.topic, route.log.config, data)
        except (message.InvalidMessage, InvalidRecord):
            good, count, data = [], 0, None
            for one in sets:
                try:
                    count += self.validate(route, one)
                    good.append(one)
                except SluiceError as exc:
                    self.errors.request_failed(exc, acks=0)
            if not good:
                return
            sets = good
        self._append_unacked(route, replica, sets, count, data)

    def _write_packed(self, route: Route, replica: Replica, entries: list) -> None:
        """A turn of one log that holds PRODUCE_SETS requests: every set judged alone (one walk
        of each request's sets, ``message.validate_sets``), the bad ones counted, the good ones
        appended in arrival order with one write and their sizes, so that segment rolls fall
        where appending them one by one would put them."""
        limit = self.config.log.max_message_bytes
        compact = route.log.config.compact
        parts, sizes, count = [], [], 0
        for one in entries:
            if type(one) is bytes:
                singles = (one,)
            elif compact:        # each set through validate, so that its keys are checked too
                singles = _split(*one)
            else:
                body, body_sizes = one
                good, bad = message.validate_sets(body, body_sizes, limit)
                count += good
                if not bad:
                    parts.append(body)
                    sizes.extend(body_sizes)
                    continue
                refused = dict(bad)
                for index, single in enumerate(_split(body, body_sizes)):
                    if index in refused:
                        self.errors.request_failed(rejection(route, refused[index]), acks=0)
                    else:
                        parts.append(single)
                        sizes.append(len(single))
                continue
            for single in singles:
                try:
                    count += self.validate(route, single)
                except SluiceError as exc:
                    self.errors.request_failed(exc, acks=0)
                    continue
                parts.append(single)
                sizes.append(len(single))
        if parts:
            self._append_unacked(route, replica, parts, count,
                                 parts[0] if len(parts) == 1 else b"".join(parts), sizes)

    def _append_unacked(self, route: Route, replica: Replica, sets: list, count: int, data,
                        sizes: list[int] | None = None) -> None:
        try:
            self.logs.append(route, sets, count, data, set_sizes=sizes)
        except SluiceError as exc:
            self.errors.request_failed(exc, acks=0)
            return
        self.replicas.appended(replica)
        self.appended(route.log, replica)

    def appended(self, log: Log, replica: Replica | None = None) -> None:
        """Messages visible at once may satisfy parked fetches (else the flush wakes them);
        parked followers read them at once when an acks=all request waits on the partition,
        else once they gathered their ``min_bytes`` or lingered (long_poll.replica_fetch_due).
        The Kafka listener calls it too, after its own appends."""
        if replica is None:
            replica = self.replicas.by_log[log]
        if self._visible_at_once and self.purgatory.waiting_on(log):
            self.wake([log])
        if self.replica_waiters.waiting_on(log):
            waiting, wait_past, key = self.replica_waiters, self.acks_wait_past, replica.key

            def due(waiter: Waiter, end: int) -> bool:
                offset = waiter.request.offset
                return replica_fetch_due(end - offset, waiter.request.min_bytes,
                                         wait_past(key, offset))
            for waiter in waiting.ready([log], due):
                self.answer_fetch(waiter)
            if waiting.waiting_on(log):
                waiting.linger(log, time.monotonic() + self._replica_linger_s)

    # --- acks=all: the high watermark and the leadership -----------------------------------

    def acks_wait_past(self, key: tuple[str, int], offset: int) -> bool:
        """Whether any acks=all request on ``key``, native or Kafka's, waits for a set past
        ``offset``: a follower fetching there is then answered at once, not after its linger."""
        return self.acks.waits_past(key, offset) or any(
            other.waits_past(key, offset) for other in self.other_acks)

    def high_watermark_moved(self, replica: Replica) -> None:
        """Answer the acks=all requests the high watermark now covers, and the consumers it
        lets see more."""
        router = self.router
        for waiter in self.acks.ready(replica.key, replica.hw):
            _zmq_send(router, waiter.identity, zmq.SNDMORE)
            _zmq_send(router, protocol.encode_response(waiter.correlation_id,
                      protocol.PRODUCE_REPLY.pack(waiter.base_offset, waiter.next_offset)))
        if self.purgatory.waiting_on(replica.log):
            self.wake([replica.log])

    def leadership_lost(self, replica: Replica) -> None:
        """The acks=all requests still waiting get NOT_LEADER (the new leader decides what
        of them stays), and so do the fetches parked here."""
        exc = replica.not_leader(self.config.broker_id)
        for waiter in self.acks.drop(replica.key):
            self.answer_error(waiter.identity, waiter.correlation_id, exc,
                              protocol.PRODUCE_REPLY)
        for waiter in self.purgatory.drop(replica.log) + self.replica_waiters.drop(replica.log):
            self.answer_fetch(waiter)      # NOT_LEADER now, not at their deadline

    # --- fetch answers ---------------------------------------------------------------------

    def wake(self, logs) -> None:
        """Answer the parked fetches (consumers' and followers') that ``logs`` now satisfy."""
        for waiter in self.purgatory.ready(logs):
            self.answer_fetch(waiter)
        for waiter in self.replica_waiters.ready(logs):
            self.answer_fetch(waiter)

    def expire(self, now: float) -> None:
        """Answer the parked fetches whose deadline passed, with what is visible, and the
        acks=all requests whose ack_timeout_ms passed with REQUEST_TIMED_OUT."""
        for waiter in self.purgatory.expired(now):
            self.answer_fetch(waiter)
        for waiter in self.replica_waiters.expired(now):
            self.answer_fetch(waiter)
        for waiter in self.acks.expired(now):
            topic, partition = waiter.key
            self.answer_error(waiter.identity, waiter.correlation_id, RequestTimedOut(
                f"{topic}/{partition}: offsets {waiter.base_offset}..{waiter.next_offset} "
                f"were written but not in every in-sync replica within ack_timeout_ms="
                f"{self.config.ack_timeout_ms}"), protocol.PRODUCE_REPLY)

    def next_deadline(self) -> float | None:
        """The nearest deadline of a parked fetch or a waiting acks=all request."""
        deadlines = [d for d in (self.purgatory.next_deadline(),
                                 self.replica_waiters.next_deadline(),
                                 self.acks.next_deadline()) if d is not None]
        return min(deadlines) if deadlines else None

    def answer_fetch(self, waiter: Waiter) -> None:
        """A consumer gets whole messages below the high watermark and the visible end; a
        follower gets them up to the log end, the leader's epoch entries as frame 2, the
        sequenced sets that end in those bytes as frame 3 (when there are some, or a frame 4)
        and, when appends recorded here tile the bytes from the fetch offset, their checksums
        as frame 4, the bytes cut at the last whole one (broker/append_checksums.py)."""
        request, log = waiter.request, waiter.log
        corr = request.correlation_id
        replica_fetch = request.replica_id != CONSUMER
        try:
            replica = self.replicas.leader_of(request.topic, request.partition)
            if replica_fetch:
                end, hw = replica_end(log), replica.hw
            else:
                end = hw = self.replicas.consumer_end(log)
            gapped = False
            if request.offset >= end:
                data = b""  # nothing readable yet at that offset (unflushed, or past the HW)
                data_end = request.offset
            else:
                data, data_end, gapped = log.read_span(
                    request.offset, min(request.max_bytes, self.config.max_fetch_bytes,
                                        end - request.offset), upto=end)
        except SluiceError as exc:
            self.errors.request_failed(exc, acks=1)
            self.router.send_multipart([waiter.identity, protocol.encode_response(
                corr, error=exc, fill=protocol.FETCH_REPLY), b""])
            return
        sums = ()
        if replica_fetch and not gapped:
            sums = self.logs.checksums_between(replica.key, request.offset, data_end)
            covered = sum(length for length, _, _ in sums)
            if sums and covered < len(data):     # whole appends only: the follower walks none
                data, data_end = memoryview(data)[:covered], request.offset + covered
            elif not sums and len(data):         # inside an append: walked up to the next one
                nxt = self.logs.next_append_start(replica.key, request.offset, data_end)
                if nxt is not None:
                    data, data_end = memoryview(data)[:nxt - request.offset], nxt
        self.logs.fetched(request.topic, request.partition, len(data))
        header = protocol.encode_response(corr, protocol.FETCH_REPLY.pack(hw, log.start_offset))
        if gapped:
            header += protocol.NEXT_OFFSET.pack(data_end)   # a compacted stretch: offsets jump
        frames = [waiter.identity, header, data]
        if replica_fetch:
            frames.append(epoch_entries(log))
            sets = self.logs.sets_between(replica.key, request.offset, data_end)
            if sets or sums:                # the producers' sets (frame 3)
                frames.append(protocol.encode_sets(sets))
            if sums:                        # the append checksums (frame 4)
                frames.append(protocol.encode_checksums(sums))
        self.router.send_multipart(frames, copy=len(data) < _COPY_BELOW)

    def answer_error(self, identity: bytes, corr: int, exc: SluiceError, fill) -> None:
        """Count ``exc`` and answer it; ``fill``: the api's reply fields, sent zeroed."""
        self.errors.request_failed(exc, acks=1)
        self.router.send_multipart([identity, protocol.encode_response(corr, error=exc,
                                                                       fill=fill)])


class SetsAnswer:
    """The one answer of a PRODUCE_SETS_ACKED request: stands in the turn for the identity of
    each of its sets (their correlation id slot holds the set's index) and is sent once every
    set has its outcome, ``(base, next)`` or the error (counted like a PRODUCE's)."""

    __slots__ = ("handlers", "identity", "correlation_id", "outcomes", "missing")

    def __init__(self, handlers: RequestHandlers, identity: bytes, correlation_id: int,
                 count: int):
        self.handlers = handlers
        self.identity = identity
        self.correlation_id = correlation_id
        self.outcomes: list = [None] * count
        self.missing = count

    def settle(self, index: int, outcome) -> None:
        if type(outcome) is not tuple:
            self.handlers.errors.request_failed(outcome, acks=1)
        self.outcomes[index] = outcome
        self.missing -= 1
        if not self.missing:
            router = self.handlers.router
            _zmq_send(router, self.identity, zmq.SNDMORE)
            _zmq_send(router, protocol.encode_sets_reply(self.correlation_id, self.outcomes))


def _split(body: bytes, sizes) -> list:
    """The sets of a PRODUCE_SETS body, as views of it, one per size."""
    view, pos, sets = memoryview(body), 0, []
    for size in sizes:
        sets.append(view[pos:pos + size])
        pos += size
    return sets


def rejection(route: Route, bad: message.InvalidMessage) -> SluiceError:
    """The wire error for a produce request's set that failed validation."""
    if bad.reason == "too_large":
        return MessageTooLarge(str(bad))
    return CorruptMessage(f"rejected message set for {route.topic}/{route.partition}: {bad}")


def replica_end(log: Log) -> int:
    """How far a follower may read the leader's log: its end, flushed or not (the promise of
    acks=all is the memory of every ISR member; the flush policy stays the fsync promise)."""
    return log.end_offset


def epoch_entries(log: Log) -> bytes:
    """Frame 2 of a replica fetch's answer: the leader's epoch entries, oldest first."""
    return protocol.encode_epochs(log.epochs.entries)


def _check_name(kind: str, name: str) -> None:
    try:
        paths.check_name(kind, name)
    except InvalidArgument as exc:
        raise MalformedRequest(str(exc)) from None


def _one_frame(request: Request, frames: list) -> None:
    if len(frames) != 2:
        raise MalformedRequest(f"{request.api.name.lower()} takes one frame")


def _check_in_log(request: Request, log: Log) -> None:
    """A fetch may start anywhere in ``start_offset .. end_offset`` (past the visible end it
    waits or gets nothing); outside, OffsetOutOfRange, with the start to resume at below it."""
    if not log.start_offset <= request.offset <= log.end_offset:
        below = request.offset < log.start_offset
        raise OffsetOutOfRange(
            f"offset {request.offset} is outside {request.topic}/{request.partition}'s log "
            f"[{log.start_offset}, {log.end_offset}]"
            + (f"; it resumes at {log.start_offset}" if below else ""),
            resume_offset=log.start_offset if below else None)
