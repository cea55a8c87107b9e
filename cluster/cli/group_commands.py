"""``sluice groups list|describe|reset-offsets|migrate-offsets|delete|protect|unprotect``:
consumer groups, their members and their lag per partition (cluster/observe/lag.py computes it;
a total would hide the one partition that is stuck); moving an empty group's offsets
(cluster/cli/offset_reset.py), moving them between the ZooKeeper and the log store
(cluster/cli/offset_migration.py), deleting a group, and its backlog protections
(coordinator/backlog_protection.py). Each works for both offset stores
(coordinator/offset_store_choice.py)."""
from __future__ import annotations

from dataclasses import asdict

from cluster.cli.output import blank, err, print_json, print_table
from coordinator import backlog_protection, zk
from coordinator.errors import InvalidArgument, SluiceError


class UnknownGroup(SluiceError):
    """No consumer group of that name has registered in this cluster."""


def groups_list(args) -> int:
    from coordinator import consumer_registry as groups
    client = zk.connect(args.zookeeper, args.data_dir)
    from coordinator.offset_store_choice import store_of
    try:
        rows = [{"group": g,
                 "members": groups.members(client, g) + groups.kafka_members(client, g),
                 "topics": groups.topics_of(client, g),
                 "offset_store": store_of(client, g)} for g in groups.groups(client)]
    finally:
        client.stop()
    if args.json:
        print_json(rows)
    else:
        print_table("consumer groups", ["group", "members", "topics", "offsets in"],
                    [[r["group"], len(r["members"]), ", ".join(r["topics"]), r["offset_store"]]
                     for r in rows])
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
        members = len(groups.members(pool.zk, args.group)
                      + groups.kafka_members(pool.zk, args.group))
        protections = backlog_protection.of_group(pool.zk, args.group)
    finally:
        pool.close()
    if args.json:
        print_json({"group": args.group, "interval_s": args.interval,
                     "partitions": lag.as_dicts(rows),
                     "protections": _protection_dicts(protections)})
        return 0
    print_table(f"group {args.group} (lag per partition; messages estimated from the mean size of "
                f"the messages after the committed offset)",
                ["topic", "partition", "owner", "committed", "log end", "lag bytes", "lag msgs",
                 "msgs/s", "state"],
                [[r.topic, r.partition, r.owner or "-", blank(r.committed), blank(r.log_end),
                  blank(r.lag_bytes), blank(r.lag_messages), blank(r.consume_msgs_per_s),
                  _state(r, members)] for r in rows])
    if protections:
        _print_protections(args.group, protections)
    return 0


def _protection_dicts(protections: dict) -> list[dict]:
    return [{"topic": topic, **asdict(p)} for topic, p in sorted(protections.items())]


def _print_protections(group: str, protections: dict) -> None:
    print_table(f"group {group}: backlog protections", ["topic", "policy", "min seconds",
                                                        "max hold bytes"],
                [[topic, p.policy, p.min_seconds, p.max_hold_bytes if p.holds else "-"]
                 for topic, p in sorted(protections.items())])


def groups_protect(args) -> int:
    """Store a backlog protection of a group on a topic (the topic must exist; the group need
    not yet: a protection may come before its first consumer)."""
    from coordinator import topics
    protection = backlog_protection.Protection(args.policy, args.min_seconds,
                                               args.max_hold_bytes)
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
        topics.get(client, args.topic)
        backlog_protection.protect(client, args.group, args.topic, protection)
    finally:
        client.stop()
    if args.json:
        print_json({"group": args.group, **_protection_dicts({args.topic: protection})[0]})
    else:
        err.print(f"group {args.group} protected on topic {args.topic}: policy "
                  f"{protection.policy} within {protection.min_seconds} s of retention"
                  + (f", holding at most {protection.max_hold_bytes} bytes per partition"
                     if protection.holds else ""))
    return 0


def groups_unprotect(args) -> int:
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
        backlog_protection.unprotect(client, args.group, args.topic)
    finally:
        client.stop()
    if args.json:
        print_json({"group": args.group, "topic": args.topic, "unprotected": True})
    else:
        err.print(f"group {args.group}: backlog protection on topic {args.topic} removed")
    return 0


def _state(row, members: int) -> str:
    from cluster.observe import lag
    state = lag.state(lag.as_dicts([row])[0], members)
    if state == "error":
        return f"error: {row.error}"
    if state == "DATA LOSS":
        return f"DATA LOSS: {loss_summary(row.data_loss)}"
    return "idle (no members)" if state == "idle" else state


