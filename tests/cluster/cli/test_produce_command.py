"""``sluice produce`` at a bad line: it says how far it got (lines sent and acknowledged before
it, the failing line's number), stores exactly the lines before it, and ``--skip-bad-lines``
skips and counts such lines; the size limit is the brokers' own ``max_message_bytes``."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT, wait_for

LIMIT = 1000     # the brokers' max_message_bytes here, far below the client's default 1 MiB


def sluice(*args, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_produce_reports_a_bad_line_and_skips_them_on_request(cluster_factory):
    cluster = cluster_factory(brokers=1, broker_settings={
        "log": {"flush_ms": 50, "max_message_bytes": LIMIT}})
    zk = ["--zookeeper", cluster.zookeeper]
    assert sluice("topics", "create", "t", "--partitions", "1", *zk).returncode == 0
    big = "k:" + "x" * (LIMIT + 1)
    lines = ["k:a", "k:b", "k:c", big, "k:after"]

    out = sluice("produce", "t", "--partition", "0", "--key-separator", ":", *zk,
                 stdin="\n".join(lines) + "\n")
    errors = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(errors) == 1, out.stderr
    assert errors[0].startswith("sluice: error: line 4: "), errors[0]
    assert f"over the brokers' max_message_bytes of {LIMIT}" in errors[0]
    assert "the 3 line(s) before it were sent and 3 acknowledged" in errors[0]

    out = sluice("produce", "t", "--partition", "0", "--key-separator", ":", *zk,
                 stdin="k:d\nno separator\n")
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("sluice: error: line 2: no key separator ':'; stopped there: "
                                 "the 1 line(s) before it were sent and 1 acknowledged")

    out = sluice("produce", "t", "--partition", "0", "--key-separator", ":", "--skip-bad-lines",
                 "--json", *zk, stdin="\n".join(["k:e", "bad", big, "k:f"]) + "\n")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["messages"], summary["acked"]) == (2, 2)
    assert (summary["skipped"], summary["skipped_lines"]) == (2, [2, 3])

    def values():
        out = sluice("consume", "t", "--partition", "0", "--timeout-ms", "500", *zk)
        assert out.returncode == 0, out.stderr
        got = out.stdout.split()
        return got if len(got) >= 6 else None
    assert wait_for(values, 30, what="the stored lines to become visible") == [
        "a", "b", "c", "d", "e", "f"]
