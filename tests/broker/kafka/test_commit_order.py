"""The order OffsetCommits of one group and partition are written in (broker/kafka/commit_order.py)."""
import doctest

from broker.kafka import commit_order
from broker.kafka.commit_order import CommitOrder


def test_the_worked_examples():
    result = doctest.testmod(commit_order)
    assert result.attempted and result.failed == 0


def test_a_commit_whose_resolution_failed_leaves_from_the_middle_and_partitions_are_apart():
    order = CommitOrder()
    a, b, c = object(), object(), object()
    for commit in (a, b, c):
        order.join(("g", "t", 0), commit)
    order.join(("g", "t", 1), c)
    assert order.first(("g", "t", 1), c), "another partition does not wait on t/0's commits"
    order.leave(("g", "t", 0), b)                # b's offset was no boundary: nothing to write
    assert not order.first(("g", "t", 0), c)
    order.leave(("g", "t", 0), a)
    assert order.first(("g", "t", 0), c)
    assert not order.first(("h", "t", 0), c), "another group's queue is its own"
