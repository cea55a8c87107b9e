"""``python -m cluster.supervision [settings]``: one supervisor in the foreground.

What a detached ``up`` and the tests' harness run; the settings are ``ClusterConfig.to_argv()``
(``--help`` lists them). Exit codes: 0 stopped by a signal, 1 a cluster that could not start
(logged as one line, e.g. a broker target that does not import), 2 a bad setting.
"""
from __future__ import annotations

import logging
import sys

from cluster.supervision.config import ClusterConfig
from cluster.supervision.files import LOG_FORMAT
from cluster.supervision.supervisor import Supervisor
from coordinator.errors import InvalidArgument, SluiceError

log = logging.getLogger("cluster.supervision")   # this module runs as __main__


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("kazoo").setLevel(logging.WARNING)
    try:
        config = ClusterConfig.from_args(argv)
    except InvalidArgument as exc:
        log.error("%s", exc)
        return 2
    try:
        return Supervisor(config).run()
    except SluiceError as exc:
        if not exc.user_error:
            raise
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
