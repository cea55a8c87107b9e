"""The supervisor's pure parts: the restart back-off and a slot's restart state; and how a
recorded process is recognised (pid and start time)."""
import os
import signal
import subprocess
import sys

import psutil
import pytest

from cluster.supervision.slots import Backoff, RestartState, create_time, process_alive
from tests.helpers import wait_for


def test_backoff_doubles_up_to_the_cap():
    backoff = Backoff()
    delays, previous = [], None
    for _ in range(7):
        previous = backoff.next_delay(previous, lived_s=0.1)
        delays.append(previous)
    assert delays == [0.5, 1, 2, 4, 8, 10, 10]


def test_backoff_starts_over_after_a_healthy_life():
    backoff = Backoff(initial_s=0.5, max_s=10, reset_after_s=30)
    assert backoff.next_delay(8, lived_s=29.9) == 10
    assert backoff.next_delay(8, lived_s=30) == 0.5
    assert backoff.next_delay(None, lived_s=0) == 0.5


def test_restart_state_follows_the_docstring_example():
    state = RestartState()
    assert state.started(pid=100, now=0.0) is False and state.restarts == 0
    assert state.died(now=0.1, backoff=Backoff(), exit_code=-9) == 0.5
    assert (state.restart_at, state.last_exit_code) == (0.6, -9)
    assert not state.due(0.5) and state.due(0.6)
    assert state.started(pid=101, now=0.6) is True
    assert (state.pid, state.restarts, state.restart_at) == (101, 1, None)
    assert state.died(now=0.7, backoff=Backoff()) == 1.0, "died again at once: the delay doubles"


def test_a_process_is_recognised_by_pid_and_start_time():
    me = os.getpid()
    assert process_alive(me) and process_alive(me, create_time(me))
    assert not process_alive(me, create_time(me) - 10), "a reused pid is another process"
    assert not process_alive(None) and create_time(None) is None
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(child.pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's /proc/stat btime")
def test_a_recorded_start_still_names_its_process_after_the_wall_clock_moves(monkeypatch):
    """psutil's create time is the start in ticks since boot plus /proc/stat's btime, a whole
    second the kernel derives from the wall clock: a clock adjustment that carries the boot
    instant over a second's boundary moves it by 1 s (seen in a drill: every recorded worker
    "not running" while all ran). Here psutil's btime is moved as such an adjustment does."""
    me = os.getpid()
    started = create_time(me)
    btime = psutil._pslinux.boot_time
    monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: btime() + 1.0)
    assert process_alive(me, started)
    assert not process_alive(me, started - 10), "a reused pid is still another process"


def test_a_stopped_process_counts_as_alive_only_when_asked_to():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.kill(child.pid, signal.SIGSTOP)
        wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_STOPPED, 10,
                 what="the child to stop")
        assert process_alive(child.pid)
        assert not process_alive(child.pid, stopped_is_alive=False)
    finally:
        child.kill()
        child.wait()

