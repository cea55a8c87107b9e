"""``sluice dashboard``: the live terminal view, refreshed every second, usable over ssh.

It shows what the web page shows (processes, brokers' partitions, groups' per-partition lag,
rebalances, errors) from the same figures. Where they come from, first match wins:

1. ``--url URL``: that supervisor's dashboard (its ``/api/state``), with the token in
   ``--token-file`` when it asks for one;
2. the local cluster in ``--data-dir``: the dashboard address in its cluster.json (and its
   token file, when it has one), unless ``--zookeeper`` / ``$SLUICE_ZK`` names another
   cluster;
3. otherwise a sampler in this process against ``--zookeeper`` / ``$SLUICE_ZK`` (brokers and
   groups only: it cannot see the processes of a remote cluster).

Keys: ``q`` quits (stdin is read in cbreak mode when it is a terminal); Ctrl-C quits too. The
terminal is restored either way. ``--once`` prints one frame and exits; ``--json`` prints the
latest snapshot as JSON (what ``/api/state`` calls ``latest``).
"""
from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import termios
import threading
import time
import tty
import urllib.error
import urllib.request
from pathlib import Path

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cluster.errors import ClusterError
from cluster.observe import dashboard_access, lag
from cluster.supervision.files import ClusterFiles
from cluster.supervision.slots import process_alive
from coordinator import zk as zkconnect
from coordinator.errors import InvalidArgument

SPARK = "▁▂▃▄▅▆▇█"
SPARK_POINTS = 60
CPU_SPARK = 16
HTTP_TIMEOUT_S = 5.0


class DashboardError(ClusterError):
    """The dashboard has nothing to show (no cluster, no answer)."""


# --- where the figures come from -----------------------------------------------------------------

class RemoteSource:
    """A supervisor's /api/state, asking only for the history points not seen yet."""

    def __init__(self, url: str, token: str | None = None):
        self.url = url if url.endswith("/") else url + "/"
        self.headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self.seq = 0
        self.points: list[dict] = []
        self.latest: dict | None = None

    def poll(self) -> dict | None:
        try:
            request = urllib.request.Request(f"{self.url}api/state?since={self.seq}",
                                             headers=self.headers)
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as reply:
                state = json.load(reply)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DashboardError(f"no answer from the dashboard at {self.url}: {exc}") from None
        if state["seq"] < self.seq:
            self.points = []
        self.seq = state["seq"]
        self.points = (self.points + state["points"])[-SPARK_POINTS:]
        self.latest = state["latest"]
        return self.latest

    def describe(self) -> str:
        return self.url

    def close(self) -> None:
        pass


class LocalSource:
    """A sampler in this process, one sample per poll."""

    def __init__(self, zookeeper: str | None, data_dir: str | None):
        from cluster.observe.sampler import Sampler
        self.zookeeper = zkconnect.resolve(zookeeper, data_dir)
        self.sampler = Sampler(self.zookeeper, data_dir=data_dir)
        self.points: list[dict] = []
        self.latest: dict | None = None

    def poll(self) -> dict | None:
        from cluster.observe.sampler import point
        self.latest = self.sampler.sample_once()
        self.points = (self.points + [point(self.latest)])[-SPARK_POINTS:]
        return self.latest

    def describe(self) -> str:
        return f"sampling ZooKeeper {self.zookeeper} from here"

    def close(self) -> None:
        self.sampler.close()


def open_source(url: str | None, zookeeper: str | None, data_dir: str | None,
                token_file: str | None = None):
    """The source the module docstring's rules pick."""
    if url:
        return RemoteSource(url, _token(token_file))
    wanted = zookeeper or os.environ.get(zkconnect.ENV)
    info = _cluster_file(Path(data_dir or zkconnect.DEFAULT_DATA_DIR))
    if info and info.get("dashboard") and (not wanted or wanted == info.get("zookeeper")):
        return RemoteSource(info["dashboard"],
                            _token(token_file or info.get("dashboard_token_file")))
    if not wanted and not info:
        raise DashboardError(f"no cluster found: start one with 'make cluster-up', or pass "
                             f"--url or --zookeeper (looked in {data_dir})")
    try:
        return LocalSource(zookeeper, data_dir)
    except zkconnect.NoCluster as exc:
        raise DashboardError(str(exc)) from None


