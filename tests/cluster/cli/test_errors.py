"""How ``sluice`` ends: one line for a person's mistake, a traceback and a request to report it
for a bug of ours, nothing at all and status 141 when its reader went away (``sluice consume ...
| head``), 3 when no cluster runs, one line with the cause for an unreachable ZooKeeper."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from broker import message
from clients import Producer
from cluster import cli
from cluster.cli import segment_commands
from coordinator import zk as zkmod
from tests.helpers import ROOT, create_topic, wait_for

PIPE_CLOSED = 141    # 128 + SIGPIPE: what a shell shows for `seq 1 100000 | head -3`'s seq


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


def read_then_close(args: list[str], lines: int, env=None) -> tuple[list[bytes], int, str]:
    """Run ``sluice ARGS``, read ``lines`` lines of its stdout and close it (as ``head`` does):
    the lines read, its exit status and its stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "cluster.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = [proc.stdout.readline() for _ in range(lines)]
    proc.stdout.close()
    wait_for(lambda: proc.poll() is not None, 60, what=f"sluice {args[0]} to end")
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return first, proc.returncode, err


@pytest.fixture(scope="module")
def big_segment(tmp_path_factory):
    """A segment file whose dump is far more than a pipe holds (so the writer meets EPIPE)."""
    path = tmp_path_factory.mktemp("segment") / "00000000000000000000.log"
    path.write_bytes(message.encode_set((b"k%d" % i, b"value %06d" % i) for i in range(20_000)))
    return path


@pytest.mark.parametrize("extra, first", [
    (["--json"], b'{"offset": 0'),        # print_json, sys.stdout.write
    ([], b""),                            # a rich table (its title line first)
])
def test_a_closed_pipe_ends_any_command_quietly(big_segment, extra, first):
    """Not per command: the one ending in cli/exits.py, whichever way the command writes."""
    lines, code, err = read_then_close(["dump-log", str(big_segment), *extra], 1)
    assert lines[0].startswith(first) and lines[0].endswith(b"\n")
    assert (code, err) == (PIPE_CLOSED, "")


def test_a_closed_pipe_ends_consume_quietly(cluster_factory):
    """``sluice consume ... | head -3``: no 'Broken pipe' line, no traceback, status 141."""
    cluster = cluster_factory(brokers=1, broker_settings={"log": {"flush_ms": 50}})
    create_topic(cluster.zookeeper, "lines", 1)
    with Producer(cluster.zookeeper, acks=1) as producer:
        for i in range(20_000):
            producer.send("lines", b"line %06d" % i)
    first, code, err = read_then_close(["consume", "lines", "--partition", "0", "--offset",
                                        "earliest", "--timeout-ms", "5000", "--zookeeper",
                                        cluster.zookeeper], 3)
    assert first == [b"line 000000\n", b"line 000001\n", b"line 000002\n"]
    assert (code, err) == (PIPE_CLOSED, "")


def sluice(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def one_line(out: subprocess.CompletedProcess, code: int) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code and len(lines) == 1, (out.returncode, out.stderr)
    return lines[0]


def closed_port() -> int:
    """A local port nothing listens on (bound once, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_zookeeper_is_one_line_with_its_cause(tmp_path):
    """Nothing listens: 'connection refused', at once (not kazoo's retries and warnings, nor
    its 'Connection time-out'); a stale $SLUICE_ZK is named as the source."""
    port = closed_port()
    line = one_line(sluice("topics", "list", "--zookeeper", f"127.0.0.1:{port}"), 1)
    assert line == (f"sluice: error: cannot reach ZooKeeper at 127.0.0.1:{port} (from "
                    f"--zookeeper): connection refused")
    env = {**os.environ, "SLUICE_ZK": f"127.0.0.1:{port}/stale"}
    line = one_line(sluice("produce", "t", "--data-dir", str(tmp_path), env=env), 1)
    assert "(from $SLUICE_ZK): connection refused" in line


def test_a_zookeeper_that_does_not_answer_is_timed_out_by_the_connect_timeout():
    """A listener whose accept queue is full drops new SYNs, as a host that does not answer:
    the probe's connect timeout (3 s) ends it with that cause, in one line."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        line = one_line(sluice("groups", "list", "--zookeeper", f"127.0.0.1:{port}"), 1)
        assert line.endswith(f"127.0.0.1:{port} (from --zookeeper): timed out after 3 s"), line
    finally:
        for sock in (*fillers, listener):
            sock.close()


def test_cluster_status_without_a_running_cluster_exits_3(tmp_path):
    """After ``cluster down`` the data dir keeps cluster.json (every process dead) and an
    unheld lock; status says no cluster runs and exits 3, and down is a no-op with a note."""
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "cluster.json").write_text(json.dumps({
        "supervisor": {"pid": 1, "create_time": 0}, "zookeeper": "127.0.0.1:1", "phase":
        "stopped", "ready": False, "processes": [{"role": "broker", "id": "0", "pid": 1}]}))
    (stopped / "supervisor.lock").write_text("")
    for data_dir in (stopped, tmp_path / "never-started"):
        for extra in ([], ["--json"]):
            out = sluice("cluster", "status", "--data-dir", str(data_dir), *extra)
            assert one_line(out, 3) == f"sluice: error: no cluster running in {data_dir}"
            assert out.stdout == ""
        out = sluice("cluster", "down", "--data-dir", str(data_dir))
        assert one_line(out, 0) == f"no cluster running in {data_dir}: nothing to stop"


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
