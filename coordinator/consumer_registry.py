"""The consumer and ownership registries, read: who is in a group and who owns what.

The paper keeps a group's state in ZooKeeper; these are its reads, in one place, so that the
group member, ``sluice groups``, the lag report and the dashboard's sampler see a group alike:

| read          | from                                          | gives                      |
| ------------- | --------------------------------------------- | -------------------------- |
| groups        | /consumers                                    | every group's name         |
| members       | /consumers/<group>/ids                        | the live members' ids      |
| kafka_members | /consumers/<group>/kafka_members              | a Kafka client group's ids |
| registration  | /consumers/<group>/ids/<member>               | one member's node, parsed  |
| registrations | every member node of the group                | member -> its node         |
| owners        | /consumers/<group>/owners/<topic>/<partition> | partition -> owning member |
| topics_of     | the offsets, the owners, the subscriptions    | the topics a group touches |

``delete`` removes a whole group (``sluice groups delete``, refused by the CLI while it has
live members).

A member's node holds ``{"topics", "pid", "host", "protocol", "static"}`` (written by
coordinator.membership); an owner node holds the owner's id. A node that goes away between
the listing and the read is left out: its member or owner has just left. The writes live with
their writers: membership (the member node), group (owner nodes), offsets (commits).
"""
from __future__ import annotations

import json

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError, NotEmptyError

from coordinator import paths


def groups(client: KazooClient) -> list[str]:
    try:
        return sorted(client.get_children(paths.CONSUMERS))
    except NoNodeError:
        return []


def members(client: KazooClient, group: str) -> list[str]:
    try:
        return sorted(client.get_children(paths.consumer_ids(group)))
    except NoNodeError:
        return []


def kafka_members(client: KazooClient, group: str) -> list[str]:
    """The members of a Kafka client's group, as its coordinator broker publishes them (node
    names: member ids with ``%`` and ``/`` escaped)."""
    try:
        names = client.get_children(paths.kafka_members(group))
    except NoNodeError:
        return []
    return sorted(name.replace("%2F", "/").replace("%25", "%") for name in names)


def registration(client: KazooClient, group: str, member: str) -> dict | None:
    """A member's node, parsed; None when the member is gone."""
    try:
        data, _ = client.get(paths.consumer(group, member))
    except NoNodeError:
        return None
    return json.loads(data)


def registrations(client: KazooClient, group: str) -> dict[str, dict]:
    """Every live member's node, by member id."""
    found = {}
    for member in members(client, group):
        node = registration(client, group, member)
        if node is not None:
            found[member] = node
    return found


def owners(client: KazooClient, group: str, topic: str) -> dict[int, str]:
    """Who owns each partition of a topic in a group right now."""
    try:
        children = client.get_children(paths.owners(group, topic))
    except NoNodeError:
        return {}
    result = {}
    for child in children:
        try:
            result[int(child)] = client.get(paths.owner(group, topic, int(child)))[0].decode()
        except NoNodeError:
            continue
    return result


def topics_of(client: KazooClient, group: str,
              nodes: dict[str, dict] | None = None) -> list[str]:
    """Topics a group has offsets, owners or subscribed members for (``nodes``: the members'
    registrations when the caller has read them already)."""
    found: set[str] = set()
    for path in (paths.group_offsets(group), paths.group_owners(group)):
        try:
            found.update(client.get_children(path))
        except NoNodeError:
            continue
    for node in (registrations(client, group) if nodes is None else nodes).values():
        found.update(node.get("topics", []))
    return sorted(found)


DELETE_TRIES = 5


def delete(client: KazooClient, group: str) -> bool:
    """Remove ``/consumers/<group>`` and everything under it: members, owners, offsets, Kafka
    members, data-loss notes. False when there was no such group. A node created under it
    while the walk deletes (a member joining) makes it walk again, a few times."""
    path = paths.group(paths.check_name("group", group))
    if not client.exists(path):
        return False
    for attempt in range(DELETE_TRIES):
        try:
            client.delete(path, recursive=True)
            break
        except NotEmptyError:
            if attempt == DELETE_TRIES - 1:
                raise
    return True
