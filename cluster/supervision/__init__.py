"""Running a local cluster: ZooKeeper, brokers and group workers under one supervisor.

| module     | what                                                                        |
| ---------- | --------------------------------------------------------------------------- |
| config     | ``ClusterConfig``: every setting of a cluster once, validated; its argv     |
| control    | ``up``, ``down``, ``status``: the API of ``sluice cluster ...``              |
| supervisor | ``Supervisor``: the loop that starts, restarts and stops the processes       |
| slots      | a supervised process's slot, its ``RestartState`` and ``Backoff``; the child |
|            | entry point; ``process_alive``                                              |
| files      | the cluster's files in its data dir (cluster.json, the lock, the zookeeper  |
|            | file, supervisor.log)                                                       |
| zookeeper  | the embedded ZooKeeper servers: one node or a 3-node ensemble               |
| __main__   | ``python -m cluster.supervision``: one supervisor in the foreground         |

    from cluster.supervision import ClusterConfig, up, down, status
    up(ClusterConfig(".sluice", brokers=3), detach=True); status(".sluice"); down(".sluice")
"""
from cluster.supervision.config import ClusterConfig
from cluster.supervision.control import down, status, up

__all__ = ["ClusterConfig", "down", "status", "up"]
