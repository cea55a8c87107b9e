"""The scrub walk on byte strings: bad ranges, where data resumes, torn tails, boundaries."""
import doctest
import struct
import zlib

import pytest

from broker import message, scrub
from broker.scrub import Bad, BytesReader, Checkpoints
from coordinator.errors import CorruptMessage, InvalidOffset


def m(value: bytes) -> bytes:
    return message.encode(value)


A, B, C = m(b"aaaaaa"), m(b"bbbbbb"), m(b"cccccc")     # 15 bytes each, at 0, 15 and 30
ABC = A + B + C


def flip(data: bytes, pos: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[pos] ^= mask
    return bytes(out)


def set_size(data: bytes, pos: int, size: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(">I", out, pos, size)
    return bytes(out)


def run(data: bytes, last: bool = False, **kw) -> scrub.Report:
    return scrub.scrub(BytesReader(data), len(data), last=last, **kw)


def test_the_module_docstring_examples():
    assert len(A) == 15
    clean = run(ABC)
    assert (clean.bad, clean.torn_at, clean.messages) == ([], None, 3)
    flipped = flip(ABC, 15 + 12)
    assert run(flipped).bad == [Bad(15, 15, "crc")]
    assert run(flipped, last=True).bad == [Bad(15, 15, "crc")]
    assert run(flipped, last=True).messages == 2
    sized = set_size(ABC, 15, 200)
    assert run(sized).bad == [Bad(15, 15, "truncated")]
    assert run(sized, last=True).torn_at is None
    torn = ABC[:37]
    assert run(torn).bad == [Bad(30, 7, "truncated")]
    assert (run(torn, last=True).bad, run(torn, last=True).torn_at) == ([], 30)
    both = flip(ABC, 15 + 12)[:37]
    assert run(both).bad == [Bad(15, 22, "crc")]
    report = run(both, last=True)
    assert (report.bad, report.torn_at, report.valid_end) == ([], 15, 15)


def test_torn_segment_drill_pattern_cuts_from_the_flipped_message():
    """The drill flips the last byte of the second-to-last message and tears the last one."""
    messages = [m(b"drill-%04d-payload" % i) for i in range(6)]
    data = b"".join(messages)
    flip_start = sum(map(len, messages[:4]))
    torn_start = flip_start + len(messages[4])
    damaged = flip(data, torn_start - 1, 0xFF)[:torn_start + len(messages[5]) // 2]
    report = run(damaged, last=True)
    assert report.torn_at == flip_start and report.bad == []
    assert report.messages == 4


def test_a_zeroed_run_inside_a_sealed_segment_resyncs_at_the_next_message():
    data = A + bytes(15) + C
    assert run(data).bad == [Bad(15, 15, "size")]
    assert run(data, last=True).bad == [Bad(15, 15, "size")]


def test_bad_magic_and_a_bad_key_length():
    magic = bytearray(ABC)
    magic[15 + 4] = 7
    assert run(bytes(magic)).bad == [Bad(15, 15, "magic")]
    payload = b"\x00" + struct.pack(">I", 99) + b"k"
    keyed = struct.pack(">IBI", 5 + len(payload), 1, zlib.crc32(payload)) + payload
    assert run(A + keyed + C).bad == [Bad(15, len(keyed), "size")]


def test_a_size_field_that_lands_on_a_valid_message_keeps_the_exact_range():
    """A flipped value byte keeps the size: the next message is exactly where the size says."""
    data = b"".join(m(b"%03d" % i * 30) for i in range(50))
    one = len(m(b"000" * 30))
    report = run(flip(data, 7 * one + 40))
    assert report.bad == [Bad(7 * one, one, "crc")]
    assert report.messages == 49


def test_garbage_between_messages_and_at_the_end_of_a_sealed_segment():
    garbage = bytes(range(256)) * 3        # size fields 0x00010203...: run past the end
    data = A + garbage + B + C + garbage[:20]
    report = run(data)
    assert report.bad == [Bad(15, len(garbage), "truncated"),
                          Bad(15 + len(garbage) + 30, 20, "truncated")]
    assert report.messages == 3
    last = run(data, last=True)
    assert last.torn_at == 15 + len(garbage) + 30
    assert last.bad == [Bad(15, len(garbage), "truncated")]


def test_messages_longer_than_a_chunk_and_across_chunk_edges(monkeypatch):
    monkeypatch.setattr(scrub, "CHUNK", 64)
    big = m(b"B" * 500)
    data = A + big + B + m(b"x" * 40) + C
    assert run(data).bad == [] and run(data).messages == 5
    bad = flip(data, 15 + 300)
    assert run(bad).bad == [Bad(15, len(big), "crc")]
    torn = data[:15 + 200]
    assert run(torn, last=True).torn_at == 15


def test_an_empty_segment_is_clean():
    report = run(b"", last=True)
    assert (report.bad, report.torn_at, report.messages, report.valid_end) == ([], None, 0, 0)


def test_a_tail_shorter_than_a_header():
    assert run(ABC + b"\x00\x00", last=True).torn_at == 45
    assert run(ABC + b"\x00\x00").bad == [Bad(45, 2, "truncated")]


def test_progress_is_reported_up_to_the_end():
    seen = []
    run(ABC * 10, on_progress=seen.append)
    assert seen and seen[-1] == 450 and seen == sorted(seen)


@pytest.mark.parametrize("pos,kind,before,after", [
    (0, "message", 0, 15), (15, "message", 15, 30), (16, "inside", 15, 30),
    (29, "inside", 15, 30), (44, "inside", 30, 45)])
def test_locate_on_a_clean_segment(pos, kind, before, after):
    loc = scrub.locate(BytesReader(ABC), 45, pos)
    assert (loc.kind, loc.before, loc.after) == (kind, before, after)


def test_locate_a_corrupt_message_and_offsets_inside_it():
    data = A + flip(B, 12) + C
    loc = scrub.locate(BytesReader(data), 45, 15)
    assert (loc.kind, loc.before, loc.after, loc.reason) == ("corrupt", 15, 30, "crc")
    loc = scrub.locate(BytesReader(data), 45, 20)
    assert (loc.kind, loc.before, loc.after) == ("inside_bad", 15, 30)
    assert scrub.locate(BytesReader(data), 45, 30).kind == "message"


def test_locate_resyncs_past_a_framing_break_before_the_offset():
    """B's size field is broken, so framing from the start cannot reach C: resync at C."""
    data = set_size(ABC, 15, 3) + m(b"dddddd")
    assert scrub.locate(BytesReader(data), 60, 45).kind == "message"
    loc = scrub.locate(BytesReader(data), 60, 47)
    assert (loc.kind, loc.before, loc.after) == ("inside", 45, 60)
    loc = scrub.locate(BytesReader(data), 60, 15)
    assert (loc.kind, loc.after, loc.reason) == ("corrupt", 30, "size")


def test_checkpoints_let_later_walks_start_near_the_offset(monkeypatch):
    monkeypatch.setattr(scrub, "CHUNK", 150)
    monkeypatch.setattr(scrub, "CHECKPOINT_BYTES", 100)
    data = ABC * 20
    reads = []

    class Counting(BytesReader):
        def read(self, pos, n):
            reads.append(pos)
            return super().read(pos, n)

    points = Checkpoints()
    assert scrub.locate(Counting(data), len(data), 800 + 1, points).before == 795
    assert len(points) > 3
    assert all(p % 15 == 0 for p in points)
    reads.clear()
    assert scrub.locate(Counting(data), len(data), 780 + 2, points).kind == "inside"
    assert min(reads) >= 600, "the second walk starts at a checkpoint, not at 0"


def test_checkpoints_stay_sparse_and_sorted():
    points = Checkpoints(spacing=100)
    for pos in (0, 50, 120, 130, 260, 900, 230):
        points.add(pos)
    assert list(points) == [0, 120, 260, 900]
    assert points.floor(119) == 0 and points.floor(120) == 120 and points.floor(10 ** 9) == 900


def test_resync_through_a_long_run_of_random_garbage_reads_little(monkeypatch):
    """Random bytes hold many headers whose sizes look plausible; only candidates followed by
    another plausible header (or small ones) are CRC-checked, so the bytes read stay close to
    the garbage's own size instead of a CRC over megabytes per candidate."""
    import random
    garbage = random.Random(7).randbytes(8 << 20)
    data = A + garbage + B + C
    read = [0]

    class Counting(BytesReader):
        def read(self, pos, n):
            out = super().read(pos, n)
            read[0] += len(out)
            return out

    report = scrub.scrub(Counting(data), len(data))
    assert [(b.position, b.size) for b in report.bad] == [(15, len(garbage))]
    assert report.messages == 3
    assert read[0] < 4 * len(data), read[0]


def test_resync_finds_a_big_message_followed_by_good_ones():
    big = m(b"B" * (200 << 10))
    data = A + set_size(B, 0, 3) + big + C
    assert run(data).bad == [Bad(15, 15, "size")]


def test_the_worked_examples_of_the_module():
    assert doctest.testmod(scrub).failed == 0


@pytest.mark.parametrize("damage,offset,error,words,resume", [
    (lambda d: flip(d, 15 + 12), 115, CorruptMessage, "offset 115 holds a corrupt message (crc)",
     130),
    (lambda d: d, 121, InvalidOffset, "inside the message at 115; the next one starts at 130",
     None),
    (lambda d: flip(d, 15 + 12), 121, InvalidOffset, "inside corrupt bytes at 115..130", None),
])
def test_a_read_error_is_what_locate_found(damage, offset, error, words, resume):
    """A segment of A, B, C starting at partition offset 100: the error a fetch answers."""
    data = damage(ABC)
    where = scrub.locate(BytesReader(data), len(data), offset - 100)
    found = scrub.read_error(where, offset, 100, 100 + len(data))
    assert type(found) is error and words in str(found)
    assert found.resume_offset == resume


def test_a_corrupt_message_that_ends_a_sealed_segment_resumes_at_the_next_segment():
    data = A + flip(B, 12)
    where = scrub.locate(BytesReader(data), len(data), 15)
    assert scrub.read_error(where, 115, 100, 130).resume_offset == 130
    assert scrub.read_error(where, 115, 100, 130, next_start=200).resume_offset == 200
