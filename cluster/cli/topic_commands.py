"""``sluice topics create|list|describe|alter|config|delete``: topics, their placement, leaders
and offsets, their own settings; adding partitions and deleting topics. On a secured cluster
the changes need ``admin`` on the topic (coordinator/access.py)."""
from __future__ import annotations

import sys
import time

from cluster.cli.output import blank, err, print_json, print_table
from coordinator import access, partition_state, topic_config, topics, zk
from coordinator.authorizer import TOPIC, Operation
from coordinator.controller import unclean_elections
from coordinator.errors import SluiceError
from coordinator.partition_state import PartitionState

METADATA_TIMEOUT_MS = 2000


def topics_create(args) -> int:
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
        access.require(client, Operation.ADMIN, TOPIC, args.topic)
        placement = topics.create(client, args.topic, args.partitions, args.replication_factor,
                                  args.min_insync_replicas)
    finally:
        client.stop()
    if args.json:
        print_json({"topic": args.topic, "partitions": placement.partitions,
                    "replication_factor": placement.replication_factor,
                    "min_insync_replicas": placement.min_insync_replicas,
                    "placement": list(placement.brokers),
                    "replicas": [list(r) for r in placement.replicas]})
    else:
        replicas = sorted({b for r in placement.replicas for b in r})
        err.print(f"created topic {args.topic} with {placement.partitions} partition(s), "
                  f"{placement.replication_factor} replica(s) each, on broker(s) "
                  f"{', '.join(map(str, replicas))}")
    return 0


def topics_list(args) -> int:
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
        rows = [(name, topics.get(client, name).partitions) for name in topics.names(client)]
    finally:
        client.stop()
    if args.json:
        print_json([{"topic": name, "partitions": count} for name, count in rows])
    else:
        print_table("topics", ["topic", "partitions"], rows)
    return 0


def topics_describe(args) -> int:
    """Per partition: the state node's leader, ISR and epoch; the leader's METADATA row's
    offsets and high watermark (``visible_end`` from a broker that does not report one); each
    replica's log end from its own broker's row (None: it did not answer)."""
    from clients.brokers import BrokerPool
    from cluster.observe.brokers import BrokerStats
    pool = BrokerPool(args.zookeeper, args.data_dir, request_timeout_ms=METADATA_TIMEOUT_MS)
    try:
        placement = pool.view.placement(args.topic)
        live = pool.view.brokers()
        _, rows = BrokerStats(METADATA_TIMEOUT_MS).sample(pool, time.monotonic())
        reported = {(r["broker"], r["partition"]): r for r in rows if r["topic"] == args.topic}
        partitions = [describe_partition(pool.zk, args.topic, p, replicas, live, reported)
                      for p, replicas in enumerate(placement.replicas)]
    finally:
        pool.close()
    if args.json:
        print_json({"topic": args.topic, "replication_factor": placement.replication_factor,
                    "min_insync_replicas": placement.min_insync_replicas,
                    "config": config_shown(placement), "partitions": partitions})
    else:
        own = ", ".join(f"{k}={v}" for k, v in sorted(placement.config.items()))
        print_table(f"topic {args.topic} (replication factor {placement.replication_factor}, "
                    f"min in-sync {placement.min_insync_replicas}"
                    f"{'; ' + own if own else ''})",
                    ["partition", "leader", "epoch", "replicas", "isr", "start offset",
                     "high watermark", "end offset", "log end per replica", "unclean"],
                    [[r["partition"], r["leader"] if r["alive"] else f"{r['leader']} (down)",
                      r["leader_epoch"], _ids(r["replicas"]), _ids(r["isr"]),
                      blank(r["start_offset"]), blank(r["high_watermark"]),
                      blank(r["end_offset"]),
                      " ".join(f"{b}:{blank(end) or '?'}" for b, end in r["replica_ends"].items()),
                      r["unclean_elections"] or ""]
                     for r in partitions])
    return 0


def describe_partition(client, topic: str, partition: int, replicas, live,
                       reported: dict) -> dict:
    """One partition's row of ``topics describe`` (INTERFACE's keys, then sluice's)."""
    found = partition_state.read(client, topic, partition)
    state = found[0] if found else PartitionState.initial(replicas)
    leader_row = reported.get((state.leader, partition)) if state.leader in live else None
    row = {"partition": partition, "leader": state.leader, "replicas": list(replicas),
           "isr": list(state.isr), "leader_epoch": state.leader_epoch,
           "high_watermark": None, "start_offset": None, "end_offset": None}
    if leader_row is not None:
        row["high_watermark"] = leader_row.get("high_watermark", leader_row.get("visible_end"))
        row["start_offset"] = leader_row.get("start_offset")
        row["end_offset"] = leader_row.get("end_offset")
    ends = {}
    for broker in replicas:
        replica_row = reported.get((broker, partition))
        ends[str(broker)] = replica_row.get("end_offset") if replica_row else None
    unclean = unclean_elections(client, topic, partition)
    row.update(replica_ends=ends, broker=state.leader, alive=state.leader in live,
               unclean_elections=unclean["count"] if unclean else 0)
    return row


def _ids(brokers) -> str:
    return ",".join(map(str, brokers))


class ProducersConnected(SluiceError):
    """``topics delete``: the topic is being written to (or a broker could not say)."""


ALTER_WARNING = ("keys will map to new partitions: a key's messages written before the change "
                 "stay in its old partition, and per-key order across the change is not kept")


