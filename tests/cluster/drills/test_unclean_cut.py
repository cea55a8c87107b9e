"""Where a returning replica's log diverges from an uncleanly elected leader's (the
unclean-election drill's measure of what each replica must cut)."""
from __future__ import annotations

import doctest

from cluster.drills.replication_faults import divergence


def test_the_worked_examples():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(divergence, "divergence", globs={"divergence": divergence}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0 and result.attempted == 3


def test_a_zombie_tail_moves_the_cut_below_the_new_leaders_end():
    """The case the drill met: the stale leader appended 2900..4350 in epoch 0 after its
    resume; the replica had led epoch 1 from 2900. The cut is 2900, not the leader's end."""
    assert divergence([(0, 0), (1, 2900)], 8120, [(0, 0), (2, 4350)], 4350) == 2900


def test_same_history_cuts_at_the_shorter_end():
    assert divergence([(0, 0), (3, 100)], 500, [(0, 0), (3, 100), (4, 400)], 450) == 400
    assert divergence([(0, 0), (3, 100)], 300, [(0, 0), (3, 100), (4, 400)], 450) == 300


def test_different_first_epoch_cuts_everything():
    assert divergence([(1, 0)], 300, [(2, 0)], 800) == 0

