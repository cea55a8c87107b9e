"""The high-watermark checkpoint: each replicated partition's high watermark, kept on disk.

A replica's high watermark lives in memory (broker/replica_manager.py); without a copy on disk
a restarted broker that leads at once (every replica restarted, say) would start it at 0, show
consumers nothing and answer LATEST with 0 until every follower fetched. So, as Kafka's
``replication-offset-checkpoint``, one file in the broker's data dir holds, per replicated
partition, the high watermark and the latest leader epoch of its log when it was taken::

    0                 format version
    2                 number of entries
    clicks 0 4096 7   topic, partition, high watermark, the log's latest epoch then
    clicks 1 0 -1

The request loop takes a snapshot (``offer``) every ``CHECKPOINT_INTERVAL_S`` and at close; the
flusher thread writes it (``flush``: a temp file, fsynced, renamed over the old one, the folder
fsynced), so the loop never waits for the disk and a crash leaves one whole file. A snapshot
lags the memory: what is on disk is a high watermark the partition had, never more.

At start a replica does not take the checkpoint as it is (``safe_start``): its log may have
been cut since (a follower's truncation by epoch, recovery of a torn tail) and refilled with
another leader's bytes before the next checkpoint. Bytes written in the checkpoint's epoch or
before, below the first entry of a later epoch, are the bytes that were committed then; the
start is the checkpointed value bounded by that entry and the log end.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Sequence

from broker.segment import describe, read_replaced, replace_file
from coordinator.errors import StorageError

logger = logging.getLogger(__name__)

FILE_NAME = "replication-offset-checkpoint"
VERSION = 0
CHECKPOINT_INTERVAL_S = 5.0    # Kafka's replica.high.watermark.checkpoint.interval.ms

Key = tuple[str, int]


class HighWatermarkCheckpoint:
    """The checkpoint file of one broker: ``read`` at start, ``offer`` on the loop, ``flush``
    on the flusher thread (the Flusher calls ``flush`` on what it is given)."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / FILE_NAME
        self._offered: dict[Key, tuple[int, int]] | None = None
        self._written: dict[Key, tuple[int, int]] = {}
        self._lock = threading.Lock()       # offer (the loop) against flush (the flusher)
        self._write_lock = threading.Lock()  # the flusher's flush against the one at close

    def read(self) -> dict[Key, tuple[int, int]]:
        """``(topic, partition) -> (high watermark, epoch)``; {} when there is no file. A file
        that is not a checkpoint raises StorageError, never guessed at: a wrong high watermark
        could show consumers what is not committed (the caller then starts from 0, which
        hides for a while but shows nothing uncommitted)."""
        text = read_replaced(self.path)
        if text is None:
            return {}
        entries = _parse(text, self.path)
        self._written = dict(entries)
        return entries

    def offer(self, snapshot: dict[Key, tuple[int, int]]) -> bool:
        """Keep ``snapshot`` for the next ``flush``; False (nothing to write) when it equals
        what was written or offered last."""
        with self._lock:
            if snapshot == (self._offered if self._offered is not None else self._written):
                return False
            self._offered = dict(snapshot)
            return True

    def flush(self) -> None:
        """Write the last offered snapshot, if any (the flusher's thread, or the loop's at
        close)."""
        with self._write_lock:
            with self._lock:
                snapshot, self._offered = self._offered, None
            if snapshot is None:
                return
            try:
                self._write(snapshot)
            except OSError as err:
                with self._lock:
                    if self._offered is None:
                        self._offered = snapshot      # tried again at the next flush
                raise StorageError(f"{describe(err)} (cannot write {self.path})") from err
            with self._lock:
                self._written = snapshot

    def _write(self, snapshot: dict[Key, tuple[int, int]]) -> None:
        lines = [str(VERSION), str(len(snapshot))]
        lines += [f"{topic} {partition} {hw} {epoch}"
                  for (topic, partition), (hw, epoch) in sorted(snapshot.items())]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self.path, ("\n".join(lines) + "\n").encode("utf-8"))


def _parse(text: str, path: Path) -> dict[Key, tuple[int, int]]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    try:
        version, count = int(lines[0]), int(lines[1])
        entries = {}
        for line in lines[2:]:
            topic, partition, hw, epoch = line.rsplit(" ", 3)
            entries[(topic, int(partition))] = (int(hw), int(epoch))
    except (IndexError, ValueError) as err:
        raise StorageError(f"{path} is not a high-watermark checkpoint ({err}); moving it "
                           f"aside makes the replicas start at high watermark 0") from None
    if version != VERSION or count != len(entries) or count != len(lines) - 2:
        raise StorageError(f"{path} is not a high-watermark checkpoint of version {VERSION} "
                           f"with {count} entries")
    return entries


def safe_start(checkpointed: tuple[int, int] | None, entries: Sequence[tuple[int, int]],
               log_end: int) -> int:
    """The high watermark a replica starts with: the checkpointed one (``(hw, epoch)``),
    bounded by the start of the log's first epoch entry after that epoch and by the log end;
    0 without a checkpoint.

    >>> safe_start((1000, 5), [(0, 0), (5, 400)], 1200)      # the log as it was
    1000
    >>> safe_start((1000, 5), [(0, 0), (5, 400)], 900)       # cut since (recovery, a truncation)
    900
    >>> safe_start((1000, 5), [(0, 0), (5, 400), (6, 900)], 1500)   # cut to 900, refilled in 6
    900
    >>> safe_start((1000, 5), [(0, 0), (7, 300)], 1500)      # epoch 5 cut away: below 300 only
    300
    >>> safe_start(None, [(0, 0)], 1500)
    0
    """
    if checkpointed is None:
        return 0
    hw, epoch = checkpointed
    later = next((start for e, start in entries if e > epoch), log_end)
    return max(0, min(hw, later, log_end))
