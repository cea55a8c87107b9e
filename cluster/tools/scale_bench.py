"""How cost grows (issue 16): ``make bench``'s rows at ten times the messages and at 64
partitions over 3 brokers, each beside the same row of the 1-partition run, or alone:

    python -m cluster.tools.scale_bench --messages 1000000     # 10M, and 64 partitions x 1M
    python -m cluster.tools.scale_bench --messages 300000 --part spread   # the 64 only

Two fresh clusters in temp dirs, one after the other, each removed when its rows are done:

    tenfold  1 broker, one partition per topic, ``10 x messages``:
             producer batch 50 acks=0, consumer default fetch (over that topic), producer batch
             1 acks=0
    spread   3 brokers, 64 partitions per topic, ``messages``: producer batch 50 acks=0,
             batch 50 acks=1 and batch 1 acks=0 (one Producer, its default sticky random
             partitioner, so the messages spread over the 64 partitions a batch at a time);
             consumer default fetch: one SimpleConsumer per partition over one BrokerPool,
             each reading its partition to the end in turn

Each row's throughput per message is set beside the same row of the 1M / 1-partition run of
the same ``make bench`` (``bench.py``'s medians, given to ``compare``): the target is a ratio
of at least 0.85. psutil samples every broker's RSS every 0.2 s through each part: its start
(before the first row), peak and end, and for the tenfold part the RSS when the first tenth
of each row was done, so that growth over the remaining nine tenths is what the messages cost
in memory (target: "flat", at most ``RSS_FLAT_GROWTH`` of the RSS at the first tenth).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from broker.message import HEADER_SIZE
from cluster.errors import ClusterError
from cluster.supervision import ClusterConfig, down, up
from cluster.tools import perf
from coordinator import paths, topics
from coordinator import zk as zkconnect
from coordinator.errors import InvalidArgument, SluiceError

TARGET = 0.85               # a row's throughput per message over the 1-partition run's
RSS_FLAT_GROWTH = 0.10      # RSS growth after the first tenth, over the RSS then
FACTOR = 10
PARTITIONS = 64
BROKERS = 3
DEFAULT_FETCH_BYTES = 1 << 20
HOSTED_WAIT_S = 30.0
FREE_MARGIN = 1.25          # disk wanted over the bytes the part's topics will hold


@dataclasses.dataclass(frozen=True)
class Row:
    """One measured row: ``kind`` "produce" (its own fresh topic) or "consume" (the topic of
    the row named by ``source``); ``baseline`` is the 1-partition result key it is set beside."""
    key: str
    label: str
    part: str
    kind: str
    messages: int
    baseline: str
    batch: int = 0
    acks: int = 0
    source: str = ""


def plan(messages: int, batch1: bool = True) -> list[Row]:
    """The rows, in the order they run, for a 1-partition run of ``messages``.

    >>> [(r.key, r.messages) for r in plan(1000, batch1=False)]
    [('tenfold_producer_batch50', 10000), ('tenfold_consumer', 10000), \
('spread_producer_batch50', 1000), ('spread_producer_acks1_batch50', 1000), \
('spread_consumer', 1000)]
    """
    if messages < 1:
        raise InvalidArgument("messages must be >= 1")
    many = FACTOR * messages
    rows = [
        Row("tenfold_producer_batch50", f"{FACTOR}x: producer, batch 50, acks=0", "tenfold",
            "produce", many, "producer_batch50_msgs_per_s", 50, 0),
        Row("tenfold_consumer", f"{FACTOR}x: consumer, default fetch", "tenfold", "consume",
            many, "consumer_msgs_per_s", source="tenfold_producer_batch50"),
        Row("tenfold_producer_batch1", f"{FACTOR}x: producer, batch 1, acks=0", "tenfold",
            "produce", many, "producer_batch1_msgs_per_s", 1, 0),
        Row("spread_producer_batch50", f"{PARTITIONS} partitions: producer, batch 50, acks=0",
            "spread", "produce", messages, "producer_batch50_msgs_per_s", 50, 0),
        Row("spread_producer_acks1_batch50",
            f"{PARTITIONS} partitions: producer, batch 50, acks=1", "spread", "produce",
            messages, "producer_acks1_batch50_msgs_per_s", 50, 1),
        Row("spread_producer_batch1", f"{PARTITIONS} partitions: producer, batch 1, acks=0",
            "spread", "produce", messages, "producer_batch1_msgs_per_s", 1, 0),
        Row("spread_consumer", f"{PARTITIONS} partitions: consumer, default fetch", "spread",
            "consume", messages, "consumer_msgs_per_s", source="spread_producer_batch50"),
    ]
    return [row for row in rows if batch1 or row.batch != 1]


def compare(rate: float, baseline: float | None) -> tuple[float | None, bool | None]:
    """(ratio to the 1-partition row, target met); (None, None) without a baseline.

    >>> compare(850.0, 1000.0)
    (0.85, True)
    >>> compare(849.0, 1000.0)
    (0.849, False)
    >>> compare(5.0, None)
    (None, None)
    """
    if not baseline:
        return None, None
    ratio = round(rate / baseline, 3)
    return ratio, ratio >= TARGET


def rss_flat(at_tenth: int, end: int) -> tuple[float, bool]:
    """(growth from the first tenth of a row to its end, over the RSS at the tenth; flat?).

    >>> rss_flat(100_000_000, 105_000_000)
    (0.05, True)
    >>> rss_flat(100_000_000, 130_000_000)
    (0.3, False)
    """
    growth = round((end - at_tenth) / max(at_tenth, 1), 3)
    return growth, growth <= RSS_FLAT_GROWTH


def disk_needed(rows: list[Row], part: str, size: int) -> int:
    """Bytes the part's topics will hold on disk (each produce row's messages, framed).

    >>> disk_needed(plan(1000), "tenfold", 200)
    4180000
    """
    return sum(row.messages * (HEADER_SIZE + size) for row in rows
               if row.part == part and row.kind == "produce")


class Rss(threading.Thread):
    """Every broker's resident set size, sampled until stopped: start, peak, latest."""

    def __init__(self, pids: list[int], interval: float = 0.2):
        super().__init__(name="scale-rss", daemon=True)
        self.processes = {pid: psutil.Process(pid) for pid in pids}
        self.interval = interval
        self.start_rss: dict[int, int] = {}
        self.peak: dict[int, int] = dict.fromkeys(pids, 0)
        self.row_peak: dict[int, int] = dict.fromkeys(pids, 0)
        self.last: dict[int, int] = dict.fromkeys(pids, 0)
        self._done = threading.Event()

    def sample(self) -> dict[int, int]:
        for pid, process in self.processes.items():
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                continue
            self.last[pid] = rss
            self.peak[pid] = max(self.peak[pid], rss)
            self.row_peak[pid] = max(self.row_peak[pid], rss)
        return dict(self.last)

    def begin_row(self) -> None:
        """Start the peak of the next row from the RSS now."""
        self.row_peak = dict(self.last)

    def run(self) -> None:
        self.start_rss = self.sample()
        while not self._done.wait(self.interval):
            self.sample()

    def stop(self) -> dict:
        self._done.set()
        self.join()
        end = self.sample()
        return {"brokers": [{"pid": pid, "start_mb": _mb(self.start_rss.get(pid, 0)),
                             "peak_mb": _mb(self.peak[pid]), "end_mb": _mb(end[pid]),
                             "growth_mb": _mb(end[pid] - self.start_rss.get(pid, 0))}
                            for pid in self.processes]}


