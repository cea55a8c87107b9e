"""The cluster package's errors; both derive from coordinator.errors' one root.

| class               | raised when                                                | sluice exits |
| ------------------- | ---------------------------------------------------------- | ------------ |
| ClusterError        | a condition a cluster command hit: no cluster there, one   | 1            |
|                     | already running, a supervisor that died while starting     |              |
| ClusterNotRunning   | no supervisor runs in the data dir (``cluster status``,    | 3            |
|                     | ``cluster down``)                                          |              |
| ClusterSettingError | a cluster setting refused (``ClusterConfig``)              | 2            |

``ClusterSettingError`` is an ``InvalidArgument`` (a person's bad setting, so the CLI says it in
one line and exits 2) and a ``ClusterError``, so a caller that starts clusters and catches
``ClusterError`` (the benchmark, the drills) catches a refused setting too.
"""
from __future__ import annotations

from coordinator.errors import InvalidArgument, SluiceError


class ClusterError(SluiceError):
    """Something a person can cause or fix: nothing running, already running, no ZooKeeper."""


class ClusterNotRunning(ClusterError):
    """No cluster runs in the data dir (none started there, or it was stopped); the CLI exits 3
    for it, as a service manager's ``status`` does for a stopped service."""


class ClusterSettingError(InvalidArgument, ClusterError):
    """A cluster setting refused before anything started; the message names the setting."""