def _token(path: str | None) -> str | None:
    return None if path is None else dashboard_access.load_token(Path(path), create=False)


def _cluster_file(data_dir: Path) -> dict | None:
    """cluster.json of a supervisor still running in ``data_dir``, else None."""
    info = ClusterFiles(data_dir).try_read_state()
    if not isinstance(info, dict) or info.get("phase") == "stopped":
        return None
    sup = info.get("supervisor") or {}
    return info if process_alive(sup.get("pid"), sup.get("create_time") or 0.0) else None


# --- rendering ------------------------------------------------------------------------------------

def sparkline(values: list[float | None], width: int = 30) -> str:
    """``values`` as block characters scaled to their maximum; gaps for None. Pure."""
    values = values[-width:]
    top = max((v for v in values if v is not None), default=0) or 1
    return "".join(" " if v is None else SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1)
                                                                          + 0.5))]
                   for v in values)


def human_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def human(value: float | None) -> str:
    if value is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{suffix}"
    return f"{value:g}" if float(value).is_integer() else f"{value:.1f}"


def duration(value: float | None) -> str:
    if value is None:
        return "-"
    for scale, suffix in ((86400, "d"), (3600, "h"), (60, "min")):
        if value >= scale:
            return f"{value / scale:.1f} {suffix}"
    return f"{value:.0f} s"


def render(latest: dict | None, points: list[dict], source: str, keys_hint: str = "q quits"):
    """One frame: a rich renderable for the snapshot and recent history points."""
    if latest is None:
        return Text(f"waiting for the first sample from {source} ({keys_hint})")
    stamp = time.strftime("%H:%M:%S", time.localtime(latest["time"]))
    up = sum(1 for b in latest["brokers"] if b.get("up"))
    msgs = [sum(v for v in p["msgs_in"].values() if v is not None) for p in points]
    bytes_in = sum(b.get("bytes_in_per_s") or 0 for b in latest["brokers"])
    bytes_out = sum(b.get("bytes_out_per_s") or 0 for b in latest["brokers"])
    header = Text.assemble(
        ("sluice ", "bold"), f"ZooKeeper {latest.get('zookeeper')} · brokers {up}/"
        f"{len(latest['brokers'])} up · {stamp} · from {source} · {keys_hint}\n",
        ("in ", "dim"), f"{human(msgs[-1] if msgs else None)} msgs/s {human_bytes(bytes_in)}/s  ",
        ("out ", "dim"), f"{human_bytes(bytes_out)}/s  ",
        ("msgs/s, last minute ", "dim"), (sparkline(msgs, SPARK_POINTS), "cyan"))
    parts = [header, _processes(latest, points), _partitions(latest)]
    parts += [_group(group) for group in latest["groups"]]
    if latest.get("audit") and latest["audit"]["records"]:
        parts.append(_audit(latest["audit"]))
    errors = list(latest.get("errors", []))
    for b in latest["brokers"]:
        if b.get("error"):
            errors.append(f"broker {b['broker']}: {b['error']}")
        errors += [f"broker {b['broker']} answered {n} request(s) with {name}"
                   for name, n in sorted(b.get("errors", {}).items())]
    if errors:
        parts.append(Text("\n".join(errors), style="yellow"))
    sampler = latest.get("sampler", {})
    parts.append(Text(f"sample took {sampler.get('tick_ms', 0):.1f} ms; sampler CPU so far "
                      f"{sampler.get('cpu_seconds', 0):.2f} s in {sampler.get('ticks', 0)} "
                      f"samples", style="dim"))
    return Group(*parts)


def _table(title: str, columns: list[str]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  title_style="bold")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=True,
                         overflow="ignore" if i == 0 else "ellipsis")
    return table


