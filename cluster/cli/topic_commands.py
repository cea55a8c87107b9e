"""``sluice topics create|list|describe``: topics, their placement, leaders and offsets."""
from __future__ import annotations

import time

from cluster.cli.output import blank, err, print_json, print_table
from coordinator import partition_state, topics, zk
from coordinator.controller import unclean_elections
from coordinator.partition_state import PartitionState

METADATA_TIMEOUT_MS = 2000


def topics_create(args) -> int:
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
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
                    "partitions": partitions})
    else:
        print_table(f"topic {args.topic} (replication factor {placement.replication_factor}, "
                    f"min in-sync {placement.min_insync_replicas})",
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
