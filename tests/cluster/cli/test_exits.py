"""cli/exits.py's decision, on its docstring's worked examples (pure: no process, no cluster)."""
import pytest

from cluster.cli.exits import (ERROR, INTERRUPTED, NOT_RUNNING, PIPE_CLOSED, REPORT, USAGE,
                               Ending, ending)
from cluster.errors import ClusterError, ClusterNotRunning
from coordinator.errors import InvalidArgument, UnknownTopicOrPartition


@pytest.mark.parametrize("exc, preparing, stdout_gone, expected", [
    (InvalidArgument("--zookeeper and --zk-ensemble"), True, False,
     Ending(USAGE, "--zookeeper and --zk-ensemble")),
    (InvalidArgument("invalid topic name"), False, False, Ending(ERROR, "invalid topic name")),
    (UnknownTopicOrPartition("unknown topic t"), False, False, Ending(ERROR, "unknown topic t")),
    (FileNotFoundError(2, "No such file or directory", "/x"), False, False,
     Ending(ERROR, "/x: No such file or directory")),
    (ClusterNotRunning("no cluster running in /d"), False, False,
     Ending(NOT_RUNNING, "no cluster running in /d")),
    (ClusterError("a cluster is already running"), False, False,
     Ending(ERROR, "a cluster is already running")),
    (BrokenPipeError(32, "Broken pipe"), False, True, Ending(PIPE_CLOSED, None)),
    (BrokenPipeError(32, "Broken pipe"), False, False, Ending(ERROR, "Broken pipe")),
    (KeyboardInterrupt(), False, False, Ending(INTERRUPTED, None)),
    (ValueError("x"), False, False, Ending(ERROR, REPORT, traceback=True)),
    (KeyError("x"), True, False, Ending(ERROR, REPORT, traceback=True)),
])
def test_how_a_command_ends(exc, preparing, stdout_gone, expected):
    assert ending(exc, preparing, stdout_gone) == expected


def test_an_error_that_says_it_is_ours_is_a_bug_too():
    class Internal(InvalidArgument):
        user_error = False
    assert ending(Internal("broken invariant")).traceback
