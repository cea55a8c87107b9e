"""The group APIs of the Kafka listener: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
LeaveGroup, OffsetCommit, OffsetFetch, and for admin clients DescribeGroups and ListGroups
(``GROUP_HANDLERS``, ``GROUP_VERSIONS``).

- The coordinator of a group is the live broker with a Kafka endpoint that
  coordinator/group_coordinator_choice.py picks; any broker answers FindCoordinator with it,
  and the group APIs on any other broker answer NOT_COORDINATOR, so clients look again.
- The group state machine is broker/kafka/group_coordinator.py; JoinGroup and SyncGroup park
  (DEFERRED) until it answers them. Its timers run in ``tick``. A group this broker stops
  coordinating (the live set changed) is dropped: its parked requests get NOT_COORDINATOR.
- Offsets live where native sluice groups keep them, /consumers/<group>/offsets/<topic>/<p>
  (coordinator/offsets.py's nodes, written here with kazoo's asynchronous calls, so that the
  loop does not wait on ZooKeeper), as message boundaries: a commit of "last consumed + 1" is
  resolved first (broker/kafka/boundaries.py, on another broker when it leads the partition),
  so native consumers of the group and ``sluice groups describe`` read real offsets; the
  commits of a group and partition are written in the order they came, however long each took
  to resolve (broker/kafka/commit_order.py). An offset that is no boundary and not just past a
  message start is OFFSET_OUT_OF_RANGE. The commit's metadata string is not kept (the offset
  node holds only the offset): OffsetFetch answers "".
- A group's offsets are in the store its record names (coordinator/offset_store_choice.py),
  the same for Kafka clients and native members: a group recorded ``log`` is committed and
  fetched with native OFFSET_COMMIT / OFFSET_FETCH to the leader of its ``__consumer_offsets``
  partition (broker/kafka/offset_log.py), asynchronously like the ZooKeeper writes. A group
  without a record that Kafka clients make gets what a native one gets (``settle``): ``log``
  when it is new, ``zookeeper`` when it has offset nodes from before the choice; a recorded
  group keeps its record (``sluice groups migrate-offsets`` moves it). The record is read
  once per group (one synchronous exchange, as a ZooKeeper OffsetFetch is) and then watched.
- Once a generation is STABLE its members and their partitions are published for ``sluice
  groups``: /consumers/<group>/kafka_members/<member> and the owner nodes native groups use,
  ephemeral nodes of this broker's session (so they vanish with it).

Versions: the ones kafka-python's classes decode and encode that these handlers fill, up to
the first that change the shape beyond this (OffsetFetch 8+ batches groups, OffsetCommit 10
names topics by id, FindCoordinator 4+ batches keys and is handled here).
"""
from __future__ import annotations

import json
import logging
import time

from kafka.protocol.consumer.group import (
    HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, OffsetCommitResponse,
    OffsetFetchResponse, SyncGroupResponse)
from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment
from kafka.protocol.admin.groups import DescribeGroupsResponse, ListGroupsResponse
from kafka.protocol.metadata import FindCoordinatorResponse
from kazoo.exceptions import BadVersionError, KazooException, NodeExistsError, NoNodeError
from kazoo.recipe.watchers import DataWatch

from broker.kafka import access
from broker.kafka.access import GROUP, TOPIC, Operation
from broker.kafka.boundaries import RemoteBoundaries
from broker.kafka.offset_log import RemoteOffsets
from broker.kafka.commit_order import CommitOrder
from broker.kafka.errors import GROUP_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED
from broker.kafka.records import resolve_offset
from broker.kafka.group_coordinator import (Error, GroupCoordinator, GroupSettings, JoinResult,
                                            State, SyncResult)
from broker.kafka.request import DEFERRED, KafkaContext, KafkaRequest
from coordinator import offset_store_choice, paths
from coordinator.errors import ErrorCode, InvalidArgument, NotLeader, SluiceError
from coordinator.group_coordinator_choice import coordinator_of
from coordinator.offsets import OffsetStore

logger = logging.getLogger(__name__)

FIND_COORDINATOR, OFFSET_COMMIT, OFFSET_FETCH = 10, 8, 9
JOIN_GROUP, HEARTBEAT, LEAVE_GROUP, SYNC_GROUP = 11, 12, 13, 14
DESCRIBE_GROUPS, LIST_GROUPS = 15, 16

