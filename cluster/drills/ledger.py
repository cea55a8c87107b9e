"""The loss ledger: what the producer was promised beside what the consumers processed. Pure.

Every message a drill sends carries a unique id, ``<tag>-<seq>`` (the tag names the run, so a
ledger ignores older data in a reused cluster). Three accounts are joined:

- **acknowledged**: from the producer's delivery callback, each id with the (partition, offset)
  the broker gave it (acks=0 has no acknowledgements: there the promise is only "sent");
- **stored**: every message read back from the partitions after the drill, by offset;
- **consumed**: every line the group's workers loaded, in the order they loaded it.

and it reports, in the terms of Kafka's system tests and Jepsen's Kafka checker:

| figure            | meaning                                                                     |
| ----------------- | --------------------------------------------------------------------------- |
| lost              | promised (acked; for acks=0: sent) and never consumed                      |
| lost_excused      | of those, ids the drill destroyed on purpose (a torn tail)                  |
| not_stored        | promised and not in the log at the end (the broker lost it)                |
| skipped           | stored, never consumed, although a later offset of its partition was        |
| consumed_unacked  | consumed but never acknowledged (a batch whose ack was lost, then retried)  |
| duplicates        | deliveries of an id beyond its first (= redeliveries + copies stored twice) |
| redeliveries      | a (partition, offset) loaded more than once: consumer replays               |
| stored_twice      | extra copies of an id in the log: producer retries                          |
| order_violations  | a partition's offsets first loaded out of order, or one offset loaded with  |
|                   | two different ids (an offset reused after a log was cut)                    |
| offset_mismatches | an acknowledged id found at another offset than the acknowledged one       |
| reused_loads      | order violations and skips inside offset ranges an unclean election cut and |
|                   | wrote again (``reused``): the loss it causes, counted apart, not hidden     |

Worked example, one partition, ids 1..4 acked at offsets 0, 14, 28, 42 and a worker killed
after loading offsets 0 and 14 but before committing 14::

    consumed  [(0, 1), (14, 2), (14, 2), (28, 3)]       # 14 replayed by the successor
    lost 1 (id 4)   skipped 0   redeliveries 1   duplicates 1   order_violations 0

Had the successor loaded 42 and never 28, id 3 would be lost *and* skipped.
"""
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass, field

from broker import message

TP = tuple[str, int]
SAMPLE = 10


def make_id(tag: str, seq: int) -> bytes:
    """The payload of message ``seq`` of run ``tag``."""
    return b"%s-%010d" % (tag.encode(), seq)


def parse_id(tag: bytes, value: bytes) -> int | None:
    """The sequence number in a payload of this run, None for anything else."""
    if len(value) != len(tag) + 11 or not value.startswith(tag) or value[len(tag)] != 45:
        return None
    digits = value[len(tag) + 1:]
    return int(digits) if digits.isdigit() else None


