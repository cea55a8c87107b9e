"""How long ``sluice dump-log`` takes on big segments, through the command line as a user runs it.

    python -m cluster.tools.dump_log_bench [--gib 1] [--size 200] [--dir /tmp]

Writes, in a temp dir, a segment of ``--gib`` GiB of unkeyed ``--size``-byte messages (the
paper's benchmark messages; 1 GiB is the default ``segment_bytes``) and the 3 MB segment of
120,000 small keyed messages that issue 17 timed (67 s before the bulk decoding), then runs
``sluice dump-log`` on them in subprocesses and prints, per run, the wall time and the CPU time
of the child (user + system: on a loaded machine the wall time also counts the waits for a
core). Rows: ``--summary`` of the big segment, ``--offset`` its middle with ``--max-messages
10`` (the boundary walk), and the full table and ``--summary`` of the small one. The files are
written once through the page cache, so the runs read from memory, as a dump of a live broker's
recent segment does.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from broker import message
from broker.segment import segment_name

SMALL_MESSAGES = 120_000


def write_big(path: Path, gib: float, size: int) -> tuple[int, int]:
    """A segment of ``gib`` GiB of ``size``-byte values; (messages, middle boundary offset)."""
    one = message.encode(b"v" * size)
    per_block = max(1, (4 << 20) // len(one))
    block = one * per_block
    total = int(gib * (1 << 30)) // len(one)
    with open(path, "wb") as out:
        left = total
        while left:
            n = min(left, per_block)
            out.write(block if n == per_block else one * n)
            left -= n
    return total, (total // 2) * len(one)


def write_small(path: Path) -> int:
    data = message.encode_set((b"u%d" % (i % 10), b"ev-%06d" % i) for i in range(SMALL_MESSAGES))
    path.write_bytes(data)
    return len(data)


def timed(args: list[str]) -> tuple[float, float, str]:
    """(wall s, child CPU s, last line of stdout) of ``python -m cluster.cli ARGS``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cluster.cli", *args], check=True,
                          stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = done.stdout.strip().splitlines()
    return wall, cpu, lines[-1] if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="size of the big segment in GiB "
                        "(default %(default)g)")
    parser.add_argument("--size", type=int, default=200, help="value bytes of its messages "
                        "(default %(default)s)")
    parser.add_argument("--dir", help="where the temp dir goes (default: the system's)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dump-log-bench-", dir=args.dir) as tmp:
        big_dir, small_dir = Path(tmp, "big"), Path(tmp, "small")
        big_dir.mkdir()
        small_dir.mkdir()
        big = big_dir / segment_name(0)
        small = small_dir / segment_name(0)
        count, middle = write_big(big, args.gib, args.size)
        small_bytes = write_small(small)
        print(f"big segment: {big.stat().st_size} bytes, {count} messages of {args.size} B; "
              f"small segment: {small_bytes} bytes, {SMALL_MESSAGES} messages")
        rows = [
            (f"dump-log --summary, {args.gib:g} GiB", ["dump-log", "--summary", str(big)]),
            (f"dump-log --offset {middle} --max-messages 10, {args.gib:g} GiB",
             ["dump-log", "--offset", str(middle), "--max-messages", "10", str(big)]),
            (f"dump-log (table), {small_bytes} B", ["dump-log", str(small)]),
            (f"dump-log --summary, {small_bytes} B", ["dump-log", "--summary", str(small)]),
        ]
        for name, command in rows:
            wall, cpu, last = timed(command)
            print(f"{name:<55} wall {wall:7.2f} s  CPU {cpu:7.2f} s   | {last[:90]}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
