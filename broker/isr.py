"""The in-sync replicas and the high watermark: the leader's pure rules (Kafka 0.8, KIP-16).

A leader knows each follower's log end from its fetches: a follower fetches at its own log end,
so the fetch offset *is* its log end (``Follower.fetched``). From those ends and the ISR it
derives:

- the high watermark, the smallest log end over the ISR (``high_watermark``): every in-sync
  replica holds every message below it, so it is what consumers may see and where an acks=all
  write is acknowledged;
- which followers leave the ISR (``to_shrink``): those not caught up for longer than
  ``replica_lag_time_max_ms``. "Caught up" is Kafka's rule: a fetch at an offset at or past the
  leader's log end as of that fetch, or at or past the leader's log end as of the follower's
  previous fetch (it then had everything that existed when it last asked: it is keeping up,
  even while producers keep the log growing). A follower whose fetch comes *below* the log end
  it had already reached lost data (its disk, or a restart cut its log): it has not been caught
  up at any time that counts, and leaves at once, not a lag time later;
- which followers join it again (``to_expand``): those whose log end reached the high
  watermark (and the start of the leader's current epoch, so a rejoining replica holds
  nothing of an older leader past it).

Nothing here touches ZooKeeper or sockets; the leader (broker/replica_manager.py) writes the
changes with a conditional write and uses a new ISR only once that write succeeded.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Follower:
    """What a leader knows of one follower: its log end and when it was last caught up.

    >>> f = Follower(log_end=0, caught_up_at=0.0)
    >>> f.fetched(offset=100, leader_end=100, now=1.0)   # at the leader's end: caught up
    False
    >>> f.caught_up_at, f.log_end
    (1.0, 100)
    >>> f.fetched(offset=100, leader_end=300, now=2.0)   # the leader grew meanwhile
    False
    >>> f.caught_up_at                                   # it had all that existed at 1.0
    1.0
    >>> f.fetched(offset=300, leader_end=500, now=3.0)   # 300 = the leader's end at 2.0
    False
    >>> f.caught_up_at
    2.0
    >>> f.fetched(offset=310, leader_end=900, now=4.0)   # short of 500 (the end at 3.0)
    False
    >>> f.caught_up_at
    2.0
    >>> f.fetched(offset=0, leader_end=900, now=5.0)     # below its end of 310: data lost
    True
    >>> f.caught_up_at
    -inf
    """

    log_end: int
    caught_up_at: float
    last_fetch_leader_end: int = 0
    last_fetch_at: float | None = None

    def fetched(self, offset: int, leader_end: int, now: float) -> bool:
        """A fetch at ``offset`` (the follower's log end) while the leader's end is
        ``leader_end``, at monotonic time ``now``; True when it lost data (the offset is below
        the end it had reached), so that the leader shrinks the ISR at once."""
        lost = offset < self.log_end
        if lost:
            self.caught_up_at = float("-inf")
        elif offset >= leader_end:
            self.caught_up_at = max(self.caught_up_at, now)
        elif self.last_fetch_at is not None and offset >= self.last_fetch_leader_end:
            self.caught_up_at = max(self.caught_up_at, self.last_fetch_at)
        self.log_end = offset
        self.last_fetch_leader_end = leader_end
        self.last_fetch_at = now
        return lost


def high_watermark(leader_end: int, follower_ends: dict[int, int], isr, leader: int) -> int:
    """The smallest log end over the ISR (the leader's own end for the leader).

    >>> high_watermark(500, {1: 300, 2: 450}, isr=(0, 1, 2), leader=0)
    300
    >>> high_watermark(500, {1: 300, 2: 450}, isr=(0, 2), leader=0)   # 1 left the ISR
    450
    >>> high_watermark(500, {}, isr=(0,), leader=0)                    # alone: its own end
    500
    """
    return min([leader_end] + [follower_ends[b] for b in isr if b != leader])


def to_shrink(isr, leader: int, followers: dict[int, Follower], now: float,
              lag_s: float) -> list[int]:
    """The ISR members (not the leader) not caught up for longer than ``lag_s`` seconds.

    >>> fs = {1: Follower(300, caught_up_at=5.0), 2: Follower(100, caught_up_at=1.0)}
    >>> to_shrink((0, 1, 2), 0, fs, now=12.0, lag_s=10.0)
    [2]
    >>> to_shrink((0, 1), 0, fs, now=12.0, lag_s=10.0)   # 2 is out already
    []
    """
    return [b for b in isr if b != leader and now - followers[b].caught_up_at > lag_s]


def to_expand(isr, replicas, leader: int, followers: dict[int, Follower], hw: int,
              epoch_start: int = 0) -> list[int]:
    """The replicas outside the ISR whose log end reached the high watermark and the start of
    the leader's epoch.

    >>> fs = {1: Follower(300, 0.0), 2: Follower(450, 0.0)}
    >>> to_expand((0,), (0, 1, 2), 0, fs, hw=450)
    [2]
    >>> to_expand((0,), (0, 1, 2), 0, fs, hw=450, epoch_start=500)   # 2 is before the epoch
    []
    """
    return [b for b in replicas if b != leader and b not in isr and b in followers
            and followers[b].log_end >= max(hw, epoch_start)]


def outcome_applies(sent_epoch: int, sent_version: int, epoch: int, version: int,
                    leading: bool) -> bool:
    """Whether the result of an ISR write decided at (``sent_epoch``, ``sent_version``) may be
    applied to a replica now at (``epoch``, ``version``): only if it still leads in the same
    epoch on the same state version. Anything else means the loop took a newer state while
    the write was in flight, and that state wins (the write, if it landed, made the node move,
    so its watch brings the truth again).

    >>> outcome_applies(3, 10, epoch=3, version=10, leading=True)
    True
    >>> outcome_applies(3, 10, epoch=3, version=11, leading=True)   # another ISR was read
    False
    >>> outcome_applies(3, 10, epoch=4, version=10, leading=False)  # a new leader was elected
    False
    """
    return leading and sent_epoch == epoch and sent_version == version
