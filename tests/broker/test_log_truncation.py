"""A replica's log: cut at a message boundary (truncate_to), restarted empty at the leader's
log start (reset_to), the epochs opened with the log, and reads up to the end for a follower."""
import pytest

from broker.leader_epochs import FILE_NAME
from broker.protocol import InvalidOffset, OffsetOutOfRange, StorageError
from broker.segment import segment_name
from tests.broker.logs import KIB, append_each, crash, files, make_log, msg, read_all


def values(log):
    return [m.value[:6] for m in read_all(log)]


def test_a_pre_replication_log_is_epoch_0_from_its_start(log_path):
    log = make_log(log_path)
    assert (log.epochs.entries, log.epochs.latest_epoch) == ([], -1)
    log.close()
    assert not (log_path / FILE_NAME).exists(), "an empty new log (a new follower) gets none"
    log = make_log(log_path)
    append_each(log, [msg(i) for i in range(3)])
    log.close()
    log = make_log(log_path)
    assert log.epochs.entries == [(0, 0)]
    assert (log_path / FILE_NAME).exists()
    log.close()


def test_a_cut_in_the_active_segment(log_path):
    log = make_log(log_path)
    offsets = append_each(log, [msg(i) for i in range(10)])
    log.epochs.assign(0, 0)
    log.epochs.assign(1, offsets[6])
    assert log.truncate_to(offsets[4]) == (6, 6 * 109)
    assert (log.end_offset, log.visible_end, log.exposed_end) == (offsets[4],) * 3
    assert log.epochs.entries == [(0, 0)]
    assert values(log) == [b"%06d" % i for i in range(4)]
    assert log.read(offsets[4], 1000) == b""
    with pytest.raises(OffsetOutOfRange):
        log.read(offsets[5], 1000)
    assert log.append(msg(40), 1) == (offsets[4], offsets[5]), "the cut offsets are reused"
    assert values(log) == [b"%06d" % i for i in range(4)] + [b"000040"]
    log.close()


def test_a_cut_across_segments_deletes_the_later_ones(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    offsets = append_each(log, [msg(i) for i in range(25)])
    assert log.segment_starts == [0, 981, 1962]
    assert log.truncate_to(offsets[5]) == (20, 20 * 109)
    assert (log.segment_starts, files(log_path)) == ([0], [segment_name(0)])
    assert log.append(msg(50), 1)[0] == offsets[5]
    append_each(log, [msg(51 + i) for i in range(5)])
    assert log.segment_starts == [0, 981], "the cut segment is the active one again and rolls"
    log.close()


def test_a_cut_at_a_segment_start_leaves_it_empty_and_active(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(25)])
    assert log.truncate_to(1962) == (7, 7 * 109)
    assert (log.segment_starts, log.end_offset, log.size_bytes) == ([0, 981, 1962], 1962, 1962)
    assert log.append(msg(80), 1) == (1962, 2071)
    assert values(log)[-2:] == [b"000017", b"000080"]
    log.close()


