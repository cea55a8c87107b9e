"""Kafka's idempotent producer on the leader: each producer's last batches per partition, so a
client's retry of a batch already written is answered with its first offset, not written twice.

A sequenced batch carries (producer id, epoch, base sequence, record count). Per producer and
partition the leader keeps the epoch and the last ``KEPT`` batches (first sequence, last
sequence, the offsets they were written at: base and next) and judges each new batch:

- an epoch older than the one kept: INVALID_PRODUCER_EPOCH (a fenced producer);
- a batch matching a kept one exactly: a duplicate, answered with that batch's base offset;
  with acks=all only once the high watermark reached its next offset, as the original's
  answer (the retry of a write whose answer timed out before every in-sync replica had it is
  not acknowledged sooner than the write itself: the next offset is what it waits on);
- the next sequence after the last kept batch (or anything for a producer or epoch not seen
  yet, e.g. after this broker restarted): append;
- anything else: OUT_OF_ORDER_SEQUENCE_NUMBER (the client resends in order).

The table follows the data: the LogManager owns it, and every appended batch is also an entry
of its log's sequenced sets (broker/producer_state.py), which followers copy with the bytes,
truncations cut and the producer snapshot keeps over a restart; a replica replays them here.
Not done: producer ids are not expired.

    >>> table = SequenceTable()
    >>> table.judge(("t", 0), 7, 0, 0, 10)
    'append'
    >>> table.commit(("t", 0), 7, 0, 0, 10, offset=0, next_offset=250)
    >>> table.judge(("t", 0), 7, 0, 0, 10), table.duplicate_offsets(("t", 0), 7, 0, 10)
    ('duplicate', (0, 250))
    >>> table.judge(("t", 0), 7, 0, 20, 5)
    'out_of_order'
    >>> table.judge(("t", 0), 7, 0, 10, 5)
    'append'
"""
from __future__ import annotations

from collections import deque

KEPT = 5                          # Kafka's max.in.flight for idempotence, the batches kept
SEQ_MOD = 1 << 31
APPEND, DUPLICATE, OUT_OF_ORDER, FENCED = "append", "duplicate", "out_of_order", "fenced"


class _Producer:
    __slots__ = ("epoch", "batches")

    def __init__(self, epoch: int):
        self.epoch = epoch
        self.batches: deque = deque(maxlen=KEPT)   # (first_seq, last_seq, base, next)


class SequenceTable:
    """The kept batches by (topic, partition) and producer id."""

    def __init__(self):
        self._producers: dict[tuple, _Producer] = {}

    def judge(self, key: tuple, producer_id: int, epoch: int, base_sequence: int,
              count: int) -> str:
        state = self._producers.get((key, producer_id))
        if state is None or epoch > state.epoch or not state.batches:
            return APPEND
        if epoch < state.epoch:
            return FENCED
        last = (base_sequence + count - 1) % SEQ_MOD
        for first_seq, last_seq, _, _ in state.batches:
            if first_seq == base_sequence and last_seq == last:
                return DUPLICATE
        if base_sequence == (state.batches[-1][1] + 1) % SEQ_MOD:
            return APPEND
        return OUT_OF_ORDER

    def duplicate_offsets(self, key: tuple, producer_id: int, base_sequence: int,
                          count: int) -> tuple[int, int]:
        """The (base, next) offsets a batch judged DUPLICATE was written at."""
        last = (base_sequence + count - 1) % SEQ_MOD
        for first_seq, last_seq, base, nxt in self._producers[(key, producer_id)].batches:
            if first_seq == base_sequence and last_seq == last:
                return base, nxt
        raise KeyError(base_sequence)

    def commit(self, key: tuple, producer_id: int, epoch: int, base_sequence: int, count: int,
               offset: int, next_offset: int) -> None:
        """Record an appended batch written at ``offset .. next_offset`` (only once its write
        succeeded)."""
        state = self._producers.get((key, producer_id))
        if state is None or epoch > state.epoch:
            state = self._producers[(key, producer_id)] = _Producer(epoch)
        state.batches.append((base_sequence, (base_sequence + count - 1) % SEQ_MOD, offset,
                              next_offset))

    def forget(self, key: tuple) -> None:
        """Drop a partition's producers (this broker stopped leading it)."""
        for k in [k for k in self._producers if k[0] == key]:
            del self._producers[k]
