"""The broker's memory of sequenced producers: which acks=1 request of a partition comes next.

A producer (``producer_id`` other than 0) numbers its acks=1 requests per partition, 0, 1, 2,
... (``sequence``) and says in each which is the oldest of that partition it has no answer for
yet and has not given up on (``first_unacked``). For (producer, topic, partition) the broker
keeps the next sequence it expects, E, and the offsets of the last ``remembered`` sequences it
appended. A request is judged against ``E' = max(E, first_unacked)`` (just ``first_unacked``
when E is unknown: a restarted broker, or a producer forgotten after being idle):

- ``sequence == E'``: append it, and E becomes ``sequence + 1``;
- ``sequence < E'``: a duplicate (its answer was lost, so the producer sent it again): answer
  it with the offsets it got when it was appended, never append it again. When those offsets
  are no longer remembered, or the sequence was skipped (below a ``first_unacked`` that moved
  past it), the answer is success with the offsets unknown;
- ``sequence > E'``: an older request has not arrived (lost with a reset socket, or still on
  its way): refuse it with the retriable OUT_OF_ORDER_SEQUENCE, so the producer sends again
  from its oldest unanswered request, in order.

Requests that one turn of the broker's loop took in are judged in arrival order against a
provisional E; the turn is committed (E and the offsets stored) only once its write succeeded,
so a failed write leaves the table as it was. producer_id 0 is unsequenced: always appended.

Worked example, one producer on one partition; each line is one request (sequence,
first_unacked) and what the broker makes of it::

    (0, 0)  E unknown, E' = 0          append at 0..10        E = 1
    (1, 0)  E' = max(1, 0) = 1         append at 10..20       E = 2
    (1, 1)  the answer to 1 was lost   duplicate: (10, 20), nothing written
    (3, 2)  E' = 2, 2 has not come     OUT_OF_ORDER_SEQUENCE
    (2, 2)                             append at 20..30       E = 3
    (4, 4)  the producer gave up on 3  E' = max(3, 4) = 4: append, E = 5
    -- the broker restarts: nothing is known --
    (6, 5)  E' = 5                     OUT_OF_ORDER_SEQUENCE
    (5, 5)                             append (had the old broker stored 5 already, this is
                                       the one duplicate a restart can make)

Memory is bounded twice: an entry not used for ``idle_s`` (10 minutes) is forgotten, and at
most ``max_entries`` entries are kept, the least recently used going first; each keeps
``remembered`` (sequence, base, next) triples in one array. Forgetting an entry costs nothing
but the memory of old offsets: the producer's next request is judged from its
``first_unacked``, as after a restart.

Sequences are u32 and the table compares them as plain integers: a producer must not pass
2**32 - 1 with the same producer_id (clients.producer takes a new one for the partition).

The table follows the data (issue 13 item 6). Kafka keeps producer id, epoch and sequence in
each batch, so any replica rebuilds its table from its log; sluice's messages do not carry them
(magic 0/1/2 as they are) and the broker does no per-message work. So each log keeps the
sequenced sets appended to it, in offset order, as ``(producer_id, epoch, first_seq, last_seq,
base, next)`` entries (``SequencedSets``, the last ``SETS_KEPT`` of the log), and:

- the leader records an entry per sequenced set it appends (native and Kafka alike);
- a replica fetch's answer carries the entries whose set ends in the answer's byte range
  (frame 3, ``protocol.encode_sets``, only when there are some); the follower records them
  and replays them into its own tables once the bytes are appended, so a new leader judges a
  resend as the old one would have;
- a truncation (leader epochs) drops the entries of sets past the cut, and the partition's
  table entries are rebuilt from what is left, so a resend of a set that was cut is appended
  again, never answered with offsets that now hold other data;
- a snapshot file per log (broker/producer_snapshot.py) holds the entries up to the flushed
  end, written by the LogManager after flushes and at a clean close; at open the entries
  within the recovered log are replayed.

Two units, one record. Native producers number requests (``first_seq == last_seq`` = the
request's sequence, epoch ``NATIVE_EPOCH`` = -1); Kafka producers number records (a batch's
base sequence and its last, their epoch from InitProducerId). Replaying an entry feeds this
table (epoch -1) or broker/kafka/idempotence.py's (epoch >= 0); they keep their own judging
rules, and their producer ids never meet (a Kafka id has an epoch >= 0 beside it).

Worked example, three replicas A (leader), B, C; native producer P, sets of 10 bytes::

    A appends P#0 at 0..10, P#1 at 10..20    A's sets: (P,-1,0,0,0,10), (P,-1,1,1,10,20)
    B fetches at 0, gets 20 bytes + both entries        B's table: P expects 2
    the answer to P#1 is lost; A dies; B is elected
    P sends (1, first_unacked 1) to B        duplicate: answered (10, 20), nothing written
    -- instead, B had fetched only 0..10 and C 0..20, and the unclean B leads: --
    B appends Q's set at 10..30; C truncates to 10 and drops (P,-1,1,1,10,20): P#1 resent to
    C once it leads is appended again (the cut dropped it), not answered with Q's offsets.

Limits: a follower catching up from far behind learns only the entries its leader still
keeps (``SETS_KEPT`` per log); a set appended after the last snapshot of a broker that then
crashed is unknown after its restart (the table starts from what the snapshot and its
replicas say: a resend of it is written again, as before).

A duplicate's answer is its original's: with acks=all it waits in the acks purgatory on the
original's next offset (native and Kafka alike), so a retry is never acknowledged before every
in-sync replica has what it stands for.
"""
from __future__ import annotations

