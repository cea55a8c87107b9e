"""Log compaction without a broker: the pure rules (broker/compaction.py, broker/gap_index.py),
and a real Log on disk cleaned by the cleaner's own code (broker/cleaner.py), read back,
reopened after each kind of crash a clean can meet, and copied by a follower's append."""
from __future__ import annotations

import doctest
import os
import time

import pytest

from broker import cleaner as cleaner_module, cleaner_checkpoint, compaction, gap_index, message
from broker.cleaner import LogCleaner
from broker.cleaner_checkpoint import CleanerCheckpoint
from broker.config import LogConfig
from broker.log import Log
from broker.recovery import CLEANED_SUFFIX
from tests.helpers import wait_for

CONFIG = LogConfig(segment_bytes=400, visible_after_flush=False, cleanup_policy="compact",
                   delete_retention_ms=3_600_000)


def test_the_pure_modules_worked_examples_hold():
    for module in (compaction, gap_index, cleaner_checkpoint):
        assert doctest.testmod(module).failed == 0


def test_keep_drops_superseded_messages_and_old_tombstones_only():
    latest = {b"a": 100, b"b": 200}
    assert compaction.keep(100, b"a", False, latest, 0, 10)
    assert not compaction.keep(50, b"a", False, latest, 0, 10)
    assert compaction.keep(200, b"b", True, latest, age_ms=9, delete_retention_ms=10)
    assert not compaction.keep(200, b"b", True, latest, age_ms=10, delete_retention_ms=10)
    assert compaction.keep(7, None, False, latest, 0, 10)       # no key: nothing supersedes it


def test_layout_marks_every_jump_and_the_trailing_gap():
    kept = [(0, 0, 10), (40, 40, 10), (50, 50, 10)]
    assert compaction.layout(kept, start=0, end=100) == [
        ("copy", 0, 10), ("gap", 40), ("copy", 40, 20), ("gap", 100)]
    assert compaction.layout(kept, start=0, end=60) == [("copy", 0, 10), ("gap", 40),
                                                         ("copy", 40, 20)]


def test_a_producer_cannot_send_a_gap_marker():
    with pytest.raises(message.InvalidMessage, match="magic"):
        message.validate_set(message.encode(b"x") + message.encode_gap(99))
    markers = []
    assert message.validate_set(message.encode(b"x") + message.encode_gap(99), markers=markers) == 1
    assert markers == [10]


def fill(log: Log, count: int, keys: int) -> dict[int, tuple[bytes, bytes]]:
    """``count`` keyed messages over ``keys`` keys, one append each: offset -> (key, value)."""
    written = {}
    for i in range(count):
        key, value = f"k{i % keys}".encode(), f"value-{i}".encode()
        base, _ = log.append(message.encode(value, key), 1)
        written[base] = (key, value)
    return written


def read_all(log: Log, max_bytes: int = 150) -> list[message.Message]:
    """Every message from the log start, a fetch at a time, as a consumer walks it."""
    out, offset = [], log.start_offset
    while offset < log.end_offset:
        data, end, _ = log.read_span(offset, max_bytes)
        ends = []
        out += message.decode_set(data, "t", 0, offset, ends)
        assert ends == [end] and end > offset
        offset = end
    return out


def last_per_key_in_sealed(written: dict, sealed_end: int) -> dict[bytes, int]:
    latest = {}
    for offset in sorted(written):
        if offset < sealed_end:
            latest[written[offset][0]] = offset
    return latest


def clean(log: Log, checkpoint: CleanerCheckpoint | None = None) -> LogCleaner:
    cleaner = LogCleaner(1 << 30, on_error=lambda task, exc: pytest.fail(f"{task}: {exc}"),
                         checkpoint=checkpoint)
    cleaner.clean(log, cleaner.state(log))
    return cleaner


