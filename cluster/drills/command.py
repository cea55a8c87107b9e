"""``sluice drill NAME|all``: run drills with a live display and print their table (or JSON).

The display goes to stderr (a progress bar per drill on a terminal, one line per fault
otherwise); stdout carries only the table, or with ``--json`` one object per drill. The exit
code is 0 when every must-hold held (an "unsupported here" drill does not fail the run), 1
when a drill failed or could not run.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)

from cluster.cli import output
from cluster.drills.catalog import DRILLS
from cluster.drills.context import Settings
from cluster.drills.runner import run
from cluster.errors import ClusterError
from cluster.supervision.files import ClusterFiles
from coordinator.errors import InvalidArgument

DEFAULT_INTERVAL_S = 2.0


def names(name: str) -> list[str]:
    if name == "all":
        return [n for n, d in DRILLS.items() if d.in_all]
    if name not in DRILLS:
        raise InvalidArgument(f"unknown drill {name!r}: choose from {', '.join(DRILLS)} or all")
    return [name]


ROLLING_VARIANTS = {"eager": [dict(rebalance="eager")],
                    "cooperative": [dict(rebalance="cooperative")],
                    "all": [dict(rebalance="eager"), dict(rebalance="cooperative"),
                            dict(rebalance="cooperative", static=True)]}


def runs(chosen: list[str], args) -> list[tuple[str, dict]]:
    """(drill, Settings overrides) per run: the command line's flags; ``--protocol all`` runs
    eager, cooperative and cooperative+static one after the other."""
    common = {}
    if args.interval is not None:
        common["interval"] = args.interval
    for name in ("workers", "partitions"):
        if getattr(args, name, None) is not None:
            common[name] = getattr(args, name)
    if getattr(args, "static", False):
        common["static"] = True
    protocol = getattr(args, "protocol", None)
    result = []
    for name in chosen:
        if protocol is None:
            result.append((name, dict(common)))
        else:
            result += [(name, {**common, **v})
                       for v in ROLLING_VARIANTS.get(protocol, [dict(rebalance=protocol)])]
    return result


def command(args) -> int:
    logging.getLogger("kazoo").setLevel(logging.ERROR)
    chosen = names(args.name)
    if args.drill_data_dir is not None:
        check_running(Path(args.drill_data_dir))
    base = Settings(interval=DEFAULT_INTERVAL_S, keep=getattr(args, "keep", False))
    err = Console(stderr=True, highlight=False)
    results = []
    with Display(err, live=err.is_terminal) as display:
        for name, variant in runs(chosen, args):
            drill = DRILLS[name]
            fields = {**base.__dict__, **drill.defaults, **variant}
            if "count" not in variant:
                fields["count"] = (args.count or (fields["workers"] if name == "rolling-restart"
                                                  else fields["brokers"]
                                                  if name == "rolling-restart-brokers"
                                                  else drill.default_count))
            settings = Settings(**fields)
            result = run(drill, settings, args.drill_data_dir, on_event=display.event)
            results.append(result)
            if args.json:
                sys.stdout.write(json.dumps(result) + "\n")
                sys.stdout.flush()
            if args.output:
                write_results(Path(args.output), results)
    if not args.json:
        print_table(results, output.out)
    bad = [r for r in results if r["status"] in ("failed", "error")]
    if bad:
        sys.stderr.write("sluice: error: drill(s) did not hold: "
                         + "; ".join(f"{r['drill']}: {first_failure(r)}" for r in bad) + "\n")
        return 1
    return 0


def write_results(path: Path, results: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(path)


def check_running(data_dir: Path) -> None:
    """A drill against ``--data-dir`` needs the cluster there to be up (one line if not)."""
    if ClusterFiles(data_dir).running_pid() is None:
        raise ClusterError(
            f"no cluster is running in {data_dir}: start one with 'sluice cluster up --data-dir "
            f"{data_dir} --workers M --topic T --group G', or leave out --data-dir for a fresh one")


def first_failure(result: dict) -> str:
    if result["status"] == "error":
        return result.get("reason", "error")
    failed = [c for c in result.get("checks", []) if not c["ok"]]
    if not failed:
        return "failed"
    detail = f" ({failed[0]['detail']})" if failed[0]["detail"] else ""
    return f"{failed[0]['name']}{detail}"[:300]


def verdict(result: dict, short: bool = False) -> str:
    if result["status"] == "ok":
        return "held"
    if result["status"] == "unsupported":
        return f"unsupported here: {result.get('reason', '')}"
    if short and result["status"] == "failed":
        return "FAILED: " + "; ".join(c["name"] for c in result["checks"] if not c["ok"])
    return f"FAILED: {first_failure(result)}"


def _cell(value) -> str:
    return "-" if value is None else str(value)


def table_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for r in results:
        promised = r.get("acked") if r.get("acks", 1) else r.get("sent")
        label = "sent" if r.get("acks", 1) == 0 else ""
        rows.append([r["drill"], _cell(r.get("faults")),
                     f"{_cell(promised)}{' ' + label if label else ''}", _cell(r.get("lost")),
                     _cell(r.get("skipped")), _cell(r.get("duplicates")),
                     _cell(r.get("order_violations")), _cell(r.get("recovery_s_max")),
                     _cell(r.get("rebalances")), verdict(r, short=True)])
    return rows


COLUMNS = ["drill", "faults", "acked", "lost", "skipped", "duplicates", "order viol.",
           "recovery max (s)", "rebalances", "must-holds"]


ROLLING_COLUMNS = ["protocol", "workers", "partitions", "blackout (s)", "max partition gap (s)",
                   "partition blackout (s)", "unowned partition-s", "rebalances", "peak lag (msgs)", "skipped",
                   "duplicates", "restart mean / max (s)", "untouched moves", "must-holds"]


def rolling_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for r in results:
        protocol = r.get("protocol") or r["settings"].get("rebalance") or "cooperative"
        if r.get("static", r["settings"].get("static")):
            protocol += "+static"
        rows.append([protocol, _cell(r["settings"].get("workers")),
                     _cell(r["settings"].get("partitions")), _cell(r.get("blackout_s")),
                     _cell(r.get("max_partition_gap_s")), _cell(r.get("partition_blackout_s")),
                     _cell(r.get("unowned_partition_s")),
                     _cell(r.get("rebalances")), _cell(r.get("peak_lag")),
                     _cell(r.get("skipped")), _cell(r.get("duplicates")),
                     f"{_cell(r.get('restart_s_mean'))} / {_cell(r.get('restart_s_max'))}",
                     _cell(r.get("untouched_reassignments")), verdict(r, short=True)])
    return rows


def _shape(results: list[dict]):
    if results and all(r["drill"] == "rolling-restart" for r in results):
        return "sluice rolling restart", ROLLING_COLUMNS, rolling_rows(results)
    return "sluice fault drills", COLUMNS, table_rows(results)


def print_table(results: list[dict], console: Console) -> None:
    title, columns, rows = _shape(results)
    console.print(output.table(title, columns, rows))


def markdown_table(results: list[dict]) -> str:
    _, columns, rows = _shape(results)
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


class Display:
    """Progress on stderr: rich bars on a terminal, plain lines elsewhere."""

    def __init__(self, console: Console, live: bool):
        self.console = console
        self.live = live
        self.progress = None
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> "Display":
        if self.live:
            self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                     BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     console=self.console, transient=False)
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def event(self, event: dict) -> None:
        name, phase = event["drill"], event["phase"]
        detail = event.get("detail", "")
        if self.progress is not None:
            self._bar(name, phase, event, detail)
            return
        if phase in ("recovered", "not recovered"):
            record = event["record"]
            took = record.get("recovery_s")
            self.console.print(f"{name}: fault {event['n']}/{event['count']} "
                               f"({record.get('target', '')}) {phase}"
                               + (f" in {took:.1f} s" if took is not None else
                                  f": {record.get('error', '')}"))
        elif phase == "done":
            self.console.print(f"{name}: {verdict(event['result'])}")
        elif phase in ("starting", "warming") and detail:
            self.console.print(f"{name}: {phase}: {detail}")

    def _bar(self, name: str, phase: str, event: dict, detail: str) -> None:
        task = self.tasks.get(name)
        if task is None:
            task = self.tasks[name] = self.progress.add_task(name, total=None)
        if phase == "fault":
            self.progress.update(task, total=event.get("count"))
        if phase in ("recovered", "not recovered"):
            self.progress.update(task, completed=event["n"])
        if phase == "done":
            result = event["result"]
            self.progress.update(task, description=f"[bold]{name}[/]: {verdict(result)}",
                                 total=max(result.get("faults") or 0, 1),
                                 completed=result.get("faults") or 0)
            return
        where = f"fault {event['n']}/{event['count']}: " if "n" in event else ""
        self.progress.update(task, description=f"[bold]{name}[/]: {phase} {where}{detail}"[:150])
