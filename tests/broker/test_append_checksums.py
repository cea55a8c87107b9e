"""Append checksums (broker/append_checksums.py): what a follower may trust without walking."""
import doctest
import zlib

from broker import append_checksums
from broker.append_checksums import AppendChecksums, verified
from broker.message import encode_set


def test_doctests():
    assert doctest.testmod(append_checksums).failed == 0


def test_a_chunk_verified_by_the_leaders_entries_counts_what_the_leader_validated():
    sets = [encode_set([(None, b"m%d-%d" % (i, k)) for k in range(i + 1)]) for i in range(4)]
    sums, pos = AppendChecksums(), 0
    for i, one in enumerate(sets):
        sums.record(pos, pos + len(one), i + 1, zlib.crc32(one))
        pos += len(one)
    data = b"".join(sets)
    nbytes, count, entries = verified(data, sums.tiling(0, len(data)))
    assert (nbytes, count) == (len(data), 1 + 2 + 3 + 4)
    assert [(a, b, n) for a, b, n, _ in entries][-1] == (len(data) - len(sets[3]), len(data), 4)


def test_a_changed_byte_stops_the_trust_at_its_entry_and_the_rest_is_walked():
    one, two = encode_set([(None, b"a"), (None, b"b")]), encode_set([(None, b"c")])
    tiling = [(len(one), 2, zlib.crc32(one)), (len(two), 1, zlib.crc32(two))]
    damaged = one + two[:-1] + bytes([two[-1] ^ 1])
    assert verified(damaged, tiling)[:2] == (len(one), 2)


def test_an_append_that_does_not_continue_the_run_restarts_it():
    sums = AppendChecksums()
    sums.record(0, 10, 1, 1)
    sums.record(50, 60, 1, 2)          # a log reset past its end, say
    assert sums.tiling(0, 60) == [] and sums.tiling(50, 60) == [(10, 1, 2)]


def test_the_run_is_bounded():
    sums = AppendChecksums()
    for i in range(3 * append_checksums.KEEP):
        sums.record(i, i + 1, 1, i)
    assert sums.tiling(0, 10) == []
    assert len(sums.tiling(3 * append_checksums.KEEP - 5, 10 ** 9)) == 5