def _mb(value: int) -> float:
    return round(value / 1e6, 1)


PARTS = {"tenfold": (1, 1), "spread": (BROKERS, PARTITIONS)}   # part: brokers, partitions


def run(messages: int = 1_000_000, size: int = 200, say=lambda line: None,
        batch1: bool = True, baseline: dict | None = None,
        parts: tuple[str, ...] = tuple(PARTS)) -> dict:
    """The parts on their own fresh clusters, one after the other; ``baseline``: the
    1-partition run's medians (bench.run's result) to set each row beside."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise InvalidArgument(f"no such part: {', '.join(sorted(unknown))}")
    rows = [row for row in plan(messages, batch1) if row.part in parts]
    result: dict = {"messages": messages, "factor": FACTOR, "partitions": PARTITIONS,
                    "brokers": BROKERS, "rows": {}, "rss": {}}
    for part in parts:
        brokers, partitions = PARTS[part]
        started = time.monotonic()
        measured, rss = _part(part, [r for r in rows if r.part == part], brokers, partitions,
                              size, say)
        rss["seconds"] = round(time.monotonic() - started, 1)
        result["rss"][part] = rss
        result["rows"].update(measured)
    for row in rows:
        figures = result["rows"][row.key]
        base = (baseline or {}).get(row.baseline)
        figures["baseline_msgs_per_s"] = base
        figures["ratio"], figures["met"] = compare(figures["records_per_s"], base)
    return result


def _part(part: str, rows: list[Row], brokers: int, partitions: int, size: int,
          say) -> tuple[dict, dict]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"sluice-bench-{part}-"))
    try:
        needed = disk_needed(rows, part, size) * FREE_MARGIN
        free = shutil.disk_usage(data_dir).free
        if free < needed:
            raise ClusterError(f"the {part} rows need {needed / 1e9:.1f} GB free in "
                               f"{data_dir.parent}, there are {free / 1e9:.1f} GB "
                               "(--no-scale leaves them out)")
        status = up(ClusterConfig(data_dir, brokers=brokers, dashboard_port=None,
                                  kafka_port=None), detach=True)
        zookeeper = status["zookeeper"]
        pids = [p["pid"] for p in status["processes"] if p["role"] == "broker"]
        say(f"scale: {part}: {brokers} broker(s) up in {data_dir}, {partitions} partition(s) "
            "per topic")
        rss = Rss(pids)
        rss.start()
        measured: dict = {}
        produced: dict[str, str] = {}
        try:
            for row in rows:
                measured[row.key] = _row(row, zookeeper, partitions, size, produced, rss)
                say(f"scale: {row.label}: {perf.summary_line(measured[row.key])} (broker RSS "
                    + ", ".join(f"{_mb(v):.0f}" for v in rss.sample().values()) + " MB)")
        finally:
            figures = rss.stop()
        return measured, figures
    finally:
        try:
            down(data_dir)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


def _row(row: Row, zookeeper: str, partitions: int, size: int, produced: dict,
         rss: Rss) -> dict:
    tenth: dict = {}
    rss.begin_row()

    def at_tenth(done: int) -> None:
        if not tenth and done >= row.messages // FACTOR:
            tenth.update(rss.sample())

    if row.kind == "produce":
        topic = produced[row.key] = _fresh_topic(zookeeper, f"scale-{row.key.replace('_', '-')}",
                                                 partitions)
        result = perf.produce(topic, row.messages, size, row.batch, row.acks, linger_ms=5,
                              partition=0 if partitions == 1 else None, zookeeper=zookeeper,
                              on_progress=at_tenth)
    else:
        topic = produced[row.source]
        ends = _partition_ends(zookeeper, topic)
        _wait_flushed(zookeeper, topic, ends)
        result = _consume(topic, ends, size, zookeeper, at_tenth)
    end = rss.sample()
    result["rss_mb"] = {str(pid): {"at_tenth": _mb(tenth.get(pid, 0)),
                                   "peak": _mb(rss.row_peak[pid]), "end": _mb(rss_end)}
                        for pid, rss_end in end.items()}
    if tenth:
        result["rss_growth"], result["rss_flat"] = rss_flat(max(tenth.values()), max(end.values()))
    return result


def _fresh_topic(zookeeper: str, topic: str, partitions: int) -> str:
    """A new topic, once every broker of its placement has opened its partitions."""
    client = zkconnect.connect(zookeeper)
    try:
        placement = topics.create(client, topic, partitions)
        deadline = time.monotonic() + HOSTED_WAIT_S
        for broker in sorted(set(placement.brokers)):
            while client.exists(paths.broker_topic_partitions(topic, broker)) is None:
                if time.monotonic() > deadline:
                    raise ClusterError(f"broker {broker} did not open {topic} within "
                                       f"{HOSTED_WAIT_S:g} s")
                time.sleep(0.02)
    finally:
        client.stop()
        client.close()
    while len(_partition_ends(zookeeper, topic)) < partitions:
        if time.monotonic() > deadline:
            raise ClusterError(f"{topic}'s {partitions} partitions were not all open within "
                               f"{HOSTED_WAIT_S:g} s")
        time.sleep(0.05)
    return topic


def _partition_ends(zookeeper: str, topic: str) -> dict[int, int]:
    """Each partition's log end (bytes), from the metadata of the brokers hosting it."""
    from broker import protocol
    from clients.brokers import BrokerPool
    pool = BrokerPool(zookeeper)
    try:
        ends: dict[int, int] = {}
        for partition in range(pool.partitions(topic)):
            if partition in ends:
                continue
            frames = pool.connection(topic, partition).call(
                protocol.encode_metadata, timeout_ms=pool.request_timeout_ms)
            _, text = protocol.decode_metadata_response(frames[0].buffer)
            ends.update((p["partition"], p["end_offset"]) for p in json.loads(text)["partitions"]
                        if p["topic"] == topic)
        return ends
    finally:
        pool.close()


