"""Kafka's broker-side consumer group protocol: the state machine of one coordinator's groups.

Pure: no sockets, no ZooKeeper, no clock. Every call takes ``now`` (seconds, monotonic) and a
``waiter`` (whatever the caller needs to answer a parked request later, the handlers pass the
``KafkaRequest``); calls that may answer parked requests return ``replies``, a list of
``(waiter, JoinResult | SyncResult)``, which the caller sends. ``tick(now)`` expires sessions
and rebalance timeouts; ``next_deadline()`` says when it must be called next.

States of a group (Kafka's names)::

    EMPTY --join--> PREPARING_REBALANCE --every known member joined,--> COMPLETING_REBALANCE
      ^                ^   ^                 or the rebalance timeout        |        |
      |                |   +--join (new member or changed metadata), leave,--+        |
      |                |      session expiry, or no leader SyncGroup in time   leader's
      |                +----------- join (new / changed / leader), leave, --+ SyncGroup
      |                             session expiry                          |        |
      +---- the last member leaves or expires ------------------------- STABLE <-----+

- JoinGroup parks until every known member has rejoined (or the rebalance timeout, the largest
  any member asked for, drops those that did not); then the generation id goes up by one, one
  protocol is selected that every member supports (each member votes for the first one of its
  list that all support), a leader is kept or chosen, and every parked join is answered: the
  leader's answer carries every member's metadata for the selected protocol, the others' none.
- SyncGroup parks until the leader's SyncGroup brings the assignment; every parked sync is then
  answered with its member's part, and the group is STABLE.
- Heartbeat answers REBALANCE_IN_PROGRESS while the group prepares a rebalance, so that members
  rejoin; ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID to a member that missed one or was dropped.
- A member whose session timeout passes without a request is dropped (not while its join or
  sync is parked: it is waiting on us). A JoinGroup v4+ without a member id gets a fresh id
  with MEMBER_ID_REQUIRED (KIP-394) and is expected back with it within its session timeout.
- Static members (``group.instance.id``, KIP-345): a member that rejoins under its instance id
  without a member id takes its old place under a new member id (the old id is fenced with
  FENCED_INSTANCE_ID); in a STABLE group with unchanged metadata that is no rebalance at all,
  and its assignment stays. Static members leave by session timeout or a LeaveGroup v3+.
- Cooperative rebalancing (``cooperative-sticky``) is client-side: the broker sees a member
  rejoin with new metadata (its owned partitions changed after it revoked some), and a changed
  subscription starts a rebalance like any other. A follower that rejoins a STABLE group with
  unchanged metadata is answered at once with the current generation, the leader's rejoin
  always starts one (it may have seen a metadata change the others did not).

Worked example: two members, the second joins a STABLE group.

>>> ids = iter(["a-1", "b-1", "a-2"])
>>> g = Group("clicks", new_id=lambda client_id: next(ids))
>>> protos = [("range", b"R")]
>>> g.join("ja", "", None, "a", "h", 10000, 30000, "consumer", protos, now=0.0,
...        require_known_member=False)
[('ja', JoinResult(error=0, generation=1, protocol_type='consumer', protocol='range', leader='a-1', member_id='a-1', members=[('a-1', None, b'R')]))]
>>> g.sync("sa", "a-1", 1, None, {"a-1": b"p0,p1"}, now=0.1)
[('sa', SyncResult(error=0, protocol_type='consumer', protocol='range', assignment=b'p0,p1'))]
>>> g.state.name
'STABLE'

The second member's join starts a rebalance and parks; the first learns it from a heartbeat.

>>> g.join("jb", "", None, "b", "h", 10000, 30000, "consumer", protos, now=1.0,
...        require_known_member=False)
[]
>>> g.heartbeat("a-1", 1, None, now=1.1) == Error.REBALANCE_IN_PROGRESS
True
>>> [(w, r.generation, r.leader, len(r.members)) for w, r in g.join(
...     "ja2", "a-1", None, "a", "h", 10000, 30000, "consumer", protos, now=1.2,
...     require_known_member=False)]
[('ja2', 2, 'a-1', 2), ('jb', 2, 'a-1', 0)]
>>> g.sync("sb", "b-1", 2, None, {}, now=1.3)
[]
>>> [(w, r.assignment) for w, r in g.sync("sa2", "a-1", 2, None, {"a-1": b"p0", "b-1": b"p1"},
...                                       now=1.4)]
[('sa2', b'p0'), ('sb', b'p1')]

The leader stops heartbeating: at its session's end it is dropped, the rebalance waits for the
remaining member, which becomes the leader of generation 3.

>>> g.heartbeat("b-1", 2, None, now=11.0) == Error.NONE
True
>>> g.tick(now=11.5)
[]
>>> g.state.name, sorted(g.members)
('PREPARING_REBALANCE', ['b-1'])
>>> [(w, r.generation, r.leader) for w, r in g.join(
...     "jb3", "b-1", None, "b", "h", 10000, 30000, "consumer", protos, now=11.6,
...     require_known_member=False)]
[('jb3', 3, 'b-1')]
"""
from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

