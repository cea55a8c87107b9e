"""Partition choice: a stable key hash and a sticky random choice per batch."""
import random
import subprocess
import sys

from clients.partitioner import RandomPartitioner, hash_partition


def test_key_hash_is_stable_across_processes():
    here = [hash_partition(f"user-{i}".encode(), 12) for i in range(50)]
    code = ("from clients.partitioner import hash_partition;"
            "print([hash_partition(f'user-{i}'.encode(), 12) for i in range(50)])")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert str(here) == there
    assert all(0 <= p < 12 for p in here)
    assert len(set(here)) > 6


def test_keyed_messages_follow_the_hash():
    choose = RandomPartitioner(random.Random(1))
    assert choose("t", b"user-7", 12) == hash_partition(b"user-7", 12)


def test_random_partition_sticks_until_the_batch_is_sent():
    choose = RandomPartitioner(random.Random(2))
    first = choose("t", None, 100)
    assert all(choose("t", None, 100) == first for _ in range(20))
    seen = {first}
    for _ in range(30):
        choose.batch_sent("t", choose("t", None, 100))
        seen.add(choose("t", None, 100))
    assert len(seen) > 10


class _CountedPartitions(tuple):
    """The producer's tuple of available partitions, counting membership tests."""

    tests = 0

    def __contains__(self, partition):
        type(self).tests += 1
        return super().__contains__(partition)


def test_a_sticky_choice_is_not_looked_up_again_in_the_same_available_partitions():
    """A membership test of the available partitions per message costs as much as their count
    (64 partitions: three times the rest of the call): the sticky choice is checked once per
    tuple the producer gives (a new one comes with every change of the cluster view)."""
    available = _CountedPartitions(range(64))
    choose = RandomPartitioner(random.Random(3))
    first = choose("t", None, 64, available)
    assert all(choose("t", None, 64, available) == first for _ in range(1000))
    assert _CountedPartitions.tests <= 1


def test_a_sticky_choice_moves_when_its_partition_is_no_longer_available():
    choose = RandomPartitioner(random.Random(4))
    first = choose("t", None, 8, tuple(range(8)))
    rest = tuple(p for p in range(8) if p != first)
    assert all(choose("t", None, 8, rest) in rest for _ in range(50))
    again = choose("t", None, 8, rest)
    assert all(choose("t", None, 8, tuple(range(8))) == again for _ in range(10))
    assert choose("t", None, 2, tuple(range(2))) in (0, 1)     # the topic shrank from view
    choose.batch_sent("t", choose("t", None, 8))
    assert choose("t", None, 8) in range(8)


def test_one_message_batches_spread_over_every_available_partition():
    choose = RandomPartitioner(random.Random(5))
    available = (1, 3, 4, 6)
    picks = []
    for _ in range(2000):
        picks.append(choose("t", None, 8, available))
        choose.batch_sent("t", picks[-1])
    assert set(picks) == set(available)
    assert min(picks.count(p) for p in available) > 400        # 500 each on average
    unrestricted = []
    for _ in range(800):
        unrestricted.append(choose("u", None, 8))
        choose.batch_sent("u", unrestricted[-1])
    assert set(unrestricted) == set(range(8))
