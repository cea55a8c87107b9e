"""``sluice topics create|list|describe``: topics, their placement and their offsets."""
from __future__ import annotations

from broker import protocol
from cluster.cli.output import blank, err, print_json, print_table
from coordinator import topics, zk


def topics_create(args) -> int:
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
        placement = topics.create(client, args.topic, args.partitions)
    finally:
        client.stop()
    if args.json:
        print_json({"topic": args.topic, "partitions": placement.partitions,
                    "placement": list(placement.brokers)})
    else:
        err.print(f"created topic {args.topic} with {placement.partitions} partition(s) on "
                  f"broker(s) {', '.join(map(str, sorted(set(placement.brokers))))}")
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
    from clients.brokers import BrokerPool
    pool = BrokerPool(args.zookeeper, args.data_dir, request_timeout_ms=2000)
    try:
        placement = pool.view.placement(args.topic)
        live = pool.view.brokers()
        rows = []
        for partition, broker_id in enumerate(placement.brokers):
            row = {"partition": partition, "broker": broker_id, "alive": broker_id in live,
                   "start_offset": None, "end_offset": None}
            if row["alive"]:
                try:
                    row["start_offset"] = pool.offset(args.topic, partition, protocol.EARLIEST)
                    row["end_offset"] = pool.offset(args.topic, partition, protocol.LATEST)
                except protocol.SluiceError as exc:
                    row["error"] = str(exc)
            rows.append(row)
    finally:
        pool.close()
    if args.json:
        print_json({"topic": args.topic, "partitions": rows})
    else:
        print_table(f"topic {args.topic}", ["partition", "broker", "alive", "start offset",
                                             "end offset"],
                    [[r["partition"], r["broker"], r["alive"], blank(r["start_offset"]),
                      blank(r["end_offset"])] for r in rows])
    return 0
