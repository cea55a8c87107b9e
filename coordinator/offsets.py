"""The OffsetStore: a group's committed offsets in ZooKeeper, as the paper keeps them.

One of a group's two stores (coordinator/offset_store_choice.py says which a group uses); the
other, LogOffsetStore (clients/log_offsets.py), has the same shape and keeps the data-loss notes
here too: they are rare writes, what ZooKeeper is built for.

One persistent node per (group, topic, partition) holds the offset as decimal text. ZooKeeper
is built for rare writes, so the store writes only offsets that moved since its last commit and
counts every write (``writes``): the cost the paper's design pays, made visible.

Data a group was owed and never processed is recorded in a persistent data-loss note per
partition beside the offsets, so that ``sluice groups describe`` shows it after the consumer
moved on. An event says what happened (``kind``), where (``offset``), where reading resumed
(``resume``), how many bytes that skipped and an estimate of the messages in them; the note
keeps totals per kind and the last ``KEEP_EVENTS`` events. Kinds:

| kind      | what happened                                                               |
| --------- | --------------------------------------------------------------------------- |
| retention | the position was below the log start: retention deleted unread messages     |
| gap       | the position was inside a gap a recovery cut left in the log                |
| corrupt   | the message at the position failed its CRC and was skipped (on_corrupt)     |
| past_end  | the position was past the log end (the log lost data); reset by ``start``   |
| skipped   | the application's handler failed on the message and skipped it (on_error)   |
"""
from __future__ import annotations

import json
import threading

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, NotEmptyError

from coordinator import paths

LOSS_KINDS = ("retention", "gap", "corrupt", "past_end", "skipped")
KEEP_EVENTS = 10


class OffsetStore:
    store = "zookeeper"

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

    def all_committed(self) -> dict[tuple[str, int], int]:
        """Every committed offset of the group."""
        try:
            names = self.client.get_children(paths.group_offsets(self.group))
        except NoNodeError:
            return {}
        return {(topic, p): offset for topic in sorted(names)
                for p, offset in self.committed(topic).items()}

    def remove(self, partitions) -> int:
        """Delete the commits of ``partitions`` ((topic, partition)s); how many there were."""
        removed = 0
        for topic, partition in partitions:
            try:
                self.client.delete(paths.offset(self.group, topic, partition))
                removed += 1
            except NoNodeError:
                pass
            self.forget(topic, partition)
        for topic in {topic for topic, _ in partitions}:
            try:
                self.client.delete(paths.offsets(self.group, topic))
            except (NoNodeError, NotEmptyError):
                pass
        return removed

    def forget(self, topic: str, partition: int) -> None:
        """Drop the memory of the last commit (after ownership moved away)."""
        with self._lock:
            self._last.pop((topic, partition), None)

    def changed(self, offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """The offsets that differ from what this store last committed or read."""
        with self._lock:
            return {tp: off for tp, off in offsets.items() if self._last.get(tp) != off}

    def record_data_loss(self, topic: str, partition: int, event: dict) -> dict:
        """Add one event to the partition's note (read, merge, write with the version read, so
        that two writers never lose each other's events); returns the note written."""
        path = paths.data_loss(self.group, topic, partition)
        while True:
            try:
                data, stat = self.client.get(path)
            except NoNodeError:
                note = merged_note(None, event)
                try:
                    self.client.create(path, json.dumps(note).encode(), makepath=True)
                    return note
                except NodeExistsError:
                    continue
            note = merged_note(json.loads(data), event)
            try:
                self.client.set(path, json.dumps(note).encode(), version=stat.version)
                return note
            except (BadVersionError, NoNodeError):
                continue

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


def merged_note(note: dict | None, event: dict, keep: int = KEEP_EVENTS) -> dict:
    """A partition's data-loss note with one more event (pure).

    ``event``: ``kind`` (one of LOSS_KINDS), ``offset``, ``resume``, ``bytes``, ``messages`` (an
    estimate; None when unknown), ``at`` (wall-clock seconds), optionally ``error``. The note
    keeps totals per kind, the last ``keep`` events, and the sums ``lost_bytes`` and
    ``lost_messages`` over every kind (what dashboards and metrics show).

    >>> n = merged_note(None, {"kind": "retention", "offset": 150, "resume": 300,
    ...                        "bytes": 150, "messages": 10, "at": 1.0})
    >>> n["totals"], n["lost_bytes"], n["lost_messages"]
    ({'retention': {'events': 1, 'bytes': 150, 'messages': 10}}, 150, 10)
    >>> n = merged_note(n, {"kind": "corrupt", "offset": 900, "resume": 915, "bytes": 15,
    ...                     "messages": None, "at": 2.0}, keep=1)
    >>> n["lost_bytes"], n["lost_messages"], [e["kind"] for e in n["events"]]
    (165, 10, ['corrupt'])

    A note in the first shape (one retention event: ``committed``, ``log_start``) is read as
    that event.
    """
    if event.get("kind") not in LOSS_KINDS:
        raise ValueError(f"data-loss kind must be one of {', '.join(LOSS_KINDS)}, "
                         f"not {event.get('kind')!r}")
    if note and "totals" not in note and "committed" in note:
        note = merged_note(None, {"kind": "retention", "offset": note["committed"],
                                  "resume": note["log_start"], "bytes": note["lost_bytes"],
                                  "messages": None, "at": note.get("at")}, keep)
    note = note or {}
    totals = {kind: dict(t) for kind, t in note.get("totals", {}).items()}
    total = totals.setdefault(event["kind"], {"events": 0, "bytes": 0, "messages": 0})
    total["events"] += 1
    total["bytes"] += event["bytes"]
    total["messages"] += event.get("messages") or 0
    events = (list(note.get("events", [])) + [dict(event)])[-keep:]
    return {"totals": totals, "events": events,
            "lost_bytes": sum(t["bytes"] for t in totals.values()),
            "lost_messages": sum(t["messages"] for t in totals.values())}