NONE = 0
OFFSET_OUT_OF_RANGE = 1
UNKNOWN_TOPIC_OR_PARTITION = 3
REQUEST_TIMED_OUT = 7
COORDINATOR_NOT_AVAILABLE = int(Error.COORDINATOR_NOT_AVAILABLE)
NOT_COORDINATOR = int(Error.NOT_COORDINATOR)
INVALID_GROUP_ID = int(Error.INVALID_GROUP_ID)
UNKNOWN_SERVER_ERROR = -1
GROUP_KEY, TRANSACTION_KEY = 0, 1
STATE = "groups"
COORDINATION_CHECK_S = 1.0      # how often a broker checks it still coordinates its groups
COMMIT_POLL_S = 0.001           # the loop's deadline while commits wait on ZooKeeper


class KafkaGroups:
    """This broker's side of Kafka groups: the state machine, the boundary lookups, commits
    waiting on them, and what was last published to ZooKeeper."""

    def __init__(self, ctx: KafkaContext, settings: GroupSettings = GroupSettings()):
        self.ctx = ctx
        self.coordinator = GroupCoordinator(settings)
        self.remote = RemoteBoundaries()
        self.commits: list[_PendingCommit] = []     # in arrival order
        self.commit_order = CommitOrder()
        self._published: dict[str, tuple[int, dict, dict]] = {}   # group -> changes, members, owners
        self._due = 0.0                 # when the groups' timers are next due
        self._check_at = 0.0            # when to look at the live brokers again
        self.offset_log = RemoteOffsets(self._offsets_leader)
        self.fetches: list[_PendingFetch] = []       # OffsetFetches waiting on the log store
        self._stores: dict[str, str] = {}            # group -> its offset store, watched

    # -- which broker ------------------------------------------------------------------

    def live_kafka_brokers(self) -> dict[int, str]:
        return {b: getattr(info, "kafka_endpoint", "")
                for b, info in self.ctx.logs.view.brokers().items()
                if getattr(info, "kafka_endpoint", "")}

    def coordinator_for(self, group_id: str) -> tuple[int | None, str]:
        live = self.live_kafka_brokers()
        chosen = coordinator_of(group_id, live)
        return chosen, live.get(chosen, "")

    def coordinates(self, group_id: str) -> bool:
        return self.coordinator_for(group_id)[0] == self.ctx.broker_id

    def store_of(self, group_id: str) -> str:
        """The group's offset store; a group without a record gets one (what ``choose`` says:
        the log for a new group), read once and then kept current by a watch on the record.
        Raises KazooException when ZooKeeper cannot answer."""
        store = self._stores.get(group_id)
        if store is not None:
            return store
        store = offset_store_choice.settle(self.ctx.zk, group_id)
        if store == offset_store_choice.LOG:
            offset_store_choice.ensure_offsets_topic(self.ctx.zk)
        self._stores[group_id] = store

        def changed(data, _stat) -> None:
            if data:
                self._stores[group_id] = data.decode()
        DataWatch(self.ctx.zk, paths.offset_store(group_id), changed)
        return store

    def _offsets_leader(self, group_id: str) -> str:
        """The native endpoint of the leader of the group's ``__consumer_offsets`` partition."""
        view = self.ctx.logs.view
        partition = offset_store_choice.offsets_partition(
            group_id, view.partitions(offset_store_choice.OFFSETS_TOPIC))
        return view.leader(offset_store_choice.OFFSETS_TOPIC, partition).endpoint

    # -- the loop ------------------------------------------------------------------------

    def release(self, group_id: str) -> None:
        """Let go of a group another broker coordinates now: its parked requests are answered
        NOT_COORDINATOR and its nodes in ZooKeeper removed."""
        if group_id in self.coordinator.groups:
            logger.info("kafka group %s: no longer coordinated here", group_id)
            self.send(self.coordinator.forget(group_id))
        self.unpublish(group_id)

    def touch(self) -> None:
        """A request changed a group: the next tick runs the timers and publishes."""
        self._due = 0.0

    def tick(self, now: float) -> float | None:
        """Once per loop turn; the groups' work only when a request changed one, a timer is
        due, or (every COORDINATION_CHECK_S) to see whether the live brokers moved a group."""
        if now >= self._check_at:
            self._check_at = now + COORDINATION_CHECK_S
            for group_id in list(self.coordinator.groups):
                if not self.coordinates(group_id):
                    self.release(group_id)
        if now >= self._due:
            self.send(self.coordinator.tick(now))
            for group_id, group in list(self.coordinator.groups.items()):
                if group.state is State.EMPTY and not group.pending:
                    del self.coordinator.groups[group_id]
                self.publish(group_id)
            deadline = self.coordinator.next_deadline()
            self._due = float("inf") if deadline is None else deadline
        remote_deadline = self.remote.poll(now) if self.remote.waiting() else None
        if self.offset_log.waiting():
            self.offset_log.poll(now)
        for commit in [c for c in self.commits if c.ready(self.ctx.zk)]:
            self.commits.remove(commit)
            self.ctx.reply(commit.req, commit.response())
        for fetch in [f for f in self.fetches if f.call.ready()]:
            self.fetches.remove(fetch)
            self.ctx.reply(fetch.req, fetch.response())
        if self.commits or self.fetches:
            remote_deadline = min(remote_deadline or now + COMMIT_POLL_S, now + COMMIT_POLL_S)
        return min(self._due, self._check_at,
                   float("inf") if remote_deadline is None else remote_deadline)

    def send(self, replies: list, current: KafkaRequest | None = None):
        """Answer parked requests; the answer to ``current`` (the request being handled) is
        returned instead, DEFERRED when it parked."""
        own = DEFERRED
        for waiter, result in replies:
            response = _response(waiter, result)
            if waiter is current:
                own = response
            else:
                self.ctx.reply(waiter, response)
        return own

    # -- ZooKeeper view for ``sluice groups`` ------------------------------------------------

    def publish(self, group_id: str) -> None:
        group = self.coordinator.groups.get(group_id)
        seen = self._published.get(group_id, (-1, {}, {}))
        if group is None:
            self.unpublish(group_id)
            return
        if group.changes == seen[0]:
            return
        members = {mid: json.dumps({"client_id": m.client_id, "host": m.client_host,
                                    "instance_id": m.instance_id, "protocol": group.protocol,
                                    "generation": group.generation,
                                    "coordinator": self.ctx.broker_id}).encode()
                   for mid, m in group.members.items()}
        owners = {}
        if group.protocol_type == "consumer":
            for mid, data in group.assignments().items():
                for topic, partition in _assigned(data):
                    owners[(topic, partition)] = mid
        try:
            self._sync_nodes(group_id, seen[1], members, seen[2], owners)
        except KazooException as exc:
            logger.warning("kafka group %s: publishing members failed: %s", group_id, exc)
            return
        self._published[group_id] = (group.changes, members, owners)

    def unpublish(self, group_id: str) -> None:
        seen = self._published.pop(group_id, None)
        if seen is not None:
            try:
                self._sync_nodes(group_id, seen[1], {}, seen[2], {})
            except KazooException as exc:
                logger.warning("kafka group %s: removing members failed: %s", group_id, exc)

    def _sync_nodes(self, group_id: str, old_members: dict, members: dict, old_owners: dict,
                    owners: dict) -> None:
        zk = self.ctx.zk
        for mid in old_members.keys() - members.keys():
            _delete(zk, paths.kafka_member(group_id, _node_name(mid)))
        for (topic, partition), mid in old_owners.items():
            if owners.get((topic, partition)) != mid:
                _delete(zk, paths.owner(group_id, topic, partition))
        for mid, data in members.items():
            if old_members.get(mid) != data:
                _put(zk, paths.kafka_member(group_id, _node_name(mid)), data)
        for (topic, partition), mid in owners.items():
            if old_owners.get((topic, partition)) != mid:
                _put(zk, paths.owner(group_id, topic, partition), mid.encode())


