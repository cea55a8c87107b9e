"""Bad input to ``sluice`` never hurts: one line on stderr, a non-zero exit, no traceback.

Argument mistakes (caught by the parser) exit 2; mistakes only the cluster can tell (an unknown
topic, an offset that starts no message) exit 1. Both print exactly one line.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, wait_for


def sluice(*args, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(out: subprocess.CompletedProcess, code: int, *words: str) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code, (out.returncode, out.stderr)
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (["bogus"], ["invalid choice"]),
    (["topics", "create", "t", "--partitions", "0"], ["--partitions", "expected a number >= 1"]),
    (["topics", "create", "t", "--partitions", "-1"], ["--partitions", "expected a number >= 1"]),
    (["topics", "create", "a/b", "--partitions", "2"], ["invalid topic name", "'/' is not"]),
    (["topics", "create", "..", "--partitions", "2"], ["'..'", "parent in a ZooKeeper path"]),
    (["topics", "create", ".", "--partitions", "2"], ["'.'", "ZooKeeper path"]),
    (["produce", "a b"], ["invalid topic name", "' ' is not allowed"]),
    (["consume", "t", "--group", "a/b"], ["invalid group name"]),
    (["groups", "describe", ""], ["invalid group name", "empty"]),
    (["topics", "create", "t", "--partitions", "many"], ["--partitions", "whole number"]),
    (["topics", "create", "t"], ["--partitions"]),
    (["consume", "t", "--partition", "0", "--offset", "-5"], ["--offset"]),
    (["consume", "t", "--partition", "0", "--offset", "middle"], ["--offset"]),
    (["consume", "t", "--partition", "-1"], ["--partition"]),
    (["consume", "t", "--partition", "0", "--max-messages", "0"], ["--max-messages"]),
    (["produce", "t", "--acks", "2"], ["--acks"]),
    (["produce", "t", "--batch-size", "0"], ["--batch-size"]),
    (["cluster", "up", "--brokers", "0"], ["--brokers"]),
    (["cluster", "up", "--zk-ensemble", "2"], ["--zk-ensemble"]),
    (["groups", "describe", "g", "--interval", "soon"], ["--interval"]),
    (["dump-log", "x.log", "--preview", "-1"], ["--preview"]),
    (["drill", "kill-everything"], ["invalid choice", "kill-everything"]),
    (["drill"], ["NAME"]),
    (["drill", "kill-broker", "--count", "0"], ["--count"]),
    (["drill", "kill-broker", "--count", "two"], ["--count"]),
    (["drill", "kill-broker", "--interval", "-1"], ["--interval"]),
    (["drill", "kill-broker", "--interval", "nan"], ["--interval"]),
    (["perf", "produce", "t", "--messages", "0"], ["--messages"]),
])
def test_bad_arguments_are_one_line_and_exit_2(args, words):
    one_line_error(sluice(*args), 2, *words)


@pytest.mark.parametrize("args, words", [
    (["topics", "list", "--data-dir", "/nonexistent"], ["no cluster found"]),
    (["dump-log", "/nonexistent/x.log"], ["/nonexistent/x.log", "No such file"]),
    (["dump-log", "nosuch.log"], ["nosuch.log", "No such file"]),
    (["consume", "t", "--data-dir", "/nonexistent"], ["--partition", "--group"]),
    (["drill", "kill-broker", "--data-dir", "/nonexistent"], ["no cluster is running"]),
    (["keys", "create", "admin", "--data-dir", "/nonexistent"], ["cluster's own keys"]),
    (["keys", "allow", "broker-0", "--data-dir", "/nonexistent"], ["cluster's own keys"]),
])
def test_errors_without_a_cluster_are_one_line_and_exit_1(args, words):
    one_line_error(sluice(*args), 1, *words)


def test_a_data_dir_that_is_a_file_is_a_bad_argument(tmp_path):
    """One line naming it, not ENOTDIR about a file inside it, whatever the command."""
    afile = tmp_path / "not-a-dir"
    afile.write_text("")
    for args in (["cluster", "up"], ["cluster", "status"], ["topics", "list"], ["scrub"]):
        one_line_error(sluice(*args, "--data-dir", str(afile)), 2,
                       f"--data-dir {afile} is a file, not a directory")


def test_mistakes_only_the_cluster_can_tell(cluster_factory):
    cluster = cluster_factory(brokers=1, broker_settings={"log": {"flush_ms": 100}})
    zk = ["--zookeeper", cluster.zookeeper]
    assert sluice("topics", "create", "t", "--partitions", "2", *zk).returncode == 0
    out = sluice("produce", "t", "--partition", "0", *zk, stdin="first\nsecond\n")
    assert out.returncode == 0, out.stderr

    def visible():
        out = sluice("topics", "describe", "t", "--json", *zk)
        return json.loads(out.stdout)["partitions"][0]["end_offset"]
    end = wait_for(visible, 30, what="the produced messages to become visible")

    one_line_error(sluice("topics", "create", "t", "--partitions", "2", *zk), 1, "exists")
    one_line_error(sluice("topics", "describe", "nope", *zk), 1, "unknown topic")
    one_line_error(sluice("consume", "nope", "--partition", "0", "--timeout-ms", "500", *zk), 1,
                   "unknown topic")
    one_line_error(sluice("consume", "t", "--partition", "7", "--timeout-ms", "500", *zk), 1,
                   "0..1")
    one_line_error(sluice("consume", "t", "--partition", "0", "--offset", "3",
                          "--timeout-ms", "500", *zk), 1, "not the start of a message")
    one_line_error(sluice("consume", "t", "--partition", "0", "--offset", str(end + 1000),
                          "--timeout-ms", "500", *zk), 1, "outside")
    one_line_error(sluice("produce", "nope", *zk, stdin="x\n"), 1, "unknown topic")
    one_line_error(sluice("produce", "t", "--partition", "5", *zk, stdin="x\n"), 1, "0..1")
    one_line_error(sluice("produce", "t", "--key-separator", ":", *zk, stdin="no separator\n"),
                   1, "key separator")
    one_line_error(sluice("groups", "describe", "nobody", *zk), 1, "unknown group")
    one_line_error(sluice("groups", "describe", "nobody", "--interval", "-1", *zk), 1,
                   "--interval")
    out = sluice("consume", "t", "--partition", "0", "--offset", "earliest", "--timeout-ms",
                 "1000", *zk)
    assert out.returncode == 0 and out.stdout.split() == ["first", "second"], out
