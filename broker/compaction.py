"""Log compaction's decisions: which messages a clean keeps, how a cleaned segment is laid
out, when a log is due. Pure: no files, times passed in. The cleaner (broker/cleaner.py) does
the reading and writing.

Kept: the last message of every key in the sealed segments (``latest``, key -> offset of
its last message there); a message without a key (nothing can supersede it); a tombstone (a
magic 2 message with a null value) that is its key's last, until ``delete_retention_ms`` after
its segment was last written, so that a consumer reading the log within that time sees the
delete. Offsets never move: what is removed leaves a gap, marked in the cleaned file.

Worked example: key a at 0 and 40, key b at 20 (a tombstone) and 60, no key at 80; every
message 20 bytes, one segment [0, 100), its tombstones 2 hours old, delete retention 1 hour::

    offset  key  tombstone  latest[key]  kept
    0       a               40           no: superseded
    20      b    yes        60           no: superseded
    40      a               40           yes
    60      b               60           yes
    80      -                            yes: no key
    layout: gap to 40, copy 40..100

>>> latest = {b"a": 40, b"b": 60}
>>> entries = [(0, b"a", False), (20, b"b", True), (40, b"a", False), (60, b"b", False),
...            (80, None, False)]
>>> [keep(o, k, t, latest, age_ms=7_200_000, delete_retention_ms=3_600_000) for o, k, t in entries]
[False, False, True, True, True]
>>> layout([(40, 40, 60)], start=0, end=100)
[('gap', 40), ('copy', 40, 60)]
"""
from __future__ import annotations

from typing import Mapping, Sequence

from broker.message import first_unkeyed
from coordinator.errors import InvalidRecord


def keep(offset: int, key: bytes | None, tombstone: bool, latest: Mapping[bytes, int],
         age_ms: float, delete_retention_ms: int) -> bool:
    """Whether a clean keeps the message at ``offset`` (the module docstring's rules).

    >>> keep(40, b"a", True, {b"a": 40}, age_ms=10, delete_retention_ms=3_600_000)
    True
    >>> keep(40, b"a", True, {b"a": 40}, age_ms=3_600_000, delete_retention_ms=3_600_000)
    False
    """
    if key is None:
        return True
    if latest.get(key, offset) != offset:
        return False
    return not (tombstone and age_ms >= delete_retention_ms)


def refuse_unkeyed(topic: str, config, message_set) -> None:
    """Raise InvalidRecord when ``config`` (a LogConfig) compacts and a message of the
    validated ``message_set`` has no key, as Kafka refuses it: a clean could never remove it,
    and a key-less "latest value" means nothing. Produce paths call it per set; a topic that
    does not compact pays one attribute test.

    >>> from broker.config import LogConfig
    >>> from broker.message import encode
    >>> refuse_unkeyed("t", LogConfig(cleanup_policy="delete"), encode(b"v"))
    >>> refuse_unkeyed("t", LogConfig(cleanup_policy="compact"), encode(b"v", b"k") + encode(b"v"))
    Traceback (most recent call last):
      ...
    coordinator.errors.InvalidRecord: t is compacted (cleanup.policy=compact): every message needs a key, and message 1 of the set (byte 16) has none; the set was not written
    """
    if not config.compact:
        return
    found = first_unkeyed(message_set)
    if found is not None:
        raise InvalidRecord(
            f"{topic} is compacted (cleanup.policy={config.cleanup_policy}): every message "
            f"needs a key, and message {found[0]} of the set (byte {found[1]}) has none; the "
            f"set was not written")


def layout(kept: Sequence[tuple[int, int, int]], start: int, end: int) -> list[tuple]:
    """The pieces of a cleaned segment [``start``, ``end``) from its kept entries ``(offset,
    file position, length)`` in order: ``("copy", position, length)`` of adjacent entries
    joined, and ``("gap", resume)`` where offsets jump (the marker), one at the end when the
    last kept entry does not reach ``end``; nothing kept is one gap to ``end``.

    >>> layout([(0, 0, 10), (10, 10, 5), (30, 30, 10)], start=0, end=60)
    [('copy', 0, 15), ('gap', 30), ('copy', 30, 10), ('gap', 60)]
    >>> layout([], start=100, end=160)
    [('gap', 160)]
    >>> layout([(100, 0, 10), (110, 27, 10)], start=100, end=120)   # file already had a marker
    [('copy', 0, 10), ('copy', 27, 10)]
    """
    pieces: list[tuple] = []
    expected = start
    run_pos = run_len = None
    for offset, position, length in kept:
        if offset != expected:
            if run_pos is not None:
                pieces.append(("copy", run_pos, run_len))
                run_pos = None
            pieces.append(("gap", offset))
        if run_pos is not None and position == run_pos + run_len:
            run_len += length
        else:
            if run_pos is not None:
                pieces.append(("copy", run_pos, run_len))
            run_pos, run_len = position, length
        expected = offset + length
    if run_pos is not None:
        pieces.append(("copy", run_pos, run_len))
    if expected != end:
        pieces.append(("gap", end))
    return pieces