def _wait_flushed(zookeeper: str, topic: str, ends: dict[int, int],
                  timeout: float = 60.0) -> None:
    """Until every partition's flushed (visible) end reaches its log end: the consumer rows
    measure reading stored data, not waiting for the flusher."""
    from clients.brokers import BrokerPool
    from clients.simple_consumer import SimpleConsumer
    pool = BrokerPool(zookeeper)
    try:
        deadline = time.monotonic() + timeout
        for partition, end in ends.items():
            consumer = SimpleConsumer(topic, partition, "earliest", pool=pool)
            while consumer.offset_of("latest") < end:
                if time.monotonic() > deadline:
                    raise ClusterError(f"{topic} was not flushed within {timeout:g} s")
                time.sleep(0.05)
    finally:
        pool.close()


def _consume(topic: str, ends: dict[int, int], size: int, zookeeper: str, progress) -> dict:
    """Every partition read to its end, one SimpleConsumer after another over one pool (one
    partition: perf.consume's own loop, the 1-partition row's)."""
    framed = HEADER_SIZE + size
    if len(ends) == 1:
        (partition, end), = ends.items()
        result = perf.consume(topic, partition, end // framed, DEFAULT_FETCH_BYTES,
                              zookeeper=zookeeper, on_progress=progress)
        if "error" in result:
            raise ClusterError(result["error"])
        return result
    from clients.brokers import BrokerPool
    from clients.simple_consumer import SimpleConsumer
    pool = BrokerPool(zookeeper)
    count = nbytes = 0
    try:
        started = time.perf_counter()
        for partition, end in sorted(ends.items()):
            if not end:
                continue        # the sticky partitioner sent nothing there
            consumer = SimpleConsumer(topic, partition, "earliest", max_bytes=DEFAULT_FETCH_BYTES,
                                      timeout_ms=10_000, pool=pool)
            for m in consumer:
                nbytes += len(m.value)
                count += 1
                if m.next_offset >= end:
                    break
            progress(count)
        elapsed = time.perf_counter() - started
    finally:
        pool.close()
    expected = sum(ends.values()) // framed
    if count != expected:
        raise ClusterError(f"read {count} of the {expected} messages of {topic}")
    return perf._figures("consume", topic, count, nbytes / count, elapsed,
                         partitions=len(ends),
                         partitions_read=sum(1 for end in ends.values() if end),
                         fetch_bytes=DEFAULT_FETCH_BYTES)