@dataclass
class LedgerReport:
    acks: int | str
    sent: int
    acked: int
    send_failed: int
    stored: int
    consumed: int
    lost: int
    lost_excused: int
    not_stored: int
    skipped: int
    consumed_unacked: int
    duplicates: int
    redeliveries: int
    stored_twice: int
    order_violations: int
    offset_mismatches: int
    lost_sample: list = field(default_factory=list)
    skipped_sample: list = field(default_factory=list)
    violation_sample: list = field(default_factory=list)
    reused_loads: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class Ledger:
    """Collects the producer's side as it happens; ``report`` joins it with the rest.

    ``on_delivery`` has the signature of ``clients.Producer``'s callback and may be called
    from any thread.
    """

    def __init__(self, tag: str, acks: int | str = 1):
        self.tag = tag
        self.acks = acks
        self._tag = tag.encode()
        self._lock = threading.Lock()
        self.sent: set[int] = set()
        self.acked: dict[int, tuple[TP, int]] = {}
        self.failed: set[int] = set()
        self.errors: Counter = Counter()
        self.error_text: dict[str, str] = {}
        self.acked_per_tp: Counter = Counter()

    def id(self, seq: int) -> bytes:
        return make_id(self.tag, seq)

    def record_sent(self, seq: int) -> None:
        with self._lock:
            self.sent.add(seq)

    def on_delivery(self, topic: str, partition: int, payload, base_offset, error) -> None:
        if error is not None or base_offset is None:
            name = type(error).__name__ if error is not None else "NoOffset"
            seqs = [parse_id(self._tag, m.value)
                    for m in message.decode_set(payload, topic, partition, 0)]
            with self._lock:
                self.failed.update(s for s in seqs if s is not None)
                self.errors[name] += 1
                self.error_text.setdefault(name, str(error))
            return
        got = [(parse_id(self._tag, m.value), m.offset)
               for m in message.decode_set(payload, topic, partition, base_offset)]
        with self._lock:
            for seq, offset in got:
                if seq is not None:
                    self.acked[seq] = ((topic, partition), offset)
            self.acked_per_tp[(topic, partition)] += len(got)

    def snapshot_acked(self) -> dict[TP, int]:
        with self._lock:
            return dict(self.acked_per_tp)

    def promised(self) -> set[int]:
        """What the drill holds the cluster to: acknowledged ids (acks=1 or "all"), sent ids
        (acks=0)."""
        with self._lock:
            return set(self.acked) if self.acks else set(self.sent)

    def report(self, consumed: dict[TP, list[tuple[int, bytes]]],
               stored: dict[TP, list[tuple[int, bytes]]] | None = None,
               excused: set[int] = frozenset(),
               reused: dict[TP, list[tuple[int, int]]] | None = None) -> LedgerReport:
        """Join with ``consumed`` (``cluster.workers.loader.read_loaded``'s shape, in load order) and
        ``stored`` (every (offset, value) in the log, by partition; None: not read).

        ``excused`` are ids the drill itself destroyed (a torn tail): still counted as lost,
        also counted in ``lost_excused``, and their offsets may hold other ids afterwards.
        ``reused``: per partition, [start, end) offset ranges an unclean election cut and the
        new leader wrote again; order violations and skips there count as ``reused_loads``."""
        reused = reused or {}

        def in_reused(tp: TP, offset: int) -> bool:
            return any(start <= offset < end for start, end in reused.get(tp, ()))
        reused_loads = 0
        with self._lock:
            acked = dict(self.acked)
            sent, failed = set(self.sent), set(self.failed)
        promised = set(acked) if self.acks else sent
        tag = self._tag

        consumed_ids: Counter = Counter()
        loads: Counter = Counter()
        violations = 0
        samples = []
        last_consumed: dict[TP, int] = {}
        for tp, rows in consumed.items():
            seen: dict[int, int] = {}
            highest = -1
            for offset, value in rows:
                seq = parse_id(tag, value)
                if seq is None:
                    continue
                consumed_ids[seq] += 1
                loads[(tp, offset)] += 1
                if offset in seen:
                    if seen[offset] != seq and in_reused(tp, offset):
                        reused_loads += 1
                    elif seen[offset] != seq:
                        violations += 1
                        samples.append(f"{tp[0]}/{tp[1]}@{offset}: ids {seen[offset]} and {seq}")
                    continue
                seen[offset] = seq
                if offset < highest and in_reused(tp, offset):
                    reused_loads += 1
                elif offset < highest:
                    violations += 1
                    samples.append(f"{tp[0]}/{tp[1]}: offset {offset} first loaded after "
                                   f"{highest}")
                highest = max(highest, offset)
            if highest >= 0:
                last_consumed[tp] = highest

        stored_at: dict[TP, dict[int, int]] = {}
        copies: Counter = Counter()
        if stored is not None:
            for tp, rows in stored.items():
                at = stored_at[tp] = {}
                for offset, value in rows:
                    seq = parse_id(tag, value)
                    if seq is not None:
                        at[offset] = seq
                        copies[seq] += 1

        lost = sorted(promised - set(consumed_ids))
        skipped = []
        for tp, at in stored_at.items():
            highest = last_consumed.get(tp, -1)
            for offset, seq in at.items():
                if offset < highest and seq not in consumed_ids and in_reused(tp, offset):
                    reused_loads += 1
                elif offset < highest and seq not in consumed_ids:
                    skipped.append(f"{tp[0]}/{tp[1]}@{offset} (id {seq})")
        mismatches = 0
        if stored is not None:
            for seq, (tp, offset) in acked.items():
                if seq not in excused and stored_at.get(tp, {}).get(offset, seq) != seq:
                    mismatches += 1
        stored_ids = set(copies)
        redeliveries = sum(n - 1 for n in loads.values() if n > 1)
        return LedgerReport(
            acks=self.acks, sent=len(sent), acked=len(acked), send_failed=len(failed),
            stored=len(stored_ids), consumed=len(consumed_ids), lost=len(lost),
            lost_excused=len(set(lost) & set(excused)),
            not_stored=len(promised - stored_ids) if stored is not None else 0,
            skipped=len(skipped),
            consumed_unacked=len(set(consumed_ids) - set(acked)) if self.acks else 0,
            duplicates=sum(n - 1 for n in consumed_ids.values() if n > 1),
            redeliveries=redeliveries,
            stored_twice=sum(n - 1 for n in copies.values() if n > 1),
            order_violations=violations, offset_mismatches=mismatches,
            lost_sample=[self.id(s).decode() for s in lost[:SAMPLE]],
            skipped_sample=sorted(skipped)[:SAMPLE], violation_sample=samples[:SAMPLE],
            reused_loads=reused_loads)