def _processes(latest: dict, points: list[dict]) -> Table:
    table = _table("processes (disk rd/wr per second, thr threads, ctx context switches/s, "
                   "rst restarts)", ["process", "pid", "CPU", f"CPU, last {CPU_SPARK} s", "RSS",
                                     "thr", "fds", "rd/s", "wr/s", "ctx", "rst"])
    for p in latest["processes"]:
        name = f"{p['role']} {p['id']}"
        if not p.get("alive"):
            table.add_row(name, str(p.get("pid") or "-"), Text("down", style="red"), "", "", "",
                          "", "", "", "", str(p.get("restarts", 0)))
            continue
        cpu = [pt["cpu"].get(name) for pt in points]
        table.add_row(name, str(p["pid"]), f"{p.get('cpu_percent') or 0:.1f}%",
                      Text(sparkline(cpu, CPU_SPARK), style="green"), human_bytes(p.get("rss_bytes")),
                      str(p.get("threads")), str(p.get("open_files")),
                      human_bytes(p.get("read_bytes_per_s")),
                      human_bytes(p.get("write_bytes_per_s")), human(p.get("ctx_switches_per_s")),
                      str(p.get("restarts", 0)))
    return table


def _partitions(latest: dict) -> Table:
    table = _table("broker partitions", ["broker", "topic/partition", "msgs in/s", "in/s",
                                         "out/s", "size", "segments", "flushes", "flush time"])
    for b in latest["brokers"]:
        if not b.get("up"):
            table.add_row(str(b["broker"]), Text(f"no answer: {b.get('error')}", style="red"),
                          "", "", "", "", "", "", "")
    for p in latest["partitions"]:
        table.add_row(str(p["broker"]), f"{p['topic']}/{p['partition']}",
                      human(p.get("messages_in_per_s")), human_bytes(p.get("bytes_in_per_s")),
                      human_bytes(p.get("bytes_out_per_s")), human_bytes(p.get("size_bytes")),
                      str(p.get("segments")), str(p.get("flushes")),
                      f"{p.get('flush_seconds', 0):.2f} s")
    return table


def _group(group: dict) -> Table:
    last = group.get("last_rebalance_s")
    title = (f"group {group['group']}: {len(group['members'])} member(s), {group['state']}, "
             f"{group['rebalances']} rebalance(s)"
             + (f", last took {last:.1f} s" if last is not None else ""))
    table = _table(title, ["topic/partition", "owner", "committed", "log end", "lag bytes",
                           "lag msgs", "msgs/s", "retention left", "state"])
    for r in group["partitions"]:
        table.add_row(f"{r['topic']}/{r['partition']}", r.get("owner") or "-",
                      _text(r.get("committed")), _text(r.get("log_end")),
                      human_bytes(r.get("lag_bytes")), human(r.get("lag_messages")),
                      human(r.get("consume_msgs_per_s")),
                      duration(r.get("retention_seconds_left")),
                      _state(r, len(group["members"])))
    return table


def _audit(audit: dict) -> Table:
    table = _table("audit trail (totals of __audit; per-window verdicts: sluice audit)",
                   ["topic", "counted by", "acknowledged", "sent no ack", "consumed"])
    for r in audit["produced"]:
        table.add_row(r["topic"], "audited producers", str(r["acknowledged"]),
                      str(r["unacknowledged"]), "")
    for r in audit["consumed"]:
        table.add_row(r["topic"], f"group {r['group']}", "", "", str(r["consumed"]))
    return table


def _text(value) -> str:
    return "-" if value is None else str(value)