def _node_name(member_id: str) -> str:
    """A member id as one ZooKeeper path component (a client id may hold a slash)."""
    return member_id.replace("%", "%25").replace("/", "%2F")


def _ours(zk, stat) -> bool:
    return stat is not None and stat.ephemeralOwner == zk.client_id[0]


def _delete(zk, path: str) -> None:
    """Delete a node this broker's session owns (a node the group's next coordinator already
    wrote over is left to it)."""
    stat = zk.exists(path)
    if _ours(zk, stat):
        try:
            zk.delete(path, version=stat.version)
        except (NoNodeError, BadVersionError):
            pass


def _put(zk, path: str, data: bytes) -> None:
    """Write an ephemeral node of this broker's session, taking it over from another session
    (the group's previous coordinator, which may not have removed it yet)."""
    while True:
        try:
            zk.create(path, data, ephemeral=True, makepath=True)
            return
        except NodeExistsError:
            pass
        stat = zk.exists(path)
        try:
            if _ours(zk, stat):
                zk.set(path, data, version=stat.version)
                return
            if stat is not None:
                zk.delete(path, version=stat.version)
        except (NoNodeError, BadVersionError):
            continue


def _assigned(data: bytes) -> list[tuple[str, int]]:
    """The partitions of a consumer protocol assignment (empty when it does not decode)."""
    if not data:
        return []
    try:
        assignment = ConsumerProtocolAssignment.decode(data)
    except Exception as exc:  # the leader's bytes: any decoding failure means "unknown"
        logger.info("an assignment did not decode as the consumer protocol: %s", exc)
        return []
    return [(tp.topic, p) for tp in assignment.assigned_partitions for p in tp.partitions]


