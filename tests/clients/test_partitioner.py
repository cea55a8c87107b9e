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
