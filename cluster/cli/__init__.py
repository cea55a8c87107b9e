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
| group_commands   | ``groups list|describe|reset-offsets|delete``                         |
| offset_reset     | a reset's plan per partition (targets, boundaries), and its write     |
| segment_commands | ``dump-log``, ``scrub``                                               |
| user_commands    | ``users add|remove|list`` (the Kafka listener's SASL users)           |

The commands that live with what they run: ``perf`` in cluster/tools/perf.py, ``dashboard`` in
cluster/observe/terminal_dashboard.py, ``drill`` in cluster/drills/command.py.
Exit codes: 0 fine, 1 an error the command hit, 2 a bad argument, 3 no cluster running
(``cluster status``), 130 interrupted, 141 stdout's reader went away (cli/exits.py).
"""
from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse, build the command's settings, run it; every way it can end is cli/exits.py's
    (parsing too: ``sluice --help | head -1``, and the last flush of stdout)."""
    from cluster.cli import exits
    from cluster.cli.parser import build_parser
    from coordinator import zk
    preparing = True
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        if not args.verbose:
            # kazoo warns of every failed connection attempt while it retries; the command
            # says what matters in one line (-v shows them)
            logging.getLogger("kazoo").setLevel(logging.ERROR)
        _check_data_dirs(args)
        _use_credentials(args)
        # an unreachable ZooKeeper: one line with the cause at once, not kazoo's retries
        zk.probe_first = zk.PROBE_TIMEOUT_S
        if args.prepare is not None:
            args.settings = args.prepare(args)
        preparing = False
        code = args.func(args) or exits.OK
        sys.stdout.flush()
        if code == exits.OK:
            exits.check_stdout_kept()
        return code
    except (Exception, KeyboardInterrupt) as exc:
        return exits.report(exc, preparing)


def _check_data_dirs(args) -> None:
    """A data dir that exists must be a directory (else every file in it fails with ENOTDIR)."""
    from pathlib import Path

    from coordinator.errors import InvalidArgument
    for name in ("data_dir", "drill_data_dir"):
        value = getattr(args, name, None)
        if value is not None and Path(value).exists() and not Path(value).is_dir():
            raise InvalidArgument(f"--data-dir {value} is a file, not a directory")


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