def topics_alter(args) -> int:
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
        access.require(client, Operation.ADMIN, TOPIC, args.topic)
        before = topics.get(client, args.topic)
        if args.partitions <= before.partitions:
            raise topics.PartitionsOnlyGrow(
                f"topic {args.topic} has {before.partitions} partition(s); partitions can only "
                f"be added, so --partitions must be more than {before.partitions}")
        sys.stderr.write(f"warning: {ALTER_WARNING}\n")
        sys.stderr.flush()
        grown = topics.add_partitions(client, args.topic, args.partitions)
    finally:
        client.stop()
    added = [list(r) for r in grown.replicas[before.partitions:]]
    if args.json:
        print_json({"topic": args.topic, "partitions": grown.partitions,
                    "previous_partitions": before.partitions, "added_replicas": added,
                    "warning": ALTER_WARNING})
    else:
        err.print(f"topic {args.topic} now has {grown.partitions} partitions (added "
                  f"{', '.join(f'{before.partitions + i}: {_ids(r)}' for i, r in enumerate(added))})")
    return 0


def topics_config(args) -> int:
    settings = topic_config.parse_assignments(args.set or [])
    removed = tuple(args.unset or ())
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
        if settings or removed:
            access.require(client, Operation.ADMIN, TOPIC, args.topic)
            placement = topics.configure(client, args.topic, settings, removed)
        else:
            placement = topics.get(client, args.topic)
    finally:
        client.stop()
    shown = config_shown(placement)
    if args.json:
        print_json({"topic": args.topic, "config": shown})
    else:
        print_table(f"topic {args.topic}: its own settings (the others are the brokers')",
                    ["setting", "value"], sorted(shown.items()))
    return 0


def config_shown(placement: topics.Placement) -> dict:
    """A topic's own settings by Kafka's names, min ISR among them."""
    return {**placement.config, topic_config.MIN_INSYNC: placement.min_insync_replicas}


def topics_delete(args) -> int:
    from clients.brokers import BrokerPool
    from cluster.observe.brokers import BrokerStats
    from coordinator.offset_store_choice import OFFSETS_TOPIC
    if args.topic == OFFSETS_TOPIC:
        raise SluiceError(f"{OFFSETS_TOPIC} holds the committed offsets of every log-store group; "
                          f"it is not deleted (move a group with groups migrate-offsets)")
    pool = BrokerPool(args.zookeeper, args.data_dir, request_timeout_ms=METADATA_TIMEOUT_MS)
    try:
        access.require(pool.zk, Operation.ADMIN, TOPIC, args.topic)
        placement = pool.view.placement(args.topic)
        if not args.force:
            brokers, rows = BrokerStats(METADATA_TIMEOUT_MS).sample(pool, time.monotonic())
            hosting = {b for r in placement.replicas for b in r}
            silent = sorted(b["broker"] for b in brokers if not b["up"] and b["broker"] in hosting)
            recent = producing(rows, args.topic, args.idle_seconds * 1000)
            if recent or silent:
                raise ProducersConnected(_refusal(args.topic, recent, silent, args.idle_seconds))
        in_log = _delete_log_offsets(pool, args.topic)
        groups = sorted(set(topics.delete(pool.zk, args.topic)) | set(in_log))
    finally:
        pool.close()
    if args.json:
        print_json({"topic": args.topic, "deleted": True, "partitions": placement.partitions,
                    "groups_offsets_deleted": groups, "forced": bool(args.force)})
    else:
        err.print(f"deleted topic {args.topic} ({placement.partitions} partition(s)); offsets "
                  f"of {len(groups)} group(s) deleted; the brokers remove its logs")
    return 0


def _delete_log_offsets(pool, topic: str) -> list[str]:
    """Tombstone the topic's commits of every log-store group (the ZooKeeper ones go with
    ``topics.delete``); the groups that had some."""
    from clients.log_offsets import LogOffsetStore
    from coordinator import consumer_registry
    from coordinator.offset_store_choice import LOG, store_of
    cleared = []
    for group in consumer_registry.groups(pool.zk):
        if store_of(pool.zk, group) != LOG:
            continue
        store = LogOffsetStore(pool, group)
        mine = [tp for tp in store.all_committed() if tp[0] == topic]
        if mine:
            store.remove(mine)
            cleared.append(group)
    return cleared


def producing(rows: list[dict], topic: str, window_ms: float) -> list[tuple[int, int, int]]:
    """``(broker, partition, ms ago)`` of the topic's replicas appended to within the window
    (METADATA's ``last_append_ms_ago``), sorted. Pure.

    >>> producing([{"topic": "t", "broker": 1, "partition": 0, "last_append_ms_ago": 900},
    ...            {"topic": "t", "broker": 0, "partition": 1, "last_append_ms_ago": None},
    ...            {"topic": "u", "broker": 0, "partition": 0, "last_append_ms_ago": 5}], "t", 1000)
    [(1, 0, 900)]
    """
    return sorted((r["broker"], r["partition"], r["last_append_ms_ago"]) for r in rows
                  if r["topic"] == topic and r.get("last_append_ms_ago") is not None
                  and r["last_append_ms_ago"] < window_ms)


def _refusal(topic: str, recent, silent, idle_seconds: float) -> str:
    reasons = []
    if recent:
        broker, partition, ago = recent[0]
        reasons.append(f"producers are connected: {len(recent)} of its replicas were appended to "
                       f"within {idle_seconds:g} s (e.g. {topic}/{partition} on broker {broker}, "
                       f"{ago / 1000:.1f} s ago)")
    if silent:
        reasons.append(f"broker(s) {_ids(silent)} hosting it did not answer, so they cannot say")
    return (f"not deleting topic {topic}: {'; '.join(reasons)}; stop the producers, or pass "
            f"--force")