def _state(row: dict, members: int) -> Text:
    state = lag.state(row, members)
    if state == "error":
        return Text(f"error: {row['error']}", style="red")
    if state == "DATA LOSS":
        return Text(f"DATA LOSS ({row['data_loss']['lost_bytes']} bytes)", style="bold red")
    backlog = row.get("backlog")
    if backlog and backlog.get("at_risk"):
        refusing = ", refusing produce" if backlog.get("refusing") else ""
        return Text(f"BACKLOG AT RISK ({backlog['policy']}{refusing})", style="bold red")
    if state == "STUCK":
        return Text("STUCK", style="bold red")
    if state == "unowned":
        return Text("unowned", style="yellow")
    if state == "idle":
        return Text("idle (no members)", style="dim")
    return Text("ok", style="green")


# --- the loop -------------------------------------------------------------------------------------

class Keys:
    """``q`` from stdin in cbreak mode when it is a terminal; just a sleep otherwise.

    Cbreak keeps Ctrl-C working (it still raises KeyboardInterrupt); the terminal's previous
    mode comes back on exit.
    """

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stdin
        self._saved = None
        self._idle = threading.Event()

    def __enter__(self) -> "Keys":
        try:
            if self.stream.isatty():
                fd = self.stream.fileno()
                self._saved = termios.tcgetattr(fd)
                tty.setcbreak(fd)
        except (AttributeError, ValueError, OSError, termios.error):
            self._saved = None
        return self

    def __exit__(self, *exc) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None

    @property
    def interactive(self) -> bool:
        return self._saved is not None

    def wait_for_quit(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True when ``q`` was pressed."""
        if not self.interactive:
            self._idle.wait(timeout)
            return False
        deadline = time.monotonic() + timeout
        fd = self.stream.fileno()
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                key = os.read(fd, 1)
                if key in (b"q", b"Q", b""):
                    return True
        return False


def run(url: str | None = None, zookeeper: str | None = None, data_dir: str | None = None,
        interval: float = 1.0, once: bool = False, as_json: bool = False,
        console: Console | None = None, token_file: str | None = None) -> int:
    """The ``sluice dashboard`` command; returns the exit code."""
    if interval <= 0:
        raise InvalidArgument(f"--interval must be positive, not {interval:g}")
    source = open_source(url, zookeeper, data_dir, token_file)
    try:
        if as_json or once:
            latest = _first(source)
            if as_json:
                sys.stdout.write(json.dumps(latest) + "\n")
            else:
                (console or _console()).print(render(latest, source.points, source.describe(),
                                                    keys_hint="--once"))
            return 0
        return _live(source, interval, console or _console())
    finally:
        source.close()


def _console(kind: type[Console] = Console) -> Console:
    """The terminal's width on a terminal; 160 columns into a pipe or file."""
    return kind(highlight=False, width=None if sys.stdout.isatty() else 160)


def _first(source) -> dict:
    """The first snapshot, waiting a little for a supervisor that has just started."""
    deadline = time.monotonic() + 10
    while True:
        latest = source.poll()
        if latest is not None:
            return latest
        if time.monotonic() >= deadline:
            raise DashboardError(f"no sample from {source.describe()} within 10 s")
        time.sleep(0.2)


def _live(source, interval: float, console: Console) -> int:
    with contextlib.ExitStack() as stack:
        keys = stack.enter_context(Keys())
        hint = "q or Ctrl-C quits" if keys.interactive else "Ctrl-C quits"
        live = stack.enter_context(Live(Text("connecting…"), console=console,
                                        auto_refresh=False, screen=console.is_terminal))
        try:
            while True:
                try:
                    frame = render(source.poll(), source.points, source.describe(), hint)
                except DashboardError as exc:
                    frame = Text(f"{exc}; retrying ({hint})", style="yellow")
                live.update(frame, refresh=True)
                if keys.wait_for_quit(interval):
                    return 0
        except KeyboardInterrupt:
            return 0


def command(args) -> int:
    """``sluice dashboard`` as cluster/cli.py calls it, on the commands' console: a reader of
    stdout that goes away (``--once | head``) ends it as it ends every command (cli/exits.py)."""
    from cluster.cli.output import CommandConsole
    return run(args.url, args.zookeeper, args.data_dir, args.interval, args.once, args.json,
               console=_console(CommandConsole), token_file=args.token_file)
