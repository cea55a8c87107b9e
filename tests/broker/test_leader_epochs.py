"""Leader epochs: the checkpoint file, the assign rules, the leader's OFFSET_FOR_EPOCH answer
and the follower's truncation decision (broker/leader_epochs.py)."""
import doctest
import os

import pytest

from broker import leader_epochs
from broker.leader_epochs import (FILE_NAME, UNKNOWN_EPOCH, LeaderEpochs, StaleEpoch,
                                  truncation_offset)
from coordinator.errors import InvalidArgument, StorageError


def test_the_worked_examples_hold():
    assert doctest.testmod(leader_epochs).failed == 0


def test_a_folder_without_the_file_has_no_entries_and_writes_none(tmp_path):
    epochs = LeaderEpochs(tmp_path)
    assert (epochs.entries, epochs.latest_epoch, epochs.exists) == ([], UNKNOWN_EPOCH, False)
    assert epochs.end_offset_for(3, 500) == (UNKNOWN_EPOCH, 500)
    assert not (tmp_path / FILE_NAME).exists()


def test_entries_survive_a_reopen_as_text(tmp_path):
    epochs = LeaderEpochs(tmp_path)
    assert epochs.assign(0, 0)
    assert epochs.assign(3, 1090)
    assert (tmp_path / FILE_NAME).read_text() == "0\n2\n0 0\n3 1090\n"
    again = LeaderEpochs(tmp_path)
    assert (again.entries, again.latest_epoch, again.exists) == ([(0, 0), (3, 1090)], 3, True)
    assert not list(tmp_path.glob("*.tmp"))


def test_a_rewrite_goes_through_a_temp_file_so_a_crash_leaves_the_old_list(tmp_path, monkeypatch):
    epochs = LeaderEpochs(tmp_path)
    epochs.assign(0, 0)

    def crash(*args):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StorageError, match="cannot write"):
        epochs.assign(1, 100)
    monkeypatch.undo()
    assert LeaderEpochs(tmp_path).entries == [(0, 0)]


def test_a_damaged_file_is_a_storage_error_never_a_guess(tmp_path):
    for text in ("0\n2\n0 0\n", "0\n1\nzero 0\n", "7\n1\n0 0\n", "0\n2\n3 0\n1 50\n", ""):
        (tmp_path / FILE_NAME).write_text(text)
        with pytest.raises(StorageError, match=FILE_NAME):
            LeaderEpochs(tmp_path)


def test_assign_rules(tmp_path):
    epochs = LeaderEpochs(tmp_path)
    epochs.assign(0, 0)
    epochs.assign(2, 500)
    assert not epochs.assign(2, 500), "the latest epoch again at its start: no-op"
    assert not epochs.assign(2, 700), "the latest epoch began where it began"
    with pytest.raises(StaleEpoch, match="older than the log's latest epoch 2"):
        epochs.assign(1, 900)
    assert isinstance(StaleEpoch("x"), InvalidArgument)
    assert epochs.assign(3, 400), "entries at or after the new start are dropped first"
    assert epochs.entries == [(0, 0), (3, 400)]
    assert epochs.assign(3, 300), "the latest epoch with an earlier start moves back"
    assert epochs.entries == [(0, 0), (3, 300)]
    assert epochs.assign(7, 0)
    assert epochs.entries == [(7, 0)]
    for bad in ((-1, 0), (8, -5)):
        with pytest.raises(InvalidArgument):
            epochs.assign(*bad)
    assert LeaderEpochs(tmp_path).entries == [(7, 0)]


def test_end_offset_for(tmp_path):
    epochs = LeaderEpochs(tmp_path)
    for entry in ((0, 0), (2, 500), (5, 900)):
        epochs.assign(*entry)
    answers = {asked: epochs.end_offset_for(asked, 1200) for asked in (9, 5, 4, 3, 2, 1, 0, -1)}
    assert answers == {9: (5, 1200), 5: (5, 1200), 4: (2, 900), 3: (2, 900), 2: (2, 900),
                       1: (0, 500), 0: (0, 500), -1: (UNKNOWN_EPOCH, 0)}
    later = LeaderEpochs(tmp_path / "later")
    later.directory.mkdir()
    later.assign(4, 800)
    assert later.end_offset_for(2, 1000) == (UNKNOWN_EPOCH, 800)


def test_truncate_from_and_clear(tmp_path):
    epochs = LeaderEpochs(tmp_path)
    for entry in ((0, 0), (2, 500), (5, 900)):
        epochs.assign(*entry)
    assert not epochs.truncate_from(901)
    assert epochs.truncate_from(900)
    assert epochs.entries == [(0, 0), (2, 500)]
    assert epochs.truncate_from(100)
    assert LeaderEpochs(tmp_path).entries == [(0, 0)]
    epochs.clear()
    again = LeaderEpochs(tmp_path)
    assert (again.entries, again.exists) == ([], True)


def test_truncation_when_the_leader_has_the_followers_epoch():
    # the leader's epoch 4 reaches 700: a follower at 900 cuts to 700, one at 600 keeps all
    assert truncation_offset([(0, 0), (4, 300)], 900, 4, 700) == 700
    assert truncation_offset([(0, 0), (4, 300)], 600, 4, 700) == 600


def test_truncation_when_the_leader_never_had_the_followers_epoch():
    assert truncation_offset([(0, 0), (2, 100), (4, 200)], 300, 3, 400) == 200
    assert truncation_offset([(0, 0), (2, 100)], 150, 0, 120) == 100


def test_rounds_until_one_cuts_nothing_find_the_oldest_divergence(tmp_path):
    """The leader has epochs 0, 1, 3; the follower 0, 2, 4 (two unclean elections apart):
    only epoch 0 up to offset 80 is common, and three rounds find it."""
    leader = LeaderEpochs(tmp_path)
    for entry in ((0, 0), (1, 80), (3, 150)):
        leader.assign(*entry)
    follower = [(0, 0), (2, 100), (4, 200)]
    end, cuts = 300, []
    while True:
        found, leader_end = leader.end_offset_for(follower[-1][0], 400)
        cut = truncation_offset(follower, end, found, leader_end)
        if cut == end:
            break
        cuts.append(cut)
        end = cut
        follower = [entry for entry in follower if entry[1] < cut]
    assert cuts == [200, 100, 80]
    assert (follower, end) == ([(0, 0)], 80)


def test_truncation_when_the_leader_knows_no_epoch_that_old():
    assert truncation_offset([(1, 50), (2, 90)], 300, UNKNOWN_EPOCH, 800) == 50
    assert truncation_offset([(1, 50)], 300, UNKNOWN_EPOCH, 20) == 20


def test_a_follower_without_entries_cuts_nothing():
    assert truncation_offset([], 800, UNKNOWN_EPOCH, 0) == 800
    assert truncation_offset([], 0, 3, 500) == 0


def test_an_answer_after_the_asked_epoch_is_refused():
    with pytest.raises(InvalidArgument, match="never after the epoch asked"):
        truncation_offset([(0, 0), (2, 100)], 150, 3, 200)
