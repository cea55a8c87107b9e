"""The catalogue of drills: what each one breaks and what must hold, one row per drill.

Each drill is a ``Drill``: ``inject(ctx, record)`` causes one fault, waits until the process is
back (its own notion of "back"), then calls ``ctx.recover`` for the rest of the recovery
(partitions owned, lag back), writing what it saw into ``record``; ``checks(ctx, result,
report)`` turns the run into the issue's must-holds. The verdict adds the checks every drill
shares (cluster/drills/verdict.py). The hooks live with their family of faults:
broker_faults, worker_faults (and rolling), zookeeper_faults, storage_faults.

| drill              | fault                                                   | K  |
| ------------------ | ------------------------------------------------------- | -- |
| kill-broker        | SIGKILL a random broker                                 | 20 |
| pause-broker       | SIGSTOP a broker until its registry node expires, SIGCONT | 5 |
| kill-worker        | SIGKILL a random group worker                           | 20 |
| kill-worker-after-revoke | SIGKILL a worker, then another the moment it gives a partition up | 5 |
| kill-zookeeper     | 3-node ensemble: SIGKILL the leader, then a follower, ... after the last returned | 5 |
| restart-zookeeper  | single ZooKeeper: SIGKILL it; the supervisor starts it with its data | 5 |
| torn-segment       | stop a broker, flip a byte in one unflushed message and cut the last one in half, kill it | 5 |
| disk-full          | fill the tmpfs under broker 0's data dir, then free it   | 5  |
| acks0-kill-broker  | kill-broker with an acks=0 producer                     | 5  |
| rolling-restart    | SIGTERM every worker in turn (not in ``all``; rolling.py) | = workers |
| audit-loss         | a segment deleted by hand, acks=0 to a killed broker, a consumer that skips one (audit_loss.py) | 1 |

The replication drills (replication_faults.py) run 3 brokers, a topic with R = 3 and min ISR 2,
and an acks=all producer:

| drill                   | fault                                                      | K |
| ----------------------- | ---------------------------------------------------------- | - |
| kill-leader             | SIGKILL the leader of a partition                          | 5 |
| pause-leader            | SIGSTOP a leader past its session, probe it, SIGCONT       | 3 |
| lose-disk               | delete a broker's data dir and kill it                     | 3 |
| partition-leader        | cut a leader off from followers and ZooKeeper (blocking proxies) | 3 |
| rolling-restart-brokers | SIGTERM every broker in turn                               | = brokers |
| unclean-election        | a follower out of the ISR, the ISR gone, unclean election on | 2 |
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from cluster.drills import (audit_loss, broker_faults, network_faults as nf,
                            replication_faults as rf, rolling, storage_faults, worker_faults,
                            zookeeper_faults)
from cluster.drills.context import Check, Context


@dataclass(frozen=True)
class Drill:
    """One row of the catalogue: the fault, its hooks, and the cluster it needs."""

    name: str
    fault: str
    must_hold: str
    default_count: int
    inject: Callable[[Context, dict], None]
    checks: Callable[[Context, dict, object], list[Check]]
    acks: int | str = 1                     # 0, 1 or "all" (the producer's and the ledger's)
    zk_ensemble: int = 1
    needs_embedded_zookeeper: bool = False
    broker_log: dict = field(default_factory=dict)
    broker_settings: dict = field(default_factory=dict)   # BrokerConfig settings of the drill
    # per-broker settings (ClusterConfig.broker_overrides), given the Context and the cluster's
    # ZooKeeper connect string (None: the embedded one), asked just before the cluster starts
    broker_overrides: Callable[[Context, str | None], dict] | None = None
    prepare: Callable[[Context], None] | None = None
    cleanup: Callable[[Context], None] | None = None
    handler: str | None = None              # the workers' handler (None: the loader)
    library_worker_defaults: bool = False   # workers keep the library's session/rebalance defaults
    defaults: dict = field(default_factory=dict)   # Settings the command starts from
    in_all: bool = True                     # part of ``sluice drill all`` / ``make drill``


DRILLS: dict[str, Drill] = {d.name: d for d in (
    Drill("kill-broker", "SIGKILL a random broker",
          "supervisor restarts it; lost = 0 for acks=1; producers retry; the group resumes",
          20, broker_faults.kill_broker, broker_faults.kill_broker_checks),
    Drill("pause-broker", "SIGSTOP a broker past its ZooKeeper session, then SIGCONT",
          "its registry node expires and comes back; clients reroute and return; lost = 0",
          5, broker_faults.pause_broker, broker_faults.pause_broker_checks),
    Drill("kill-worker", "SIGKILL a random group worker",
          "the group re-settles; skipped = 0; duplicates bounded by the commit interval",
          20, worker_faults.kill_worker, worker_faults.kill_worker_checks),
    Drill("kill-worker-after-revoke", "SIGKILL a worker, then SIGKILL another the moment it "
          "gives a partition up to the restarted one", "skipped = 0; lost = 0 (at-least-once "
          "holds across a rebalance)", 5, worker_faults.kill_worker_after_revoke,
          worker_faults.kill_worker_after_revoke_checks),
    Drill("kill-zookeeper", "3-node ensemble: SIGKILL a node (leader, then follower, ...) "
          "after the last one returned", "nothing stops; lost = 0", 5,
          zookeeper_faults.kill_zookeeper, zookeeper_faults.kill_zookeeper_checks, zk_ensemble=3,
          needs_embedded_zookeeper=True),
    Drill("restart-zookeeper", "single ZooKeeper: SIGKILL it; started again with its data",
          "brokers and consumers re-register; lost = 0", 5,
          zookeeper_faults.restart_zookeeper, zookeeper_faults.restart_zookeeper_checks,
          needs_embedded_zookeeper=True),
    Drill("torn-segment", "stop a broker, flip a byte in an unflushed message of its active "
          "segment and cut the last message in half, then kill it",
          "restart repairs it; only the torn tail is lost, and how many messages that was",
          5, storage_faults.torn_segment, storage_faults.torn_segment_checks,
          broker_log={"flush_ms": 3000}),
    Drill("disk-full", "fill the small tmpfs under broker 0's data dir, then free it",
          "produce gets a clear error; nothing written is corrupted; writing resumes", 5,
          storage_faults.disk_full, storage_faults.disk_full_checks,
          prepare=storage_faults.disk_full_prepare, cleanup=storage_faults.disk_full_cleanup),
    Drill("acks0-kill-broker", "SIGKILL a random broker under an acks=0 producer",
          "the loss the paper accepts is measured and reported", 5, broker_faults.kill_broker,
          broker_faults.acks0_checks, acks=0),
    Drill("audit-loss", "lose messages on purpose at each stage: a sealed segment deleted by "
          "hand, acks=0 sent to a killed broker, a group consumer that skips one",
          "sluice audit names exactly that many lost, in each stage's window and stage", 1,
          audit_loss.inject, audit_loss.checks, defaults=dict(brokers=2, partitions=2,
                                                                workers=1)),
    Drill("rolling-restart", "SIGTERM each group worker in turn; the supervisor replaces it",
          "skipped = 0; ownership exclusive; cooperative: no group blackout, no partition gap "
          "longer than a restart + 1 s; static: untouched workers keep their partitions",
          12, rolling.rolling_restart, rolling.rolling_restart_checks, handler=rolling.HANDLER,
          prepare=rolling.prepare, library_worker_defaults=True, in_all=False,
          defaults=dict(brokers=1, flush_ms=100, rate=1000, workers=12, partitions=24,
                        interval=1.0, rebalance="cooperative")),
    Drill("kill-leader", "SIGKILL the leader of a partition under acks=all load",
          "lost = 0; a new leader within a few seconds; consumers continue; it rejoins the ISR",
          5, rf.kill_leader, rf.kill_leader_checks, acks="all",
          broker_settings=rf.BROKER_SETTINGS, defaults=rf.SETTINGS),
    Drill("pause-leader", "SIGSTOP a leader past its session timeout, then SIGCONT",
          "lost = 0; the old leader acknowledges nothing after the election; it rejoins as "
          "follower", 3, rf.pause_leader, rf.pause_leader_checks, acks="all",
          broker_settings=rf.BROKER_SETTINGS, defaults=rf.SETTINGS),
    Drill("lose-disk", "SIGSTOP a broker, delete its data dir, SIGKILL it (restarted empty)",
          "lost = 0; it rebuilds from the leaders and rejoins the ISR (bytes, seconds)", 3,
          rf.lose_disk, rf.lose_disk_checks, acks="all", broker_settings=rf.BROKER_SETTINGS,
          defaults=rf.SETTINGS),
    Drill("partition-leader", "cut a leader off from its followers and ZooKeeper while its "
          "producers still reach it", "0 acknowledged writes lost", 3, nf.partition_leader,
          nf.partition_leader_checks, acks="all", broker_overrides=nf.broker_overrides,
          cleanup=nf.cleanup, broker_settings=rf.BROKER_SETTINGS, defaults=rf.SETTINGS),
    Drill("rolling-restart-brokers", "SIGTERM every broker in turn under acks=all load",
          f"lost = 0; produce stalls <= {rf.STALL_BOUND_S:g} s per restart; preferred leaders "
          "at the end", 3, rf.rolling_restart_brokers, rf.rolling_restart_brokers_checks,
          acks="all", broker_settings=rf.BROKER_SETTINGS, defaults=rf.SETTINGS),
    Drill("unclean-election", "unclean election on: a follower paused out of the ISR, the ISR "
          "paused past its sessions, the stale follower resumed",
          "the election happens; the loss is counted exactly, matching the ledger", 2,
          rf.unclean_election, rf.unclean_election_checks, acks="all",
          broker_settings={**rf.BROKER_SETTINGS, "unclean_leader_election": True},
          defaults=rf.SETTINGS),
)}
