"""A group member's node, ``/consumers/<group>/ids/<member>``: dynamic or static (KIP-345).

A dynamic member registers under a fresh random id; leaving or dying (session expiry) removes
it and the group rebalances. A static member registers under its ``instance_id``, and its owner
nodes hold that id too. When a static member's process restarts within the session timeout,
the old session's nodes are still there: the newcomer takes them over, member node and owner
nodes, each in one ZooKeeper transaction (delete the old, create ours), so watchers never see
the member or its partitions go away and nobody else's assignment changes.

Fencing: an instance id whose node belongs to a live process (same host, pid alive) or to
another host (whose process cannot be checked from here) is refused with FencedInstance, a
one-line error; across hosts the newcomer can join once the old session has expired.
"""
from __future__ import annotations

import json
import os

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError

from coordinator import paths
from coordinator.errors import SluiceError
from coordinator.pids import pid_alive, this_host


class FencedInstance(SluiceError):
    """A second live consumer tried to use a static member's instance id."""


class Membership:
    def __init__(self, client: KazooClient, group: str, member_id: str, topics: list[str],
                 protocol: str, static: bool):
        self.client = client
        self.group = group
        self.member_id = member_id
        self.topics = topics
        self.protocol = protocol
        self.static = static

    @property
    def path(self) -> str:
        return paths.consumer(self.group, self.member_id)

    def data(self) -> bytes:
        return json.dumps({"topics": self.topics, "pid": os.getpid(), "host": this_host(),
                           "protocol": self.protocol, "static": self.static}).encode()

    def register(self) -> list[tuple[str, int]]:
        """Create our member node; for a static member coming back, take over its old nodes.

        Returns the partitions taken over (their owner nodes are ours now).
        """
        self.client.ensure_path(paths.consumer_ids(self.group))
        try:
            self.client.create(self.path, self.data(), ephemeral=True)
            return []
        except NodeExistsError:
            pass
        data, stat = self.client.get(self.path)
        if stat.ephemeralOwner == self.client.client_id[0]:
            return []
        if not self.static:
            raise FencedInstance(f"consumer id {self.member_id} is already registered in group "
                                 f"{self.group}")
        self._check_stale(data)
        self._replace(self.path, stat.version, self.data())
        return self._take_over_owners()

    def deregister(self) -> None:
        try:
            data, stat = self.client.get(self.path)
        except NoNodeError:
            return
        if stat.ephemeralOwner == self.client.client_id[0]:
            try:
                self.client.delete(self.path, version=stat.version)
            except NoNodeError:
                pass

    def registered(self) -> bool:
        stat = self.client.exists(self.path)
        return stat is not None and stat.ephemeralOwner == self.client.client_id[0]

    def _check_stale(self, data: bytes) -> None:
        try:
            holder = json.loads(data)
        except ValueError:
            holder = {}
        host, pid = holder.get("host"), int(holder.get("pid") or 0)
        if host == this_host() and pid and pid != os.getpid() and not pid_alive(pid):
            return
        where = f"pid {pid} on {host}" if host else "another consumer"
        raise FencedInstance(f"instance id {self.member_id} of group {self.group} is in use by a "
                             f"live consumer ({where}): fenced")

    def _take_over_owners(self) -> list[tuple[str, int]]:
        taken = []
        mine = self.member_id.encode()
        for topic in self.topics:
            try:
                children = self.client.get_children(paths.owners(self.group, topic))
            except NoNodeError:
                continue
            for child in children:
                path = paths.owner(self.group, topic, int(child))
                try:
                    data, stat = self.client.get(path)
                except NoNodeError:
                    continue
                if data != mine:
                    continue
                if stat.ephemeralOwner != self.client.client_id[0]:
                    if not self._replace(path, stat.version, mine):
                        continue
                taken.append((topic, int(child)))
        return sorted(taken)

    def _replace(self, path: str, version: int, data: bytes) -> bool:
        """Delete a node of a dead session and create ours in one transaction."""
        transaction = self.client.transaction()
        transaction.delete(path, version=version)
        transaction.create(path, data, ephemeral=True)
        results = transaction.commit()
        return not any(isinstance(result, Exception) for result in results)
