"""What the supervisor keeps per supervised process: its slot, its restart state and back-off.

A slot is a role and an id (``broker 2``, ``worker 0``) with what its process runs. The process
in it dies and is replaced; the slot stays, and so does its ``RestartState``: the current pid,
when it started, how many times it was restarted and when it may start again. An embedded
ZooKeeper node is restarted the same way, so it keeps a ``RestartState`` of its own. A process
is recognised by its pid *and* its start time (``create_time``: on Linux counted from boot, so
that no change of the wall clock makes a live process look gone), because a pid is reused
after a death.

Every child runs ``child_main``: its own process group (a Ctrl-C at the terminal reaches only
the supervisor, which then stops children in order) and a thread that ends it once its
supervisor is gone, even when that was a SIGKILL. This lives here because broker code must not
depend on cluster/.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import psutil

log = logging.getLogger(__name__)

PARENT_POLL_S = 0.5
ORPHAN_GRACE_S = 5.0
CREATE_TIME_SLACK_S = 0.05
_PROC_STAT = os.path.exists("/proc/self/stat")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if _PROC_STAT else 100


@dataclass(frozen=True)
class Backoff:
    """Delay before restarting a dead process.

    Starts at ``initial_s`` and doubles on each death up to ``max_s``; a process that lived
    ``reset_after_s`` or longer counts as healthy, so its next death starts over. A broker that
    crashes at once over and over waits 0.5, 1, 2, 4, 8, 10, 10, ... seconds.
    """

    initial_s: float = 0.5
    max_s: float = 10.0
    reset_after_s: float = 30.0

    def next_delay(self, previous_s: float | None, lived_s: float) -> float:
        """``previous_s`` is the delay used before the last start (None: first start)."""
        if previous_s is None or lived_s >= self.reset_after_s:
            return self.initial_s
        return min(previous_s * 2, self.max_s)


@dataclass
class RestartState:
    """One supervised process's life so far: a slot's, or an embedded ZooKeeper node's.

    ``started`` at each start, ``died`` at each death, which schedules the next start after
    the back-off: a first start, a death after 0.1 s and a start again read::

        state = RestartState()
        state.started(pid=100, now=0.0)            # restarts 0
        state.died(now=0.1, backoff=Backoff())     # 0.5: restart_at 0.6
        state.due(0.5), state.due(0.6)             # False, True
        state.started(pid=101, now=0.6)            # True (a restart): restarts 1
    """

    pid: int | None = None
    create_time: float | None = None
    started_at: float = 0.0
    delay_s: float | None = None
    restart_at: float | None = None
    restarts: int = 0
    last_exit_code: int | None = None

    def started(self, pid: int | None, now: float) -> bool:
        """A process started in this slot; True when it replaces a dead one."""
        restarted = self.restart_at is not None
        self.pid = pid
        self.create_time = create_time(pid)
        self.started_at = now
        self.restart_at = None
        self.restarts += restarted
        return restarted

    def died(self, now: float, backoff: Backoff, exit_code: int | None = None) -> float:
        """The process is gone; returns the delay before the next start."""
        self.last_exit_code = exit_code
        self.delay_s = backoff.next_delay(self.delay_s, now - self.started_at)
        self.restart_at = now + self.delay_s
        return self.delay_s

    def due(self, now: float) -> bool:
        return self.restart_at is not None and self.restart_at <= now


@dataclass(frozen=True)
class SlotSpec:
    """What one supervised process runs: ``target(*args)`` in a spawned child."""

    role: str
    id: str
    target: Callable[..., Any]
    args: tuple = ()

    @property
    def name(self) -> str:
        return f"{self.role} {self.id}"


@dataclass
class Slot:
    """A spec, its current process (None while it is dead or stopped) and its restart state."""

    spec: SlotSpec
    process: multiprocessing.process.BaseProcess | None = None
    restart: RestartState = field(default_factory=RestartState)


def create_time(pid: int | None) -> float | None:
    """When ``pid`` started, as the stamp that tells it from a later process with its pid
    (None when there is no such process). On Linux: seconds since boot, /proc/<pid>/stat's
    start in clock ticks, which no change of the wall clock moves. psutil's create time adds
    /proc/stat's btime to that, a whole second the kernel derives from the wall clock, so a
    clock adjustment (an NTP correction, a VM's clock stepped on resume) that carries the boot
    instant over a second's boundary moves every create time by 1 s, and each recorded
    process would read as gone. Elsewhere: psutil's create time."""
    if pid is None:
        return None
    if not _PROC_STAT:
        try:
            return psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            return None
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # fields after the command name (in parentheses, may hold spaces): state is field 3,
    # starttime field 22
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[19]) / _CLOCK_TICKS


def process_alive(pid: int | None, started: float | None = None, *,
                  stopped_is_alive: bool = True) -> bool:
    """The process exists, is not a zombie, and is the one recorded (its ``started`` create
    time, when given, so a reused pid does not count). ``stopped_is_alive=False`` also counts
    a SIGSTOPped process as not alive (a paused broker, for the drills' eyes)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if started is not None:
            stamp = create_time(pid)
            if stamp is None or abs(stamp - started) > CREATE_TIME_SLACK_S:
                return False
        status = proc.status()
    except psutil.NoSuchProcess:
        return False
    return status != psutil.STATUS_ZOMBIE and (stopped_is_alive
                                               or status != psutil.STATUS_STOPPED)


def child_main(parent_pid: int, role: str, slot_id: str, target: Callable[..., Any],
               args: tuple) -> None:
    """Runs in every supervised child: own process group, parent watch, then the real target."""
    os.setpgrp()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format=f"%(asctime)s {role}-{slot_id} %(name)s %(levelname)s: "
                                   "%(message)s")
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="sluice-parent-watch").start()
    target(*args)


def _watch_parent(parent_pid: int) -> None:
    """SIGTERM ourselves (a graceful stop) once the parent is gone; _exit if that is not enough."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    log.warning("supervisor (pid %s) is gone; stopping", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(ORPHAN_GRACE_S)
    os._exit(1)
