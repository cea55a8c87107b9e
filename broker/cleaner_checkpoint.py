"""The cleaner checkpoint: per compacted partition, the offset up to which its log is clean.

Without it a restarted broker knows nothing of earlier cleans: every compacted log counts as
all dirty, and the cleaner reads (and may rewrite) every sealed byte again. So, as Kafka's
``cleaner-offset-checkpoint``, one file in the broker's data dir holds, per partition the
cleaner has cleaned, where that clean ended and when the oldest tombstone it kept was last
written (-1: none), so that a delete still finishes on time after a restart::

    0                          format version
    2                          number of entries
    profiles 0 81920 -1        topic, partition, clean end, oldest kept tombstone (ms)
    profiles 1 40960 1796161396999

The cleaner's thread writes it after each clean (a temp file, fsynced, renamed over the old
one, the folder fsynced: ``segment.replace_file``), so the request loop never waits for it
and a crash leaves one whole file. A checkpoint older than the log is harmless: what lies
between its offset and the newer clean's counts as dirty again.

At start a log takes its entry through ``clean_start``: an offset outside the log as it is now
(a topic deleted and made again, a follower cut back) is no checkpoint at all.
"""
from __future__ import annotations

import logging
from pathlib import Path

from broker.segment import describe, read_replaced, replace_file
from coordinator.errors import StorageError

logger = logging.getLogger(__name__)

FILE_NAME = "cleaner-offset-checkpoint"
VERSION = 0

Key = tuple[str, int]
Entry = tuple[int, float | None]      # clean end, oldest kept tombstone's mtime (ms)


class CleanerCheckpoint:
    """The checkpoint file of one broker (only the cleaner's thread writes it)."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / FILE_NAME

    def read(self) -> dict[Key, Entry]:
        """``(topic, partition) -> (clean end, oldest tombstone ms or None)``; {} when there is
        no file. A file that is not a checkpoint raises StorageError (the caller starts with
        none: every compacted log is then dirty, cleaned again, and nothing is lost)."""
        text = read_replaced(self.path)
        if text is None:
            return {}
        return parse(text, self.path)

    def write(self, entries: dict[Key, Entry]) -> None:
        lines = [str(VERSION), str(len(entries))]
        lines += [f"{topic} {partition} {end} {-1 if oldest is None else int(oldest)}"
                  for (topic, partition), (end, oldest) in sorted(entries.items())]
        try:
            replace_file(self.path, ("\n".join(lines) + "\n").encode("utf-8"))
        except OSError as err:
            raise StorageError(f"{describe(err)} (cannot write {self.path})") from err


def parse(text: str, path: Path | str = FILE_NAME) -> dict[Key, Entry]:
    """The entries of a checkpoint's text.

    >>> parse("0\\n2\\nprofiles 0 81920 -1\\nmy topic 1 40960 17\\n")
    {('profiles', 0): (81920, None), ('my topic', 1): (40960, 17)}
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    try:
        version, count = int(lines[0]), int(lines[1])
        entries: dict[Key, Entry] = {}
        for line in lines[2:]:
            topic, partition, end, oldest = line.rsplit(" ", 3)
            entries[(topic, int(partition))] = (int(end), None if int(oldest) < 0
                                                else int(oldest))
    except (IndexError, ValueError) as err:
        raise StorageError(f"{path} is not a cleaner checkpoint ({err})") from None
    if version != VERSION or count != len(entries) or count != len(lines) - 2:
        raise StorageError(f"{path} is not a cleaner checkpoint of version {VERSION} with "
                           f"{count} entries")
    return entries


def clean_start(checkpointed: int | None, log_start: int, log_end: int) -> int:
    """Where a log's clean section ends when the cleaner first sees it: the checkpointed
    offset when it lies within the log, else the log start (all of it dirty), as Kafka resets
    a checkpoint that is out of the log's range.

    >>> clean_start(4096, 0, 10000)
    4096
    >>> clean_start(None, 0, 10000), clean_start(20000, 0, 10000), clean_start(100, 512, 10000)
    (0, 0, 512)
    """
    if checkpointed is None or not log_start <= checkpointed <= log_end:
        return log_start
    return checkpointed
