"""Leader epochs: which leader epoch wrote which offsets of a partition, and the follower's cut.

The message format has no epoch field, so where issue 12 says "each batch records the epoch
it was written in", the record is per log, as Kafka's ``leader-epoch-checkpoint``: a list of
``(epoch, start_offset)`` entries, strictly increasing in both, saying that the messages from
``start_offset`` up to the next entry's start were written while ``epoch`` led. A leader adds
an entry when it starts an epoch (at its log end); a follower copies the leader's entries
before it appends the bytes they cover (a replica fetch's answer carries them), so the same
offsets carry the same epochs on every replica.

The file, beside the segments, is text, rewritten whole (a temp file, fsynced, renamed over
the old one, the folder fsynced), so a crash leaves the old list or the new one::

    0                 format version
    2                 number of entries
    0 0               epoch 0 started at offset 0
    3 1090            epoch 3 started at offset 1090

OFFSET_FOR_EPOCH (KIP-101, with KIP-279's fix): a follower returning to a partition asks the
leader where the follower's latest epoch ends on the leader (``end_offset_for``), cuts its log
there (``truncation_offset``), and asks again with its new latest epoch until a round cuts
nothing. Truncating by epoch instead of by the high watermark keeps every message the leader
has and drops exactly what only the follower wrote (the worked examples are in
``truncation_offset``).
"""
from __future__ import annotations

import bisect
import logging
from pathlib import Path
from typing import Sequence

from broker.segment import describe, read_replaced, replace_file
from coordinator.errors import InvalidArgument, StorageError

logger = logging.getLogger(__name__)

FILE_NAME = "leader-epoch-checkpoint"
VERSION = 0
UNKNOWN_EPOCH = -1   # as protocol.UNKNOWN_EPOCH: no epoch known


class StaleEpoch(InvalidArgument):
    """An epoch older than the log's latest was assigned: the caller's view is stale."""


class LeaderEpochs:
    """The leader-epoch checkpoint of one log folder: entries in memory, the file on disk.

    ``exists`` says whether the folder held the file when opened (a log without it was
    written before replication; ``broker.log.Log`` decides what that means). The Log calls
    every method from the request loop, under its own lock where the segments are involved.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self._entries: list[tuple[int, int]] = []
        text = read_replaced(self.path, "ascii")
        self.exists = text is not None
        if text is None:
            return
        self._entries = _parse(text, self.path)

    def __repr__(self) -> str:
        return f"LeaderEpochs({str(self.directory)!r}, {self._entries})"

    @property
    def entries(self) -> list[tuple[int, int]]:
        """``(epoch, start_offset)`` pairs, oldest first (a copy)."""
        return list(self._entries)

    @property
    def latest_epoch(self) -> int:
        return self._entries[-1][0] if self._entries else UNKNOWN_EPOCH

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` writes from ``start_offset`` on; return whether it changed.

        A leader calls it when it starts an epoch (at its log end), a follower for each of the
        leader's entries it copies. Entries that start at or after ``start_offset`` belong to
        older epochs (what a follower wrote there was not the leader's) and are dropped first,
        as Kafka does. The latest epoch again with the same or a later start is a no-op (that
        epoch began where it began); with an earlier start the entry moves back. An epoch older
        than the latest is refused (StaleEpoch): epochs only grow.

        With entries [(0, 0), (2, 500)]: ``assign(3, 400)`` gives [(0, 0), (3, 400)] (the
        follower's epoch 2 from 500 was not the leader's); ``assign(2, 700)`` changes
        nothing; ``assign(2, 300)`` gives [(0, 0), (2, 300)]; ``assign(1, 900)`` raises.
        """
        if epoch < 0 or start_offset < 0:
            raise InvalidArgument(f"a leader epoch entry needs epoch >= 0 and offset >= 0, "
                                  f"not ({epoch}, {start_offset})")
        latest = self.latest_epoch
        if epoch < latest:
            raise StaleEpoch(f"{self.directory}: epoch {epoch} at offset {start_offset} is "
                             f"older than the log's latest epoch {latest}")
        if epoch == latest and start_offset >= self._entries[-1][1]:
            return False
        kept = [entry for entry in self._entries if entry[1] < start_offset and entry[0] < epoch]
        self._entries = kept + [(epoch, start_offset)]
        self._changed()
        return True

    def end_offset_for(self, epoch: int, log_end: int) -> tuple[int, int]:
        """The leader's answer to OFFSET_FOR_EPOCH: ``(epoch_found, end_offset)``.

        ``epoch_found`` is the largest epoch this log knows that is not after ``epoch``, and
        ``end_offset`` where its messages end: the next entry's start, or ``log_end`` for the
        latest epoch (KIP-279: answering the asked epoch itself when the leader never had it
        would let a follower keep offsets of an epoch the leader skipped). When the log knows
        no epoch at or before ``epoch``, the answer is ``(UNKNOWN_EPOCH, where the log's
        known history begins)``: the first entry's start, or ``log_end`` when there is no
        entry (a log without entries holds no messages). The follower then keeps nothing of
        its own past that point. The offset is never negative, so it fits the wire's u64.

        With entries [(0, 0), (2, 500), (5, 900)] and log end 1200::

            asked  answer         why
            5      (5, 1200)      the latest epoch ends at the log end
            4      (2, 900)       no epoch 4 here: epoch 2 is the largest before it
            2      (2, 900)
            0      (0, 500)
            -1     (-1, 0)        nothing known at or before: history begins at 0
        """
        if not self._entries:
            return UNKNOWN_EPOCH, log_end
        index = bisect.bisect_right(self._entries, (epoch, float("inf"))) - 1
        if index < 0:
            return UNKNOWN_EPOCH, self._entries[0][1]
        found = self._entries[index][0]
        end = self._entries[index + 1][1] if index + 1 < len(self._entries) else log_end
        return found, end

    def truncate_from(self, offset: int) -> bool:
        """Drop the entries that start at or after ``offset`` (the log was cut there)."""
        kept = [entry for entry in self._entries if entry[1] < offset]
        if len(kept) == len(self._entries):
            return False
        self._entries = kept
        self._changed()
        return True

    def clear(self) -> None:
        """No entries at all (a log reset to start empty); the file stays, saying so."""
        self._entries = []
        self._changed()

    def _changed(self) -> None:
        """Write the file whole: a temp file, fsynced, renamed over the old one."""
        lines = [str(VERSION), str(len(self._entries))]
        lines += [f"{epoch} {start}" for epoch, start in self._entries]
        try:
            replace_file(self.path, ("\n".join(lines) + "\n").encode("ascii"))
        except OSError as err:
            raise StorageError(f"{describe(err)} (cannot write {self.path})") from err
        self.exists = True


