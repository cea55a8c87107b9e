"""The data APIs of the Kafka listener: ApiVersions, Metadata, Produce, Fetch, ListOffsets,
InitProducerId. Each is a handler of broker/kafka/request.py's signature on the broker's own
pieces: the LogManager's logs, the ReplicaManager's leaders and high watermarks, the acks=all
purgatory of broker/delayed_produce.py. Records are converted by broker/kafka/records.py.

Versions (``DATA_VERSIONS``) are the ones handled here, all decoded and encoded by
kafka-python's classes: the first versions with topic ids (Metadata 10+ carries them, Fetch
13+, Produce 13+ name topics only by id) are left out, sluice's topics having names only.
"""
from __future__ import annotations

import logging

from kafka.protocol.consumer import FetchResponse, ListOffsetsResponse
from kafka.protocol.metadata import ApiVersionsResponse, MetadataResponse
from kafka.protocol.producer import InitProducerIdResponse, ProduceResponse
from kazoo.exceptions import BadVersionError, KazooException, NodeExistsError

from broker import compaction
from broker.delayed_produce import AckPurgatory, AckWaiter
from broker.kafka import access, audit_tally, errors, idempotence, records
from broker.kafka.access import TOPIC, Operation
from broker.kafka.request import CLOSE, DEFERRED, KafkaContext, KafkaRequest
from broker.log_manager import Route
from broker.time_lookup import offset_for_time
from coordinator import paths, topics
from coordinator.offset_store_choice import OFFSETS_TOPIC
from coordinator.errors import (AuthorizationFailed, CorruptMessage, InvalidOffset,
                                NotEnoughReplicas, NotLeader, SluiceError)

logger = logging.getLogger(__name__)

PRODUCE_KEY = 0
FETCH_KEY = 1
LIST_OFFSETS_KEY = 2
METADATA_KEY = 3
API_VERSIONS_KEY = 18
INIT_PRODUCER_ID_KEY = 22

EARLIEST, LATEST = -2, -1
PRODUCER_ID_BLOCK = 1000            # producer ids a broker takes from ZooKeeper at a time

CLUSTER_ID = "sluice"

_Broker = MetadataResponse.MetadataResponseBroker
_Topic = MetadataResponse.MetadataResponseTopic
_Partition = MetadataResponse.MetadataResponseTopic.MetadataResponsePartition


class DataState:
    """Per broker: the parked acks=all produce requests (an AckPurgatory of
    broker/delayed_produce.py, one waiter per partition of a request), the parked fetches,
    the idempotent producers' sequences and the block of producer ids taken."""

    def __init__(self, ctx: KafkaContext):
        self.ctx = ctx
        self.acks = AckPurgatory()
        ctx.handlers.other_acks.append(self.acks)   # followers see these waiters too
        self.ack_keys: set[tuple[str, int]] = set()
        self.fetches: list[_ParkedFetch] = []
        self.sequences = ctx.logs.kafka_sequences     # follows the data (LogManager)
        self.next_producer_id = 0
        self.producer_id_end = 0

    def waiting(self) -> bool:
        return bool(self.fetches) or bool(self.ack_keys)

    def tick(self, now: float) -> float | None:
        """Let go what is due: acks=all requests the high watermark covers (or whose partition
        lost its leader, or whose timeout passed), fetches that have their min bytes or whose
        wait ended."""
        ctx = self.ctx
        for key in list(self.ack_keys):
            replica = ctx.replicas.get(*key)
            if replica is None or not replica.is_leader:
                exc = NotLeader(f"broker {ctx.broker_id} no longer leads {key[0]}/{key[1]}")
                for waiter in self.acks.drop(key):
                    waiter.identity.done(waiter.correlation_id, errors.kafka_code(exc))
            else:
                for waiter in self.acks.ready(key, replica.hw):
                    waiter.identity.done(waiter.correlation_id, errors.NONE)
        for waiter in self.acks.expired(now):
            waiter.identity.done(waiter.correlation_id, errors.REQUEST_TIMED_OUT)
        self.ack_keys = {key for key in self.ack_keys if self.acks.waiting_on(key)}
        if self.fetches:
            still = []
            for parked in self.fetches:
                if parked.req.conn.closed:
                    continue
                if now >= parked.deadline or \
                        _available(ctx, parked.positions) >= parked.min_bytes:
                    ctx.reply(parked.req, _fetch_response(ctx, parked.req, parked.positions))
                else:
                    still.append(parked)
            self.fetches = still
        deadlines = [d for d in (self.acks.next_deadline(),
                                 min((f.deadline for f in self.fetches), default=None))
                     if d is not None]
        return min(deadlines) if deadlines else None


