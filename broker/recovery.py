"""Recovery: how a partition's log is made whole when it is opened, and the clean-shutdown marker.

Kafka 0.7's recovery is a short loop over the last segment: scan, check each CRC, truncate. Here
it is that loop (``broker.scrub`` walks the segment) and the rules around it:

1. The segment files on disk, sorted by start offset (``layout``): a file that lies wholly
   inside a compacted predecessor's offsets is the leftover of a merging clean and is deleted
   (``merge_leftovers``); any other file that starts inside its predecessor is set aside into
   ``corrupt/`` (two files cannot both hold an offset; it is never
   deleted), and a file that starts after its predecessor's end leaves a gap, logged once.
2. The last segment is walked: a bad range with good messages after it is a corrupt message
   *inside* the log, kept (a fetch there answers CORRUPT_MESSAGE with where data resumes); a bad
   range that runs to the end is a torn tail, cut off (logged as ``recovery cut N bytes``, the
   line the torn-segment drill reads).
3. If the cut left the log below its exposed end (broker/exposed_end.py), the log continues at
   the exposed end in a new segment: the offsets between are a gap, so none is handed out twice.
4. Everything is fsynced, and the exposed end records where the log now ends.

Compacted segments (broker/cleaner.py): a ``<start>.log.cleaned`` file is a clean that did not
commit and is deleted (the segment file it would have replaced is whole); a segment with a gap
index sidecar (broker/gap_index.py) gets its index from it, or, when the sidecar is pending or
damaged (a crash around a clean's commit), from a walk of its file, and the layout uses the
offsets each segment spans, not its file size.

Sealed segments were fsynced before they rolled and are not walked here. Only a close whose
final flush succeeded leaves the ``clean-shutdown`` marker; without it, the broker CRC-checks
the sealed segments too, in the background (``check_sealed``, run by the start-up scrub).

Worked example: files at 0 (100 bytes), 50 (10), 100 (20) and 300 (5 bytes: the first part of
a torn message); the exposed end is 330::

    layout          keep 0, 100, 300; set aside 50 (inside 0..100); gap 120..300
    walk of 300     torn at 0: cut 5 bytes, the log ends at 300
    exposed 330     a new segment at 330: gap 300..330; the log ends at 330
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from broker import gap_index, scrub
from broker.exposed_end import ExposedEnd
from broker.segment import SUFFIX, FileReader, Segment, parse_segment_name, sync_directory

logger = logging.getLogger(__name__)

CORRUPT_DIR = "corrupt"
CLEAN_FILE = "clean-shutdown"
CLEANED_SUFFIX = ".cleaned"


class Layout(NamedTuple):
    """Which segment files make up the log: ``keep`` (start offsets, in order), ``set_aside``
    (files that start inside the kept file before them), ``gaps`` ((first, resume) offsets
    that no file holds)."""

    keep: list[int]
    set_aside: list[int]
    gaps: list[tuple[int, int]]


def layout(files: Sequence[tuple[int, int]]) -> Layout:
    """The layout of segment files given as ``(start, size)``, sorted by start.

    >>> layout([(0, 100), (50, 10), (100, 20), (300, 5)])
    Layout(keep=[0, 100, 300], set_aside=[50], gaps=[(120, 300)])
    >>> layout([])
    Layout(keep=[], set_aside=[], gaps=[])
    """
    keep, set_aside, gaps = [], [], []
    end = None
    for start, size in files:
        if end is not None and start < end:
            set_aside.append(start)
            continue
        if end is not None and start > end:
            gaps.append((end, start))
        keep.append(start)
        end = start + size
    return Layout(keep, set_aside, gaps)


def merge_leftovers(files: Sequence[tuple[int, int]], compacted: frozenset[int]) -> list[int]:
    """The files (``(start, size in offsets)``, sorted) that lie wholly inside the offsets of
    a compacted file before them (``compacted``: starts of files with a gap index): a clean
    merged them into it and committed, and the broker stopped before deleting them.

    >>> merge_leftovers([(0, 300), (100, 100), (200, 100), (300, 50)], frozenset({0}))
    [100, 200]
    >>> merge_leftovers([(0, 300), (100, 100)], frozenset())     # not a clean's: layout's
    []
    """
    leftovers = []
    owner_end = None
    for start, size in files:
        if owner_end is not None and start + size <= owner_end:
            leftovers.append(start)
            continue
        owner_end = start + size if start in compacted else None
    return leftovers


@dataclass
class Recovered:
    """The open segments of a recovered log, oldest first, and what recovery found."""

    segments: list[Segment]
    checkpoints: dict[int, scrub.Checkpoints] = field(default_factory=dict)
    corrupt_messages: int = 0
    truncated_bytes: int = 0


def recover(directory: Path, exposed: ExposedEnd) -> Recovered:
    """Open the segments in ``directory`` by the rules of the module docstring. Raises OSError
    (the caller makes it a StorageError); the segments opened so far are closed then."""
    recovered = Recovered([])
    try:
        _drop_uncommitted_cleans(directory)
        files = _segment_files(directory)
        indexes = {start: load_gaps(directory, start, path) for start, path in files}
        spans = [(start, _span(indexes[start], start, path)) for start, path in files]
        leftovers = merge_leftovers(spans, frozenset(s for s, i in indexes.items() if i is not None))
        for start, path in files:
            if start in leftovers:
                path.unlink()
                gap_index.remove(directory, start)
                logger.warning("%s: deleted %s, a segment a committed clean had merged into "
                               "the one before it (the broker stopped before deleting it)",
                               directory, path.name)
        plan = layout([span for span in spans if span[0] not in leftovers])
        for first, resume in plan.gaps:
            logger.warning("%s: a gap of %d bytes at offsets %d..%d holds no data (offsets lost "
                           "in an earlier crash recovery); fetches there answer OFFSET_GAP",
                           directory, resume - first, first, resume)
        recovered.segments.extend(Segment(directory, start, indexes[start])
                                  for start in plan.keep)
        if plan.set_aside:
            _set_aside(directory, [path for start, path in files if start in plan.set_aside])
        if not recovered.segments:
            recovered.segments.append(Segment(directory, exposed.value))
        _recover_last(directory, recovered)
        end = recovered.segments[-1].end
        if exposed.value > end:
            logger.warning("%s: the recovered log ends at offset %d, below offset %d that "
                           "clients were told of; it continues at %d in a new segment, leaving "
                           "a gap of %d bytes (fetches there answer OFFSET_GAP)", directory,
                           end, exposed.value, exposed.value, exposed.value - end)
            recovered.segments.append(Segment(directory, exposed.value))
        exposed.expose(recovered.segments[-1].end)
        for segment in recovered.segments:
            segment.sync()
        exposed.sync()
    except BaseException:
        for segment in recovered.segments:
            segment.close()
        raise
    return recovered


def load_gaps(directory: Path, start: int, path: Path) -> gap_index.GapIndex | None:
    """The gap index of the segment file ``path`` (None: it has no markers). A pending or
    damaged sidecar is rebuilt from a walk of the file and written again."""
    size = path.stat().st_size
    try:
        return gap_index.read(directory, start, size)
    except ValueError as why:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            index = gap_index.runs_of(FileReader(fd).read, size, start)
        finally:
            os.close(fd)
        gap_index.write(directory, start, index, size)
        logger.info("%s: rebuilt the gap index of %s from its file (%s): %d run(s)",
                    directory, path.name, why, len(index.offsets))
        return index


def _span(index: gap_index.GapIndex | None, start: int, path: Path) -> int:
    size = path.stat().st_size
    return size if index is None else index.end(size) - start


def _drop_uncommitted_cleans(directory: Path) -> None:
    """Delete what a clean wrote before its commit: the segment it would replace is whole."""
    for path in directory.glob("*" + SUFFIX + CLEANED_SUFFIX):
        path.unlink()
        logger.warning("%s: deleted %s, a clean that did not commit before the broker "
                       "stopped; %s is kept as it was", directory, path.name,
                       path.name[:-len(CLEANED_SUFFIX)])


def check_sealed(directory: Path, segment: Segment, reader: FileReader,
                 on_progress: Callable[[int], None] | None = None) -> list[tuple[int, scrub.Bad]]:
    """CRC-check one sealed segment through ``reader`` (a descriptor of its own, so retention
    may delete the file meanwhile); log each bad message by offset and return ``(offset, bad
    range)`` for each. Raises OSError."""
    report = scrub.scrub(reader, segment.size, on_progress=on_progress)
    found = []
    for bad in report.bad:
        offset = segment.offset_at(bad.position)
        logger.warning("%s: scrub found a corrupt message at offset %d (%d bytes, %s) in sealed "
                       "segment %s; fetches there answer CORRUPT_MESSAGE", directory, offset,
                       bad.size, bad.reason, segment.path.name)
        found.append((offset, bad))
    return found


def take_clean_marker(directory: Path) -> bool:
    """Whether the last close was clean; the marker goes now (durably), so a crash from here
    on reads as unclean."""
    marker = directory / CLEAN_FILE
    try:
        marker.unlink()
    except FileNotFoundError:
        return False
    sync_directory(directory)
    return True


def leave_clean_marker(directory: Path) -> None:
    """Say that the close was clean. A failure costs only a scrub at the next start: logged."""
    try:
        fd = os.open(directory / CLEAN_FILE, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        sync_directory(directory)
    except OSError as err:
        logger.warning("%s: could not leave the clean-shutdown marker (%s); the next start "
                       "scrubs the sealed segments", directory, err)


def _segment_files(directory: Path) -> list[tuple[int, Path]]:
    """``(start, path)`` of every segment file in ``directory``, sorted; other names logged."""
    found = []
    for path in directory.glob("*" + SUFFIX):
        if not path.is_file():
            continue
        try:
            found.append((parse_segment_name(path.name), path))
        except ValueError:
            logger.warning("%s: ignoring %s, not a segment file name", directory, path.name)
    found.sort()
    return found


def _recover_last(directory: Path, recovered: Recovered) -> None:
    """Walk the last segment: keep corrupt messages that have good ones after them, cut a torn
    tail (the drills' torn-segment cut starts at the first bad message of the tail)."""
    last = recovered.segments[-1]
    checkpoints = recovered.checkpoints.setdefault(last.start, scrub.Checkpoints())
    report = scrub.scrub(last, last.size, last=True, checkpoints=checkpoints)
    for bad in report.bad:
        logger.warning("%s: recovery kept a corrupt message at offset %d (%d bytes, %s) in %s: "
                       "good messages follow it; fetches there answer CORRUPT_MESSAGE",
                       directory, last.offset_at(bad.position), bad.size, bad.reason,
                       last.path.name)
    recovered.corrupt_messages += len(report.bad)
    if report.torn_at is not None:
        cut = last.size - report.torn_at
        last.truncate(report.torn_at)
        recovered.truncated_bytes = cut
        logger.warning("%s: recovery cut %d bytes (a torn or corrupt tail) off %s at offset %d",
                       directory, cut, last.path.name, last.offset_at(report.torn_at))


def _set_aside(directory: Path, paths: list[Path]) -> None:
    """Move segment files into corrupt/, never over an earlier one."""
    corrupt = directory / CORRUPT_DIR
    corrupt.mkdir(exist_ok=True)
    for path in paths:
        target = corrupt / path.name
        suffix = 0
        while target.exists():
            suffix += 1
            target = corrupt / f"{path.name}.{suffix}"
        path.rename(target)
    logger.warning("%s: %d segment(s) overlap their predecessor (%s); moved them into %s/",
                   directory, len(paths), ", ".join(path.name for path in paths), CORRUPT_DIR)
