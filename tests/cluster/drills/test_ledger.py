"""The ledger's arithmetic on worked examples (pure, no cluster)."""
from __future__ import annotations

from broker import message
from cluster.drills.ledger import Ledger, make_id, parse_id

TOPIC = "t"


def acked(ledger: Ledger, partition: int, base: int, seqs: list[int]) -> list[tuple[int, bytes]]:
    """Acknowledge one batch of ``seqs`` at ``base``; returns the (offset, value) it stored."""
    values = [ledger.id(s) for s in seqs]
    for s in seqs:
        ledger.record_sent(s)
    payload = message.encode_set((None, v) for v in values)
    ledger.on_delivery(TOPIC, partition, payload, base, None)
    return [(m.offset, m.value) for m in message.decode_set(payload, TOPIC, partition, base)]


def test_ids_round_trip_and_foreign_values_are_ignored():
    assert parse_id(b"d1", make_id("d1", 42)) == 42
    assert parse_id(b"d1", make_id("d2", 42)) is None
    assert parse_id(b"d1", b"d1-00000000xx") is None
    assert parse_id(b"d1", b"hello") is None


def test_a_worker_replay_is_a_redelivery_and_the_unconsumed_tail_is_lost():
    ledger = Ledger("d1")
    stored = acked(ledger, 0, 0, [1, 2, 3, 4])
    consumed = {(TOPIC, 0): [stored[0], stored[1], stored[1], stored[2]]}
    report = ledger.report(consumed, {(TOPIC, 0): stored})
    assert (report.acked, report.consumed, report.lost, report.skipped) == (4, 3, 1, 0)
    assert (report.duplicates, report.redeliveries, report.stored_twice) == (1, 1, 0)
    assert report.order_violations == 0 and report.offset_mismatches == 0
    assert report.lost_sample == [make_id("d1", 4).decode()]


def test_a_gap_behind_a_later_offset_is_skipped_and_lost():
    ledger = Ledger("d1")
    stored = acked(ledger, 0, 0, [1, 2, 3])
    report = ledger.report({(TOPIC, 0): [stored[0], stored[2]]}, {(TOPIC, 0): stored})
    assert (report.lost, report.skipped) == (1, 1)
    assert str(stored[1][0]) in report.skipped_sample[0]


def test_reordering_and_a_reused_offset_are_order_violations():
    ledger = Ledger("d1")
    stored = acked(ledger, 0, 0, [1, 2, 3])
    backwards = ledger.report({(TOPIC, 0): [stored[0], stored[2], stored[1]]})
    assert backwards.order_violations == 1 and backwards.redeliveries == 0
    other = (stored[1][0], ledger.id(9))
    reused = ledger.report({(TOPIC, 0): [stored[0], stored[1], other, stored[2]]})
    assert reused.order_violations == 1


def test_retried_batches_stored_twice_and_an_unacked_write():
    ledger = Ledger("d1")
    first = acked(ledger, 1, 100, [1, 2])
    again = [(off + 100, v) for off, v in first]          # the retry landed after the first
    ledger.record_sent(3)
    unacked = (first[-1][0] + 200, ledger.id(3))             # written, its ack never came
    stored = {(TOPIC, 1): first + again + [unacked]}
    report = ledger.report(stored, stored)
    assert (report.stored_twice, report.duplicates, report.consumed_unacked) == (2, 2, 1)
    assert report.lost == 0 and report.offset_mismatches == 0


def test_acks0_promises_what_was_sent_and_excused_ids_are_counted_apart():
    ledger = Ledger("d1", acks=0)
    for s in range(5):
        ledger.record_sent(s)
    rows = [(i * 20, ledger.id(s)) for i, s in enumerate([0, 1, 2])]
    report = ledger.report({(TOPIC, 0): rows}, {(TOPIC, 0): rows}, excused={4})
    assert (report.sent, report.acked, report.lost, report.lost_excused) == (5, 0, 2, 1)
    assert report.not_stored == 2


def test_an_acked_id_at_another_offset_is_a_mismatch_unless_excused():
    ledger = Ledger("d1")
    stored = acked(ledger, 0, 0, [1, 2])
    moved = [(stored[0][0], ledger.id(7)), stored[1]]     # offset 0 now holds another id
    assert ledger.report({}, {(TOPIC, 0): moved}).offset_mismatches == 1
    assert ledger.report({}, {(TOPIC, 0): moved}, excused={1}).offset_mismatches == 0


def test_failed_batches_are_counted_as_given_up():
    ledger = Ledger("d1")
    payload = message.encode_set((None, ledger.id(s)) for s in (1, 2))
    ledger.on_delivery(TOPIC, 0, payload, None, RuntimeError("disk full: no space"))
    assert ledger.failed == {1, 2} and ledger.errors["RuntimeError"] == 1
    assert ledger.report({}).send_failed == 2


def test_reused_offsets_after_an_unclean_cut_are_counted_apart():
    """Offsets 28.. were cut by an unclean election and written again with other ids: a load of
    the new id at 28 is not an order violation but a reused load; the old id counts as lost."""
    ledger = Ledger("t")
    tp = ("t", 0)
    for seq, offset in ((1, 0), (2, 14), (3, 28)):
        ledger.record_sent(seq)
        ledger.on_delivery("t", 0, message.encode_set([(None, ledger.id(seq))]), offset, None)
    consumed = {tp: [(0, ledger.id(1)), (14, ledger.id(2)), (28, ledger.id(3)),
                     (28, ledger.id(4))]}
    plain = ledger.report(consumed, {tp: [(0, ledger.id(1)), (14, ledger.id(2)),
                                          (28, ledger.id(4))]}, excused={3})
    assert plain.order_violations == 1 and plain.reused_loads == 0
    report = ledger.report(consumed, {tp: [(0, ledger.id(1)), (14, ledger.id(2)),
                                           (28, ledger.id(4))]}, excused={3},
                           reused={tp: [(28, 42)]})
    assert report.order_violations == 0 and report.reused_loads == 1
    assert report.not_stored == 1 and report.offset_mismatches == 0