class _ParkedFetch:
    __slots__ = ("req", "positions", "min_bytes", "deadline")

    def __init__(self, req: KafkaRequest, positions: list, min_bytes: int, deadline: float):
        self.req = req
        self.positions = positions
        self.min_bytes = min_bytes
        self.deadline = deadline


def setup(ctx: KafkaContext) -> None:
    state = ctx.state["data_apis"] = DataState(ctx)
    ctx.add_ticker(state.tick)


# --- ApiVersions ---------------------------------------------------------------------------

def api_versions_response(version: int, table: dict, error_code: int = errors.NONE):
    return ApiVersionsResponse(version=version, error_code=error_code, throttle_time_ms=0,
                               api_keys=[ApiVersionsResponse.ApiVersion(
                                   api_key=key, min_version=low, max_version=high)
                                   for key, (low, high) in sorted(table.items())])


def api_versions(req: KafkaRequest, ctx: KafkaContext):
    return api_versions_response(req.api_version, ctx.versions)


# --- Metadata ------------------------------------------------------------------------------

def metadata(req: KafkaRequest, ctx: KafkaContext):
    """Every live broker with a Kafka endpoint, and the asked-for topics (all when none are
    named, or v1+ ``topics`` null) with each partition's leader, replicas and ISR from
    ZooKeeper's partition states. Topics are never created here (sluice creates them with
    ``sluice topics create``): an unknown one is UNKNOWN_TOPIC_OR_PARTITION."""
    view = ctx.logs.view
    live = view.brokers()
    brokers = []
    kafka_of = {}
    for broker_id, info in sorted(live.items()):
        host, _, port = info.kafka_endpoint.rpartition(":")
        if host:
            kafka_of[broker_id] = (host, int(port))
            brokers.append(_Broker(node_id=broker_id, host=host, port=int(port), rack=None))
    asked = req.body.topics
    authorizer = ctx.handlers.authorization.authorizer
    principal = getattr(req.conn, "principal", "")
    if asked is None or (req.api_version == 0 and not asked):
        names = [name for name in topics.names(ctx.zk) if authorizer is None
                 or authorizer.allows(principal, Operation.DESCRIBE, TOPIC, name)]
        denied = ()
    else:
        names = [topic.name for topic in asked]
        denied = {name for name in names
                  if access.refusal(ctx, req.conn, Operation.DESCRIBE, TOPIC, name)}
    return MetadataResponse(version=req.api_version, throttle_time_ms=0, brokers=brokers,
                            cluster_id=CLUSTER_ID, controller_id=ctx.broker_id,
                            topics=[_Topic(error_code=errors.TOPIC_AUTHORIZATION_FAILED,
                                           name=name, is_internal=False, partitions=[])
                                    if name in denied else _topic_metadata(view, name, kafka_of)
                                    for name in names])