def loss_summary(loss: dict) -> str:
    """A data-loss note in one line: events and bytes per kind, e.g. ``skipped 1 (15 B)``."""
    parts = [f"{kind} {total['events']} ({total['bytes']} B)"
             for kind, total in loss.get("totals", {}).items()]
    if "unread_deleted" in loss:
        parts.append(f"unread deleted by retention ({loss['unread_deleted']['bytes']} B)")
    return ", ".join(parts) or f"{loss.get('lost_bytes', 0)} B"


def groups_reset_offsets(args) -> int:
    """The plan as a table (partition, current, new), written unless ``--dry-run``."""
    from clients.brokers import BrokerPool
    from cluster.cli import offset_reset
    target = _target(args)
    from coordinator import access
    from coordinator.authorizer import GROUP, TOPIC, Operation
    pool = BrokerPool(args.zookeeper, args.data_dir, request_timeout_ms=2000)
    try:
        access.require(pool.zk, Operation.CONSUME, GROUP, args.group)
        access.require(pool.zk, Operation.CONSUME, TOPIC, args.topic)
        offset_reset.check_empty(pool.zk, args.group)
        partitions = None if args.partition is None else [args.partition]
        rows = offset_reset.plan(pool, args.group, args.topic, partitions, target)
        writes = 0 if args.dry_run else offset_reset.execute(pool, args.group, rows)
    finally:
        pool.close()
    if args.json:
        print_json({"group": args.group, "topic": args.topic, "dry_run": bool(args.dry_run),
                    "written": writes, "partitions": offset_reset.as_dicts(rows)})
    else:
        print_table(f"group {args.group}, topic {args.topic}: "
                    f"{'plan (dry run, nothing changed)' if args.dry_run else 'offsets reset'}",
                    ["partition", "current", "new", "note"],
                    [[r.partition, "-" if r.current is None else r.current, r.new, r.note]
                     for r in rows])
    return 0


def _target(args):
    from cluster.cli.offset_reset import Target
    if args.to_earliest:
        return Target("earliest")
    if args.to_latest:
        return Target("latest")
    if args.to_datetime is not None:
        return Target("datetime", args.to_datetime)
    if args.to_offset is not None:
        return Target("offset", args.to_offset)
    return Target("shift", args.shift_by)


def groups_migrate_offsets(args) -> int:
    """Copy an empty group's offsets to the other store, flip its record, remove the old."""
    from clients.brokers import BrokerPool
    from cluster.cli import offset_migration
    from coordinator import access
    from coordinator import consumer_registry as groups
    pool = BrokerPool(args.zookeeper, args.data_dir, request_timeout_ms=2000)
    try:
        access.require(pool.zk, None, action=f"migrate the offsets of group {args.group}")
        if args.group not in groups.groups(pool.zk):
            raise UnknownGroup(f"unknown group {args.group}")
        done = offset_migration.migrate(pool, args.group, args.to)
    finally:
        pool.close()
    if args.json:
        print_json(done)
    elif done["note"]:
        err.print(f"group {args.group}: offsets {done['note']}; nothing moved")
    else:
        err.print(f"group {args.group}: {done['moved']} committed offset(s) moved from "
                  f"{done['from']} to {done['to']}")
    return 0


def groups_delete(args) -> int:
    """Remove a group's offsets (in its store), data-loss notes, backlog protections and
    registry nodes; refused with live members."""
    from clients.brokers import BrokerPool
    from clients.log_offsets import LogOffsetStore
    from cluster.cli.offset_reset import check_empty
    from coordinator import access
    from coordinator import consumer_registry as groups
    from coordinator.offset_store_choice import LOG, store_of
    pool = BrokerPool(args.zookeeper, args.data_dir, request_timeout_ms=2000)
    try:
        client = pool.zk
        access.require(client, None, action=f"delete group {args.group}")
        if args.group not in groups.groups(client):
            raise UnknownGroup(f"unknown group {args.group}")
        check_empty(client, args.group)
        if store_of(client, args.group) == LOG:
            store = LogOffsetStore(pool, args.group)
            store.remove(list(store.all_committed()))
        groups.delete(client, args.group)
        backlog_protection.forget_group(client, args.group)
    finally:
        pool.close()
    if args.json:
        print_json({"group": args.group, "deleted": True})
    else:
        err.print(f"deleted group {args.group}: its offsets, data-loss notes, backlog "
                  f"protections and registry nodes")
    return 0