def test_a_clean_keeps_the_last_message_of_each_key_at_its_offset(tmp_path):
    log = Log(tmp_path, CONFIG)
    written = fill(log, 120, keys=5)
    active_start = log.segment_starts[-1]
    size_before = log.size_bytes
    cleaner = clean(log)
    latest = last_per_key_in_sealed(written, active_start)
    got = read_all(log)
    offsets = [m.offset for m in got]
    assert offsets == sorted(offsets)
    for m in got:                                   # every kept message where it was
        assert written[m.offset] == (m.key, m.value)
    sealed_kept = {m.offset for m in got if m.offset < active_start}
    assert sealed_kept == set(latest.values())
    active = {o for o in written if o >= active_start}
    assert {m.offset for m in got if m.offset >= active_start} == active   # never touched
    assert log.size_bytes < size_before
    assert log.segment_count == 2       # the sealed ones merged into one file, and the active
    state = cleaner.state(log)
    assert state.cleans == 1 and state.removed_messages == 120 - len(got)
    log.close()
    again = Log(tmp_path, CONFIG)
    assert read_all(again) == got                   # the sidecars give the same offsets
    again.close()


def test_a_second_clean_of_a_compacted_segment_keeps_offsets(tmp_path):
    log = Log(tmp_path, CONFIG)
    written = fill(log, 60, keys=4)
    clean(log)
    written.update(fill(log, 60, keys=4))
    clean(log)
    got = read_all(log)
    for m in got:
        assert written[m.offset] == (m.key, m.value)
    latest = last_per_key_in_sealed(written, log.segment_starts[-1])
    assert {m.offset for m in got if m.offset < log.segment_starts[-1]} == set(latest.values())
    log.close()


def test_reads_at_any_offset_in_a_gap_resume_at_the_next_kept_message(tmp_path):
    log = Log(tmp_path, CONFIG)
    written = fill(log, 60, keys=3)
    clean(log)
    kept = [m.offset for m in read_all(log)]
    for offset in sorted(written):
        if offset >= log.segment_starts[-1]:
            break
        at, first = offset, None
        for _ in range(log.segment_count):      # a read stays in one segment: follow its end
            data, end, _ = log.read_span(at, 1000)
            first = next(iter(message.decode_set(data, "t", 0, at)), None)
            if first is not None:
                break
            at = end
        expected = next(o for o in kept if o >= offset)
        assert first is not None and first.offset == expected, offset


def test_tombstones_go_once_delete_retention_has_passed(tmp_path):
    log = Log(tmp_path, CONFIG)
    log.append(message.encode_record(b"v", b"gone", 1), 1)
    tombstone_at, _ = log.append(message.encode_record(None, b"gone", 2), 1)
    fill(log, 40, keys=2)
    clean(log)
    assert any(m.key == b"gone" and m.value is None for m in read_all(log))
    old = log.segment_starts[0]
    path = tmp_path / f"{old:020d}.log"
    os.utime(path, (1, 1))      # its segment was written long before the delete retention
    clean(log)
    assert all(m.key != b"gone" for m in read_all(log))
    assert log.read_span(tombstone_at, 100)[0]      # the offset still reads (to the next kept)
    log.close()


@pytest.mark.parametrize("crash_at", ["written", "pending", "renamed"])
def test_a_clean_cut_short_at_any_step_leaves_the_old_or_the_new_segment(tmp_path, monkeypatch,
                                                                       crash_at):
    """The fault hook ends the process at a step; here os._exit is caught, so the files are
    left exactly as a killed broker's would be, and a fresh open recovers them."""
    log = Log(tmp_path, CONFIG)
    written = fill(log, 80, keys=4)
    before = read_all(log)
    segments_before = log.segment_count

    class Crash(BaseException):
        pass

    def crash(code):
        raise Crash()

    monkeypatch.setenv(cleaner_module.CRASH_ENV, crash_at)
    monkeypatch.setattr(cleaner_module.os, "_exit", crash)
    with pytest.raises(Crash):
        clean(log)
    monkeypatch.delenv(cleaner_module.CRASH_ENV)
    log._close_fds()                                 # dies: no clean close, no flush
    reopened = Log(tmp_path, CONFIG)
    assert not list(tmp_path.glob("*" + CLEANED_SUFFIX))
    after = read_all(reopened)
    for m in after:
        assert written[m.offset] == (m.key, m.value)
    first_segment_end = reopened.segment_starts[1]
    first_before = [m for m in before if m.offset < first_segment_end]
    first_after = [m for m in after if m.offset < first_segment_end]
    if crash_at == "renamed":
        assert len(first_after) < len(first_before)  # the new segment, whole, and the files
        assert reopened.segment_count < segments_before     # it merged are gone
        assert len(list(tmp_path.glob("*.log"))) == reopened.segment_count
    else:
        assert first_after == first_before           # the old segment, whole
    assert [m for m in after if m.offset >= first_segment_end] == \
        [m for m in before if m.offset >= first_segment_end]
    clean(reopened)                                  # and the next clean finishes the work
    active = reopened.segment_starts[-1]
    assert {m.offset for m in read_all(reopened) if m.offset < active} == \
        set(last_per_key_in_sealed(written, active).values())
    reopened.close()