Waiter = Any
Protocols = list[tuple[str, bytes]]


class Error(enum.IntEnum):
    """The Kafka error codes the group protocol answers with."""

    NONE = 0
    COORDINATOR_NOT_AVAILABLE = 15
    NOT_COORDINATOR = 16
    ILLEGAL_GENERATION = 22
    INCONSISTENT_GROUP_PROTOCOL = 23
    INVALID_GROUP_ID = 24
    UNKNOWN_MEMBER_ID = 25
    INVALID_SESSION_TIMEOUT = 26
    REBALANCE_IN_PROGRESS = 27
    MEMBER_ID_REQUIRED = 79
    GROUP_MAX_SIZE_REACHED = 81
    FENCED_INSTANCE_ID = 82


class State(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"


@dataclass(frozen=True)
class JoinResult:
    """A JoinGroup answer. ``members`` (member id, instance id, metadata) only for the leader."""

    error: int
    generation: int = -1
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str = ""
    member_id: str = ""
    members: list = field(default_factory=list)


@dataclass(frozen=True)
class SyncResult:
    error: int
    protocol_type: str | None = None
    protocol: str | None = None
    assignment: bytes = b""


@dataclass(frozen=True)
class GroupSettings:
    """The coordinator's bounds (Kafka's ``group.min.session.timeout.ms`` and friends).

    ``initial_rebalance_delay_s``: how long the first rebalance of an empty group waits for
    more members before it completes (Kafka's ``group.initial.rebalance.delay.ms``); it never
    waits past the rebalance timeout."""

    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1_800_000
    initial_rebalance_delay_s: float = 0.0
    max_size: int | None = None

    def __post_init__(self):
        if not 0 < self.min_session_timeout_ms <= self.max_session_timeout_ms:
            raise ValueError("group session timeouts: need 0 < min <= max")
        if self.initial_rebalance_delay_s < 0:
            raise ValueError("initial_rebalance_delay_s must not be negative")
        if self.max_size is not None and self.max_size < 1:
            raise ValueError("max_size must be at least 1")


@dataclass
class Member:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_s: float
    rebalance_timeout_s: float
    protocols: Protocols
    deadline: float
    assignment: bytes = b""
    join_waiter: Waiter = None
    sync_waiter: Waiter = None

    def metadata(self, protocol: str) -> bytes:
        return dict(self.protocols)[protocol]


def select_protocol(preferences: list[list[str]]) -> str | None:
    """The protocol every member supports that most members prefer (pure).

    Each member votes for the first protocol of its list (its preference order) that every
    member supports; the most votes win, a tie goes to the one the first member prefers.
    None when no protocol is common to all.

    >>> select_protocol([["cooperative-sticky", "range"], ["range"]])
    'range'
    >>> select_protocol([["range", "roundrobin"], ["roundrobin", "range"], ["roundrobin"]])
    'roundrobin'
    >>> select_protocol([["range", "roundrobin"], ["roundrobin", "range"]])
    'range'
    >>> select_protocol([["range"], ["sticky"]]) is None
    True
    """
    if not preferences:
        return None
    common = set(preferences[0]).intersection(*map(set, preferences[1:]))
    if not common:
        return None
    votes: dict[str, int] = {}
    for names in preferences:
        vote = next(name for name in names if name in common)
        votes[vote] = votes.get(vote, 0) + 1
    best = max(votes.values())
    return next(name for name in preferences[0] if votes.get(name) == best)


def _default_id(client_id: str) -> str:
    return f"{client_id or 'member'}-{uuid.uuid4()}"


class Group:
    """One consumer group on its coordinator: members, generation, leader, assignments."""

    def __init__(self, group_id: str, settings: GroupSettings = GroupSettings(),
                 new_id: Callable[[str], str] = _default_id):
        self.group_id = group_id
        self.settings = settings
        self._new_id = new_id
        self.state = State.EMPTY
        self.generation = 0
        self.protocol_type: str | None = None
        self.protocol: str | None = None
        self.leader: str | None = None
        self.members: dict[str, Member] = {}
        self.static: dict[str, str] = {}          # instance id -> member id
        self.pending: dict[str, float] = {}       # member id handed out -> deadline
        self.changes = 0                          # bumps on every membership/assignment change
        self._rebalance_deadline: float | None = None
        self._initial_until: float | None = None
        self._sync_deadline: float | None = None

    # -- requests ------------------------------------------------------------------------------

    def join(self, waiter: Waiter, member_id: str, instance_id: str | None, client_id: str,
             client_host: str, session_timeout_ms: int, rebalance_timeout_ms: int,
             protocol_type: str, protocols: Protocols, now: float,
             require_known_member: bool) -> list:
        """A JoinGroup: answered now or parked until the rebalance completes."""
        def fail(error, mid=member_id):
            return [(waiter, JoinResult(int(error), member_id=mid))]
        s = self.settings
        if not s.min_session_timeout_ms <= session_timeout_ms <= s.max_session_timeout_ms:
            return fail(Error.INVALID_SESSION_TIMEOUT)
        if not protocol_type or not protocols:
            return fail(Error.INCONSISTENT_GROUP_PROTOCOL)
        if not self._supports(protocol_type, protocols, member_id):
            return fail(Error.INCONSISTENT_GROUP_PROTOCOL)
        rebalance_timeout_ms = rebalance_timeout_ms if rebalance_timeout_ms > 0 \
            else session_timeout_ms
        spec = dict(instance_id=instance_id, client_id=client_id, client_host=client_host,
                    session_timeout_s=session_timeout_ms / 1000,
                    rebalance_timeout_s=rebalance_timeout_ms / 1000, protocols=list(protocols))
        if member_id in self.members:
            member = self.members[member_id]
            if instance_id is not None and self.static.get(instance_id) != member_id:
                return fail(Error.FENCED_INSTANCE_ID)
            return self._rejoin(waiter, member, spec, now)
        if member_id in self.pending:
            del self.pending[member_id]
            return self._add(waiter, member_id, protocol_type, spec, now)
        if member_id:
            if instance_id is not None and instance_id in self.static:
                return fail(Error.FENCED_INSTANCE_ID)
            return fail(Error.UNKNOWN_MEMBER_ID)
        if instance_id is not None and instance_id in self.static:
            return self._replace_static(waiter, self.static[instance_id], spec, now)
        if s.max_size is not None and len(self.members) + len(self.pending) >= s.max_size:
            return fail(Error.GROUP_MAX_SIZE_REACHED)
        new_id = self._new_id(client_id)
        if require_known_member and instance_id is None:
            self.pending[new_id] = now + spec["session_timeout_s"]
            return fail(Error.MEMBER_ID_REQUIRED, new_id)
        return self._add(waiter, new_id, protocol_type, spec, now)

    def sync(self, waiter: Waiter, member_id: str, generation: int, instance_id: str | None,
             assignments: dict[str, bytes], now: float) -> list:
        """A SyncGroup: the leader's brings the assignment; the others park until it does."""
        error = self._check_member(member_id, instance_id)
        if error is None and generation != self.generation:
            error = Error.ILLEGAL_GENERATION
        if error is None and self.state is State.PREPARING_REBALANCE:
            error = Error.REBALANCE_IN_PROGRESS
        if error is not None:
            return [(waiter, SyncResult(int(error)))]
        member = self.members[member_id]
        member.deadline = now + member.session_timeout_s
        if self.state is State.STABLE:
            return [(waiter, self._sync_result(member))]
        if member.sync_waiter is not None:
            replies = [(member.sync_waiter, SyncResult(int(Error.REBALANCE_IN_PROGRESS)))]
        else:
            replies = []
        member.sync_waiter = waiter
        if member_id != self.leader:
            return replies
        for mid, m in self.members.items():
            m.assignment = bytes(assignments.get(mid, b""))
        self.state = State.STABLE
        self._sync_deadline = None
        self.changes += 1
        for m in self.members.values():
            if m.sync_waiter is not None:
                replies.append((m.sync_waiter, self._sync_result(m)))
                m.sync_waiter = None
        return replies

    def heartbeat(self, member_id: str, generation: int, instance_id: str | None,
                  now: float) -> Error:
        error = self._check_member(member_id, instance_id)
        if error is not None:
            return error
        member = self.members[member_id]
        if generation != self.generation:
            return Error.ILLEGAL_GENERATION
        member.deadline = now + member.session_timeout_s
        if self.state is State.PREPARING_REBALANCE:
            return Error.REBALANCE_IN_PROGRESS
        return Error.NONE

    def leave(self, member_id: str, instance_id: str | None, now: float) -> tuple[Error, list]:
        """A member leaves (LeaveGroup; v3+ may name a static member by instance id alone)."""
        if not member_id and instance_id is not None:
            member_id = self.static.get(instance_id, "")
        if member_id in self.pending:
            del self.pending[member_id]
            return Error.NONE, self._maybe_complete_join(now)
        error = self._check_member(member_id, instance_id)
        if error is not None:
            return error, []
        replies = self._remove(member_id, Error.UNKNOWN_MEMBER_ID)
        return Error.NONE, replies + self._member_gone(now)

    def check_commit(self, member_id: str, generation: int, instance_id: str | None) -> Error:
        """May this member commit offsets now? A commit from outside the group protocol
        (generation -1, no member id) is taken only while the group has no members, as in
        Kafka; during a rebalance a member of the current generation may still commit what it
        processed before it rejoins (a cooperative member revoking partitions does)."""
        if generation < 0 and not member_id:
            return Error.NONE if not self.members else Error.UNKNOWN_MEMBER_ID
        error = self._check_member(member_id, instance_id)
        if error is not None:
            return error
        if generation != self.generation:
            return Error.ILLEGAL_GENERATION
        if self.state is State.COMPLETING_REBALANCE:
            return Error.REBALANCE_IN_PROGRESS
        return Error.NONE

    # -- time ------------------------------------------------------------------------------

    def tick(self, now: float) -> list:
        """Expire pending ids, sessions, the rebalance timeout and the leader's sync timeout."""
        replies = []
        expired_pending = [mid for mid, deadline in self.pending.items() if deadline <= now]
        for mid in expired_pending:
            del self.pending[mid]
        expired = [m.member_id for m in self.members.values()
                   if m.deadline <= now and not self._waiting(m)]
        for mid in expired:
            replies += self._remove(mid, Error.UNKNOWN_MEMBER_ID)
        if expired:
            replies += self._member_gone(now)
        elif expired_pending:
            replies += self._maybe_complete_join(now)
        if self.state is State.PREPARING_REBALANCE:
            if self._rebalance_deadline is not None and now >= self._rebalance_deadline:
                replies += self._complete_join(now)
            else:
                replies += self._maybe_complete_join(now)
        if (self.state is State.COMPLETING_REBALANCE and self._sync_deadline is not None
                and now >= self._sync_deadline):
            late = [mid for mid, m in self.members.items() if m.sync_waiter is None]
            for mid in late:
                replies += self._remove(mid, Error.UNKNOWN_MEMBER_ID)
            replies += self._prepare_rebalance(now)
            replies += self._maybe_complete_join(now)
        return replies

    def next_deadline(self) -> float | None:
        times = [m.deadline for m in self.members.values() if not self._waiting(m)]
        times += self.pending.values()
        if self.state is State.PREPARING_REBALANCE:
            times += [t for t in (self._rebalance_deadline, self._initial_until) if t is not None]
        if self.state is State.COMPLETING_REBALANCE and self._sync_deadline is not None:
            times.append(self._sync_deadline)
        return min(times) if times else None

    # -- views ---------------------------------------------------------------------------

    def assignments(self) -> dict[str, bytes]:
        """Each member's assignment as of the last completed SyncGroup (empty while none)."""
        if self.state is not State.STABLE:
            return {}
        return {mid: m.assignment for mid, m in self.members.items()}

    # -- inside --------------------------------------------------------------------------

    def _waiting(self, member: Member) -> bool:
        return ((member.join_waiter is not None and self.state is State.PREPARING_REBALANCE)
                or (member.sync_waiter is not None
                    and self.state is State.COMPLETING_REBALANCE))

    def _check_member(self, member_id: str, instance_id: str | None) -> Error | None:
        if member_id not in self.members:
            if instance_id is not None and instance_id in self.static:
                return Error.FENCED_INSTANCE_ID
            return Error.UNKNOWN_MEMBER_ID
        if instance_id is not None and self.static.get(instance_id) != member_id:
            return Error.FENCED_INSTANCE_ID
        return None

    def _supports(self, protocol_type: str, protocols: Protocols, member_id: str) -> bool:
        others = [m for mid, m in self.members.items() if mid != member_id]
        if not others:
            return True
        if protocol_type != self.protocol_type:
            return False
        names = {name for name, _ in protocols}
        for m in others:
            names &= {name for name, _ in m.protocols}
        return bool(names)

    def _add(self, waiter: Waiter, member_id: str, protocol_type: str, spec: dict,
             now: float) -> list:
        member = Member(member_id, deadline=now + spec["session_timeout_s"],
                        join_waiter=waiter, **spec)
        if not self.members:
            self.protocol_type = protocol_type
        self.members[member_id] = member
        if member.instance_id is not None:
            self.static[member.instance_id] = member_id
        if self.leader is None:
            self.leader = member_id
        self.changes += 1
        return self._prepare_rebalance(now) + self._maybe_complete_join(now)

    def _rejoin(self, waiter: Waiter, member: Member, spec: dict, now: float) -> list:
        changed = member.protocols != spec["protocols"]
        replies = []
        if member.join_waiter is not None:
            replies.append((member.join_waiter, JoinResult(int(Error.REBALANCE_IN_PROGRESS),
                                                           member_id=member.member_id)))
        for key, value in spec.items():
            setattr(member, key, value)
        member.deadline = now + member.session_timeout_s
        if self.state is State.PREPARING_REBALANCE:
            member.join_waiter = waiter
            return replies + self._maybe_complete_join(now)
        if not changed and (self.state is State.COMPLETING_REBALANCE or
                            (self.state is State.STABLE and member.member_id != self.leader)):
            return replies + [(waiter, self._join_result(member))]
        member.join_waiter = waiter
        self.changes += 1
        return replies + self._prepare_rebalance(now) + self._maybe_complete_join(now)

    def _replace_static(self, waiter: Waiter, old_id: str, spec: dict, now: float) -> list:
        old = self.members.pop(old_id)
        replies = [(w, cls(int(Error.FENCED_INSTANCE_ID)))
                   for w, cls in ((old.join_waiter, JoinResult), (old.sync_waiter, SyncResult))
                   if w is not None]
        new_id = self._new_id(spec["client_id"])
        changed = old.protocols != spec["protocols"]
        member = Member(new_id, deadline=now + spec["session_timeout_s"],
                        assignment=old.assignment, **spec)
        self.members[new_id] = member
        self.static[member.instance_id] = new_id
        if self.leader == old_id:
            self.leader = new_id
        self.changes += 1
        if self.state is State.PREPARING_REBALANCE:
            member.join_waiter = waiter
            return replies + self._maybe_complete_join(now)
        if not changed and self.state in (State.STABLE, State.COMPLETING_REBALANCE):
            return replies + [(waiter, self._join_result(member))]
        member.join_waiter = waiter
        return replies + self._prepare_rebalance(now) + self._maybe_complete_join(now)

    def _remove(self, member_id: str, error: Error) -> list:
        member = self.members.pop(member_id)
        if member.instance_id is not None and self.static.get(member.instance_id) == member_id:
            del self.static[member.instance_id]
        if self.leader == member_id:
            self.leader = next(iter(self.members), None)
        self.changes += 1
        return [(w, cls(int(error), member_id=member_id) if cls is JoinResult else cls(int(error)))
                for w, cls in ((member.join_waiter, JoinResult), (member.sync_waiter, SyncResult))
                if w is not None]

    def _member_gone(self, now: float) -> list:
        if not self.members and not self.pending:
            replies = self._prepare_rebalance(now) if self.state is not State.EMPTY else []
            return replies + self._complete_join(now)
        if self.state in (State.STABLE, State.COMPLETING_REBALANCE):
            return self._prepare_rebalance(now) + self._maybe_complete_join(now)
        return self._maybe_complete_join(now)

    def _prepare_rebalance(self, now: float) -> list:
        replies = []
        if self.state is State.COMPLETING_REBALANCE:
            for m in self.members.values():
                if m.sync_waiter is not None:
                    replies.append((m.sync_waiter, SyncResult(int(Error.REBALANCE_IN_PROGRESS))))
                    m.sync_waiter = None
        if self.state is State.PREPARING_REBALANCE:
            return replies
        timeout = max((m.rebalance_timeout_s for m in self.members.values()), default=0.0)
        self._rebalance_deadline = now + timeout
        self._initial_until = None
        if self.state is State.EMPTY and self.settings.initial_rebalance_delay_s > 0:
            self._initial_until = now + min(self.settings.initial_rebalance_delay_s, timeout)
        self._sync_deadline = None
        self.state = State.PREPARING_REBALANCE
        return replies

    def _maybe_complete_join(self, now: float) -> list:
        if self.state is not State.PREPARING_REBALANCE:
            return []
        if self._initial_until is not None and now < self._initial_until:
            return []
        if self.pending or any(m.join_waiter is None for m in self.members.values()):
            return []
        return self._complete_join(now)

    def _complete_join(self, now: float) -> list:
        replies = []
        for mid in [mid for mid, m in self.members.items() if m.join_waiter is None]:
            replies += self._remove(mid, Error.UNKNOWN_MEMBER_ID)
        self.generation += 1
        self._rebalance_deadline = self._initial_until = None
        self.changes += 1
        if not self.members:
            self.state = State.EMPTY
            self.protocol = self.protocol_type = self.leader = None
            return replies
        self.protocol = select_protocol([[name for name, _ in m.protocols]
                                         for m in self.members.values()])
        if self.leader not in self.members:
            self.leader = next(iter(self.members))
        self.state = State.COMPLETING_REBALANCE
        self._sync_deadline = now + max(m.rebalance_timeout_s for m in self.members.values())
        for m in self.members.values():
            m.assignment = b""
            m.deadline = now + m.session_timeout_s
            replies.append((m.join_waiter, self._join_result(m)))
            m.join_waiter = None
        return replies

    def _join_result(self, member: Member) -> JoinResult:
        members = []
        if member.member_id == self.leader:
            members = [(m.member_id, m.instance_id, m.metadata(self.protocol))
                       for m in self.members.values()]
        return JoinResult(int(Error.NONE), self.generation, self.protocol_type, self.protocol,
                          self.leader or "", member.member_id, members)

    def _sync_result(self, member: Member) -> SyncResult:
        return SyncResult(int(Error.NONE), self.protocol_type, self.protocol, member.assignment)


class GroupCoordinator:
    """The groups one broker coordinates, by group id."""

    def __init__(self, settings: GroupSettings = GroupSettings(),
                 new_id: Callable[[str], str] = _default_id):
        self.settings = settings
        self._new_id = new_id
        self.groups: dict[str, Group] = {}

    def group(self, group_id: str) -> Group:
        """The group, created empty on first use."""
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = Group(group_id, self.settings, self._new_id)
        return group

    def tick(self, now: float) -> list:
        replies = []
        for group_id in list(self.groups):
            group = self.groups[group_id]
            replies += group.tick(now)
        return replies

    def next_deadline(self) -> float | None:
        times = [t for t in (g.next_deadline() for g in self.groups.values()) if t is not None]
        return min(times) if times else None

    def forget(self, group_id: str) -> list:
        """Drop a group this broker no longer coordinates; its parked requests are answered
        NOT_COORDINATOR, so their members find the new coordinator."""
        group = self.groups.pop(group_id, None)
        if group is None:
            return []
        error = int(Error.NOT_COORDINATOR)
        replies = []
        for m in group.members.values():
            if m.join_waiter is not None:
                replies.append((m.join_waiter, JoinResult(error, member_id=m.member_id)))
            if m.sync_waiter is not None:
                replies.append((m.sync_waiter, SyncResult(error)))
        return replies
