"""Where every command writes: tables for a person on stdout, JSON for a program, progress and
confirmations on stderr (so ``--json`` output and pipes carry only data)."""
from __future__ import annotations

import errno
import json
import os
import sys

from rich.console import Console
from rich.table import Table



class CommandConsole(Console):
    """rich's Console, except that a closed stdout ends the command as every other write to it
    does (cli/exits.py decides how), instead of rich's own SystemExit(1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


out = CommandConsole(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = CommandConsole(stderr=True, highlight=False)


def print_json(value) -> None:
    sys.stdout.write(json.dumps(value) + "\n")


def table(title: str, columns: list[str], rows: list[list]) -> Table:
    """A titled table of ``rows`` (each cell shown as text)."""
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*[str(cell) for cell in row])
    return grid


def print_table(title: str, columns: list[str], rows: list[list],
                console: Console | None = None) -> None:
    (console or out).print(table(title, columns, rows))


def blank(value) -> str:
    """A figure for a table: empty when unknown."""
    return "" if value is None else str(value)
