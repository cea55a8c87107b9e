"""Kill-a-process fault drills with a loss ledger (``sluice drill NAME``, ``make drill``).

Each drill runs a steady acks=1 producer whose payloads carry unique ids and a consumer group
of supervised workers that loads every message it processes, injects K faults, measures how
long the cluster takes to recover from each, and joins what was acknowledged with what was
loaded (the ledger). Modules:

| module    | what                                                                           |
| --------- | ------------------------------------------------------------------------------ |
| ledger    | the join: lost, skipped, consumed-but-never-acked, duplicates, order (pure)      |
| faults    | kill / pause / resume by role and id from cluster.json; "process back" waits   |
| traffic   | the steady producer, and ``GroupWatch``: members, owners, lag, rebalances       |
| runner    | one drill end to end: cluster, traffic, faults, recovery times, verdict         |
| catalog   | the drills themselves and their must-holds                                      |
| command   | ``sluice drill``: progress display, table, JSON                                 |

    from cluster.drills import DRILLS, Settings, run
    result = run(DRILLS["kill-broker"], Settings(count=3))
    assert result["ok"], result["checks"]
"""
from cluster.drills.catalog import DRILLS, Drill
from cluster.drills.runner import Settings, run

__all__ = ["DRILLS", "Drill", "Settings", "run"]
