"""``sluice acl add|remove|list``: who may produce, consume, describe or administer what.

    sluice acl add alice produce consume --topic orders
    sluice acl add alice consume --topic-prefix logs.
    sluice acl add alice consume --group billing
    sluice acl add alice consume --group-prefix etl.
    sluice acl add '*' describe --topic-prefix ''      # everyone may describe every topic
    sluice acl remove alice produce --topic orders
    sluice acl list [alice] [--json]

The rules live in ZooKeeper (coordinator/acl_store.py); brokers watch them, so a change applies
to the next request without a restart. What each operation allows: coordinator/authorizer.py.
Changing them takes the operator's key (coordinator/access.py).
"""
from __future__ import annotations

from cluster.cli.output import err, print_json, print_table
from coordinator import access, zk
from coordinator.acl_store import AclStore, check_principal
from coordinator.authorizer import Pattern, Rule


def _rules(args) -> list[Rule]:
    """The rules the command line names: each operation on its one pattern."""
    for pattern, name in ((Pattern.TOPIC, args.topic), (Pattern.TOPIC_PREFIX, args.topic_prefix),
                          (Pattern.GROUP, args.group),
                          (Pattern.GROUP_PREFIX, args.group_prefix)):
        if name is not None:
            return [Rule(operation, pattern, name) for operation in dict.fromkeys(args.operations)]
    raise AssertionError("the parser requires one of --topic, --topic-prefix, --group, "
                         "--group-prefix")


def acl_add(args) -> int:
    return _change(args, adding=True)


def acl_remove(args) -> int:
    return _change(args, adding=False)


def _change(args, adding: bool) -> int:
    check_principal(args.principal)
    rules = _rules(args)
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
        access.require(client, None, action=f"acl {'add' if adding else 'remove'}")
        store = AclStore(client)
        changed = store.add(args.principal, rules) if adding else store.remove(args.principal,
                                                                               rules)
    finally:
        client.stop()
    if args.json:
        print_json({"principal": args.principal, "added" if adding else "removed":
                    [rule.to_json() for rule in changed]})
        return 0
    for rule in rules:
        if rule in changed:
            err.print(f"{'added' if adding else 'removed'}: {args.principal} may "
                      f"{'' if adding else 'no longer '}{rule}")
        else:
            err.print(f"unchanged: {args.principal} {'already has' if adding else 'has no'} "
                      f"the rule {rule}")
    return 0


def acl_list(args) -> int:
    if args.principal is not None:
        check_principal(args.principal)
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
        found = AclStore(client).rules()
    finally:
        client.stop()
    rows = [(principal, rule) for principal in sorted(found) for rule in found[principal]
            if args.principal in (None, principal)]
    if args.json:
        print_json([{"principal": principal, **rule.to_json()} for principal, rule in rows])
    else:
        print_table("ACLs (everything else is denied when security is on)",
                    ["principal", "operation", "pattern", "name"],
                    [[principal, rule.operation.value, rule.pattern.value, repr(rule.name)]
                     for principal, rule in rows])
    return 0
