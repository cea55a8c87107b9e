"""Prometheus exposition of the sampler's latest snapshot (``/metrics`` beside the dashboard).

A custom Collector reads the newest snapshot at scrape time, so nothing lives in
prometheus-client's global registry and two supervisors in one process (tests) do not mix.
Counters are the brokers' and the kernel's own cumulative figures, named ``..._total``
(Prometheus computes rates with ``rate()``); gauges are the sampler's current values. A rate is
exported only where no counter stands behind it, and then named with its unit (a group's consume
rate comes from two samples of its committed offset: ``_per_second``); CPU is the counter
``sluice_process_cpu_seconds_total`` alone (``rate()`` of it is the cores used). A figure the sampler could not get
(a broker that did not answer, a lag in messages with no mean size yet) is left out rather
than reported as 0.

| metric                                   | type    | labels                          |
| ---------------------------------------- | ------- | ------------------------------- |
| sluice_broker_up                         | gauge   | broker                          |
| sluice_broker_messages_in_total          | counter | broker, topic, partition        |
| sluice_broker_bytes_in_total             | counter | broker, topic, partition        |
| sluice_broker_bytes_out_total            | counter | broker, topic, partition        |
| sluice_broker_fetches_total              | counter | broker, topic, partition        |
| sluice_broker_log_size_bytes             | gauge   | broker, topic, partition        |
| sluice_broker_log_segments               | gauge   | broker, topic, partition        |
| sluice_broker_log_start_offset           | gauge   | broker, topic, partition        |
| sluice_broker_log_end_offset             | gauge   | broker, topic, partition (visible end) |
| sluice_broker_flushes_total              | counter | broker, topic, partition        |
| sluice_broker_flush_seconds_total        | counter | broker, topic, partition        |
| sluice_broker_errors_total               | counter | broker, error                   |
| sluice_group_members                     | gauge   | group                           |
| sluice_group_rebalances_total            | counter | group                           |
| sluice_group_rebalance_seconds_total     | counter | group                           |
| sluice_group_last_rebalance_seconds      | gauge   | group                           |
| sluice_group_rebalancing                 | gauge   | group                           |
| sluice_group_committed_offset            | gauge   | group, topic, partition         |
| sluice_group_lag_bytes                   | gauge   | group, topic, partition         |
| sluice_group_lag_messages                | gauge   | group, topic, partition         |
| sluice_group_consume_messages_per_second | gauge   | group, topic, partition         |
| sluice_group_consume_bytes_per_second    | gauge   | group, topic, partition         |
| sluice_group_stuck                       | gauge   | group, topic, partition         |
| sluice_group_owned                       | gauge   | group, topic, partition         |
| sluice_group_data_loss_bytes_total       | counter | group, topic, partition         |
| sluice_group_retention_seconds_left      | gauge   | group, topic, partition         |
| sluice_backlog_at_risk                   | gauge   | group, topic, partition, policy |
| sluice_backlog_warnings_total            | counter | group, topic, partition         |
| sluice_backlog_forced_segments_total     | counter | group, topic, partition (hold cap) |
| sluice_process_up                        | gauge   | role, id                        |
| sluice_process_cpu_seconds_total         | counter | role, id                        |
| sluice_process_resident_memory_bytes     | gauge   | role, id                        |
| sluice_process_threads                   | gauge   | role, id                        |
| sluice_process_open_files                | gauge   | role, id (open file descriptors) |
| sluice_process_disk_read_bytes_total     | counter | role, id                        |
| sluice_process_disk_write_bytes_total    | counter | role, id                        |
| sluice_process_context_switches_total    | counter | role, id                        |
| sluice_process_restarts_total            | counter | role, id                        |
| sluice_audit_acknowledged_total          | counter | topic (audited producers, __audit) |
| sluice_audit_unacknowledged_total        | counter | topic (sent with acks=0)        |
| sluice_audit_consumed_total              | counter | group, topic (committed)        |
| sluice_sampler_cpu_seconds_total         | counter | (the sampler thread's own CPU)  |
| sluice_sampler_tick_seconds              | gauge   | (how long the last sample took) |
"""
from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PARTITION = ["broker", "topic", "partition"]
GROUP_PARTITION = ["group", "topic", "partition"]
PROCESS = ["role", "id"]

