"""The LogManager: the logs this broker hosts, and the work on them outside any request.

As Kafka 0.7's LogManager, it owns the logs, the retention cleaner and the flush scheduler:

- placement: a Log is opened for every partition ZooKeeper places on this broker, at start and
  after each placement change the ClusterView reports, and the registration publishes which
  partitions are hosted (``/brokers/topics/<topic>/<id>``), so clients find them; ``on_open``
  hands each new log to the ReplicaManager (broker/replica_manager.py), which gives it a role;
  the same refresh applies a topic's own settings to its logs (``topics config``,
  coordinator/topic_config.py; ``on_configure`` passes a new min ISR on) and, for a topic whose
  config node is gone (``topics delete``), closes its logs, deletes their files and withdraws
  the announcement (``on_remove`` first lets the ReplicaManager drop the partitions);
- appends: the request handlers append validated MessageSets here, one write per log per turn
  of the loop; sequenced acks=1 requests are judged by the producer table first
  (broker/producer_state.py), and each log's sequenced sets are kept beside it
  (``SequencedSets``: for its followers, its truncations and its producer snapshot,
  broker/producer_snapshot.py, so the table follows the data); the counters (METADATA) follow, and a log whose flush policy is
  due goes to the flusher thread (broker/flusher.py);
- retention every ``cleaner_interval_ms`` for logs whose cleanup policy has ``delete``, with
  the holds of backlog protections, and for those with ``compact`` the same check hands a log
  that is due to the log cleaner's thread (broker/cleaner.py, throttled to
  ``cleaner_bytes_per_second``); the protections' checks every ``backlog_check_ms``
  (``BacklogGuard``, broker/backlog_guard.py: alerts, holds, produce refusals); the start-up
  scrub of logs opened after an unclean
  shutdown, on its own thread (``Scrubber``);
- errors outside requests: a ZooKeeper error in the placement refresh, a log that cannot be
  opened, a failing retention, flush or scrub are counted as ``<task>_failed``
  (broker/error_counts.py, logged at most every few seconds) and retried, the placement refresh
  after a back-off that doubles from 0.5 s to 10 s. They never end the broker's loop.

``maintain(now)`` is the loop's call between requests. Everything runs on the request loop's
thread except the flusher and the scrubber, which report to the same ErrorCounts.
"""
from __future__ import annotations

import dataclasses
import logging
import queue
import shutil
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException

from broker.append_checksums import AppendChecksums, crc_of
from broker.backlog_guard import BacklogGuard
from broker.cleaner import LogCleaner
from broker.cleaner_checkpoint import CleanerCheckpoint
from broker.config import BrokerConfig
from broker.error_counts import ErrorCounts
from broker.flusher import Flusher
from broker.log import Log
from broker import producer_snapshot
from broker.kafka import idempotence
from broker.producer_state import NATIVE_EPOCH, Action, ProducerTable, SequencedSets, Turn
from coordinator import topic_config, topics
from coordinator.errors import (OutOfOrderSequence, SluiceError, StorageError,
                                UnknownTopicOrPartition)
from coordinator.registry import BrokerRegistration, ClusterView

logger = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5      # back-off of a failed placement refresh, doubling up to
RETRY_MAX_S = 10.0


class Route:
    """Where produce requests for one partition go: its Log and its counters."""

    __slots__ = ("topic", "partition", "log", "stats", "last_append")

    def __init__(self, topic: str, partition: int, log: Log, stats: Counter):
        self.topic = topic
        self.partition = partition
        self.log = log
        self.stats = stats
        self.last_append: float | None = None    # monotonic time of the last append