def test_a_pending_or_damaged_sidecar_is_rebuilt_from_the_file(tmp_path):
    log = Log(tmp_path, CONFIG)
    fill(log, 80, keys=4)
    clean(log)
    got = read_all(log)
    log.close()
    sidecars = sorted(tmp_path.glob("*" + gap_index.SUFFIX))
    assert sidecars
    sidecars[0].write_bytes(b"SLGAPS1?")               # pending
    sidecars[-1].write_bytes(sidecars[-1].read_bytes()[:-1] + b"\x00")    # a bad CRC
    again = Log(tmp_path, CONFIG)
    assert read_all(again) == got
    again.close()


def test_a_follower_copies_a_compacted_stretch_with_the_same_offsets(tmp_path):
    leader = Log(tmp_path / "leader", CONFIG)
    fill(leader, 100, keys=4)
    clean(leader)
    follower = Log(tmp_path / "follower", CONFIG)
    while follower.end_offset < leader.end_offset:
        data, end, _ = leader.read_span(follower.end_offset, 120, upto=leader.end_offset)
        markers = []
        count = message.validate_set(data, markers=markers)
        follower.append(data, count, markers=markers)
        assert follower.end_offset == end
    assert read_all(follower) == read_all(leader)
    follower.close()
    reopened = Log(tmp_path / "follower", CONFIG)
    assert read_all(reopened) == read_all(leader)
    cut_at = read_all(leader)[2].offset
    reopened.truncate_to(cut_at)
    assert reopened.end_offset == cut_at
    assert read_all(reopened) == [m for m in read_all(leader) if m.offset < cut_at]
    reopened.close()
    leader.close()


def test_a_clean_does_not_commit_over_a_log_cut_meanwhile(tmp_path, monkeypatch):
    """A follower's truncation while the cleaner works: what was cleaned may no longer be what
    the segment holds, so the commit is refused and the cut stays as it is."""
    log = Log(tmp_path, CONFIG)
    fill(log, 80, keys=4)
    before = read_all(log)
    cut_at = before[3].offset

    def cut_in_the_middle(name):
        if name == "written":
            log.truncate_to(cut_at)

    monkeypatch.setattr(cleaner_module, "_crash_point", cut_in_the_middle)
    clean(log)
    assert read_all(log) == before[:3]
    assert not list(tmp_path.glob("*" + CLEANED_SUFFIX))
    log.close()


def test_dump_log_shows_a_cleaned_segments_gaps_and_kept_offsets(tmp_path):
    import json
    import subprocess
    import sys
    log = Log(tmp_path, CONFIG)
    fill(log, 80, keys=4)
    clean(log)
    kept = [m.offset for m in read_all(log) if m.offset < log.segment_starts[1]]
    log.close()
    first = sorted(tmp_path.glob("*.log"))[0]
    out = subprocess.run([sys.executable, "-m", "cluster.cli", "dump-log", str(first), "--json"],
                         capture_output=True, text=True, check=True).stdout
    entries = [json.loads(line) for line in out.splitlines()]
    assert [e["offset"] for e in entries if "gap_to" not in e] == kept
    second = sorted(tmp_path.glob("*.log"))[1]
    assert entries[-1]["next_offset"] == int(second.stem)     # the gap runs to the next segment