def _topic_metadata(view, name: str, kafka_of: dict):
    try:
        placement = view.placement(name)
    except topics.UnknownTopic:
        return _Topic(error_code=errors.UNKNOWN_TOPIC_OR_PARTITION, name=name,
                      is_internal=False, partitions=[])
    except SluiceError as exc:
        logger.warning("kafka metadata for %s: %s", name, exc)
        return _Topic(error_code=errors.kafka_code(exc), name=name, is_internal=False,
                      partitions=[])
    partitions = []
    for p in range(placement.partitions):
        state = view.state(name, p)
        replicas = list(placement.replicas[p])
        leader = state.leader if state.has_leader and state.leader in kafka_of else -1
        partitions.append(_Partition(
            error_code=errors.NONE if leader >= 0 else errors.LEADER_NOT_AVAILABLE,
            partition_index=p, leader_id=leader, leader_epoch=state.leader_epoch,
            replica_nodes=replicas, isr_nodes=list(state.isr),
            offline_replicas=[b for b in replicas if b not in kafka_of]))
    return _Topic(error_code=errors.NONE, name=name, is_internal=name == OFFSETS_TOPIC,
                  partitions=partitions)


# --- Produce -------------------------------------------------------------------------------

_TopicProduce = ProduceResponse.TopicProduceResponse
_PartitionProduce = ProduceResponse.TopicProduceResponse.PartitionProduceResponse


class _PendingProduce:
    """An acks=all request whose partitions wait for their high watermarks: it is answered
    when the last of them is let go (each a waiter of the AckPurgatory)."""

    __slots__ = ("ctx", "req", "answers", "left", "audited")

    def __init__(self, ctx: KafkaContext, req: KafkaRequest, answers: dict, left: int,
                 audited: dict):
        self.ctx = ctx
        self.req = req
        self.answers = answers      # (topic, partition) -> [error_code, base_offset, start]
        self.left = left
        self.audited = audited      # (topic, partition) -> its records per audit window

    def done(self, key, code: int) -> None:
        if code != errors.NONE:
            self.answers[key][0] = code
            self.answers[key][1] = -1
        elif key in self.audited:
            self.ctx.handlers.kafka_audit.add(key[0], self.audited[key], acknowledged=True)
        self.left -= 1
        if self.left == 0 and not self.req.conn.closed:
            self.ctx.reply(self.req, _produce_response(self.req, self.answers))


def produce(req: KafkaRequest, ctx: KafkaContext):
    """Convert each partition's record batches to one MessageSet of magic 2 messages and
    append it to the partition's log (this broker must lead it): answered at once with
    acks=1, never with acks=0 (a failed acks=0 request closes its connection instead, as
    Kafka's broker does, so the client refreshes its metadata and finds the partition's
    leader), and with acks=all once the high watermark passed every
    partition's write (through an AckPurgatory, ``ack_timeout_ms`` as the native path;
    REQUEST_TIMED_OUT after it). The base offset answered is the byte offset of the batch's
    first record; a client counting the others' offsets as base + index gets offsets that are
    not theirs (their byte offsets come back on consume)."""
    body = req.body
    acks = body.acks
    state: DataState = ctx.state["data_apis"]
    answers: dict = {}
    waits = []
    if acks not in (0, 1, -1):
        for topic in body.topic_data:
            for part in topic.partition_data:
                answers[(topic.name, part.index)] = [errors.INVALID_REQUIRED_ACKS, -1, -1]
        return _produce_response(req, answers)
    written = []
    audited = {} if ctx.handlers.kafka_audit is not None else None
    for topic in body.topic_data:
        denied = access.refusal(ctx, req.conn, Operation.PRODUCE, TOPIC, topic.name)
        for part in topic.partition_data:
            key = (topic.name, part.index)
            if denied:
                answers[key] = [errors.TOPIC_AUTHORIZATION_FAILED, -1, -1]
                continue
            try:
                answers[key] = _produce_partition(ctx, state, key, part.records, acks, waits,
                                                  written, audited)
            except SluiceError as exc:
                ctx.handlers.errors.request_failed(exc, acks=1 if acks else 0)
                answers[key] = [errors.kafka_code(exc), -1, -1, str(exc)]
    if acks == 0:
        failed = any(answer[0] != errors.NONE for answer in answers.values())
        result = CLOSE if failed else None
    else:
        waits = [(key, nxt) for key, nxt in waits if answers[key][0] == errors.NONE]
        result = _produce_response(req, answers) if not waits else DEFERRED
    if audited:
        _count_for_audit(ctx, acks, answers, audited, {key for key, _ in waits})
    if waits:
        pending = _PendingProduce(ctx, req, answers, len(waits),
                                  {key: audited[key] for key, _ in waits
                                   if audited and key in audited})
        deadline = ctx.now() + ctx.config.ack_timeout_ms / 1000
        for key, nxt in waits:
            state.acks.park(AckWaiter(pending, key, key, answers[key][1], nxt, deadline))
            state.ack_keys.add(key)
    # only now, with this request's acks=all waiters parked: a follower's fetch parked on
    # one of these logs is then answered at once instead of after its linger
    for log in written:
        ctx.handlers.appended(log)
    return result