# (metric name, snapshot key, help, counter?)
_BROKER_PARTITION = [
    ("sluice_broker_messages_in", "messages_in", "Messages appended to the partition", True),
    ("sluice_broker_bytes_in", "bytes_in", "Bytes appended to the partition", True),
    ("sluice_broker_bytes_out", "bytes_out", "Bytes sent to fetches of the partition", True),
    ("sluice_broker_fetches", "fetches", "Fetches answered for the partition", True),
    ("sluice_broker_log_size_bytes", "size_bytes", "Bytes on disk in the partition's log", False),
    ("sluice_broker_log_segments", "segments", "Segment files of the partition's log", False),
    ("sluice_broker_log_start_offset", "start_offset", "First offset still in the log", False),
    ("sluice_broker_log_end_offset", "visible_end", "Offset after the last message visible to "
     "consumers (flushed)", False),
    ("sluice_broker_flushes", "flushes", "Flushes (fsync) of the partition's log", True),
    ("sluice_broker_flush_seconds", "flush_seconds", "Time spent flushing the log", True),
]
_GROUP_PARTITION = [
    ("sluice_group_committed_offset", "committed", "The group's committed offset"),
    ("sluice_group_lag_bytes", "lag_bytes", "Bytes between the committed offset and the log end"),
    ("sluice_group_lag_messages", "lag_messages", "Messages behind (lag bytes / mean size)"),
    ("sluice_group_consume_messages_per_second", "consume_msgs_per_s", "Messages per second "
     "the committed offset moves (over the sampler's window)"),
    ("sluice_group_consume_bytes_per_second", "consume_bytes_per_s", "Bytes per second the "
     "committed offset moves (over the sampler's window)"),
    ("sluice_group_retention_seconds_left", "retention_seconds_left", "Seconds until retention "
     "may delete the oldest unconsumed segment (estimate; absent when not at risk)"),
]
_PROCESS = [
    ("sluice_process_cpu_seconds", "cpu_seconds", "User and system CPU time", True),
    ("sluice_process_resident_memory_bytes", "rss_bytes", "Resident set size", False),
    ("sluice_process_threads", "threads", "Threads", False),
    ("sluice_process_open_files", "open_files", "Open file descriptors", False),
    ("sluice_process_disk_read_bytes", "read_bytes", "Bytes read from storage", True),
    ("sluice_process_disk_write_bytes", "write_bytes", "Bytes written to storage", True),
    ("sluice_process_context_switches", "ctx_switches", "Voluntary and involuntary context "
     "switches", True),
    ("sluice_process_restarts", "restarts", "Times the supervisor restarted this slot", True),
]


class SnapshotCollector:
    """A prometheus-client Collector over ``latest()``, the sampler's newest snapshot or None."""

    def __init__(self, latest: Callable[[], dict | None]):
        self.latest = latest

    def collect(self) -> Iterator[Metric]:
        snapshot = self.latest()
        if snapshot is None:
            return
        yield from _brokers(snapshot)
        yield from _groups(snapshot)
        yield from _processes(snapshot)
        yield from _audit(snapshot)
        sampler = snapshot.get("sampler", {})
        cpu = CounterMetricFamily("sluice_sampler_cpu_seconds",
                                  "CPU time of the dashboard sampler thread")
        cpu.add_metric([], sampler.get("cpu_seconds", 0.0))
        tick = GaugeMetricFamily("sluice_sampler_tick_seconds", "Duration of the last sample")
        tick.add_metric([], sampler.get("tick_ms", 0.0) / 1000)
        yield cpu
        yield tick


def _family(name: str, help_text: str, labels: list[str], counter: bool) -> Metric:
    cls = CounterMetricFamily if counter else GaugeMetricFamily
    return cls(name, help_text, labels=labels)


def _brokers(snapshot: dict) -> Iterator[Metric]:
    up = GaugeMetricFamily("sluice_broker_up", "1 when the broker answered the last METADATA",
                           labels=["broker"])
    errors = CounterMetricFamily("sluice_broker_errors", "Requests the broker answered with an "
                                 "error, by error", labels=["broker", "error"])
    for broker in snapshot.get("brokers", []):
        up.add_metric([str(broker["broker"])], 1 if broker.get("up") else 0)
        for name, count in sorted(broker.get("errors", {}).items()):
            errors.add_metric([str(broker["broker"]), name], count)
    yield up
    yield errors
    for name, key, help_text, counter in _BROKER_PARTITION:
        family = _family(name, help_text, PARTITION, counter)
        for part in snapshot.get("partitions", []):
            if part.get(key) is not None:
                family.add_metric([str(part["broker"]), part["topic"], str(part["partition"])],
                                  part[key])
        yield family