def setup(ctx: KafkaContext) -> None:
    config = ctx.config
    settings = GroupSettings(
        min_session_timeout_ms=config.group_min_session_timeout_ms,
        max_session_timeout_ms=config.group_max_session_timeout_ms,
        initial_rebalance_delay_s=config.group_initial_rebalance_delay_ms / 1000)
    groups = ctx.state[STATE] = KafkaGroups(ctx, settings)
    ctx.add_ticker(groups.tick)


def _groups(ctx: KafkaContext) -> KafkaGroups:
    return ctx.state[STATE]


def _valid_group(group_id: str) -> bool:
    try:
        paths.check_name("group", group_id)
        return True
    except InvalidArgument:
        return False


def _group_error(ctx: KafkaContext, group_id: str, req: KafkaRequest | None = None,
                 operation: Operation = Operation.CONSUME) -> int | None:
    """INVALID_GROUP_ID, GROUP_AUTHORIZATION_FAILED (the ACLs, broker/kafka/access.py, for
    ``req``'s principal), NOT_COORDINATOR, or None when this broker coordinates the group. A
    group that moved away is let go at once (its members are about to join elsewhere)."""
    if not _valid_group(group_id):
        return INVALID_GROUP_ID
    if req is not None and access.refusal(ctx, req.conn, operation, GROUP, group_id):
        return GROUP_AUTHORIZATION_FAILED
    groups = _groups(ctx)
    if not groups.coordinates(group_id):
        groups.release(group_id)
        return NOT_COORDINATOR
    return None


# --- FindCoordinator -----------------------------------------------------------------------

def find_coordinator(req: KafkaRequest, ctx: KafkaContext):
    body, version = req.body, req.api_version
    key_type = body.key_type if version >= 1 else GROUP_KEY
    keys = list(body.coordinator_keys) if version >= 4 else [body.key]
    answers = [(GROUP_AUTHORIZATION_FAILED, f"no rule lets this principal describe group "
                f"{key!r}", -1, "", -1)
               if key_type == GROUP_KEY and _valid_group(key)
               and access.refusal(ctx, req.conn, Operation.DESCRIBE, GROUP, key)
               else _coordinator_answer(ctx, key, key_type) for key in keys]
    if version >= 4:
        return FindCoordinatorResponse(
            version=version, throttle_time_ms=0, coordinators=[
                FindCoordinatorResponse.Coordinator(key=key, node_id=node, host=host, port=port,
                                                    error_code=code, error_message=message)
                for key, (code, message, node, host, port) in zip(keys, answers)])
    code, message, node, host, port = answers[0]
    return FindCoordinatorResponse(version=version, throttle_time_ms=0, error_code=code,
                                   error_message=message, node_id=node, host=host, port=port)


def _coordinator_answer(ctx: KafkaContext, key: str, key_type: int):
    if key_type != GROUP_KEY:
        return (COORDINATOR_NOT_AVAILABLE, "sluice has no transaction coordinator", -1, "", -1)
    if not _valid_group(key):
        return (INVALID_GROUP_ID, f"invalid group id {key!r}", -1, "", -1)
    node, endpoint = _groups(ctx).coordinator_for(key)
    host, _, port = endpoint.rpartition(":")
    if node is None or not host:
        return (COORDINATOR_NOT_AVAILABLE, "no live broker has a Kafka listener", -1, "", -1)
    return (NONE, None, node, host, int(port))


# --- JoinGroup, SyncGroup, Heartbeat, LeaveGroup -------------------------------------------

def join_group(req: KafkaRequest, ctx: KafkaContext):
    body, version = req.body, req.api_version
    error = _group_error(ctx, body.group_id, req)
    if error is not None:
        return _response(req, JoinResult(error, member_id=body.member_id))
    groups = _groups(ctx)
    group = groups.coordinator.group(body.group_id)
    replies = group.join(
        req, body.member_id, body.group_instance_id if version >= 5 else None,
        req.client_id or "", _client_host(req), body.session_timeout_ms,
        body.rebalance_timeout_ms if version >= 1 else body.session_timeout_ms,
        body.protocol_type, [(p.name, bytes(p.metadata)) for p in body.protocols],
        ctx.now(), require_known_member=version >= 4)
    groups.touch()
    return groups.send(replies, req)


def sync_group(req: KafkaRequest, ctx: KafkaContext):
    body, version = req.body, req.api_version
    error = _group_error(ctx, body.group_id, req)
    if error is not None:
        return _response(req, SyncResult(error))
    groups = _groups(ctx)
    group = groups.coordinator.group(body.group_id)
    if version >= 5 and ((body.protocol_type and body.protocol_type != group.protocol_type)
                         or (body.protocol_name and body.protocol_name != group.protocol)):
        return _response(req, SyncResult(int(Error.INCONSISTENT_GROUP_PROTOCOL)))
    replies = group.sync(req, body.member_id, body.generation_id,
                         body.group_instance_id if version >= 3 else None,
                         {a.member_id: bytes(a.assignment) for a in body.assignments}, ctx.now())
    groups.touch()
    return groups.send(replies, req)