def _count_for_audit(ctx: KafkaContext, acks: int, answers: dict, audited: dict,
                     waiting: set) -> None:
    """The audit's counts of a produce request's fresh writes: acks=0 as sent without ack,
    acks 1 and all as acknowledged once answered without error (an acks=all write still
    waiting for its high watermark is counted by ``_PendingProduce.done``)."""
    tally = ctx.handlers.kafka_audit
    for key, counts in audited.items():
        if answers[key][0] == errors.NONE and key not in waiting:
            tally.add(key[0], counts, acknowledged=acks != 0)


def _produce_partition(ctx: KafkaContext, state: DataState, key: tuple, data, acks: int,
                       waits: list, written: list, audited: dict | None = None) -> list:
    """Write one partition's records; ``[error_code, base_offset, log_start]``. An acks=all
    write the high watermark has not passed yet goes to ``waits``, and so does the duplicate
    of one (a retry is acknowledged no sooner than its original: both wait on the same next
    offset); the log written to, or waited on, goes to ``written`` (the handlers then answer
    a follower's parked fetch of it at once)."""
    topic, partition = key
    route: Route = ctx.logs.route(topic, partition)
    replica = ctx.replicas.leader_of(topic, partition)
    if acks == -1 and len(
            isr := ctx.replicas.in_sync_for_acks(replica)) < replica.min_insync_replicas:
        raise NotEnoughReplicas(f"{topic}/{partition} has {len(isr)} in-sync "
                                f"replica(s), fewer than its min_insync_replicas="
                                f"{replica.min_insync_replicas}; the records were not written")
    refusal = ctx.logs.backlog.refusal(topic, partition)
    if refusal is not None:
        raise refusal
    if data is None:
        raise CorruptMessage("a produce request without records")
    message_set, count, batches = records.to_message_set(
        data, max_message_bytes=ctx.config.log.max_message_bytes, spans=audited is not None)
    log = route.log
    compaction.refuse_unkeyed(topic, log.config, message_set)
    sequenced = [b for b in batches if b.producer_id >= 0]
    if sequenced:
        first = sequenced[0]
        total = sum(b.count for b in sequenced)
        verdict = state.sequences.judge(key, first.producer_id, first.producer_epoch,
                                        first.base_sequence, total)
        if verdict == idempotence.DUPLICATE:
            base, nxt = state.sequences.duplicate_offsets(key, first.producer_id,
                                                          first.base_sequence, total)
            if acks == -1 and nxt > replica.hw:
                waits.append((key, nxt))
                written.append(log)
            return [errors.NONE, base, log.start_offset]
        if verdict == idempotence.OUT_OF_ORDER:
            return [errors.OUT_OF_ORDER_SEQUENCE_NUMBER, -1, log.start_offset]
        if verdict == idempotence.FENCED:
            return [errors.INVALID_PRODUCER_EPOCH, -1, log.start_offset]
    if count == 0:
        return [errors.NONE, log.end_offset, log.start_offset]
    base, nxt = ctx.logs.append(route, [message_set], count, expose=acks != 0)
    if audited is not None:
        audited[key] = audit_tally.window_counts(message_set, ctx.handlers.kafka_audit.window_ms,
                                                 batches)
    if sequenced:
        state.sequences.commit(key, first.producer_id, first.producer_epoch,
                               first.base_sequence, total, base, nxt)
        ctx.logs.sequenced(route, (first.producer_id, first.producer_epoch, first.base_sequence,
                                   (first.base_sequence + total - 1) % idempotence.SEQ_MOD,
                                   base, nxt))
    ctx.replicas.appended(replica)
    written.append(log)
    if acks == -1 and nxt > replica.hw:
        waits.append((key, nxt))
    return [errors.NONE, base, log.start_offset]