import enum
from array import array
from collections import OrderedDict, deque
from dataclasses import dataclass

REMEMBERED = 64          # appended sequences whose offsets are kept per producer and partition
MAX_ENTRIES = 10_000     # (producer, topic, partition) entries kept, least recently used first out
IDLE_S = 600.0           # an entry with no append for this long is forgotten
SETS_KEPT = 2048         # sequenced sets a log keeps for its replicas and its snapshot
NATIVE_EPOCH = -1        # the epoch of a native producer's entries (Kafka's are >= 0)


class Action(enum.Enum):
    APPEND = "append"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"


@dataclass(slots=True)
class Decision:
    """What to do with one request (read-only: every append shares one).

    ``expected``: for a duplicate or a request out of order, the sequence the broker wanted
    (E'); None for an append. A duplicate carries the offsets of its original when they are
    known: ``offsets`` if it was appended in an earlier turn and is remembered, ``pending``
    (its place among this turn's appends) if its original is being appended in the same turn;
    neither: unknown.
    """

    action: Action
    expected: int | None = None
    offsets: tuple[int, int] | None = None
    pending: int | None = None


_APPEND = Decision(Action.APPEND)


class _Entry:
    """One producer on one partition: the next sequence expected, the offsets of the last
    appended sequences (flat (sequence, base, next) triples, oldest first) and when it was
    last used."""

    __slots__ = ("next_sequence", "recent", "used_at")

    def __init__(self, used_at: float):
        self.next_sequence = 0
        self.recent = array("Q")
        self.used_at = used_at

    def offsets_of(self, sequence: int) -> tuple[int, int] | None:
        recent = self.recent
        for i in range(len(recent) - 3, -1, -3):
            if recent[i] == sequence:
                return recent[i + 1], recent[i + 2]
            if recent[i] < sequence:
                break
        return None


