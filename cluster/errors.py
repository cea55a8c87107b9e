"""The cluster package's errors; both derive from coordinator.errors' one root.

| class               | raised when                                                | sluice exits |
| ------------------- | ---------------------------------------------------------- | ------------ |
| ClusterError        | a condition a cluster command hit: no cluster there, one   | 1            |
|                     | already running, a supervisor that died while starting     |              |
| ClusterSettingError | a cluster setting refused (``ClusterConfig``)              | 2            |

``ClusterSettingError`` is an ``InvalidArgument`` (a person's bad setting, so the CLI says it in
one line and exits 2) and a ``ClusterError``, so a caller that starts clusters and catches
``ClusterError`` (the benchmark, the drills) catches a refused setting too.
"""
from __future__ import annotations

from coordinator.errors import InvalidArgument, SluiceError


class ClusterError(SluiceError):
    """Something a person can cause or fix: nothing running, already running, no ZooKeeper."""


class ClusterSettingError(InvalidArgument, ClusterError):
    """A cluster setting refused before anything started; the message names the setting."""