def _produce_response(req: KafkaRequest, answers: dict):
    """The response of ``answers`` (``[code, base, log start]``, and the error's text when the
    request failed: Produce v8+ carries it as ``error_message``). INVALID_RECORD, which
    clients before v8 (KIP-467) do not know, is CORRUPT_MESSAGE to them, as Kafka answered."""
    by_topic: dict[str, list] = {}
    old = req.api_version < 8
    for (topic, partition), (code, base, start, *text) in answers.items():
        if old and code == errors.INVALID_RECORD:
            code = errors.CORRUPT_MESSAGE
        by_topic.setdefault(topic, []).append(_PartitionProduce(
            index=partition, error_code=code, base_offset=base, log_append_time_ms=-1,
            log_start_offset=start, record_errors=[],
            error_message=text[0] if text and not old else None))
    return ProduceResponse(version=req.api_version, throttle_time_ms=0, responses=[
        _TopicProduce(name=topic, partition_responses=parts)
        for topic, parts in by_topic.items()])


# --- Fetch ---------------------------------------------------------------------------------

_TopicFetch = FetchResponse.FetchableTopicResponse
_PartitionFetch = FetchResponse.FetchableTopicResponse.PartitionData


def fetch(req: KafkaRequest, ctx: KafkaContext):
    """Answer at once when ``min_bytes`` are readable (below the high watermark and the
    visible end) across the asked partitions, or ``max_wait_ms`` is 0; else park the fetch
    until they are or its wait (at most ``max_wait_ms_limit``) ends. Each partition's position
    is resolved to a message boundary once, when the request comes (``_positions``); the wait
    and the answer use it. Fetch sessions are not kept: the answer's session id is 0, so
    clients send full fetches."""
    body = req.body
    positions = _positions(ctx, req)
    if body.max_wait_ms <= 0 or _available(ctx, positions) >= max(body.min_bytes, 1):
        return _fetch_response(ctx, req, positions)
    wait_ms = min(body.max_wait_ms, ctx.config.max_wait_ms_limit)
    state: DataState = ctx.state["data_apis"]
    state.fetches.append(_ParkedFetch(req, positions, max(body.min_bytes, 1),
                                      ctx.now() + wait_ms / 1000))
    return DEFERRED


def _positions(ctx: KafkaContext, req: KafkaRequest) -> list[list]:
    """Per asked topic, per partition: ``(partition, log, boundary)``, or ``(partition, None,
    error)`` for a position that is refused (not led here, unknown, out of range)."""
    out = []
    for topic in req.body.topics:
        parts = []
        denied = access.refusal(ctx, req.conn, Operation.CONSUME, TOPIC, topic.topic,
                                count=False)    # counted with the answer's errors
        for part in topic.partitions:
            try:
                if denied:
                    raise AuthorizationFailed(denied)
                log = ctx.logs.log(topic.topic, part.partition)
                ctx.replicas.leader_of(topic.topic, part.partition)
                # a position past the high watermark but within the log is no error (Kafka's
                # rule): after a leader change the new leader's high watermark can lag what
                # the consumer already read; it waits there, parked, until it moves on
                parts.append((part.partition, log,
                              records.resolve_offset(log, part.fetch_offset, log.end_offset)))
            except SluiceError as exc:
                parts.append((part.partition, None, exc))
        out.append(parts)
    return out


