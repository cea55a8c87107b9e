"""``sluice cluster up --config FILE --set key=value``: the file's format, refusals naming the
line, ``--set`` over the file, and the settings reaching the processes the supervisor starts
(seen in ``cluster status --json`` and in what a running broker does with them)."""
from __future__ import annotations

import json
import subprocess

import pytest

from cluster.cli import main
from cluster.cli.cluster_commands import cluster_config
from cluster.cli.parser import build_parser
from cluster.supervision import control
from clients import Producer
from tests.cluster.cli.test_bad_arguments import one_line_error
from tests.helpers import wait_for

FILE = """# the cluster's settings
log.segment_bytes = 600
log.flush_ms=20
! a comment, as in server.properties
broker.session_timeout_ms=7000

worker.on_error=skip
consumer.max_poll_records=7
"""


def _config(tmp_path, *argv):
    path = tmp_path / "cluster.properties"
    path.write_text(FILE)
    args = build_parser().parse_args(["cluster", "up", "--data-dir", str(tmp_path / "d"),
                                      "--zookeeper", "127.0.0.1:1", "--config", str(path),
                                      *argv])
    return cluster_config(args)


def test_the_file_and_set_become_the_typed_settings_set_winning(tmp_path):
    config = _config(tmp_path, "--set", "log.flush_ms=30", "--set", "consumer.rebalance=eager",
                     "--broker-settings", '{"log": {"retention_ms": 60000}}',
                     "--workers", "1", "--topic", "t", "--group", "g")
    assert config.broker_settings == {"log": {"segment_bytes": 600, "flush_ms": 30,
                                              "retention_ms": 60000},
                                      "session_timeout_ms": 7000}
    assert config.worker_settings == {"on_error": "skip", "topic": "t", "group": "g",
                                      "consumer": {"max_poll_records": 7, "rebalance": "eager"}}
    broker = config.broker_config(0, "127.0.0.1:1")
    assert (broker.log.segment_bytes, broker.log.flush_ms, broker.session_timeout_ms) == (
        600, 30, 7000)


@pytest.mark.parametrize("text, words", [
    ("log.flush_ms=20\nlog.segment_size=1\n", [":2: unknown setting 'log.segment_size'",
                                              "segment_bytes"]),
    ("retention.ms=1\n", [":1: unknown setting 'retention.ms'", "broker."]),
    ("\n\nlog.segment_bytes=0\n", [":3: log.segment_bytes", "must be positive"]),
    ("broker.session_timeout_ms=soon\n", [":1: broker.session_timeout_ms", "expected int"]),
    ("broker.broker_id=3\n", [":1:", "the supervisor sets it"]),
    ("broker.log=x\n", [":1:", "use log.<setting>"]),
    ("just words\n", [":1: expected key=value"]),
])
def test_a_refused_line_is_named_with_its_number_and_exits_2(tmp_path, capsys, text, words):
    path = tmp_path / "c.properties"
    path.write_text(text)
    code = main(["cluster", "up", "--data-dir", str(tmp_path), "--config", str(path)])
    out = subprocess.CompletedProcess([], code, "", capsys.readouterr().err)
    one_line_error(out, 2, f"{path}", *words)


def test_a_refused_set_is_named_and_exits_2(tmp_path, capsys):
    code = main(["cluster", "up", "--data-dir", str(tmp_path), "--set", "log.flush_ms=-1"])
    out = subprocess.CompletedProcess([], code, "", capsys.readouterr().err)
    one_line_error(out, 2, "--set: log.flush_ms", "must be positive")


def test_the_settings_reach_the_running_broker_and_worker(tmp_path, zk, capsys):
    path = tmp_path / "cluster.properties"
    path.write_text(FILE)
    data_dir = tmp_path / "cluster"
    argv = ["--data-dir", str(data_dir)]
    code = main(["cluster", "up", "--detach", "--zookeeper", zk, "--brokers", "1",
                 "--workers", "1", "--topic", "t", "--group", "g", "--no-dashboard",
                 "--no-kafka", "--config", str(path), "--set", "log.flush_ms=30", *argv])
    assert code == 0, capsys.readouterr().err
    try:
        capsys.readouterr()
        assert main(["cluster", "status", "--json", *argv]) == 0
        settings = json.loads(capsys.readouterr().out)["settings"]
        broker, worker = settings["broker"]["0"], settings["worker"]["0"]
        assert (broker["log"]["segment_bytes"], broker["log"]["flush_ms"]) == (600, 30)
        assert broker["session_timeout_ms"] == 7000 and broker["kafka_port"] is None
        assert (worker["on_error"], worker["consumer"]["max_poll_records"]) == ("skip", 7)

        assert main(["topics", "create", "t", "--partitions", "1", "--zookeeper", zk]) == 0
        with Producer(zookeeper=zk, acks=1, batch_size=1) as producer:
            for i in range(40):
                producer.send("t", b"%02d" % i + b"x" * 48, partition=0)
        segments = data_dir / "broker-0" / "t" / "0"
        wait_for(lambda: len(list(segments.glob("*.log"))) >= 3, 30,
                 what="the broker to roll its 600-byte segments")   # 40 x 59 B = 2360 B
    finally:
        control.down(data_dir)


def test_the_file_format_worked_examples():
    import doctest
    from cluster.supervision import settings_file
    assert doctest.testmod(settings_file).failed == 0