def test_a_cut_inside_a_message_is_refused_and_changes_nothing(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    offsets = append_each(log, [msg(i) for i in range(25)])
    with pytest.raises(InvalidOffset, match="lies inside the message at 1090"):
        log.truncate_to(1100)
    assert log.end_offset == offsets[-1] + 109
    assert len(read_all(log)) == 25
    log.close()


def test_a_cut_at_or_past_the_end_cuts_nothing_but_drops_entries_from_there(log_path):
    log = make_log(log_path)
    append_each(log, [msg(i) for i in range(3)])
    log.epochs.assign(0, 0)
    log.epochs.assign(4, 327)
    assert log.truncate_to(900) == (0, 0)
    assert log.epochs.entries == [(0, 0), (4, 327)]
    assert log.truncate_to(327) == (0, 0)
    assert log.epochs.entries == [(0, 0)]
    assert log.end_offset == 327
    log.close()


def test_a_cut_survives_a_reopen_and_a_crash(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    offsets = append_each(log, [msg(i) for i in range(25)])
    log.epochs.assign(0, 0)
    log.epochs.assign(3, offsets[15])
    log.flush()
    log.truncate_to(offsets[12])
    crash(log)
    log = make_log(log_path, segment_bytes=KIB)
    assert (log.end_offset, log.exposed_end, log.gaps) == (offsets[12], offsets[12], [])
    assert log.epochs.entries == [(0, 0)]
    assert values(log) == [b"%06d" % i for i in range(12)]
    log.close()


def test_entries_past_the_end_are_dropped_at_open(log_path):
    """A crash between the cut of the data and the rewrite of the checkpoint."""
    log = make_log(log_path)
    append_each(log, [msg(i) for i in range(3)])
    log.epochs.assign(0, 0)
    log.epochs.assign(2, 900)
    log.close()
    log = make_log(log_path)
    assert log.epochs.entries == [(0, 0)]
    log.close()


def test_a_trailing_gap_left_by_recovery_is_dropped_by_a_cut_to_the_data_end(log_path):
    log = make_log(log_path, visible_after_flush=True)
    append_each(log, [msg(i) for i in range(3)])
    log.flush()
    log.epochs.assign(0, 0)
    log.append(msg(3), 1, expose=True)           # told to a producer, then lost
    crash(log)
    (log_path / segment_name(0)).open("r+b").truncate(327)
    log = make_log(log_path, visible_after_flush=True)
    assert (log.data_end, log.end_offset, log.gaps) == (327, 436, [(327, 436)])
    assert log.truncate_to(log.data_end) == (0, 0)
    assert (log.end_offset, log.exposed_end, log.gaps, log.segment_starts) == (327, 327, [], [0])
    assert log.append(msg(30), 1) == (327, 436)
    log.close()


def test_a_cut_inside_a_gap_keeps_the_data_before_it(log_path):
    log = make_log(log_path, visible_after_flush=True)
    append_each(log, [msg(i) for i in range(3)])
    log.flush()
    log.append(msg(3) + msg(4), 2, expose=True)
    crash(log)
    (log_path / segment_name(0)).open("r+b").truncate(327)
    log = make_log(log_path, visible_after_flush=True)
    assert log.gaps == [(327, 545)]
    assert log.truncate_to(436) == (0, 0)
    assert (log.end_offset, log.gaps, log.segment_starts) == (436, [(327, 436)], [0, 436])
    assert log.append(msg(40), 1) == (436, 545)
    log.close()


def test_reset_to_starts_empty_at_the_leaders_start(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(25)])
    log.epochs.assign(0, 0)
    log.reset_to(5000)
    assert (log.start_offset, log.end_offset, log.exposed_end) == (5000, 5000, 5000)
    assert (files(log_path), log.epochs.entries) == ([segment_name(5000)], [])
    with pytest.raises(OffsetOutOfRange) as below:
        log.read(0, 100)
    assert below.value.resume_offset == 5000
    log.epochs.assign(3, 5000)
    assert log.append(msg(70), 1) == (5000, 5109)
    assert [m.offset for m in read_all(log)] == [5000]
    log.close()
    log = make_log(log_path, segment_bytes=KIB)
    assert (log.start_offset, log.end_offset, log.epochs.entries) == (5000, 5109, [(3, 5000)])
    log.close()


def test_reset_to_a_start_an_old_segment_has(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(25)])
    log.reset_to(981)
    assert (files(log_path), log.end_offset, read_all(log)) == ([segment_name(981)], 981, [])
    log.close()


def test_a_cut_below_the_start_keeps_nothing(log_path):
    log = make_log(log_path, segment_bytes=KIB)
    append_each(log, [msg(i) for i in range(25)])
    log.reset_to(5000)
    log.epochs.assign(1, 5000)
    append_each(log, [msg(i) for i in range(2)])
    assert log.truncate_to(100) == (2, 218)
    assert (log.start_offset, log.end_offset, log.epochs.entries) == (100, 100, [])
    log.close()


def test_a_replica_reads_up_to_the_end_before_the_flush(log_path):
    log = make_log(log_path, visible_after_flush=True)
    append_each(log, [msg(i) for i in range(3)])
    assert log.visible_end == 0
    assert log.read(0, 4096) == b""
    data = log.read(0, 4096, upto=log.end_offset)
    assert len(data) == 327
    assert len(log.read(109, 4096, upto=log.end_offset)) == 218
    assert log.read(327, 4096, upto=log.end_offset) == b""
    assert len(log.read(0, 4096, upto=10 ** 9)) == 327, "never past the end"
    log.close()


def test_a_damaged_checkpoint_stops_the_open_with_a_storage_error(log_path):
    log = make_log(log_path)
    append_each(log, [msg(i) for i in range(3)])
    log.close()
    (log_path / FILE_NAME).write_text("0\n1\n")
    with pytest.raises(StorageError, match="not a leader-epoch checkpoint"):
        make_log(log_path)
    (log_path / FILE_NAME).write_text("0\n1\n0 0\n")
    log = make_log(log_path)
    assert (log.end_offset, log.epochs.entries) == (327, [(0, 0)])
    log.close()
