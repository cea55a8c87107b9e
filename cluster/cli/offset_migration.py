"""``sluice groups migrate-offsets G --to log|zookeeper``: move an empty group's committed offsets
from one store to the other without losing its place (coordinator/offset_store_choice.py).

The steps, each safe to stop after: (1) refuse a group with live members (a member reads its
start positions from the store the record names, and would commit to it); (2) copy every
committed offset into the new store and read them back; (3) flip the record; (4) delete the
old copies. Stopped before the flip, the group is where it was (the copy is unused); after it,
the group reads the new store and old copies left by a stop before (4) are never read. A
member that joined while the copy was made is reported and the copy removed, nothing flipped.
"""
from __future__ import annotations

import logging

from clients.brokers import BrokerPool
from clients.log_offsets import LogOffsetStore
from cluster.cli.offset_reset import GroupHasMembers, check_empty
from coordinator import consumer_registry, offset_store_choice as choice
from coordinator.errors import SluiceError
from coordinator.offsets import OffsetStore

logger = logging.getLogger(__name__)


class MigrationFailed(SluiceError):
    """The copy read back differs from what was copied: nothing was flipped."""


def store(pool: BrokerPool, group: str, name: str) -> OffsetStore:
    return LogOffsetStore(pool, group) if name == choice.LOG else OffsetStore(pool.zk, group)


def migrate(pool: BrokerPool, group: str, to: str) -> dict:
    """Move ``group``'s offsets to the store ``to``; what was done, as a dict."""
    choice.check_store(to)
    check_empty(pool.zk, group)
    current = choice.store_of(pool.zk, group)
    source, target = store(pool, group, current), store(pool, group, to)
    offsets = source.all_committed()
    if current == to:
        return {"group": group, "from": current, "to": to, "moved": 0,
                "old_copies_removed": 0, "note": f"already in {to}"}
    target.commit(offsets)
    copied = target.all_committed()
    if any(copied.get(tp) != offset for tp, offset in offsets.items()):
        raise MigrationFailed(f"group {group}: the copy in {to} reads back differently "
                              f"({copied} for {offsets}); the group still uses {current}")
    if _members(pool, group):
        target.remove(list(offsets))
        raise GroupHasMembers(f"a member joined group {group} while its offsets were copied; "
                              f"nothing changed: stop it and migrate again")
    choice.flip(pool.zk, group, to)
    removed = source.remove(list(offsets))
    logger.info("group %s: %d offset(s) moved from %s to %s", group, len(offsets), current, to)
    return {"group": group, "from": current, "to": to, "moved": len(offsets),
            "old_copies_removed": removed, "note": ""}


def _members(pool: BrokerPool, group: str) -> list[str]:
    return (consumer_registry.members(pool.zk, group)
            + consumer_registry.kafka_members(pool.zk, group))