class LogManager:
    """The hosted logs by (topic, partition), their counters, and their background work."""

    def __init__(self, config: BrokerConfig, zk: KazooClient, registration: BrokerRegistration,
                 errors: ErrorCounts, flusher: Flusher):
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.zk = zk
        self.registration = registration
        self.errors = errors
        self.flusher = flusher
        self.scrubber = Scrubber(errors.task_failed)
        self.cleaner = LogCleaner(config.cleaner_bytes_per_second, errors.task_failed,
                                  CleanerCheckpoint(self.data_dir), errors.gave_up)
        self.logs: dict[tuple[str, int], Log] = {}
        self.producers = ProducerTable()
        self.kafka_sequences = idempotence.SequenceTable()
        self.sets: dict[tuple[str, int], SequencedSets] = {}
        self.checksums: dict[tuple[str, int], AppendChecksums] = {}   # replicated logs only
        self._next_snapshot = 0.0
        self.stats: Counter = Counter()
        self.partition_stats: dict[tuple[str, int], Counter] = defaultdict(Counter)
        self._routes: dict[tuple[str, int], Route] = {}
        self._published: dict[str, list[int]] = {}
        self._view: ClusterView | None = None
        self.on_open = lambda topic, partition, replicas, min_insync, log: None
        self.on_configure = lambda topic, partition, min_insync: None
        self.on_remove = lambda topic, partition, log: None
        self._placement_changes: queue.Queue = queue.Queue()
        self._placement_retry_at = 0.0
        self._placement_backoff = 0.0
        self._outside_errors = (SluiceError, KazooException, OSError,
                                zk.handler.timeout_exception)
        self._next_retention = time.monotonic() + config.cleaner_interval_ms / 1000
        self.backlog = BacklogGuard(zk, lambda topic, partition: False, errors, self.stats)
        self._next_backlog = 0.0

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the flusher and the scrubber, then open the placed logs and follow placement
        changes (a ZooKeeper error here propagates: a broker that cannot read its placement
        at start does not serve)."""
        self.flusher.start()
        self.scrubber.start()
        self.cleaner.start()
        self.backlog.start()
        self._view = ClusterView(self.zk)
        self._view.add_listener(lambda: self._placement_changes.put(True))
        if not self._open_placed_logs():
            self._placement_changes.put(True)

    def close(self) -> None:
        """Stop the threads (the flusher finishes what is queued), then close every log."""
        self.scrubber.stop()
        self.cleaner.stop()
        self.flusher.stop()
        for thread in (self.flusher, self.scrubber, self.cleaner):
            if thread.ident is not None:
                thread.join(timeout=10)
        for key, log in self.logs.items():
            try:
                log.close()
            except (OSError, SluiceError) as exc:
                logger.error("closing %s: %s", log.directory, exc)
            sets = self.sets.get(key)
            if sets is not None and sets.changed:
                try:
                    producer_snapshot.write(log.directory, sets.upto(log.flushed_end), sync=True)
                except StorageError as exc:
                    logger.error("closing %s: %s", log.directory, exc)

    @property
    def view(self) -> ClusterView | None:
        """The brokers and placements as ZooKeeper's watches last told (None before start)."""
        return self._view

    # --- the logs --------------------------------------------------------------------------

    def log(self, topic: str, partition: int) -> Log:
        log = self.logs.get((topic, partition))
        if log is None:
            raise UnknownTopicOrPartition(
                f"broker {self.config.broker_id} has no partition {topic}/{partition}")
        return log

    def route(self, topic: str, partition: int) -> Route:
        key = (topic, partition)
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = Route(topic, partition, self.log(topic, partition),
                                              self.partition_stats[key])
        return route

    def append(self, route: Route, sets: list, count: int, joined: bytes | None = None,
               expose: bool = False, markers: list[int] | None = None,
               set_sizes: list[int] | None = None,
               checksums: list[tuple[int, int, int, int]] | None = None) -> tuple[int, int]:
        """Append validated MessageSets (``count`` messages) with one write per segment, then
        count them and hand the log to the flusher when its policy is due. ``joined``: the
        sets already joined by the caller. ``expose``: acks=1 replies will tell the offsets
        (the log records that first). ``markers``: a follower's one set holds the gap markers
        of a compacted stretch of its leader's log at these positions. ``set_sizes``: the
        sizes of the sets when an entry of ``sets`` holds several (PRODUCE_SETS).
        ``checksums``: a follower's append checksums of its one set, ``(start, end, count,
        crc)`` relative to it (broker/append_checksums.py); else a replicated log records the
        CRC of what it appends here, one C call over validated bytes."""
        log = route.log
        if len(sets) == 1 and set_sizes is None:
            base, nxt = log.append(sets[0], count, expose=expose, markers=markers)
        else:
            base, nxt = log.append(joined or b"".join(sets), count,
                                   set_sizes or [len(one) for one in sets], expose=expose)
        sums = self.checksums.get((route.topic, route.partition))
        if sums is not None:
            if checksums is None:
                sums.record(base, nxt, count, crc_of(sets))
            else:
                for start, end, n, crc in checksums:
                    sums.record(base + start, base + end, n, crc)
        stats, mine = self.stats, route.stats
        stats["messages_in"] += count
        stats["bytes_in"] += nxt - base
        mine["messages_in"] += count
        mine["bytes_in"] += nxt - base
        route.last_append = now = time.monotonic()
        if log.flush_due(now):
            self.flusher.submit(log)
        return base, nxt

    def append_sequenced(self, route: Route, requests: list) -> list:
        """Judge one log's acks=1 requests of a turn (``(identity, corr, request, body,
        count)`` each, in arrival order), append the ones due with one write, and return what
        to answer: ``(identity, corr, acks, outcome)``, the outcome ``(base, next)`` or the
        error, refusals first, then the appended, then the duplicates.

        A duplicate gets its original's offsets (an empty range when they are not known) and
        is not written again; a request that came before an older one of its producer gets
        OUT_OF_ORDER_SEQUENCE. The judgement is committed only once the write succeeded: a
        failed write answers every request that waited on it and leaves the table as it was.
        """
        turn = self.producers.turn(route.topic, route.partition, time.monotonic())
        answers, writes, duplicates = _judge(route, turn, requests)
        offsets, failed = [], None
        if writes:
            try:
                offset, _ = self.append(route, [body for _, _, _, body, _ in writes],
                                        sum(count for *_, count in writes),
                                        expose=any(acks for _, _, acks, _, _ in writes))
            except SluiceError as exc:
                failed = exc
                answers.extend((identity, corr, acks, exc) for identity, corr, acks, _, _ in writes)
            else:
                for identity, corr, acks, body, _ in writes:
                    nxt = offset + len(body)
                    offsets.append((offset, nxt))
                    answers.append((identity, corr, acks, (offset, nxt)))
                    offset = nxt
                self.sets[(route.topic, route.partition)].extend(turn.commit(offsets))
        if duplicates:
            self.stats["duplicates"] += len(duplicates)
            route.stats["duplicates"] += len(duplicates)
            for identity, corr, acks, decision in duplicates:
                if decision.pending is None:
                    outcome = decision.offsets or (0, 0)
                else:
                    outcome = failed if failed is not None else offsets[decision.pending]
                answers.append((identity, corr, acks, outcome))
        return answers

    # --- the sequenced sets: following the data -------------------------------------------

    def sequenced(self, route: Route, entry: tuple) -> None:
        """Record a Kafka producer's batch appended here (the native ones are recorded by
        ``append_sequenced``)."""
        self.sets[(route.topic, route.partition)].extend([entry])

    def checksums_between(self, log_key: tuple[str, int], low: int,
                          high: int) -> list[tuple[int, int, int]]:
        """The append checksums tiling a replica fetch answer's bytes from ``low`` (frame 4)."""
        sums = self.checksums.get(log_key)
        return sums.tiling(low, high) if sums is not None else []

    def next_append_start(self, log_key: tuple[str, int], low: int, high: int) -> int | None:
        """The first append start past ``low`` and before ``high`` (AppendChecksums)."""
        sums = self.checksums.get(log_key)
        return sums.next_start(low, high) if sums is not None else None

    def sets_between(self, log_key: tuple[str, int], low: int, high: int) -> list[tuple]:
        """The sequenced sets ending in a replica fetch answer's bytes (its frame 3)."""
        sets = self.sets.get(log_key)
        return sets.between(low, high) if sets is not None else []

    def copied_sets(self, topic: str, partition: int, entries: list[tuple], low: int) -> None:
        """A follower appended its leader's bytes from ``low``: take in the leader's entries
        of the sets now whole in its log, into the log's sets and the producer tables."""
        end = self.logs[(topic, partition)].end_offset
        entries = [e for e in entries if low < e[5] <= end]
        if entries:
            self.sets[(topic, partition)].extend(entries)
            self._replay(topic, partition, entries)

    def truncated(self, topic: str, partition: int, offset: int, reset: bool = False) -> None:
        """The log was cut at ``offset`` (``reset``: restarted empty there): its sets past
        the cut go, and its producers are judged from what is left."""
        sums = self.checksums.get((topic, partition))
        if sums is not None and reset:
            sums.clear()
        elif sums is not None:
            sums.cut(offset)
        sets = self.sets[(topic, partition)]
        if reset:
            sets.clear()
        elif not sets.cut(offset):
            return
        self.producers.forget_partition(topic, partition)
        self.kafka_sequences.forget((topic, partition))
        self._replay(topic, partition, list(sets))
        log = self.logs[(topic, partition)]
        producer_snapshot.write(log.directory, sets.upto(log.flushed_end), sync=True)
        sets.changed = False

    def _replay(self, topic: str, partition: int, entries: list[tuple]) -> None:
        now = time.monotonic()
        self.producers.replay(topic, partition, entries, now)
        for producer_id, epoch, first_seq, last_seq, base, nxt in entries:
            if epoch != NATIVE_EPOCH:
                self.kafka_sequences.commit((topic, partition), producer_id, epoch, first_seq,
                                            (last_seq - first_seq) % idempotence.SEQ_MOD + 1,
                                            base, nxt)

    def _open_sets(self, topic: str, partition: int, log: Log) -> None:
        """The sets of the log's producer snapshot that its recovered bytes hold."""
        sets = self.sets[(topic, partition)] = SequencedSets()
        entries = producer_snapshot.read(log.directory, log.end_offset)
        sets.extend(entries)
        sets.changed = False
        self._replay(topic, partition, entries)

    def _write_snapshots(self, now: float) -> None:
        """Rewrite the snapshot of each log whose sets changed, up to its flushed end."""
        self._next_snapshot = now + producer_snapshot.INTERVAL_S
        for key, sets in self.sets.items():
            if not sets.changed:
                continue
            log = self.logs[key]
            try:
                producer_snapshot.write(log.directory, sets.upto(log.flushed_end))
            except StorageError as exc:
                self.errors.task_failed("producer_snapshot", exc)
                continue
            sets.changed = log.flushed_end < log.end_offset

    def fetched(self, topic: str, partition: int, nbytes: int) -> None:
        """Count one answered fetch of ``nbytes``."""
        self.stats["bytes_out"] += nbytes
        stats = self.partition_stats[(topic, partition)]
        stats["bytes_out"] += nbytes
        stats["fetches"] += 1

    def metadata_rows(self) -> list[dict]:
        """One METADATA row per hosted partition, sorted. ``last_append_ms_ago``: since the
        last append (a producer's, or a follower's copy of one; None: none since the broker
        started), what ``topics delete`` asks to tell whether producers are connected."""
        now = time.monotonic()
        return [
            {"topic": topic, "partition": partition, "start_offset": log.start_offset,
             "end_offset": log.end_offset, "visible_end": log.visible_end,
             "segments": log.segment_count, "size_bytes": log.size_bytes,
             "gap_bytes": sum(resume - first for first, resume in log.gaps),
             "corrupt_messages": log.corrupt_messages, "scrub": log.scrub_state,
             "flushes": log.flush_count, "flush_seconds": log.flush_seconds,
             "last_append_ms_ago": _ms_since(self._routes.get((topic, partition)), now),
             "retention_held_segments": log.last_retention.held,
             "backlog": self.backlog.rows(topic, partition),
             **self._clean_row(log), **self.partition_stats.get((topic, partition), {})}
            for (topic, partition), log in sorted(self.logs.items())]

    def _clean_row(self, log: Log) -> dict:
        """The cleaner's counts of a compacted log (METADATA; tests wait on ``cleans``)."""
        if not log.config.compact:
            return {}
        state = self.cleaner.state(log)
        return {"cleanup_policy": log.config.cleanup_policy, "cleans": state.cleans,
                "cleaned_messages": state.removed_messages,
                "cleaned_bytes": state.removed_bytes, "clean_end": state.clean_end,
                "clean_checks": state.checks, "clean_read_bytes": state.read_bytes,
                "cleaned_segments": state.rewritten_segments, "uncleanable": state.uncleanable}

    # --- work between requests -------------------------------------------------------------

    def maintain(self, now: float) -> None:
        """The loop's work between requests: due flushes to the flusher, a pending placement
        change once its back-off allows, retention once its interval passed."""
        for log in self.logs.values():
            if log.flush_due(now):
                self.flusher.submit(log)
        if not self._placement_changes.empty() and now >= self._placement_retry_at:
            self._refresh_placement(now)
        if now >= self._next_backlog:
            self._check_backlog(now)
        if now >= self._next_retention:
            self._apply_retention(now)
        if now >= self._next_snapshot:
            self._write_snapshots(now)

    def _refresh_placement(self, now: float) -> None:
        """Open the partitions newly placed here; on failure the change stays pending and is
        tried again after the back-off."""
        while not self._placement_changes.empty():
            self._placement_changes.get_nowait()
        try:
            complete = self._open_placed_logs()
        except self._outside_errors as exc:
            self._retry_placement(now)
            self.errors.task_failed("placement_refresh", exc, self._placement_backoff)
            return
        if complete:
            self._placement_backoff = 0.0
        else:
            self._retry_placement(now)

    def _retry_placement(self, now: float) -> None:
        self._placement_changes.put(True)
        self._placement_backoff = min(RETRY_MAX_S, 2 * self._placement_backoff or RETRY_FIRST_S)
        self._placement_retry_at = now + self._placement_backoff

    def _open_placed_logs(self) -> bool:
        """Open a Log for every partition placed on this broker and publish them; False when a
        log could not be opened (counted; the caller tries again later).

        ZooKeeper errors propagate: they stop the whole refresh, which is retried as a whole.
        """
        complete = True
        names = topics.names(self.zk)
        for topic in sorted({t for t, _ in self.logs} - set(names)):
            self._remove_topic(topic)
        for topic in names:
            try:
                placement = self._view.placement(topic)
            except topics.TopicError:
                continue
            mine = placement.hosted_by(self.config.broker_id)
            log_config = self._log_config(placement)
            for partition in mine:
                if (topic, partition) in self.logs:
                    self._configure(topic, partition, placement, log_config)
                    continue
                try:
                    log = Log(self.data_dir / topic / str(partition), log_config)
                except StorageError as exc:
                    self.errors.task_failed("open_log", exc)
                    complete = False
                    continue
                self.logs[(topic, partition)] = log
                self._open_sets(topic, partition, log)
                if len(placement.replicas[partition]) > 1:
                    self.checksums[(topic, partition)] = AppendChecksums()
                self.on_open(topic, partition, placement.replicas[partition],
                             placement.min_insync_replicas, log)
                if log.scrub_state == "pending":
                    self.scrubber.submit(log)
            hosted = [p for p in mine if (topic, p) in self.logs]
            if hosted and self._published.get(topic) != hosted:
                self.registration.publish(topic, hosted)
                self._published[topic] = hosted
        return complete

    def _log_config(self, placement: topics.Placement):
        """The broker's log settings with the topic's own overrides."""
        overrides = topic_config.log_overrides(placement.config)
        return dataclasses.replace(self.config.log, **overrides) if overrides else self.config.log

    def _configure(self, topic: str, partition: int, placement: topics.Placement,
                   log_config) -> None:
        """Apply a changed topic config to an open log (``Log.reconfigure``) and min ISR."""
        log = self.logs[(topic, partition)]
        if log.config != log_config:
            log.reconfigure(log_config)
            logger.info("%s/%d: settings now %s", topic, partition,
                        placement.config or "the broker's defaults")
        self.on_configure(topic, partition, placement.min_insync_replicas)

    def _remove_topic(self, topic: str) -> None:
        """The topic was deleted: drop its partitions' roles, close and delete its logs, and
        withdraw this broker's announcement. A file that cannot be removed is counted and
        logged; the log is closed and forgotten either way (the topic is gone)."""
        for key in sorted(k for k in self.logs if k[0] == topic):
            log = self.logs.pop(key)
            self._routes.pop(key, None)
            self.partition_stats.pop(key, None)
            self.sets.pop(key, None)        # no snapshot for a log that is gone
            self.checksums.pop(key, None)
            self.producers.forget_partition(*key)
            self.kafka_sequences.forget(key)
            self.on_remove(key[0], key[1], log)
            self.cleaner.forget(log)
            try:
                log.close()
            except (OSError, SluiceError) as exc:
                logger.warning("closing %s of deleted topic %s: %s", log.directory, topic, exc)
            try:
                shutil.rmtree(log.directory)
            except OSError as exc:
                self.errors.task_failed("delete_log", exc)
        shutil.rmtree(self.data_dir / topic, ignore_errors=True)
        self._published.pop(topic, None)
        self.registration.unpublish(topic)
        logger.info("topic %s deleted: its logs on broker %d are removed", topic,
                    self.config.broker_id)

    def _check_backlog(self, now: float) -> None:
        """The backlog protections' check (BacklogGuard.check); a failure is retried at the
        next interval."""
        self._next_backlog = now + self.config.backlog_check_ms / 1000
        try:
            self.backlog.check(self.logs, time.time())
        except self._outside_errors as exc:
            self.errors.task_failed("backlog_check", exc)

    def _apply_retention(self, now: float) -> None:
        """Retention over every log whose policy deletes (each Log logs what it deleted), and
        the log cleaner for those that compact; a failing log is retried sooner than the next
        interval."""
        interval = self.config.cleaner_interval_ms / 1000
        self._next_retention = now + interval
        now_ms = time.time() * 1000
        for (topic, partition), log in list(self.logs.items()):
            groups, holds = self.backlog.holds(topic, partition)
            try:
                if log.config.compact:
                    self.cleaner.submit_if_due(log, now_ms)
                if log.config.delete:
                    log.apply_retention(holds=holds)
                    if groups:
                        self.backlog.retained(topic, partition, log, groups)
            except (StorageError, OSError) as exc:
                retry = min(interval, RETRY_MAX_S)
                self._next_retention = min(self._next_retention, now + retry)
                self.errors.task_failed("retention", exc, retry)


