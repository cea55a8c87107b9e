"""The broker's sequence rules (broker/producer_state.py), pure: no broker, no sockets."""
import doctest

import pytest

from broker import producer_snapshot, producer_state
from broker.producer_state import NATIVE_EPOCH, Action, ProducerTable, SequencedSets

APPEND, DUPLICATE, OUT_OF_ORDER = Action.APPEND, Action.DUPLICATE, Action.OUT_OF_ORDER
P, Q = 0xA1, 0xB2


class Log:
    """A partition's end, moved on by committed appends of 10 bytes each."""

    def __init__(self, table: ProducerTable, topic="t", partition=0):
        self.table, self.topic, self.partition = table, topic, partition
        self.end = 0
        self.now = 0.0

    def turn(self, *requests, fail=False):
        """Judge (producer, sequence, first_unacked) requests as one turn; write the appends
        unless ``fail`` (a StorageError); return the decisions."""
        turn = self.table.turn(self.topic, self.partition, self.now)
        decisions = [turn.judge(*request) for request in requests]
        appends = sum(d.action is APPEND for d in decisions)
        if not fail:
            offsets = [(self.end + 10 * i, self.end + 10 * (i + 1)) for i in range(appends)]
            turn.commit(offsets)
            self.end += 10 * appends
        return decisions

    def one(self, producer, sequence, first_unacked):
        return self.turn((producer, sequence, first_unacked))[0]


@pytest.fixture
def log():
    return Log(ProducerTable())


def test_the_docstrings_examples_hold():
    result = doctest.testmod(producer_state)
    assert result.attempted > 0 and result.failed == 0


def test_the_module_docstrings_worked_example(log):
    assert log.one(P, 0, 0).action is APPEND
    assert log.one(P, 1, 0).action is APPEND
    dup = log.one(P, 1, 1)
    assert (dup.action, dup.offsets) == (DUPLICATE, (10, 20))
    early = log.one(P, 3, 2)
    assert (early.action, early.expected) == (OUT_OF_ORDER, 2)
    assert log.one(P, 2, 2).action is APPEND
    assert log.one(P, 4, 4).action is APPEND               # the producer gave up on 3
    assert log.table.expected(P, "t", 0) == 5
    assert log.end == 40
    log.table = ProducerTable()                      # a restart: nothing is known
    assert log.one(P, 6, 5).expected == 5
    assert log.one(P, 6, 5).action is OUT_OF_ORDER
    assert log.one(P, 5, 5).action is APPEND


def test_a_restarted_broker_starts_from_first_unacked(log):
    first = log.one(P, 41, 40)
    assert (first.action, first.expected) == (OUT_OF_ORDER, 40)
    assert log.table.expected(P, "t", 0) is None, "a refusal teaches the table nothing"
    assert [d.action for d in log.turn((P, 40, 40), (P, 41, 40), (P, 42, 40))] == [APPEND] * 3
    assert log.table.expected(P, "t", 0) == 43


def test_a_duplicate_after_a_lost_answer_gets_its_offsets_and_is_not_appended(log):
    log.turn((P, 0, 0), (P, 1, 0), (P, 2, 0))
    end = log.end
    decisions = log.turn((P, 1, 1), (P, 2, 1), (P, 3, 1))
    assert [(d.action, d.offsets) for d in decisions] == [
        (DUPLICATE, (10, 20)), (DUPLICATE, (20, 30)), (APPEND, None)]
    assert log.end == end + 10


def test_out_of_order_after_a_lost_request_then_in_order_again(log):
    log.one(P, 0, 0)
    # 1 was lost (its socket was reset); 2 and 3 arrive and are refused, nothing is written.
    assert [d.action for d in log.turn((P, 2, 1), (P, 3, 1))] == [OUT_OF_ORDER] * 2
    assert log.end == 10
    assert [d.action for d in log.turn((P, 1, 1), (P, 2, 1), (P, 3, 1))] == [APPEND] * 3


