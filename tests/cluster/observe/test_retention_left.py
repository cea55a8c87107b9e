"""The retention countdown: its docstring's worked example and the segment listing."""
import os

from cluster.observe import retention_left


def test_retention_seconds_left_follows_the_docstring_example():
    segments = [(0, 5_000.0), (1000, 7_000.0), (2000, 9_500.0)]
    assert retention_left.seconds_left(segments, 1500, 10_000.0, 3_600_000) == 600.0
    # a younger segment in front holds back the older one behind it (the log loses a prefix)
    assert retention_left.seconds_left([(0, 7_000.0), (1000, 5_000.0), (2000, 9_000.0)], 1500,
                                       10_000.0, 3_600_000) == 600.0
    assert retention_left.seconds_left(segments, 2500, 10_000.0, 3_600_000) is None  # active
    assert retention_left.seconds_left(segments, 1000, 20_000.0, 3_600_000) == 0.0   # overdue
    assert retention_left.seconds_left([(1000, 1.0), (2000, 2.0)], 500, 10.0, 1000) == 0.0
    assert retention_left.seconds_left([], 0, 10.0, 1000) is None


def test_list_segments_reads_names_and_mtimes(tmp_path):
    for start, mtime in ((2048, 200.0), (0, 100.0), (1024, 150.0)):
        path = tmp_path / f"{start:020d}.log"
        path.write_bytes(b"x")
        os.utime(path, (mtime, mtime))
    (tmp_path / "notes.txt").write_text("not a segment")
    assert retention_left.list_segments(tmp_path) == [(0, 100.0), (1024, 150.0), (2048, 200.0)]
    assert retention_left.list_segments(tmp_path / "missing") == []
    assert retention_left.partition_dir("/d/broker-1", "clicks", 3).as_posix() == \
        "/d/broker-1/clicks/3"