def _ms_since(route: Route | None, now: float) -> int | None:
    if route is None or route.last_append is None:
        return None
    return int((now - route.last_append) * 1000)


def _judge(route: Route, turn: Turn, requests: list) -> tuple[list, list, list]:
    """The producer table's decision on each request of a turn: the refusals, answered as
    they are; the appends ``(identity, corr, acks, body, count)``; the duplicates
    ``(identity, corr, acks, decision)`` (an acks=all duplicate waits for the high watermark
    as its original would)."""
    refused, writes, duplicates = [], [], []
    for identity, corr, request, body, count in requests:
        decision = turn.judge(request.producer_id, request.sequence, request.first_unacked)
        if decision.action is Action.APPEND:
            writes.append((identity, corr, request.acks, body, count))
        elif decision.action is Action.DUPLICATE:
            duplicates.append((identity, corr, request.acks, decision))
        else:
            refused.append((identity, corr, 1, OutOfOrderSequence(
                f"{route.topic}/{route.partition}: sequence {request.sequence} of producer "
                f"{request.producer_id:x} came before {decision.expected}; send again from "
                f"{decision.expected}")))
    return refused, writes, duplicates


class _Stopped(Exception):
    """Raised into a scrub walk when the broker stops."""


class Scrubber(threading.Thread):
    """CRC-checks the sealed segments of logs opened after an unclean shutdown, one log at a
    time, beside the request loop: serving does not wait for it. Each bad message is logged
    and counted in its log's METADATA row; a failure is reported to ``on_error``."""

    def __init__(self, on_error):
        super().__init__(name="scrubber", daemon=True)
        self.on_error = on_error
        self.pending: queue.Queue = queue.Queue()
        self._stopping = threading.Event()

    def submit(self, log: Log) -> None:
        self.pending.put(log)

    def stop(self) -> None:
        self._stopping.set()
        self.pending.put(None)

    def run(self) -> None:
        while (item := self.pending.get()) is not None and not self._stopping.is_set():
            try:
                found = item.scrub_sealed(on_progress=self._check_stop)
            except _Stopped:
                return
            except SluiceError as exc:
                self.on_error("scrub", exc)
                continue
            logger.info("start-up scrub of %s: %d corrupt message(s) in its sealed segments",
                        item.directory, len(found))

    def _check_stop(self, _position: int) -> None:
        if self._stopping.is_set():
            raise _Stopped()