class ProducerTable:
    """Every sequenced producer this broker has appended for; see the module docstring.

    >>> table = ProducerTable()
    >>> turn = table.turn("clicks", 0, now=0.0)
    >>> turn.judge(7, 0, 0).action, turn.judge(7, 0, 0).pending, turn.judge(7, 2, 0).action
    (<Action.APPEND: 'append'>, 0, <Action.OUT_OF_ORDER: 'out_of_order'>)
    >>> turn.commit([(0, 10)])
    [(7, -1, 0, 0, 0, 10)]
    >>> table.turn("clicks", 0, now=1.0).judge(7, 0, 0).offsets
    (0, 10)
    """

    def __init__(self, remembered: int = REMEMBERED, max_entries: int = MAX_ENTRIES,
                 idle_s: float = IDLE_S):
        for name, value in (("remembered", remembered), ("max_entries", max_entries),
                            ("idle_s", idle_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        self.remembered = int(remembered)
        self._kept = 3 * self.remembered          # array items: (sequence, base, next) each
        self.max_entries = int(max_entries)
        self.idle_s = idle_s
        self._entries: OrderedDict[tuple[int, str, int], _Entry] = OrderedDict()
        self._expire_at = float("inf")     # no entry can be idle before this

    def __len__(self) -> int:
        return len(self._entries)

    def expected(self, producer_id: int, topic: str, partition: int) -> int | None:
        """The next sequence expected from the producer on the partition; None when unknown."""
        entry = self._entries.get((producer_id, topic, partition))
        return None if entry is None else entry.next_sequence

    def turn(self, topic: str, partition: int, now: float) -> "Turn":
        """Start judging the requests one turn of the loop took in for a partition (forgetting
        idle producers first)."""
        self.expire(now)
        return Turn(self, topic, partition, now)

    def expire(self, now: float) -> int:
        """Forget the entries not used for ``idle_s``; return how many went. The least
        recently used entry is first, so only the front needs a look, and only once the
        oldest use seen there could be idle."""
        if now < self._expire_at:
            return 0
        entries = self._entries
        gone = 0
        self._expire_at = float("inf")
        while entries:
            entry = next(iter(entries.values()))
            if now - entry.used_at < self.idle_s:
                self._expire_at = entry.used_at + self.idle_s
                break
            entries.popitem(last=False)
            gone += 1
        return gone

    def replay(self, topic: str, partition: int, entries, now: float) -> None:
        """Take in a log's sequenced sets (oldest first) as if appended here: its native
        producers' ones (epoch NATIVE_EPOCH); the others are Kafka's."""
        for producer_id, epoch, first_seq, _, base, nxt in entries:
            if epoch == NATIVE_EPOCH:
                self._record((producer_id, topic, partition), first_seq, base, nxt, now)

    def forget_partition(self, topic: str, partition: int) -> int:
        """Forget every producer of one partition (its log was cut); return how many."""
        keys = [key for key in self._entries if key[1] == topic and key[2] == partition]
        for key in keys:
            del self._entries[key]
        return len(keys)

    def _record(self, key: tuple[int, str, int], sequence: int, base: int, nxt: int,
                now: float) -> None:
        entries = self._entries
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = _Entry(now)
            if len(entries) > self.max_entries:
                entries.popitem(last=False)
            if now + self.idle_s < self._expire_at:
                self._expire_at = now + self.idle_s
        else:
            entries.move_to_end(key)
            entry.used_at = now
        recent = entry.recent
        recent.extend((sequence, base, nxt))
        if len(recent) > self._kept:
            del recent[:3]
        entry.next_sequence = sequence + 1


class Turn:
    """The requests of one partition in one turn of the loop, judged in arrival order against
    a provisional state that ``commit`` makes real once their write succeeded."""

    __slots__ = ("_table", "_topic", "_partition", "_now", "_next", "_appends")

    def __init__(self, table: ProducerTable, topic: str, partition: int, now: float):
        self._table = table
        self._topic = topic
        self._partition = partition
        self._now = now
        self._next: dict[int, int] = {}                 # producer_id -> provisional E
        self._appends: list[tuple[int, int]] = []       # per append: (producer_id, sequence)

    def judge(self, producer_id: int, sequence: int, first_unacked: int) -> Decision:
        """The decision for one request (``first_unacked <= sequence``, as the protocol checks).

        >>> turn = ProducerTable().turn("t", 0, now=0.0)
        >>> [turn.judge(1, s, f).action.name for s, f in [(0, 0), (1, 0), (3, 1), (0, 0)]]
        ['APPEND', 'APPEND', 'OUT_OF_ORDER', 'DUPLICATE']
        >>> turn.judge(1, 1, 1).pending, turn.judge(1, 7, 5).expected
        (1, 5)
        """
        if not producer_id:
            self._appends.append((0, 0))
            return _APPEND
        expected = self._next.get(producer_id)
        entry = None
        if expected is None:
            entry = self._table._entries.get((producer_id, self._topic, self._partition))
            expected = first_unacked if entry is None else entry.next_sequence
        if first_unacked > expected:
            expected = first_unacked
        if sequence == expected:
            self._appends.append((producer_id, sequence))
            self._next[producer_id] = sequence + 1
            return _APPEND
        if sequence > expected:
            return Decision(Action.OUT_OF_ORDER, expected)
        if producer_id in self._next:
            appended = (producer_id, sequence)
            for pending, one in enumerate(self._appends):
                if one == appended:
                    return Decision(Action.DUPLICATE, expected, pending=pending)
        if entry is None:
            entry = self._table._entries.get((producer_id, self._topic, self._partition))
        offsets = None if entry is None else entry.offsets_of(sequence)
        return Decision(Action.DUPLICATE, expected, offsets=offsets)

    def commit(self, offsets: list[tuple[int, int]]) -> list[tuple]:
        """The write of this turn's appends succeeded; ``offsets``: (base, next) of each, in
        the order they were judged APPEND. Returns the sequenced sets' entries for the log's
        SequencedSets."""
        if len(offsets) != len(self._appends):
            raise ValueError(f"{len(offsets)} offsets for {len(self._appends)} appends")
        table = self._table
        entries = []
        for (producer_id, sequence), (base, nxt) in zip(self._appends, offsets):
            if producer_id:
                table._record((producer_id, self._topic, self._partition), sequence, base, nxt,
                              self._now)
                entries.append((producer_id, NATIVE_EPOCH, sequence, sequence, base, nxt))
        return entries


class SequencedSets:
    """One log's sequenced sets, oldest first: ``(producer_id, epoch, first_seq, last_seq,
    base, next)`` each, the last ``kept`` of them (the module docstring says what for).

    >>> sets = SequencedSets(kept=3)
    >>> sets.extend([(7, -1, 0, 0, 0, 10), (7, -1, 1, 1, 10, 20), (9, 0, 0, 4, 20, 90)])
    >>> [e[4] for e in sets.between(10, 90)]
    [10, 20]
    >>> sets.cut(20), [e[4] for e in sets]
    (True, [0, 10])
    >>> sets.extend([(7, -1, 2, 2, 20, 30), (7, -1, 3, 3, 30, 40)]); [e[2] for e in sets]
    [1, 2, 3]
    """

    __slots__ = ("_sets", "changed")

    def __init__(self, kept: int = SETS_KEPT):
        if isinstance(kept, bool) or not isinstance(kept, int) or kept <= 0:
            raise ValueError(f"kept must be a positive integer, not {kept!r}")
        self._sets: deque = deque(maxlen=kept)
        self.changed = False          # since the last snapshot

    def __iter__(self):
        return iter(self._sets)

    def __len__(self) -> int:
        return len(self._sets)

    def extend(self, entries) -> None:
        if entries:
            self._sets.extend(entries)
            self.changed = True

    def between(self, low: int, high: int) -> list[tuple]:
        """The entries of sets that end in ``low .. high`` (a fetch answer's bytes, whose
        last set may go on past ``high``: its entry comes with the answer that completes
        it); the newest are at the end, where a follower's fetch usually is."""
        found = []
        for entry in reversed(self._sets):
            if entry[5] <= low:
                break
            if entry[5] <= high:
                found.append(entry)
        found.reverse()
        return found

    def upto(self, end: int) -> list[tuple]:
        """The entries of sets that end at or before ``end`` (a snapshot's flushed end)."""
        return [entry for entry in self._sets if entry[5] <= end]

    def cut(self, offset: int) -> bool:
        """Drop the sets that do not lie whole below ``offset`` (the log was cut there)."""
        sets = self._sets
        cut = False
        while sets and sets[-1][5] > offset:
            sets.pop()
            cut = True
        if cut:
            self.changed = True
        return cut

    def clear(self) -> None:
        self._sets.clear()
        self.changed = True