def test_the_cleaner_checkpoint_carries_a_clean_end_to_the_next_cleaner(tmp_path):
    log = Log(tmp_path / "t" / "0", CONFIG)
    fill(log, 120, keys=5)
    first = clean(log, CleanerCheckpoint(tmp_path))
    first.write_checkpoint(log, first.state(log))
    end = first.state(log).clean_end
    assert end == log.segment_starts[-1]
    assert CleanerCheckpoint(tmp_path).read() == {("t", 0): (end, None)}
    now_ms = time.time() * 1000
    errors = []
    restarted = LogCleaner(1 << 30, lambda task, exc: errors.append(task),
                           CleanerCheckpoint(tmp_path))
    assert restarted.state(log).clean_end == end
    assert not restarted.submit_if_due(log, now_ms)          # clean: not due, nothing read
    blind = LogCleaner(1 << 30, lambda task, exc: errors.append(task))
    assert blind.submit_if_due(log, now_ms)                  # without it: all of it dirty
    (tmp_path / "cleaner-offset-checkpoint").write_text("0\n3\nt 0 12\n")
    damaged = LogCleaner(1 << 30, lambda task, exc: errors.append(task),
                         CleanerCheckpoint(tmp_path))
    assert damaged.state(log).clean_end == log.start_offset and errors == ["cleaner_checkpoint"]
    log.close()


def test_a_checkpoint_outside_the_log_and_a_forgotten_log_are_not_kept(tmp_path):
    log = Log(tmp_path / "t" / "0", CONFIG)
    fill(log, 60, keys=5)
    CleanerCheckpoint(tmp_path).write({("t", 0): (log.end_offset + 100, 5),
                                       ("gone", 3): (40, None)})
    cleaner = LogCleaner(1 << 30, lambda task, exc: pytest.fail(f"{task}: {exc}"),
                         CleanerCheckpoint(tmp_path))
    assert cleaner.state(log).clean_end == log.start_offset     # e.g. a topic made again
    assert cleaner.state(log).oldest_tombstone_ms is None
    cleaner.start()
    try:
        cleaner.forget(log)
        wait_for(lambda: ("t", 0) not in CleanerCheckpoint(tmp_path).read(),
                 what="the forgotten log's entry to leave the file")
    finally:
        cleaner.stop()
        cleaner.join(10)
    assert CleanerCheckpoint(tmp_path).read() == {("gone", 3): (40, None)}
    log.close()


def test_a_corrupt_message_makes_the_log_uncleanable_and_leaves_it_as_it_is(tmp_path):
    """A byte of a sealed segment's message is flipped: the clean stops before it changed
    anything (no message dropped, none copied as if good), says so once, and the log is not
    submitted again."""
    log = Log(tmp_path / "t" / "0", CONFIG)
    written = fill(log, 120, keys=5)
    log.flush()
    offsets = sorted(written)
    victim = offsets[3]                           # in the first segment, which starts at 0
    length = offsets[4] - victim
    path = log.directory / f"{0:020d}.log"
    with open(path, "r+b") as f:
        f.seek(victim + length - 1)
        byte = f.read(1)
        f.seek(victim + length - 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    files = {p.name: p.read_bytes() for p in log.directory.iterdir()}
    gave_up = []
    cleaner = LogCleaner(1 << 30, lambda task, exc: pytest.fail(f"{task}: {exc}"),
                         on_gave_up=lambda name, what, exc: gave_up.append((name, str(exc))))
    cleaner.start()
    try:
        assert cleaner.submit_if_due(log, time.time() * 1000)
        state = wait_for(lambda: (s := cleaner.state(log)).uncleanable and not s.queued and s,
                         what="the clean to give up")
    finally:
        cleaner.stop()
        cleaner.join(10)
    assert gave_up == [("uncleanable_log", state.uncleanable)]
    assert f"CRC mismatch at byte {victim} (offset {victim})" in state.uncleanable
    assert {p.name: p.read_bytes() for p in log.directory.iterdir()} == files
    assert (state.cleans, state.rewritten_segments) == (0, 0)
    assert not cleaner.submit_if_due(log, time.time() * 1000)
    log.close()
