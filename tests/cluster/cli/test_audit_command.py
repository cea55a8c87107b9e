"""``sluice audit`` end to end on a real broker: ``sluice produce --audit``, an auditing group that
skips one message; the command names that one loss in its window, exits 3 for it once the
window closed past the grace, and 0 while it is within."""
from __future__ import annotations

import json
import subprocess
import sys
import time

from clients import Consumer
from clients.audit import window_of
from clients.brokers import BrokerPool
from cluster.observe.audit_trail import read_records
from tests.helpers import ROOT, BrokerProcess, create_topic, wait_for

WINDOW_MS = 1000


def sluice(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_audit_reports_a_skipped_message_in_its_window(zk, tmp_path):
    broker = BrokerProcess(zk, tmp_path, 0, log={"flush_ms": 20}).start()
    try:
        create_topic(zk, "t", 2, [broker])
        lines = "".join("m%03d\n" % i for i in range(100))
        out = subprocess.run([sys.executable, "-m", "cluster.cli", "produce", "t", "--audit",
                              "--audit-window-ms", str(WINDOW_MS), "--zookeeper", zk], cwd=ROOT, input=lines, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        seen, skipped_window = 0, None
        with Consumer(["t"], "g", zk, audit=True, audit_window_ms=WINDOW_MS,
                      auto_commit_ms=100) as consumer:
            for m in consumer:
                seen += 1
                if m.value == b"m050":
                    consumer.note_skipped(m, RuntimeError("skipped by the test"))
                    skipped_window = window_of(m.timestamp, WINDOW_MS)
                if seen == 100:
                    break
            consumer.commit()
        zk_args = ["--zookeeper", zk]

        def report(*extra):
            out = sluice("audit", "--topic", "t", "--json", *extra, *zk_args)
            assert out.returncode in (0, 3), out.stderr
            return out.returncode, json.loads(out.stdout)

        def settled():
            pool = BrokerPool(zk)
            try:
                records, _ = read_records(pool)
            finally:
                pool.close()
            return (sum(r.get("acknowledged", 0) for r in records) == 100
                    and sum(r.get("consumed", 0) for r in records) == 99
                    and time.time() * 1000 > skipped_window + WINDOW_MS)

        wait_for(settled, what="the producer's and the group's records, the windows closed")
        code, got = report("--grace", "0")
        windows = got["windows"]
        assert code == 3
        lossy = [w for w in windows if w["loss"]]
        assert [(w["window_start"], w["consumer_lost"], w["broker_lost"]) for w in lossy] == [
            (skipped_window, {"g": 1}, 0)]
        assert all(w["stored"] == w["acknowledged"] for w in windows)
        code, _ = report("--grace", "3600")          # not judged yet: shown, exit 0
        assert code == 0
        code, got = report("--grace", "0", "--group", "nobody")
        assert code == 0 and all(w["consumed"] == {} for w in got["windows"])
        table = sluice("audit", "--topic", "t", "--grace", "0", *zk_args)
        assert table.returncode == 3 and "LOSS" in table.stdout, table.stdout + table.stderr
    finally:
        broker.stop()


def test_consume_group_audit_counts_what_its_commits_cover(zk, tmp_path):
    """``sluice consume --group G --audit`` counts as Consumer(audit=True) does: a run that
    stops after 40 of 60 messages publishes 40 for G, the next run the other 20, and the
    windows then show no loss."""
    broker = BrokerProcess(zk, tmp_path, 0, log={"flush_ms": 20}).start()
    try:
        create_topic(zk, "t", 2, [broker])
        zk_args = ["--zookeeper", zk]
        window = ["--audit-window-ms", str(WINDOW_MS)]
        lines = "".join("m%03d\n" % i for i in range(60))
        out = subprocess.run([sys.executable, "-m", "cluster.cli", "produce", "t", "--audit",
                              *window, *zk_args], cwd=ROOT, input=lines, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr

        def consumed_by_g():
            pool = BrokerPool(zk)
            try:
                records, _ = read_records(pool)
            finally:
                pool.close()
            return sum(r.get("consumed", 0) for r in records if r.get("group") == "g")

        first = sluice("consume", "t", "--group", "g", "--audit", *window,
                       "--max-messages", "40", *zk_args)
        assert first.returncode == 0, first.stderr
        assert len(first.stdout.splitlines()) == 40
        wait_for(lambda: consumed_by_g() == 40, what="the first run's 40 counted")
        rest = sluice("consume", "t", "--group", "g", "--audit", *window,
                      "--timeout-ms", "3000", *zk_args)
        assert rest.returncode == 0, rest.stderr
        assert sorted(first.stdout.splitlines() + rest.stdout.splitlines()) == lines.split()
        wait_for(lambda: consumed_by_g() == 60, what="both runs' 60 counted")
        assert consumed_by_g() == 60
        # the second run idled 3 s before it stopped: every 1 s window of the produce closed
        out = sluice("audit", "--topic", "t", "--group", "g", "--grace", "0", "--json", *zk_args)
        assert out.returncode == 0, out.stdout + out.stderr
        windows = json.loads(out.stdout)["windows"]
        assert sum(w["consumed"].get("g", 0) for w in windows) == 60
        assert not any(w["loss"] for w in windows)
        alone = sluice("consume", "t", "--partition", "0", "--audit", "--timeout-ms", "500",
                       *zk_args)
        assert alone.returncode != 0 and "--group" in alone.stderr
        assert len(alone.stderr.strip().splitlines()) == 1, alone.stderr
    finally:
        broker.stop()
