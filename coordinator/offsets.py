"""The OffsetStore: a group's committed offsets in ZooKeeper, as the paper keeps them.

One persistent node per (group, topic, partition) holds the offset as decimal text. ZooKeeper
is built for rare writes, so the store writes only offsets that moved since its last commit and
counts every write (``writes``): the cost the paper's design pays, made visible.

A committed offset found below the partition's log start means retention deleted messages the
group never read. That is recorded as a persistent data-loss note beside the offsets so that
``sluice groups describe`` can show it after the consumer has moved on.
"""
from __future__ import annotations

import json
import threading
import time

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError

from coordinator import paths


class OffsetStore:
    def __init__(self, client: KazooClient, group: str):
        self.client = client
        self.group = paths.check_name("group", group)
        self.writes = 0
        self._last: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def commit(self, offsets: dict[tuple[str, int], int]) -> int:
        """Write the offsets that moved; return how many ZooKeeper writes that took.

        A ZooKeeper error (connection lost, session expired) propagates after the writes that
        did land are remembered, so the next commit retries only the rest."""
        with self._lock:
            moved = {tp: off for tp, off in offsets.items() if self._last.get(tp) != off}
        for (topic, partition), offset in moved.items():
            self._write(paths.offset(self.group, topic, partition), str(int(offset)).encode())
            with self._lock:
                self._last[(topic, partition)] = offset
                self.writes += 1
        return len(moved)

    def fetch(self, topic: str, partition: int) -> int | None:
        """The committed offset, or None for a partition the group never committed."""
        try:
            data, _ = self.client.get(paths.offset(self.group, topic, partition))
        except NoNodeError:
            return None
        offset = int(data.decode())
        with self._lock:
            self._last[(topic, partition)] = offset
        return offset

    def committed(self, topic: str) -> dict[int, int]:
        """Every committed offset of a topic, by partition."""
        try:
            children = self.client.get_children(paths.offsets(self.group, topic))
        except NoNodeError:
            return {}
        result = {}
        for child in children:
            offset = self.fetch(topic, int(child))
            if offset is not None:
                result[int(child)] = offset
        return result

    def forget(self, topic: str, partition: int) -> None:
        """Drop the memory of the last commit (after ownership moved away)."""
        with self._lock:
            self._last.pop((topic, partition), None)

    def record_data_loss(self, topic: str, partition: int, committed: int,
                         log_start: int) -> None:
        note = json.dumps({"committed": committed, "log_start": log_start,
                           "lost_bytes": log_start - committed, "at": time.time()}).encode()
        self._write(paths.data_loss(self.group, topic, partition), note)

    def data_loss(self, topic: str) -> dict[int, dict]:
        try:
            children = self.client.get_children(paths.data_losses(self.group, topic))
        except NoNodeError:
            return {}
        notes = {}
        for child in children:
            try:
                data, _ = self.client.get(paths.data_loss(self.group, topic, int(child)))
            except NoNodeError:
                continue
            notes[int(child)] = json.loads(data)
        return notes

    def _write(self, path: str, data: bytes) -> None:
        try:
            self.client.set(path, data)
        except NoNodeError:
            try:
                self.client.create(path, data, makepath=True)
            except NodeExistsError:
                self.client.set(path, data)
