"""Kill-a-process fault drills with a loss ledger (``sluice drill NAME``, ``make drill``).

Each drill runs a steady acks=1 producer whose payloads carry unique ids and a consumer group
of supervised workers that loads every message it processes, injects K faults, measures how
long the cluster takes to recover from each, and joins what was acknowledged with what was
loaded (the ledger). Modules:

| module           | what                                                                  |
| ---------------- | --------------------------------------------------------------------- |
| catalog          | the table of drills: each one's fault, hooks and must-holds           |
| broker_faults    | kill-broker, acks0-kill-broker, pause-broker                          |
| worker_faults    | kill-worker, kill-worker-after-revoke                                 |
| rolling          | rolling-restart: every worker SIGTERMed in turn, and its figures      |
| zookeeper_faults | kill-zookeeper (3 nodes), restart-zookeeper (1 node)                  |
| storage_faults   | torn-segment, disk-full                                               |
| faults           | kill / pause / resume by role and id from cluster.json; the "process  |
|                  | back" waits every drill shares                                        |
| context          | ``Settings``, the ``Context`` a drill's hooks get, ``Check``          |
| runner           | one drill end to end: cluster, traffic, faults, recovery times        |
| verdict          | read-back, the ledger joined, the checks every drill shares           |
| ledger           | the join: lost, skipped, consumed-but-never-acked, duplicates, order  |
|                  | (pure)                                                                |
| traffic          | the steady producer, and ``GroupWatch``: members, owners, lag,        |
|                  | rebalances                                                            |
| handlers         | the workers' handler that also records when each message was consumed |
| command          | ``sluice drill``: progress display, table, JSON                       |

    from cluster.drills import DRILLS, Settings, run
    result = run(DRILLS["kill-broker"], Settings(count=3))
    assert result["ok"], result["checks"]
"""
from cluster.drills.catalog import DRILLS, Drill
from cluster.drills.context import Settings
from cluster.drills.runner import run

__all__ = ["DRILLS", "Drill", "Settings", "run"]
