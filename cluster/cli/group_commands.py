"""``sluice groups list|describe``: consumer groups, their members and their lag per partition
(cluster/observe/lag.py computes it; a total would hide the one partition that is stuck)."""
from __future__ import annotations

from cluster.cli.output import blank, err, print_json, print_table
from coordinator import zk
from coordinator.errors import InvalidArgument, SluiceError


class UnknownGroup(SluiceError):
    """No consumer group of that name has registered in this cluster."""


def groups_list(args) -> int:
    from coordinator import consumer_registry as groups
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
        rows = [{"group": g,
                 "members": groups.members(client, g) + groups.kafka_members(client, g),
                 "topics": groups.topics_of(client, g)} for g in groups.groups(client)]
    finally:
        client.stop()
    if args.json:
        print_json(rows)
    else:
        print_table("consumer groups", ["group", "members", "topics"],
                    [[r["group"], len(r["members"]), ", ".join(r["topics"])] for r in rows])
    return 0


def groups_describe(args) -> int:
    from clients.brokers import BrokerPool
    from cluster.observe import lag
    from coordinator import consumer_registry as groups
    if args.interval < 0:
        raise InvalidArgument("--interval must not be negative")
    pool = BrokerPool(args.zookeeper, args.data_dir, request_timeout_ms=2000)
    try:
        if args.group not in groups.groups(pool.zk):
            raise UnknownGroup(f"unknown group {args.group}")
        with err.status(f"sampling group {args.group} for {args.interval:g} s"):
            rows = lag.describe(pool, args.group, args.interval)
    finally:
        pool.close()
    if args.json:
        print_json({"group": args.group, "interval_s": args.interval,
                     "partitions": lag.as_dicts(rows)})
        return 0
    print_table(f"group {args.group} (lag per partition; messages estimated from the mean size of "
                f"the messages after the committed offset)",
                ["topic", "partition", "owner", "committed", "log end", "lag bytes", "lag msgs",
                 "msgs/s", "state"],
                [[r.topic, r.partition, r.owner or "-", blank(r.committed), blank(r.log_end),
                  blank(r.lag_bytes), blank(r.lag_messages), blank(r.consume_msgs_per_s),
                  _state(r)] for r in rows])
    return 0


def _state(row) -> str:
    if row.error:
        return f"error: {row.error}"
    if row.data_loss:
        return f"DATA LOSS: {loss_summary(row.data_loss)}"
    if row.stuck:
        return "STUCK"
    return "ok" if row.owner else "unowned"


def loss_summary(loss: dict) -> str:
    """A data-loss note in one line: events and bytes per kind, e.g. ``skipped 1 (15 B)``."""
    parts = [f"{kind} {total['events']} ({total['bytes']} B)"
             for kind, total in loss.get("totals", {}).items()]
    if "unread_deleted" in loss:
        parts.append(f"unread deleted by retention ({loss['unread_deleted']['bytes']} B)")
    return ", ".join(parts) or f"{loss.get('lost_bytes', 0)} B"
