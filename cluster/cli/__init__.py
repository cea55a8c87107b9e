"""``sluice``, the command line (console script ``sluice = cluster.cli:main``).

| module           | what                                                                  |
| ---------------- | --------------------------------------------------------------------- |
| parser           | every command and its arguments; a bad argument refused in one line   |
| exits            | how a command ends: exit code, one line for a person, a traceback and |
|                  | a request to report it for a bug of ours                              |
| output           | stdout for tables and JSON, stderr for the rest; the table helper     |
| cluster_commands | ``cluster up|down|status``                                            |
| topic_commands   | ``topics create|list|describe|alter|config|delete``                   |
| message_commands | ``produce``, ``consume``                                              |
| group_commands   | ``groups list|describe`` (lag per partition)                          |
| segment_commands | ``dump-log``, ``scrub``                                               |
| user_commands    | ``users add|remove|list`` (the Kafka listener's SASL users)           |

The commands that live with what they run: ``perf`` in cluster/tools/perf.py, ``dashboard`` in
cluster/observe/terminal_dashboard.py, ``drill`` in cluster/drills/command.py.
Exit codes: 0 fine, 1 an error the command hit, 2 a bad argument, 130 interrupted.
"""
from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse, build the command's settings, run it; every way it can end is cli/exits.py's."""
    from cluster.cli import exits
    from cluster.cli.parser import build_parser
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    _use_credentials(args)
    preparing = True
    try:
        if args.prepare is not None:
            args.settings = args.prepare(args)
        preparing = False
        return args.func(args) or exits.OK
    except (Exception, KeyboardInterrupt) as exc:
        return exits.report(exc, preparing)


def _use_credentials(args) -> None:
    """Every client a command builds finds its key in ``$SLUICE_CREDENTIALS``: ``--credentials``
    when given, else the local cluster's admin key when it is secured (a path, never a key)."""
    from cluster.supervision.security import admin_credentials
    from coordinator import credentials
    path = getattr(args, "credentials", None) or os.environ.get(credentials.ENV) or (
        admin_credentials(args.data_dir) if getattr(args, "data_dir", None) else None)
    if path:
        os.environ[credentials.ENV] = str(path)


__all__ = ["main"]
