"""The producer snapshot: a log's sequenced sets on disk, so a restarted broker still knows
which sets its producers already wrote (broker/producer_state.py says why, as Kafka's
``.snapshot`` files).

One file per log folder, ``producer-snapshot``, rewritten whole (a temp file renamed over the
old one): ``SLPS``, a u16 version, a u32 count, the entries as ``protocol.SEQUENCED_SET``
(producer_id, epoch, first_seq, last_seq, base, next), then a CRC32 of all before it. The
LogManager writes the entries up to the log's flushed end, after flushes (from the request
loop, without an fsync: at most every ``INTERVAL_S``) and at a clean close (fsynced).

Reading never stops a log from opening: a missing file is no entries, and one that is torn or
not a snapshot is logged at WARNING and read as no entries (the table then starts from what
producers say, as before snapshots existed: at worst a resend is written twice). Entries past
the recovered log's end (a crash cut the log below them) are dropped: their sets are not there.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write(folder, [(7, -1, 0, 0, 0, 10), (7, -1, 1, 1, 10, 20)])
    >>> read(folder, end_offset=15)
    [(7, -1, 0, 0, 0, 10)]
"""
from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

from broker.protocol import SEQUENCED_SET
from broker.segment import describe, replace_file
from coordinator.errors import StorageError

logger = logging.getLogger(__name__)

FILE_NAME = "producer-snapshot"
MAGIC = b"SLPS"
VERSION = 0
INTERVAL_S = 1.0           # a changed log's snapshot is rewritten at most this often
_HEAD = struct.Struct(">4sHI")
_CRC = struct.Struct(">I")


def write(directory: Path, entries, sync: bool = False) -> None:
    """Replace the folder's snapshot with ``entries``; StorageError when the disk refuses."""
    body = _HEAD.pack(MAGIC, VERSION, len(entries)) + b"".join(
        SEQUENCED_SET.pack(*entry) for entry in entries)
    path = Path(directory) / FILE_NAME
    try:
        replace_file(path, body + _CRC.pack(zlib.crc32(body)), sync)
    except OSError as err:
        raise StorageError(f"{describe(err)} (cannot write {path})") from err


def read(directory: Path, end_offset: int) -> list[tuple]:
    """The snapshot's entries of sets that end at or before ``end_offset``, oldest first."""
    path = Path(directory) / FILE_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as err:
        logger.warning("%s: cannot read the producer snapshot (%s): producers start unknown",
                       path, describe(err))
        return []
    try:
        entries = _parse(data)
    except ValueError as err:
        logger.warning("%s is not a producer snapshot (%s): producers start unknown", path, err)
        return []
    return [entry for entry in entries if entry[5] <= end_offset]


def _parse(data: bytes) -> list[tuple]:
    if len(data) < _HEAD.size + _CRC.size:
        raise ValueError(f"{len(data)} bytes")
    body, (crc,) = data[:-_CRC.size], _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(body) != crc:
        raise ValueError("CRC mismatch")
    magic, version, count = _HEAD.unpack_from(body)
    if magic != MAGIC or version != VERSION:
        raise ValueError(f"magic {magic!r} version {version}")
    if len(body) != _HEAD.size + count * SEQUENCED_SET.size:
        raise ValueError(f"{count} entries in {len(body)} bytes")
    return list(SEQUENCED_SET.iter_unpack(body[_HEAD.size:]))
