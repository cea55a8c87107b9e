"""How a ``sluice`` command ends: its exit code and what stderr says.

A person's mistake, or a condition they can act on, is one line; anything else is a bug of
ours and shows its traceback, so it is never mistaken for a user error. Who is to blame is the
exception's to say (``SluiceError.user_error``); an OSError is the environment's (a file that
is not there, a full disk) and names its file. The decision is pure, ``ending(exc,
preparing)``; ``preparing`` is true while the CLI still builds the command's settings from its
arguments, before the command did anything (cluster up's ``ClusterConfig``)::

    exception                                preparing  code  stderr
    InvalidArgument("--zookeeper and ...")   yes        2     one line (a bad argument)
    InvalidArgument("invalid topic name")    no         1     one line (the command was refused)
    UnknownTopicOrPartition("unknown ...")   no         1     one line
    FileNotFoundError(2, "No such ...", "/x")no         1     one line naming /x
    ClusterNotRunning("no cluster running")  no         3     one line (``cluster status``)
    BrokenPipeError, stdout's reader gone    no         141   nothing (``sluice ... | head``)
    KeyboardInterrupt                        no         130   nothing
    ValueError("..."), KeyError, ...         no         1     traceback + a request to report it

A reader of stdout that goes away ends the command as it ends a Unix tool: quietly, with the
status a shell shows for a process that SIGPIPE ended (128 + 13 = 141), so ``set -o pipefail``
and ``$PIPESTATUS`` tell a cut-off output from a complete one. Not running is 3, the status a
service manager's ``status`` gives for a stopped service (LSB), so scripts can test it. The
argument parser's own refusals exit 2 before any of this (cluster/cli/parser.py).
"""
from __future__ import annotations

import errno
import os
import select
import signal
import sys
import traceback
from dataclasses import dataclass

from cluster.errors import ClusterNotRunning
from coordinator.errors import InvalidArgument, SluiceError

OK = 0
ERROR = 1
USAGE = 2
NOT_RUNNING = 3
INTERRUPTED = 130
PIPE_CLOSED = 128 + signal.SIGPIPE
REPORT = ("this is a bug in sluice, not something you did: please report it with the "
          "traceback above")


@dataclass(frozen=True)
class Ending:
    code: int
    line: str | None          # the one line for stderr (None: nothing)
    traceback: bool = False   # a bug: the traceback goes first


def ending(exc: BaseException, preparing: bool = False, stdout_gone: bool = False) -> Ending:
    """How a command that raised ``exc`` ends (see the module docstring). Pure."""
    if isinstance(exc, KeyboardInterrupt):
        return Ending(INTERRUPTED, None)
    if isinstance(exc, BrokenPipeError) and stdout_gone:
        return Ending(PIPE_CLOSED, None)
    if isinstance(exc, SluiceError) and exc.user_error:
        code = USAGE if preparing and isinstance(exc, InvalidArgument) else ERROR
        if isinstance(exc, ClusterNotRunning):
            code = NOT_RUNNING
        return Ending(code, str(exc))
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc)
        return Ending(ERROR, f"{exc.filename}: {what}" if exc.filename else what)
    return Ending(ERROR, REPORT, traceback=True)


def report(exc: BaseException, preparing: bool = False) -> int:
    """Say on stderr how the command ended and return its exit code."""
    end = ending(exc, preparing, stdout_gone=isinstance(exc, BrokenPipeError) and _stdout_gone())
    if end.code == PIPE_CLOSED:
        _silence_stdout()
    if end.traceback:
        traceback.print_exception(exc, file=sys.stderr)
    if end.line is not None:
        sys.stderr.write(f"sluice: error: {end.line}\n")
    return end.code


def check_stdout_kept() -> None:
    """BrokenPipeError when stdout's reader went away while the command wrote. A write that a
    closing reader cuts short is not always an error in Python: a big write (a whole rich
    table) can end short with no exception, the rest dropped, so a command that ran to its
    end asks the pipe before it says it succeeded."""
    if _stdout_gone():
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def _stdout_gone() -> bool:
    """The reader of stdout has gone (a pipe whose other end is closed), so the broken pipe
    was ours to write to, not some socket's."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit has nowhere to fail
    (it would print 'Exception ignored ... BrokenPipeError')."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