def heartbeat(req: KafkaRequest, ctx: KafkaContext):
    body, version = req.body, req.api_version
    error = _group_error(ctx, body.group_id, req)
    if error is None:
        group = _groups(ctx).coordinator.group(body.group_id)
        error = int(group.heartbeat(body.member_id, body.generation_id,
                                    body.group_instance_id if version >= 3 else None,
                                    ctx.now()))
    return HeartbeatResponse(version=version, throttle_time_ms=0, error_code=error)


def leave_group(req: KafkaRequest, ctx: KafkaContext):
    body, version = req.body, req.api_version
    leaving = ([(m.member_id, m.group_instance_id) for m in body.members] if version >= 3
               else [(body.member_id, None)])
    error = _group_error(ctx, body.group_id, req)
    results = []
    if error is None:
        groups = _groups(ctx)
        group = groups.coordinator.group(body.group_id)
        for member_id, instance_id in leaving:
            code, replies = group.leave(member_id, instance_id, ctx.now())
            groups.send(replies)
            results.append(int(code))
        groups.touch()
        if version < 3:
            error = results[0]
    members = [LeaveGroupResponse.MemberResponse(
        member_id=member_id, group_instance_id=instance_id, error_code=code)
        for (member_id, instance_id), code in zip(leaving, results)]
    return LeaveGroupResponse(version=version, throttle_time_ms=0, error_code=error or NONE,
                              members=members)


def _client_host(req: KafkaRequest) -> str:
    peer = getattr(req.conn, "peer", None)
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


def _response(req: KafkaRequest, result):
    """The response struct of ``req``'s version for a state machine result."""
    version = req.api_version
    if isinstance(result, JoinResult):
        return JoinGroupResponse(
            version=version, throttle_time_ms=0, error_code=result.error,
            generation_id=result.generation, protocol_type=result.protocol_type,
            protocol_name=result.protocol if result.protocol or version >= 7 else "",
            leader=result.leader, skip_assignment=False, member_id=result.member_id,
            members=[JoinGroupResponse.JoinGroupResponseMember(
                member_id=mid, group_instance_id=instance_id, metadata=metadata)
                for mid, instance_id, metadata in result.members])
    return SyncGroupResponse(version=version, throttle_time_ms=0, error_code=result.error,
                             protocol_type=result.protocol_type,
                             protocol_name=result.protocol, assignment=result.assignment)


# --- OffsetCommit, OffsetFetch -------------------------------------------------------------

class _PendingCommit:
    """An OffsetCommit on its way: its offsets resolved to boundaries (``codes[(t, p)]`` is a
    partition's error, ``boundaries[(t, p)]`` its resolved offset), then written to ZooKeeper
    with kazoo's asynchronous calls, so the loop never waits on ZooKeeper for a commit (a
    log-store group's: sent to its offsets leader, ``offset_log``, as asynchronously). A write
    is a set, or a create where the node is new (and a set again if a create lost a race).
    A partition's write starts only once the older commits of the group and partition are
    done with it (broker/kafka/commit_order.py): a commit resolved sooner than an older one
    never lands before it."""

    def __init__(self, req: KafkaRequest, wanted: list[tuple[str, int, int]],
                 order: CommitOrder, offset_log: RemoteOffsets | None = None):
        self.req = req
        self.offset_log = offset_log        # the group's store is the log (None: ZooKeeper)
        self.wanted = wanted
        self.codes: dict[tuple[str, int], int] = {}
        self.boundaries: dict[tuple[str, int], int] = {}
        self._order = order
        self._open = {(t, p) for t, p, _ in wanted}     # not yet written, nor failed
        self._writes: dict = {}                 # (t, p) -> (kazoo async result, "set"|"create")
        for tp in self._open:
            order.join(self._key(tp), self)

    def _key(self, tp) -> tuple[str, str, int]:
        return (self.req.body.group_id, *tp)

    def _done(self, tp) -> None:
        self._open.discard(tp)
        self._order.leave(self._key(tp), self)

    def refused(self, tp, code: int) -> None:
        """``tp`` is answered ``code`` and not written (e.g. its topic is not the principal's)."""
        self.codes[tp] = code
        self._done(tp)

    def resolved(self, tp, boundary: int | None, error: SluiceError | None) -> None:
        if error is not None or boundary is None:
            self.codes[tp] = _commit_code(error)
            self._done(tp)
        else:
            self.boundaries[tp] = boundary

    def ready(self, zk) -> bool:
        """Whether every offset is resolved and written (starting the writes whose turn came
        and following them)."""
        for tp in self.boundaries:
            if tp in self._open and tp not in self._writes and \
                    self._order.first(self._key(tp), self):
                self._writes[tp] = self._write(zk, tp, "set")
        for tp, (result, kind) in list(self._writes.items()):
            if not result.ready():
                continue
            del self._writes[tp]
            exc = result.exception
            if exc is None:
                self._done(tp)
            elif isinstance(exc, NoNodeError) and kind == "set":
                self._writes[tp] = self._write(zk, tp, "create")
            elif isinstance(exc, NodeExistsError) and kind == "create":
                self._writes[tp] = self._write(zk, tp, "set")
            else:
                logger.warning("kafka group %s: committing %s/%d failed: %s",
                               self.req.body.group_id, tp[0], tp[1], exc)
                self.codes[tp] = COORDINATOR_NOT_AVAILABLE
                self._done(tp)
        return not self._open

    def _write(self, zk, tp, kind: str):
        if self.offset_log is not None:
            return self.offset_log.commit(self.req.body.group_id, {tp: self.boundaries[tp]},
                                          time.monotonic()), "log"
        path = paths.offset(self.req.body.group_id, *tp)
        data = str(int(self.boundaries[tp])).encode()
        if kind == "set":
            return zk.set_async(path, data), kind
        return zk.create_async(path, data, makepath=True), kind

    def response(self):
        return _commit_response(self.req, {(t, p): self.codes.get((t, p), NONE)
                                           for t, p, _ in self.wanted})


