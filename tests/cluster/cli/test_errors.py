"""How ``sluice`` ends: one line for a person's mistake, a traceback and a request to report it
for a bug of ours, and nothing at all when its reader went away (``sluice consume ... | head``)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from clients import Producer
from cluster import cli
from cluster.cli import segment_commands
from coordinator import zk as zkmod
from tests.helpers import ROOT, create_topic, wait_for


def run_main(capsys, monkeypatch, raised: BaseException, *argv: str):
    """``sluice dump-log x.log`` in this process, with the command raising ``raised``."""
    def command(args):
        raise raised
    monkeypatch.setattr(segment_commands, "dump_log", command)
    code = cli.main(["dump-log", "x.log", *argv])
    return code, capsys.readouterr().err


def test_a_bug_of_ours_prints_its_traceback_and_asks_for_a_report(capsys, monkeypatch):
    code, err = run_main(capsys, monkeypatch, ValueError("an internal invariant broke"))
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert "ValueError: an internal invariant broke" in err
    assert "please report" in err and "bug" in err


@pytest.mark.parametrize("raised, code, words", [
    (zkmod.NoCluster("no cluster found: pass --zookeeper"), 1, "no cluster found"),
    (FileNotFoundError(2, "No such file or directory", "/nowhere/x.log"), 1, "/nowhere/x.log"),
    (KeyboardInterrupt(), 130, None),
])
def test_a_persons_mistake_or_a_condition_is_one_line(capsys, monkeypatch, raised, code, words):
    got, err = run_main(capsys, monkeypatch, raised)
    assert got == code
    if words is None:
        assert err == ""
    else:
        assert err.count("\n") == 1 and err.startswith("sluice: error: ") and words in err
        assert "Traceback" not in err


def test_a_closed_pipe_ends_consume_quietly(cluster_factory):
    """``sluice consume ... | head -3``: no 'Broken pipe' line, no traceback, exit 0."""
    cluster = cluster_factory(brokers=1, broker_settings={"log": {"flush_ms": 50}})
    create_topic(cluster.zookeeper, "lines", 1)
    with Producer(cluster.zookeeper, acks=1) as producer:
        for i in range(20_000):
            producer.send("lines", b"line %06d" % i)
    proc = subprocess.Popen([sys.executable, "-m", "cluster.cli", "consume", "lines",
                             "--partition", "0", "--offset", "earliest", "--timeout-ms", "5000",
                             "--zookeeper", cluster.zookeeper], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()
    wait_for(lambda: proc.poll() is not None, 60, what="sluice consume to end")
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert first == [b"line 000000\n", b"line 000001\n", b"line 000002\n"]
    assert (proc.returncode, err) == (0, "")


@pytest.mark.parametrize("args, words", [
    (["--zookeeper", "127.0.0.1:1", "--zk-ensemble", "3"], "exclude"),
    (["--workers", "2"], "--topic and --group"),
    (["--workers", "1", "--topic", "t", "--group", "g", "--handler", "no_such_module_q:f"],
     "--handler"),
    (["--workers", "1", "--topic", "t", "--group", "a/b"], "group name"),
])
def test_a_refused_cluster_setting_is_a_bad_argument(tmp_path, args, words):
    """``cluster up``'s settings are checked before anything starts: exit 2, one line, and no
    data dir made."""
    data_dir = tmp_path / "cluster"
    out = subprocess.run([sys.executable, "-m", "cluster.cli", "cluster", "up", "--data-dir",
                          str(data_dir), *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and words in lines[0], out.stderr
    assert not data_dir.exists()