def _available(ctx: KafkaContext, positions: list[list]) -> int:
    """Bytes readable now from the fetch's positions, a refused partition counting as enough
    (it is answered at once, as Kafka does)."""
    total = 0
    end_of = ctx.replicas.consumer_end
    for parts in positions:
        for _, log, offset in parts:
            if log is None:
                return 1 << 31
            total += max(0, end_of(log) - offset)
    return total


def _fetch_response(ctx: KafkaContext, req: KafkaRequest, positions: list[list]):
    """Whole messages from each partition's position, each partition's as one record batch:
    up to its ``partition_max_bytes`` and the request's ``max_bytes`` in all, but at least
    one whole message of the first partition that has one, however large. Leadership is
    asked again (a parked fetch may outlive it)."""
    body = req.body
    budget = min(body.max_bytes if req.api_version >= 3 else 1 << 31,
                 ctx.config.max_fetch_bytes)
    sent_any = False
    topics_out = []
    for topic, parts_at in zip(body.topics, positions):
        parts = []
        name = topic.topic
        for part, (partition, log, offset) in zip(topic.partitions, parts_at):
            try:
                if log is None:
                    raise offset
                replica = ctx.replicas.leader_of(name, partition)
                end = ctx.replicas.consumer_end(log)
                room = min(part.partition_max_bytes, budget, end - offset)
                batch = b""
                if room > 0 or (not sent_any and end > offset):
                    batch, nbytes = records.read_batches(log, offset, max(room, 1), end,
                                                         replica.epoch)
                    if nbytes:
                        budget -= nbytes
                        sent_any = True
                        ctx.logs.fetched(name, partition, nbytes)
                parts.append(_PartitionFetch(
                    partition_index=partition, error_code=errors.NONE, high_watermark=end,
                    last_stable_offset=end, log_start_offset=log.start_offset,
                    aborted_transactions=[], preferred_read_replica=-1, records=batch))
            except SluiceError as exc:
                ctx.handlers.errors.request_failed(exc, acks=1)
                parts.append(_PartitionFetch(
                    partition_index=partition, error_code=errors.kafka_code(exc),
                    high_watermark=-1, last_stable_offset=-1, log_start_offset=-1,
                    aborted_transactions=[], preferred_read_replica=-1, records=b""))
        topics_out.append(_TopicFetch(topic=name, partitions=parts))
    return FetchResponse(version=req.api_version, throttle_time_ms=0, error_code=errors.NONE,
                         session_id=0, responses=topics_out)


# --- ListOffsets ---------------------------------------------------------------------------

_TopicOffsets = ListOffsetsResponse.ListOffsetsTopicResponse
_PartitionOffsets = ListOffsetsResponse.ListOffsetsTopicResponse.ListOffsetsPartitionResponse


def list_offsets(req: KafkaRequest, ctx: KafkaContext):
    """EARLIEST (-2) is the log start, LATEST (-1) the consumer's end (the high watermark and
    the visible end); a time is the first message, in log order, whose timestamp is at or
    after it (broker/time_lookup.py, the lookup native OFFSET_FOR_TIME shares), or offset -1
    when none is."""
    topics_out = []
    for topic in req.body.topics:
        parts = []
        denied = access.refusal(ctx, req.conn, Operation.DESCRIBE, TOPIC, topic.name)
        for part in topic.partitions:
            try:
                if denied:
                    raise AuthorizationFailed(denied)
                log = ctx.logs.log(topic.name, part.partition_index)
                replica = ctx.replicas.leader_of(topic.name, part.partition_index)
                end = ctx.replicas.consumer_end(log)
                timestamp = -1
                if part.timestamp == EARLIEST:
                    offset = log.start_offset
                elif part.timestamp == LATEST:
                    offset = end
                elif part.timestamp < 0:
                    raise InvalidOffset(f"ListOffsets timestamp {part.timestamp} is "
                                                f"not served (EARLIEST -2, LATEST -1, a time)")
                else:
                    offset, timestamp = offset_for_time(log, part.timestamp, end)
                parts.append(_PartitionOffsets(
                    partition_index=part.partition_index, error_code=errors.NONE,
                    timestamp=timestamp, offset=offset, leader_epoch=replica.epoch))
            except SluiceError as exc:
                parts.append(_PartitionOffsets(
                    partition_index=part.partition_index, error_code=errors.kafka_code(exc),
                    timestamp=-1, offset=-1, leader_epoch=-1))
        topics_out.append(_TopicOffsets(name=topic.name, partitions=parts))
    return ListOffsetsResponse(version=req.api_version, throttle_time_ms=0, topics=topics_out)