def test_a_batch_given_up_on_is_skipped_once_first_unacked_moves_past_it(log):
    log.one(P, 0, 0)
    assert log.one(P, 2, 1).action is OUT_OF_ORDER          # 1 is still awaited
    assert log.one(P, 2, 2).action is APPEND                # the producer gave up on 1
    late = log.one(P, 1, 1)                                 # a stale copy of 1 turns up
    assert (late.action, late.offsets) == (DUPLICATE, None), "never stored: offsets unknown"
    assert log.end == 20


def test_requests_of_one_turn_are_judged_in_arrival_order(log):
    decisions = log.turn((P, 0, 0), (P, 2, 0), (P, 1, 0), (P, 1, 0), (P, 2, 0))
    assert [d.action for d in decisions] == [APPEND, OUT_OF_ORDER, APPEND, DUPLICATE, APPEND]
    assert decisions[3].pending == 1, "a duplicate of this turn's append shares its offsets"
    assert log.table.expected(P, "t", 0) == 3


def test_a_failed_write_leaves_the_table_as_it_was(log):
    log.one(P, 0, 0)
    assert [d.action for d in log.turn((P, 1, 1), (P, 2, 1), fail=True)] == [APPEND] * 2
    assert log.table.expected(P, "t", 0) == 1
    assert [d.action for d in log.turn((P, 1, 1), (P, 2, 1))] == [APPEND] * 2
    fresh = Log(ProducerTable())
    fresh.turn((Q, 0, 0), fail=True)
    assert fresh.table.expected(Q, "t", 0) is None and len(fresh.table) == 0


def test_unsequenced_requests_are_always_appended_and_remembered_nowhere(log):
    decisions = log.turn((0, 0, 0), (0, 0, 0), (P, 0, 0), (0, 9, 3))
    assert [d.action for d in decisions] == [APPEND] * 4
    assert len(log.table) == 1 and log.table.expected(P, "t", 0) == 1
    assert log.one(P, 0, 0).offsets == (20, 30), "offsets follow the unsequenced appends"


def test_producers_and_partitions_are_apart():
    table = ProducerTable()
    zero, one = Log(table, partition=0), Log(table, partition=1)
    zero.one(P, 0, 0)
    assert one.one(P, 0, 0).action is APPEND
    assert zero.one(Q, 0, 0).action is APPEND
    assert zero.one(P, 1, 0).action is APPEND
    assert Log(table, topic="u").one(P, 5, 5).action is APPEND
    assert len(table) == 4


def test_only_the_last_remembered_offsets_are_kept():
    log = Log(ProducerTable(remembered=3))
    log.turn(*[(P, s, s) for s in range(5)])
    got = [log.one(P, s, s).offsets for s in range(5)]
    assert got == [None, None, (20, 30), (30, 40), (40, 50)]
    assert all(log.one(P, s, s).action is DUPLICATE for s in range(5))
    assert log.end == 50


def test_an_idle_producer_is_forgotten_and_judged_from_first_unacked():
    table = ProducerTable(idle_s=600)
    log, other = Log(table), Log(table, partition=1)
    log.one(P, 0, 0)
    other.now = log.now = 400.0
    other.one(Q, 0, 0)
    log.now = 599.0
    log.one(Q, 0, 0)                       # table.turn expires nothing yet
    assert table.expected(P, "t", 0) == 1
    log.now = 600.0
    assert log.one(P, 1, 1).action is APPEND, "P's last append was at 0: 600 s idle"
    assert table.expected(P, "t", 0) == 2, "...and it is back, from its first_unacked"
    log.now = 1001.0
    table.expire(log.now)
    assert table.expected(Q, "t", 1) is None, "Q's entry on partition 1 was idle since 400"
    assert table.expected(Q, "t", 0) == 1 and table.expected(P, "t", 0) == 2