def _parse(text: str, path: Path) -> list[tuple[int, int]]:
    """The entries of a checkpoint file; StorageError when it is not one (never guessed at:
    wrong epochs would make a follower keep messages the leader does not have)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    try:
        version, count = int(lines[0]), int(lines[1])
        entries = [(int(epoch), int(start)) for epoch, start in
                   (line.split(" ") for line in lines[2:])]
    except (IndexError, ValueError) as err:
        raise StorageError(f"{path} is not a leader-epoch checkpoint ({err}); move it aside "
                           f"only if the log has one replica") from None
    if version != VERSION or count != len(entries) or not _increasing(entries):
        raise StorageError(f"{path} is not a leader-epoch checkpoint of version {VERSION} with "
                           f"{count} increasing entries")
    return entries


def _increasing(entries: Sequence[tuple[int, int]]) -> bool:
    return all(a[0] < b[0] and a[1] < b[1] for a, b in zip(entries, entries[1:])) and all(
        epoch >= 0 and start >= 0 for epoch, start in entries)


def truncation_offset(follower_entries: Sequence[tuple[int, int]], follower_end: int,
                      leader_epoch_found: int, leader_end: int) -> int:
    """Where a follower cuts its log after OFFSET_FOR_EPOCH (KIP-101 with KIP-279's rule).

    The follower asked with its latest epoch F and the leader answered ``(leader_epoch_found,
    leader_end)`` from ``LeaderEpochs.end_offset_for``. The follower keeps its messages up to
    where the found epoch ends on both sides:

    - found == F: the leader has F, and F reaches ``leader_end`` there: cut at
      ``min(leader_end, follower_end)``;
    - found < F: the follower's epochs after ``found`` never were the leader's: cut at
      ``min(leader_end, the follower's end of found)``, that is the start of the follower's
      first entry with an epoch after ``found``;
    - found is UNKNOWN_EPOCH (-1): the leader knows no epoch at or before F; ``leader_end``
      is where its known history begins, and the follower keeps nothing of its own from
      there, nor from its own first entry on (the same rule with found = -1).

    A follower without entries holds no messages (``Log`` stamps a pre-replication log with
    epoch 0, and ``reset_to`` empties the log as it clears them): it has nothing to cut, and
    the answer is ``follower_end``. ``found`` after F is a leader bug: InvalidArgument.

    One answer is not always the whole story: when the follower never had ``found`` itself,
    an older epoch of its own may differ from the leader's too. So the follower asks again
    with its new latest epoch after each cut, and stops at the first round that cuts nothing
    (that round had found == F with the follower's end within F on the leader: consistent).
    Each cutting round drops an entry, so this ends.

    Worked examples in byte offsets, messages of 20 bytes:

    1. KIP-101's lost message. Leader A and follower B both hold m1, m2 in epoch 0; A's
       high watermark is 40, B's is 20 (the fetch that would raise it never came). B
       restarts. Cut to its high watermark, B would drop m2, and if A then died B would lead
       without the acknowledged m2. By epoch: B asks for epoch 0, A answers (0, 40)::

        >>> truncation_offset([(0, 0)], 40, 0, 40)
        40

    2. KIP-101's divergence. A (leader, epoch 0) holds m1, m2; B holds m1. Both crash; B comes
       back first and leads epoch 1, writing m3 at 20. A returns as follower, asks for epoch
       0; B answers (0, 20), where epoch 1 begins. A drops m2 and fetches m3::

        >>> truncation_offset([(0, 0)], 40, 0, 20)
        20

    3. KIP-279's case: the follower's latest epoch the leader never had. Follower entries
       (0, 0), (2, 100), end 150; the leader has (0, 0), (3, 120) and answers (0, 120) for
       epoch 2. The follower's epoch 0 ends at 100, so it cuts there; asking again (epoch 0)
       gives (0, 120) and cuts nothing::

        >>> truncation_offset([(0, 0), (2, 100)], 150, 0, 120)
        100
        >>> truncation_offset([(0, 0)], 100, 0, 120)
        100

    4. The leader knows nothing that old (its history begins at 800, epoch 4)::

        >>> truncation_offset([(1, 0)], 300, UNKNOWN_EPOCH, 800)
        0
        >>> truncation_offset([], 800, UNKNOWN_EPOCH, 0)
        800
    """
    if not follower_entries:
        return follower_end
    asked = follower_entries[-1][0]
    if leader_epoch_found > asked:
        raise InvalidArgument(f"the leader answered epoch {leader_epoch_found} for epoch "
                              f"{asked}: an answer is never after the epoch asked")
    end_of_found = next((start for epoch, start in follower_entries
                         if epoch > leader_epoch_found), follower_end)
    return min(leader_end, end_of_found, follower_end)