# --- InitProducerId ------------------------------------------------------------------------

def init_producer_id(req: KafkaRequest, ctx: KafkaContext):
    """A producer id unique in the cluster (blocks of ``PRODUCER_ID_BLOCK`` taken from a
    ZooKeeper counter, as Kafka's ProducerIdManager), epoch 0. Transactions are not served:
    a transactional id is refused with INVALID_REQUEST. A principal that may produce to no
    topic gets CLUSTER_AUTHORIZATION_FAILED (broker/kafka/access.py)."""
    if req.body.transactional_id is not None:
        return _init_producer_id_response(req, errors.INVALID_REQUEST, -1)
    if access.producer_id_refusal(ctx, req.conn) is not None:
        return _init_producer_id_response(req, errors.CLUSTER_AUTHORIZATION_FAILED, -1)
    state: DataState = ctx.state["data_apis"]
    if state.next_producer_id >= state.producer_id_end:
        try:
            state.next_producer_id = _take_producer_ids(ctx.zk)
        except (KazooException, ctx.zk.handler.timeout_exception) as exc:
            logger.warning("kafka InitProducerId: taking producer ids failed: %s", exc)
            return _init_producer_id_response(req, errors.COORDINATOR_NOT_AVAILABLE, -1)
        state.producer_id_end = state.next_producer_id + PRODUCER_ID_BLOCK
    producer_id = state.next_producer_id
    state.next_producer_id += 1
    return _init_producer_id_response(req, errors.NONE, producer_id)


def _take_producer_ids(zk) -> int:
    """The first id of a new block: a compare-and-set on the counter's version."""
    path = paths.KAFKA_PRODUCER_ID_BLOCK
    while True:
        try:
            zk.create(path, b"%d" % PRODUCER_ID_BLOCK, makepath=True)
            return 0
        except NodeExistsError:
            pass
        data, stat = zk.get(path)
        start = int(data)
        try:
            zk.set(path, b"%d" % (start + PRODUCER_ID_BLOCK), version=stat.version)
            return start
        except BadVersionError:
            continue


def _init_producer_id_response(req: KafkaRequest, code: int, producer_id: int):
    return InitProducerIdResponse(version=req.api_version, throttle_time_ms=0, error_code=code,
                                  producer_id=producer_id, producer_epoch=0 if code == 0 else -1)


DATA_HANDLERS = {
    API_VERSIONS_KEY: api_versions,
    METADATA_KEY: metadata,
    PRODUCE_KEY: produce,
    FETCH_KEY: fetch,
    LIST_OFFSETS_KEY: list_offsets,
    INIT_PRODUCER_ID_KEY: init_producer_id,
}

DATA_VERSIONS = {
    PRODUCE_KEY: (3, 9),
    FETCH_KEY: (4, 12),
    LIST_OFFSETS_KEY: (1, 6),
    METADATA_KEY: (0, 9),
    API_VERSIONS_KEY: (0, 4),
    INIT_PRODUCER_ID_KEY: (0, 4),
}