def table(result: dict):
    """Each row beside its 1-partition row, then every broker's RSS per part."""
    from rich.table import Table
    parts = {"tenfold": f"{FACTOR}x the messages ({result['messages'] * FACTOR:,}, 1 broker)",
             "spread": f"{PARTITIONS} partitions over {BROKERS} brokers "
                       f"({result['messages']:,})"}
    grid = Table(title="how cost grows: " + " and ".join(parts[p] for p in result["rss"])
                 + ", beside the 1-partition run", title_justify="left")
    for column in ("row", "msg/s", "1-partition run", "ratio", "target", "met", "RSS growth"):
        grid.add_column(column, justify="left" if column == "row" else "right")
    for key, figures in result["rows"].items():
        label = next(r.label for r in plan(result["messages"]) if r.key == key)
        met = figures["met"]
        growth = figures.get("rss_growth")
        grid.add_row(label, f"{figures['records_per_s']:,.0f}",
                     "-" if figures["baseline_msgs_per_s"] is None
                     else f"{figures['baseline_msgs_per_s']:,.0f}",
                     "-" if figures["ratio"] is None else f"{figures['ratio']:.3f}",
                     f"≥ {TARGET:g}", "-" if met is None else ("yes" if met else "NO"),
                     "-" if growth is None else
                     f"{growth:+.1%} ({'flat' if figures['rss_flat'] else 'NOT flat'})")
    lines = []
    for part, figures in result["rss"].items():
        brokers = "; ".join(f"{b['start_mb']:g}/{b['peak_mb']:g}/{b['end_mb']:g}"
                            for b in figures["brokers"])
        lines.append(f"{part} ({figures['seconds']:g} s) broker RSS MB start/peak/end: {brokers}")
    grid.caption = "\n".join(lines)
    return grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.tools.scale_bench",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--baseline", help="a results.json of bench.py to set the rows beside")
    parser.add_argument("--no-batch1", dest="batch1", action="store_false",
                        help="leave out the batch-1 rows")
    parser.add_argument("--part", dest="parts", action="append", choices=list(PARTS),
                        help="run only this part (again for more; default: every part)")
    parser.add_argument("--output", default=".bench/scale.json")
    args = parser.parse_args(argv)
    from rich.console import Console
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    baseline = json.loads(Path(args.baseline).read_text()) if args.baseline else None
    try:
        result = run(args.messages, args.size, say=err.print, batch1=args.batch1,
                     baseline=baseline, parts=tuple(args.parts or PARTS))
    except SluiceError as exc:
        if not exc.user_error:
            raise
        sys.stderr.write(f"scale_bench: error: {exc}\n")
        return 1
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    Console(highlight=False, width=None if sys.stdout.isatty() else 130).print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