def _commit_code(error: SluiceError | None) -> int:
    """The partition's OffsetCommit error for a failed resolution (None: the offset is no
    boundary)."""
    if error is None:
        return OFFSET_OUT_OF_RANGE
    if error.code is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
        return UNKNOWN_TOPIC_OR_PARTITION
    if error.retriable:
        return REQUEST_TIMED_OUT
    return OFFSET_OUT_OF_RANGE


def offset_commit(req: KafkaRequest, ctx: KafkaContext):
    body, version = req.body, req.api_version
    wanted = [(t.name, p.partition_index, p.committed_offset)
              for t in body.topics for p in t.partitions]
    error = _group_error(ctx, body.group_id, req)
    if error is None:
        groups = _groups(ctx)
        group = groups.coordinator.groups.get(body.group_id)
        instance_id = body.group_instance_id if version >= 7 else None
        generation = body.generation_id_or_member_epoch
        if group is not None:
            error = int(group.check_commit(body.member_id, generation, instance_id)) or None
        elif generation >= 0 or body.member_id:
            error = int(Error.UNKNOWN_MEMBER_ID) if body.member_id else int(
                Error.ILLEGAL_GENERATION)
    if error is not None:
        return _commit_response(req, {(t, p): error for t, p, _ in wanted})
    try:
        log_store = groups.store_of(body.group_id) == offset_store_choice.LOG
    except (KazooException, SluiceError) as exc:
        logger.warning("kafka group %s: its offset store is unknown now: %s", body.group_id, exc)
        return _commit_response(req, {(t, p): COORDINATOR_NOT_AVAILABLE for t, p, _ in wanted})
    denied = {t for t in {t for t, _, _ in wanted}
              if access.refusal(ctx, req.conn, Operation.CONSUME, TOPIC, t)}
    commit = _PendingCommit(req, wanted, groups.commit_order,
                            groups.offset_log if log_store else None)
    now = ctx.now()
    for tp, offset in {(t, p): o for t, p, o in wanted}.items():     # a partition once
        if tp[0] in denied:       # nothing of it is written
            commit.refused(tp, TOPIC_AUTHORIZATION_FAILED)
        else:
            _resolve(ctx, groups, commit, tp, offset, now)
    if commit.ready(ctx.zk):
        return commit.response()
    groups.commits.append(commit)
    return DEFERRED


def _resolve(ctx: KafkaContext, groups: KafkaGroups, commit: _PendingCommit, tp, offset: int,
             now: float) -> None:
    """Resolve one committed offset here when this broker leads the partition (or holds it
    unreplicated), else on its leader."""
    topic, partition = tp
    if offset < 0:
        commit.resolved(tp, None, None)
        return
    log = ctx.logs.logs.get(tp)
    try:
        if log is not None and (tp not in ctx.replicas.partitions
                                or ctx.replicas.leader_of(topic, partition) is not None):
            commit.resolved(tp, resolve_offset(log, offset, ctx.replicas.consumer_end(log)),
                            None)
            return
    except NotLeader:
        pass
    except SluiceError as exc:
        commit.resolved(tp, None, exc)
        return
    try:
        leader = ctx.logs.view.leader(topic, partition)
    except SluiceError as exc:
        commit.resolved(tp, None, exc)
        return
    groups.remote.ask(leader.endpoint, topic, partition, offset,
                      lambda boundary, error: commit.resolved(tp, boundary, error), now)