def due(sealed: Sequence[tuple[int, int]], clean_end: int, min_dirty_ratio: float,
        tombstones_due_ms: float | None, now_ms: float) -> bool:
    """Whether a compacted log is due for a clean: its sealed segments ``(start, bytes)``,
    ``clean_end`` the offset the last clean reached (what lies below it was cleaned), and
    ``tombstones_due_ms`` when the oldest tombstone the last clean kept may go.

    Due when the dirty bytes (sealed segments from ``clean_end`` on) are at least
    ``min_dirty_ratio`` of all sealed bytes (and more than none), or a kept tombstone's time
    has come (nothing new need arrive for a delete to finish).

    >>> due([(0, 100), (100, 100)], clean_end=0, min_dirty_ratio=0.5, tombstones_due_ms=None, now_ms=0)
    True
    >>> due([(0, 100), (100, 100), (200, 50)], 200, 0.5, None, 0)    # 50 of 250 dirty
    False
    >>> due([(0, 100), (100, 100)], 200, 0.5, tombstones_due_ms=1000, now_ms=1000)
    True
    >>> due([], 0, 0.5, None, 0)
    False
    """
    if tombstones_due_ms is not None and now_ms >= tombstones_due_ms:
        return True
    total = sum(size for _, size in sealed)
    dirty = sum(size for start, size in sealed if start >= clean_end)
    return dirty > 0 and dirty >= min_dirty_ratio * total


def groups(segments: Sequence[tuple[int, int, int, bool, bool]], limit: int) -> list[list[int]]:
    """Which sealed segments a clean rewrites, and together: ``segments`` are ``(start, end,
    cleaned bytes, changed, cleanable)`` oldest first; a group is a run of neighbours (each
    starting where the one before ends: no recovery gap between) that are cleanable and whose
    cleaned bytes fit in ``limit`` (the segment size), merged into one file named by its first
    start, as Kafka's cleaner groups segments. A group of one is rewritten only when it
    changed; a segment whose every message went then costs 17 bytes in its neighbour's file
    instead of a file (and a descriptor, and a reader's round trip) of its own.

    >>> groups([(0, 100, 17, True, True), (100, 200, 17, True, True), (200, 300, 90, False, True),
    ...         (300, 400, 80, False, True)], limit=120)
    [[0, 1]]
    >>> groups([(0, 100, 17, True, True), (100, 200, 60, True, False), (200, 300, 17, True, True)],
    ...        limit=1000)
    [[0], [2]]
    >>> groups([(0, 100, 17, True, True), (150, 200, 17, True, True)], limit=1000)   # a gap
    [[0], [1]]
    """
    out: list[list[int]] = []
    group: list[int] = []
    size = 0
    for index, (start, end, cleaned, changed, cleanable) in enumerate(segments):
        joins = (group and cleanable and segments[group[-1]][1] == start
                 and size + cleaned <= limit)
        if not joins:
            if len(group) > 1 or (group and segments[group[0]][3]):
                out.append(group)
            group, size = ([index], cleaned) if cleanable else ([], 0)
            continue
        group.append(index)
        size += cleaned
    if len(group) > 1 or (group and segments[group[0]][3]):
        out.append(group)
    return out


def cleaned_size(pieces: Sequence[tuple], marker_bytes: int = 17) -> int:
    """The bytes of a cleaned file laid out as ``pieces`` (``layout``).

    >>> cleaned_size([("copy", 0, 15), ("gap", 30), ("copy", 30, 10), ("gap", 60)])
    59
    """
    return sum(piece[2] if piece[0] == "copy" else marker_bytes for piece in pieces)


def throttle_delay(done_bytes: int, elapsed_s: float, bytes_per_second: int) -> float:
    """Seconds to sleep so that ``done_bytes`` over ``elapsed_s`` stays within the rate.

    >>> throttle_delay(2_000_000, 1.0, 1_000_000)
    1.0
    >>> throttle_delay(500_000, 1.0, 1_000_000)
    0.0
    """
    return max(0.0, done_bytes / bytes_per_second - elapsed_s)