def _groups(snapshot: dict) -> Iterator[Metric]:
    members = GaugeMetricFamily("sluice_group_members", "Consumers registered in the group",
                                labels=["group"])
    rebalances = CounterMetricFamily("sluice_group_rebalances", "Rebalances seen to settle in "
                                     "ZooKeeper", labels=["group"])
    seconds = CounterMetricFamily("sluice_group_rebalance_seconds", "Time spent rebalancing "
                                  "(to one sampling interval)", labels=["group"])
    last = GaugeMetricFamily("sluice_group_last_rebalance_seconds", "Duration of the last "
                             "settled rebalance", labels=["group"])
    rebalancing = GaugeMetricFamily("sluice_group_rebalancing", "1 while the owners differ from "
                                    "the range assignment of the members", labels=["group"])
    stuck = GaugeMetricFamily("sluice_group_stuck", "1 when the partition has lag and its "
                              "committed offset did not move for the stuck window",
                              labels=GROUP_PARTITION)
    owned = GaugeMetricFamily("sluice_group_owned", "1 when a consumer owns the partition",
                              labels=GROUP_PARTITION)
    loss = CounterMetricFamily("sluice_group_data_loss_bytes", "Bytes the group lost unread "
                               "(skipped, or deleted by retention before it read them)",
                               labels=GROUP_PARTITION)
    per_partition = [(_family(n, h, GROUP_PARTITION, False), k) for n, k, h in _GROUP_PARTITION]
    for group in snapshot.get("groups", []):
        name = group["group"]
        members.add_metric([name], len(group.get("members", [])))
        rebalances.add_metric([name], group.get("rebalances", 0))
        seconds.add_metric([name], group.get("rebalance_seconds_total", 0.0))
        if group.get("last_rebalance_s") is not None:
            last.add_metric([name], group["last_rebalance_s"])
        rebalancing.add_metric([name], 1 if group.get("state") == "rebalancing" else 0)
        for row in group.get("partitions", []):
            labels = [name, row["topic"], str(row["partition"])]
            for family, key in per_partition:
                if row.get(key) is not None:
                    family.add_metric(labels, row[key])
            stuck.add_metric(labels, 1 if row.get("stuck") else 0)
            owned.add_metric(labels, 1 if row.get("owner") else 0)
            if row.get("data_loss"):
                loss.add_metric(labels, row["data_loss"].get("lost_bytes", 0))
    yield from (members, rebalances, seconds, last, rebalancing, stuck, owned, loss)
    yield from _backlog(snapshot)
    for family, _ in per_partition:
        yield family


def _backlog(snapshot: dict) -> Iterator[Metric]:
    """Backlog protections (broker/backlog_guard.py), from the partition leaders' METADATA."""
    risk = GaugeMetricFamily("sluice_backlog_at_risk", "1 while the protected group's oldest "
                             "unconsumed message is within min_seconds of expiring by retention",
                             labels=GROUP_PARTITION + ["policy"])
    warnings = CounterMetricFamily("sluice_backlog_warnings", "Times the protected group "
                                   "entered the at-risk state", labels=GROUP_PARTITION)
    forced = CounterMetricFamily("sluice_backlog_forced_segments", "Segments of the group's "
                                 "unconsumed messages retention deleted past the hold's "
                                 "max_hold_bytes", labels=GROUP_PARTITION)
    for group in snapshot.get("groups", []):
        for row in group.get("partitions", []):
            entry = row.get("backlog")
            if not entry:
                continue
            labels = [group["group"], row["topic"], str(row["partition"])]
            risk.add_metric(labels + [entry["policy"]], 1 if entry.get("at_risk") else 0)
            warnings.add_metric(labels, entry.get("warnings", 0))
            forced.add_metric(labels, entry.get("forced_segments", 0))
    yield from (risk, warnings, forced)


def _processes(snapshot: dict) -> Iterator[Metric]:
    up = GaugeMetricFamily("sluice_process_up", "1 when the process is running",
                           labels=PROCESS)
    families = [(_family(n, h, PROCESS, c), k) for n, k, h, c in _PROCESS]
    for proc in snapshot.get("processes", []):
        labels = [proc["role"], str(proc["id"])]
        up.add_metric(labels, 1 if proc.get("alive") else 0)
        for family, key in families:
            if proc.get(key) is not None:
                family.add_metric(labels, proc[key])
    yield up
    for family, _ in families:
        yield family


def _audit(snapshot: dict) -> Iterator[Metric]:
    """The audit trail's totals; nothing before the sampler has read ``__audit``."""
    audit = snapshot.get("audit")
    if not audit:
        return
    acked = CounterMetricFamily("sluice_audit_acknowledged", "Messages audited producers had "
                                "acknowledged (their count records in __audit)", labels=["topic"])
    unacked = CounterMetricFamily("sluice_audit_unacknowledged", "Messages audited producers "
                                  "sent with acks=0", labels=["topic"])
    consumed = CounterMetricFamily("sluice_audit_consumed", "Messages auditing group consumers "
                                   "committed", labels=["group", "topic"])
    for row in audit["produced"]:
        acked.add_metric([row["topic"]], row["acknowledged"])
        unacked.add_metric([row["topic"]], row["unacknowledged"])
    for row in audit["consumed"]:
        consumed.add_metric([row["group"], row["topic"]], row["consumed"])
    yield from (acked, unacked, consumed)


def render(latest: Callable[[], dict | None]) -> bytes:
    """The Prometheus text for ``latest()``'s snapshot, from a registry of its own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(latest))
    return generate_latest(registry)
