"""The high-watermark checkpoint file and the safe start it gives (broker/hw_checkpoint.py)."""
import doctest

import pytest

from broker import hw_checkpoint
from broker.hw_checkpoint import FILE_NAME, HighWatermarkCheckpoint, safe_start
from coordinator.errors import StorageError


def test_the_worked_examples():
    assert doctest.testmod(hw_checkpoint).failed == 0


def test_a_snapshot_round_trips_and_an_unchanged_one_is_not_written_again(tmp_path):
    checkpoint = HighWatermarkCheckpoint(tmp_path)
    assert checkpoint.read() == {}
    snapshot = {("t", 0): (4096, 7), ("a b", 3): (0, -1)}
    assert checkpoint.offer(snapshot)
    checkpoint.flush()
    assert HighWatermarkCheckpoint(tmp_path).read() == snapshot
    assert not checkpoint.offer(dict(snapshot))
    again = HighWatermarkCheckpoint(tmp_path)
    again.read()
    assert not again.offer(snapshot)
    assert again.offer({("t", 0): (5000, 7)})


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    (tmp_path / FILE_NAME).write_text("0\n2\nt 0 10 1\n")
    with pytest.raises(StorageError):
        HighWatermarkCheckpoint(tmp_path).read()


def test_a_start_never_passes_the_log_end_nor_a_later_epoch():
    assert safe_start((1000, 5), [(0, 0), (5, 400), (6, 700)], 1500) == 700
    assert safe_start((1000, 5), [], 0) == 0
