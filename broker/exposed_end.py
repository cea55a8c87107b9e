"""The exposed end: the highest offset of a partition ever told to a client, kept in a file.

A partition never hands out an offset twice. Every offset a client is told (the next offset in
an acks=1 reply, the visible end that bounds fetches and the offsets API) is first written to
the ``exposed-end`` file beside the segments: one ``pwrite`` of 20 digits when the value grows,
fsynced by the flusher with the segments, kept across a process crash by the page cache. When
recovery cuts the log below it, the log goes on at the exposed end (broker/recovery.py)::

    exposed = ExposedEnd(directory)   # reads the file: 0 when it is new or unreadable
    exposed.expose(1090)              # one pwrite: "00000000000000001090"
    exposed.expose(981)               # nothing: the value only grows this way
    exposed.take_back(981)            # a failed append nobody saw gives its exposure back
    exposed.sync_up_to(981)           # one fsync; a second call for the same value is free
    exposed.lower_to(500)             # a replica cut its log (Log.truncate_to): pwrite + fsync

The Log calls ``expose`` and ``take_back`` under its lock; ``sync_up_to`` runs on the flusher
thread without it (a pwrite beside an fsync of the same file is safe).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from broker.segment import describe
from coordinator.errors import StorageError

logger = logging.getLogger(__name__)

FILE_NAME = "exposed-end"
DIGITS = 20


class ExposedEnd:
    """The exposed-end file of one partition folder, open for the Log's lifetime."""

    __slots__ = ("directory", "value", "_fd", "_synced")

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.value = 0
        self._fd = os.open(self.directory / FILE_NAME,
                           os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            text = os.pread(self._fd, DIGITS + 1, 0)
        except OSError:
            self.close()
            raise
        if text:
            try:
                self.value = int(text.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                logger.warning("%s: %s holds %r, not an offset; ignoring it (it costs only the "
                               "protection against reuse)", self.directory, FILE_NAME, text[:40])
        self._synced = self.value

    def expose(self, offset: int) -> None:
        """Record ``offset`` as told to a client, before it is (one pwrite, only when it grows)."""
        if offset > self.value:
            self._write(offset)

    def take_back(self, offset: int) -> None:
        """After a failed append: go back to what clients can have seen. A failure to write is
        logged, not raised: the append's own error is the one to report, and a value too high
        costs a gap at the next recovery, never a reused offset."""
        if offset < self.value:
            try:
                self._write(offset)
            except StorageError as err:
                logger.warning("%s: %s", self.directory, err)

    def lower_to(self, offset: int) -> None:
        """A replica's log was cut to ``offset`` (``Log.truncate_to``, ``Log.reset_to``): the
        value becomes ``offset``, durably at once (one pwrite and one fsync), so a crash cannot
        bring back a gap over offsets the replica must fetch again. Raises StorageError."""
        self._write(offset)
        try:
            os.fsync(self._fd)
        except OSError as err:
            raise StorageError(f"{describe(err)} (cannot sync the exposed end in "
                               f"{self.directory})") from err
        self._synced = offset

    def sync_up_to(self, value: int) -> None:
        """fsync the file unless ``value`` (one it held) is on disk already; raises OSError."""
        if value > self._synced:
            os.fsync(self._fd)
            self._synced = value

    def sync(self) -> None:
        """fsync whatever the file holds now (recovery: a value read back may be in the page
        cache only, after a process crash)."""
        os.fsync(self._fd)
        self._synced = self.value

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def _write(self, offset: int) -> None:
        try:
            os.pwrite(self._fd, b"%0*d\n" % (DIGITS, offset), 0)
        except OSError as err:
            raise StorageError(f"{describe(err)} (cannot record the exposed end in "
                               f"{self.directory})") from err
        self.value = offset
