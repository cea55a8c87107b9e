"""The broker's side of backlog protection: alerts, holds and refusals for protected groups.

The protections are ZooKeeper's (coordinator/backlog_protection.py, watched); the decisions are
pure (broker/backlog.py: at risk or not; broker/retention.py: what a hold keeps). This module
applies them to the partitions this broker hosts, every ``backlog_check_ms`` on the request
loop's thread (``check``):

- committed offsets: one asynchronous ZooKeeper read per protected (group, partition) per
  check, its answer taken at a later check, so the loop never waits on ZooKeeper; an offset is
  at most about one interval old. A group that never committed on a partition is not protected
  there (nothing says where it would start); until the first answer came, a hold keeps
  everything (it cannot know what is safe to delete);
- at risk (the partition's leader only, so one alert per partition in the cluster): entering
  the state logs one ``BACKLOG AT RISK`` warning and counts it (``backlog_warnings``), leaving
  it logs one line; METADATA shows each protection's state (``backlog`` in the partition's row),
  which the dashboards and ``/metrics`` show;
- holds (every replica, so a follower does not delete what its leader keeps): ``holds`` gives
  retention the committed offsets of the hold and refuse protections with their caps;
  ``retained`` logs and counts (``backlog_forced_segments``) the segments a cap let go;
- refusals (the leader): ``refusal`` is the BACKLOG_QUOTA_EXCEEDED for a produce to a
  partition with a refuse protection at risk, None otherwise (a set lookup per request).
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError

from broker import backlog
from broker.log import Log
from coordinator import paths
from coordinator.backlog_protection import Protection, ProtectionWatch
from coordinator.errors import BacklogQuotaExceeded, SluiceError

logger = logging.getLogger(__name__)

_UNREAD = -1     # a committed offset not answered yet: a hold keeps from the log start


@dataclass
class _State:
    """One protection on one partition, as the last check saw it."""

    at_risk: bool = False
    seconds_left: float | None = None
    warnings: int = 0
    forced_segments: int = 0


class BacklogGuard:
    """Backlog protections applied to this broker's logs (the module docstring says how)."""

    def __init__(self, zk: KazooClient, is_leader: Callable[[str, int], bool], errors,
                 stats: Counter | None = None, watch: ProtectionWatch | None = None):
        self.zk = zk
        self.is_leader = is_leader
        self.errors = errors
        self.watch = watch or ProtectionWatch(zk)
        self.stats = Counter() if stats is None else stats
        self._committed: dict[tuple[str, str, int], int | None] = {}
        self._reads: dict[tuple[str, str, int], object] = {}
        self._states: dict[tuple[str, str, int], _State] = {}
        self._refused: dict[tuple[str, int], str] = {}

    def start(self) -> None:
        self.watch.start()

    # --- the loop's calls ------------------------------------------------------------------

    def check(self, logs: dict[tuple[str, int], Log], now: float) -> None:
        """Take the offsets read since the last check, ask for the next ones, and judge each
        protected partition this broker hosts. ``now``: wall-clock seconds (mtimes are)."""
        self._take_reads()
        wanted, refused = set(), {}
        for topic in self.watch.topics():
            protections = self.watch.of(topic)
            for (log_topic, partition), log in logs.items():
                if log_topic != topic:
                    continue
                leader = self.is_leader(topic, partition)
                listing = log.segment_listing() if leader else None
                for group, protection in sorted(protections.items()):
                    key = (group, topic, partition)
                    wanted.add(key)
                    if key not in self._reads:
                        self._reads[key] = self.zk.get_async(paths.offset(group, topic,
                                                                          partition))
                    if listing is not None and self._judge(key, protection, log, listing, now):
                        if protection.policy == "refuse":
                            refused[(topic, partition)] = group
        for key in set(self._states) - wanted:
            del self._states[key]
        for key in set(self._committed) - wanted:
            del self._committed[key]
        self._refused = refused

    def holds(self, topic: str, partition: int) -> tuple[list[str], list[tuple[int, int]]]:
        """The groups holding this partition's segments and their ``(offset, cap)`` holds."""
        groups, holds = [], []
        for group, protection in sorted(self.watch.of(topic).items()):
            if not protection.holds:
                continue
            committed = self._committed.get((group, topic, partition), _UNREAD)
            if committed is None:
                continue
            groups.append(group)
            holds.append((max(committed, 0), protection.max_hold_bytes))
        return groups, holds

    def retained(self, topic: str, partition: int, log: Log, groups: list[str]) -> None:
        """After a retention pass with ``holds``' holds: say what a cap let go."""
        decision = log.last_retention
        for index, group in enumerate(groups):
            forced = decision.forced(index)
            if not forced:
                continue
            self.stats["backlog_forced_segments"] += forced
            state = self._states.setdefault((group, topic, partition), _State())
            state.forced_segments += forced
            cap = self.watch.of(topic).get(group)
            logger.warning("%s/%d: retention deleted %d segment(s) of group %s's unconsumed "
                           "messages anyway: holding them would pass its max_hold_bytes=%s; "
                           "log starts at %d", topic, partition, forced, group,
                           cap.max_hold_bytes if cap else "?", log.start_offset)

    def refusal(self, topic: str, partition: int) -> BacklogQuotaExceeded | None:
        group = self._refused.get((topic, partition))
        if group is None:
            return None
        state = self._states.get((group, topic, partition))
        left = "" if state is None or state.seconds_left is None else \
            f" (expires in {state.seconds_left:.0f} s)"
        return BacklogQuotaExceeded(
            f"{topic}/{partition}: produce refused: group {group}'s unconsumed messages are "
            f"about to expire by retention{left} and its protection is 'refuse'; produce "
            f"resumes once the group commits past them")

    def rows(self, topic: str, partition: int) -> list[dict]:
        """The METADATA ``backlog`` entries of one partition."""
        found = []
        for group, protection in sorted(self.watch.of(topic).items()):
            key = (group, topic, partition)
            state = self._states.get(key, _State())
            committed = self._committed.get(key, _UNREAD)
            found.append({"group": group, "policy": protection.policy,
                          "min_seconds": protection.min_seconds,
                          "max_hold_bytes": protection.max_hold_bytes,
                          "committed": None if committed == _UNREAD else committed,
                          "seconds_left": state.seconds_left, "at_risk": state.at_risk,
                          "refusing": self._refused.get((topic, partition)) == group,
                          "warnings": state.warnings,
                          "forced_segments": state.forced_segments})
        return found

    # --- inside ----------------------------------------------------------------------------

    def _take_reads(self) -> None:
        for key, read in list(self._reads.items()):
            if not read.ready():
                continue
            del self._reads[key]
            try:
                data, _ = read.get_nowait()
            except NoNodeError:
                self._committed[key] = None
                continue
            except KazooException as exc:
                self.errors.task_failed("backlog_offsets", exc)
                continue
            try:
                self._committed[key] = int(data)
            except ValueError:
                self.errors.task_failed("backlog_offsets", SluiceError(
                    f"committed offset of group {key[0]} on {key[1]}/{key[2]} is not a number: "
                    f"{data[:40]!r}"))

    def _judge(self, key: tuple[str, str, int], protection: Protection, log: Log,
               listing: list, now: float) -> bool:
        """Update one protection's state on a partition this broker leads; whether at risk."""
        committed = self._committed.get(key)
        state = self._states.setdefault(key, _State())
        if committed is None:
            left, risk = None, False
        else:
            left = backlog.seconds_left(listing, committed, now, log.config.retention_ms,
                                        log.config.retention_bytes)
            risk = backlog.at_risk(left, protection.min_seconds)
        state.seconds_left = None if left is None else round(left, 1)
        group, topic, partition = key
        if risk and not state.at_risk:
            state.warnings += 1
            self.stats["backlog_warnings"] += 1
            logger.warning("BACKLOG AT RISK: group %s on %s/%d: its oldest unconsumed message "
                           "(committed offset %d) expires by retention in %.0f s (min_seconds=%d, "
                           "policy %s)", group, topic, partition, committed, left,
                           protection.min_seconds, protection.policy)
        elif state.at_risk and not risk:
            logger.info("backlog of group %s on %s/%d no longer at risk (committed offset %s)",
                        group, topic, partition, committed)
        state.at_risk = risk
        return risk