def _commit_response(req: KafkaRequest, codes: dict):
    by_topic: dict[str, list] = {}
    for (topic, partition), code in codes.items():
        by_topic.setdefault(topic, []).append(
            OffsetCommitResponse.OffsetCommitResponseTopic.OffsetCommitResponsePartition(
                partition_index=partition, error_code=code))
    return OffsetCommitResponse(
        version=req.api_version, throttle_time_ms=0, topics=[
            OffsetCommitResponse.OffsetCommitResponseTopic(name=topic, partitions=partitions)
            for topic, partitions in by_topic.items()])


def offset_fetch(req: KafkaRequest, ctx: KafkaContext):
    """Committed offsets from the group's store (-1 where none): ZooKeeper read here, the log
    asked of its offsets leader (answered DEFERRED); all of the group's topics when ``topics``
    is null (v2+)."""
    body, version = req.body, req.api_version
    error = _group_error(ctx, body.group_id, req, Operation.DESCRIBE)
    _Topic = OffsetFetchResponse.OffsetFetchResponseTopic
    _Partition = _Topic.OffsetFetchResponsePartition
    if error is not None:
        if version >= 2:
            return OffsetFetchResponse(version=version, throttle_time_ms=0, topics=[],
                                       error_code=error)
        return OffsetFetchResponse(version=version, topics=[
            _Topic(name=t.name, partitions=[_Partition(
                partition_index=p, committed_offset=-1, committed_leader_epoch=-1,
                metadata="", error_code=error) for p in t.partition_indexes])
            for t in body.topics])
    groups = _groups(ctx)
    try:
        log_store = groups.store_of(body.group_id) == offset_store_choice.LOG
    except (KazooException, SluiceError) as exc:
        logger.warning("kafka group %s: its offset store is unknown now: %s", body.group_id, exc)
        return OffsetFetchResponse(version=version, throttle_time_ms=0, topics=[],
                                   error_code=COORDINATOR_NOT_AVAILABLE)
    if log_store:
        asked = None if body.topics is None else [(t.name, p) for t in body.topics
                                                  for p in t.partition_indexes]
        groups.fetches.append(_PendingFetch(req, asked, groups.offset_log.fetch(
            body.group_id, asked or [], ctx.now())))
        return DEFERRED
    store = OffsetStore(ctx.zk, body.group_id)
    topics = []
    try:
        if body.topics is None:
            found = [(topic, dict(sorted(store.committed(topic).items())))
                     for topic in _committed_topics(ctx, body.group_id)]
        else:
            found = [(t.name, {p: store.fetch(t.name, p) for p in t.partition_indexes})
                     for t in body.topics]
        for topic, offsets in found:
            topics.append(_Topic(name=topic, partitions=[
                _Partition(partition_index=p, committed_offset=-1 if offset is None else offset,
                           committed_leader_epoch=-1, metadata="", error_code=NONE)
                for p, offset in offsets.items()]))
        code = NONE
    except KazooException as exc:
        logger.warning("kafka group %s: reading offsets failed: %s", body.group_id, exc)
        topics, code = [], COORDINATOR_NOT_AVAILABLE
    return OffsetFetchResponse(version=version, throttle_time_ms=0, topics=topics,
                               error_code=code)


class _PendingFetch:
    """An OffsetFetch of a log-store group waiting on its offsets leader's answer."""

    def __init__(self, req: KafkaRequest, asked: list | None, call):
        self.req, self.asked, self.call = req, asked, call

    def response(self):
        _Topic = OffsetFetchResponse.OffsetFetchResponseTopic
        _Partition = _Topic.OffsetFetchResponsePartition
        version = self.req.api_version
        if self.call.exception is not None:
            logger.warning("kafka group %s: reading offsets from the log failed: %s",
                           self.req.body.group_id, self.call.exception)
            return OffsetFetchResponse(version=version, throttle_time_ms=0, topics=[],
                                       error_code=COORDINATOR_NOT_AVAILABLE)
        found = {(t, p): offset for t, p, offset, _ in self.call.value}
        by_topic: dict[str, dict[int, int]] = {}
        for t, p in (sorted(found) if self.asked is None else self.asked):
            by_topic.setdefault(t, {})[p] = found.get((t, p), -1)
        return OffsetFetchResponse(version=version, throttle_time_ms=0, error_code=NONE, topics=[
            _Topic(name=t, partitions=[_Partition(
                partition_index=p, committed_offset=offset, committed_leader_epoch=-1,
                metadata="", error_code=NONE) for p, offset in offsets.items()])
            for t, offsets in by_topic.items()])