def test_at_most_max_entries_are_kept_least_recently_used_first_out():
    table = ProducerTable(max_entries=2)
    log = Log(table)
    log.one(P, 0, 0)
    log.one(Q, 0, 0)
    log.one(P, 1, 1)                       # P used last: Q is the least recently used
    log.one(0xC3, 0, 0)
    assert len(table) == 2
    assert table.expected(Q, "t", 0) is None
    assert table.expected(P, "t", 0) == 2 and table.expected(0xC3, "t", 0) == 1


def test_commit_wants_one_offset_pair_per_append():
    turn = ProducerTable().turn("t", 0, 0.0)
    turn.judge(P, 0, 0)
    with pytest.raises(ValueError, match="1 appends"):
        turn.commit([])


@pytest.mark.parametrize("setting", ["remembered", "max_entries", "idle_s"])
@pytest.mark.parametrize("bad", [0, -1, True, "10"])
def test_settings_are_checked(setting, bad):
    with pytest.raises(ValueError, match=setting):
        ProducerTable(**{setting: bad})


def test_an_entry_used_again_is_not_forgotten_on_its_first_use():
    table = ProducerTable(idle_s=600)
    log = Log(table)
    log.one(P, 0, 0)
    log.now = 100.0
    log.one(Q, 0, 0)
    log.now = 500.0
    log.one(P, 1, 1)
    assert table.expire(601.0) == 0, "P was used at 500, Q at 100"
    assert table.expire(700.0) == 1
    assert table.expected(Q, "t", 0) is None and table.expected(P, "t", 0) == 2
    assert table.expire(1100.0) == 1 and len(table) == 0


def test_the_sequenced_sets_replayed_into_a_table_judge_a_resend_as_a_duplicate():
    sets = SequencedSets()
    sets.extend([(7, NATIVE_EPOCH, 0, 0, 0, 10), (9, 0, 0, 4, 10, 60),
                 (7, NATIVE_EPOCH, 1, 1, 60, 70)])
    table = ProducerTable()
    table.replay("t", 0, list(sets), now=0.0)
    assert table.expected(7, "t", 0) == 2 and table.expected(9, "t", 0) is None
    assert table.turn("t", 0, now=1.0).judge(7, 1, 1).offsets == (60, 70)
    assert sets.between(10, 70) == [(9, 0, 0, 4, 10, 60), (7, NATIVE_EPOCH, 1, 1, 60, 70)]
    assert sets.cut(60) and [e[4] for e in sets] == [0, 10]
    assert table.forget_partition("t", 0) == 1 and table.expected(7, "t", 0) is None
    table.replay("t", 0, list(sets), now=2.0)
    assert table.expected(7, "t", 0) == 1


def test_a_torn_producer_snapshot_reads_as_no_sets(tmp_path, caplog):
    producer_snapshot.write(tmp_path, [(7, -1, 0, 0, 0, 10)], sync=True)
    assert producer_snapshot.read(tmp_path, 10) == [(7, -1, 0, 0, 0, 10)]
    path = tmp_path / producer_snapshot.FILE_NAME
    path.write_bytes(path.read_bytes()[:-1])
    assert producer_snapshot.read(tmp_path, 10) == []
    assert "is not a producer snapshot" in caplog.text
    assert producer_snapshot.read(tmp_path / "none", 10) == []


def test_a_set_split_between_two_fetch_answers_comes_with_the_answer_that_completes_it():
    """A replica fetch answer ends where its max_bytes falls, inside a set of many messages
    at times: the follower cannot keep the set's entry then (not whole in its log), so the
    answer that holds the set's end must carry it, or the follower never learns the set and,
    leading, appends a resend of it twice."""
    sets = SequencedSets()
    sets.extend([(7, NATIVE_EPOCH, 0, 0, 0, 10), (7, NATIVE_EPOCH, 1, 1, 10, 100)])
    assert sets.between(0, 60) == [(7, NATIVE_EPOCH, 0, 0, 0, 10)]
    assert sets.between(60, 100) == [(7, NATIVE_EPOCH, 1, 1, 10, 100)]