def _committed_topics(ctx: KafkaContext, group_id: str) -> list[str]:
    try:
        return sorted(ctx.zk.get_children(paths.group_offsets(group_id)))
    except NoNodeError:
        return []


# --- DescribeGroups, ListGroups ----------------------------------------------------------

def describe_groups(req: KafkaRequest, ctx: KafkaContext):
    """Each asked group this broker coordinates, from its state machine: state, protocol,
    members with their metadata and assignment. A group without members here is Empty when
    it has committed offsets, else Dead (Kafka's answer for a group it does not know)."""
    version = req.api_version
    _Group = DescribeGroupsResponse.DescribedGroup
    _Member = _Group.DescribedGroupMember
    described = []
    for group_id in req.body.groups:
        error = _group_error(ctx, group_id, req, Operation.DESCRIBE)
        group = _groups(ctx).coordinator.groups.get(group_id) if error is None else None
        if group is None or not group.members:
            state = "Dead"
            if error is None and _committed_topics(ctx, group_id):
                state = "Empty"
            described.append(_Group(error_code=error or NONE, error_message=None,
                                    group_id=group_id, group_state=state, protocol_type="",
                                    protocol_data="", members=[],
                                    authorized_operations=None))
            continue
        assignments = group.assignments()
        described.append(_Group(
            error_code=NONE, error_message=None, group_id=group_id,
            group_state=group.state.value, protocol_type=group.protocol_type or "",
            protocol_data=group.protocol if group.state is State.STABLE else "",
            members=[_Member(member_id=m.member_id, group_instance_id=m.instance_id,
                             client_id=m.client_id, client_host=m.client_host,
                             member_metadata=(m.metadata(group.protocol)
                                              if group.protocol else b""),
                             member_assignment=assignments.get(m.member_id, b""))
                     for m in group.members.values()],
            authorized_operations=None))
    return DescribeGroupsResponse(version=version, throttle_time_ms=0, groups=described)


def _may_describe(ctx: KafkaContext, req: KafkaRequest, group_id: str) -> bool:
    """ListGroups lists only the groups the principal may describe (as Kafka's does); the
    others are left out, not counted as refusals."""
    authorizer = ctx.handlers.authorization.authorizer
    return authorizer is None or authorizer.allows(getattr(req.conn, "principal", ""),
                                                   Operation.DESCRIBE, GROUP, group_id)


def list_groups(req: KafkaRequest, ctx: KafkaContext):
    """The groups this broker coordinates: its Kafka groups, and every other group in
    ZooKeeper that hashes to it (native groups and Kafka groups between generations), as
    Kafka lists a coordinator's groups; admin clients ask every broker and merge."""
    version = req.api_version
    groups = _groups(ctx)
    known = dict(groups.coordinator.groups)
    try:
        stored = ctx.zk.get_children(paths.CONSUMERS)
    except NoNodeError:
        stored = []
    except KazooException as exc:
        logger.warning("kafka: listing groups failed: %s", exc)
        return ListGroupsResponse(version=version, throttle_time_ms=0,
                                  error_code=COORDINATOR_NOT_AVAILABLE, groups=[])
    states = set(req.body.states_filter or []) if version >= 4 else set()
    listed = []
    for group_id in sorted(set(stored) | set(known)):
        if not groups.coordinates(group_id) or not _may_describe(ctx, req, group_id):
            continue
        group = known.get(group_id)
        state = group.state.value if group is not None else "Empty"
        if states and state not in states:
            continue
        listed.append(ListGroupsResponse.ListedGroup(
            group_id=group_id, protocol_type=(group.protocol_type or "") if group else "",
            group_state=state, group_type="classic"))
    return ListGroupsResponse(version=version, throttle_time_ms=0, error_code=NONE,
                              groups=listed)


GROUP_HANDLERS = {
    FIND_COORDINATOR: find_coordinator,
    OFFSET_COMMIT: offset_commit,
    OFFSET_FETCH: offset_fetch,
    JOIN_GROUP: join_group,
    HEARTBEAT: heartbeat,
    LEAVE_GROUP: leave_group,
    SYNC_GROUP: sync_group,
    DESCRIBE_GROUPS: describe_groups,
    LIST_GROUPS: list_groups,
}

GROUP_VERSIONS = {
    FIND_COORDINATOR: (0, 4),
    OFFSET_COMMIT: (2, 9),
    OFFSET_FETCH: (1, 7),
    JOIN_GROUP: (0, 9),
    HEARTBEAT: (0, 4),
    LEAVE_GROUP: (0, 5),
    SYNC_GROUP: (0, 5),
    DESCRIBE_GROUPS: (0, 5),
    LIST_GROUPS: (0, 4),
}
