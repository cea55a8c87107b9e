"""``make bench-peers`` (cluster/tools/peers/): the pure report (medians, best peer, ratios,
targets, the peers.json shape), ``make bench`` reading a peers.json old or new, the bare-Python
ceilings, and the sluice side of the harness on a real cluster. No peer server is needed: the
peers' own modules run only in ``make bench-peers``. No timed assertions."""
import doctest
import json

from cluster.tools import bench
from cluster.tools.peers import ceilings, harness, report, run, sluice

def _figures(batch1, batch50, acked, consumer, overhead):
    return dict(zip((row.key for row in report.ROWS), (batch1, batch50, acked, consumer,
                                                       overhead)))


def _document(**systems):
    return report.document(
        systems, {"pipeline_batch1_msgs_per_s": 300_000.0,
                  "consumer_decode_msgs_per_s": 1_000_000.0},
        date="2026-12-01T21:00:00+00:00",
        machine={"cores": 2, "cpu_model": "AMD EPYC", "ram_gb": 7.8, "kernel": "6.1",
                 "python": "3.11.7", "load_average": [1.0, 1.0, 1.0]},
        command="python -m cluster.tools.peers", messages={"sluice": 1000, "peers": 500},
        size=200, runs=3, skipped={"RabbitMQ streams": "rabbitmq-server is not installed"},
        clients={name: "a client" for name in systems}, seconds=12.34)


def test_the_report_module_examples_hold():
    assert doctest.testmod(report).failed == 0


def test_medians_are_taken_per_figure_over_the_runs():
    runs = [_figures(3, 30, 20, 10, 9.0), _figures(1, 50, 10, 30, 9.5), _figures(2, 40, 30, 20,
                                                                                 8.0)]
    assert report.medians(runs) == _figures(2.0, 40.0, 20.0, 20.0, 9.0)


def test_batch1_is_held_to_nats_even_when_another_peer_is_best():
    row = report.ROWS[0]
    compared = report.compare(row, {"sluice": 250.0, "Redis Streams": 300.0,
                                    "NATS JetStream": 200.0})
    assert (compared["best_peer"], compared["best_peer_figure"]) == ("Redis Streams", 300.0)
    assert compared["ratio"] == round(250 / 300, 3)
    assert compared["target_against"] == "NATS JetStream" and compared["target_ratio"] == 1.25
    assert compared["met"] is True
    assert report.compare(row, {"sluice": 199.0, "NATS JetStream": 200.0})["met"] is False
    assert report.compare(row, {"sluice": 199.0, "Redis Streams": 100.0})["met"] is None


def test_other_rows_need_one_and_a_half_times_the_best_peer_and_disk_is_turned_round():
    batch50 = report.ROWS[1]
    assert report.compare(batch50, {"sluice": 150.0, "A": 100.0, "B": 90.0})["met"] is True
    assert report.compare(batch50, {"sluice": 149.0, "A": 100.0, "B": 90.0})["met"] is False
    disk = report.ROWS[4]
    compared = report.compare(disk, {"sluice": 9.0, "A": 36.0, "B": 13.5})
    assert (compared["best_peer"], compared["ratio"], compared["met"]) == ("B", 1.5, True)
    assert report.compare(disk, {"sluice": 9.0, "A": 4.0})["met"] is False
    assert report.compare(batch50, {"sluice": 150.0})["best_peer"] is None


def test_ceiling_ratios_and_the_consumer_target():
    ratios = {c["key"]: c for c in report.compare_ceilings(
        _figures(200_000.0, 1, 1, 790_000.0, 9), {"pipeline_batch1_msgs_per_s": 400_000.0,
                                                   "consumer_decode_msgs_per_s": 1e6})}
    assert ratios["batch1_vs_pipeline_ceiling"]["ratio"] == 0.5
    assert ratios["batch1_vs_pipeline_ceiling"]["met"] is None
    assert ratios["consumer_vs_decode_ceiling"]["ratio"] == 0.79
    assert ratios["consumer_vs_decode_ceiling"]["met"] is False
    assert all(c["ratio"] is None for c in report.compare_ceilings(None, {}))


def test_the_peers_json_document_has_its_shape_and_renders():
    doc = _document(**{"sluice": _figures(300.0, 900.0, 600.0, 450.0, 9.0),
                       "Redis Streams": _figures(100.0, 500.0, 300.0, 300.0, 64.0),
                       "NATS JetStream": _figures(250.0, 250.0, 50.0, 20.0, 36.0)})
    assert set(doc) == {"date", "machine", "command", "seconds", "messages", "message_bytes",
                        "runs", "systems", "clients", "skipped", "ceilings", "rows",
                        "ceiling_ratios"}
    assert [row["key"] for row in doc["rows"]] == [row.key for row in report.ROWS]
    first = doc["rows"][0]
    assert list(first["figures"]) == ["sluice", "Redis Streams", "NATS JetStream"]
    assert (first["best_peer"], first["ratio"], first["met"]) == ("NATS JetStream", 1.2, True)
    assert [row["met"] for row in doc["rows"]] == [True, True, True, True, True]
    assert json.loads(json.dumps(doc)) == doc
    report.table(doc)


def _bench_result():
    result = {key: 1000.0 for key, *_ in bench.FIGURES}
    result.update(messages=1000, message_bytes=200, runs=1,
                  machine={"cpus": 2, "python": "3.11"},
                  acks1_latency_ms={"p50": 1.0, "p99": 2.0})
    return result


def _rendered(grid) -> str:
    from rich.console import Console
    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(grid)
    return console.export_text()


def test_bench_shows_the_last_peers_result_with_its_date_and_machine(tmp_path):
    path = tmp_path / "peers.json"
    doc = _document(**{"sluice": _figures(300.0, 900.0, 600.0, 400.0, 9.0),
                       "NATS JetStream": _figures(269_000.0, 250.0, 50.0, 20.0, 36.0)})
    path.write_text(json.dumps(doc))
    text = _rendered(bench.table(_bench_result(), bench.last_peers(path)))
    assert "269,000 (NATS JetStream)" in text
    assert "2026-12-01T21:00:00+00:00" in text and "AMD EPYC" in text
    assert "384,000" not in text, "no typed-in peer figure is left"


def test_bench_reads_an_old_or_broken_peers_json_and_says_to_run_bench_peers(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"date": "2026-11-01", "rows": [
        {"key": "producer_batch1_msgs_per_s", "best_peer": "NATS JetStream"},
        {"key": "producer_batch50_msgs_per_s", "best_peer": "Redis Streams",
         "best_peer_figure": 118_000}]}))
    text = _rendered(bench.table(_bench_result(), bench.last_peers(old)))
    assert "118,000 (Redis Streams)" in text and "2026-11-01" in text
    assert "(NATS JetStream)" not in text, "a row without a figure shows no peer"
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    for path in (broken, tmp_path / "missing.json"):
        assert bench.last_peers(path) is None
        assert "run `make bench-peers`" in _rendered(bench.table(_bench_result(), None))


def test_the_ceilings_run_on_a_few_thousand_messages(tmp_path):
    assert ceilings.pipeline_batch1(3000, 200, tmp_path) > 0
    assert ceilings.consumer_decode(3000, 200) > 0
    assert not list(tmp_path.iterdir()), "the ceiling's file is removed"


def test_the_sluice_side_of_the_harness_on_a_real_cluster(cluster_factory, tmp_path):
    cluster = cluster_factory(brokers=1, kafka_port=None, dashboard_port=None)
    system = sluice.System(tmp_path, zookeeper=cluster.zookeeper, data_dir=cluster.data_dir)
    system.start()
    lines = []
    try:
        samples = run.measure(system, 3000, 200, 1, lines.append)
    finally:
        system.stop()
    assert len(samples) == 1
    figures = samples[0]
    assert set(figures) == {row.key for row in report.ROWS}
    assert figures["storage_overhead_bytes_per_msg"] == 9.0, "the paper's 9-byte framing"
    assert all(figures[row.key] > 0 for row in report.ROWS[:4])
    assert len(lines) == len(harness.PRODUCE_ROWS) + 1
    assert cluster.process.poll() is None, "a cluster it was handed is left up"


def test_the_runner_writes_peers_json_with_date_machine_and_command(tmp_path, capsys):
    """Only the ceilings (no system named): the document's frame as the runner writes it."""
    output = tmp_path / "peers.json"
    assert run.main(["--messages", "2000", "--runs", "1", "--systems", "", "--output",
                     str(output), "--json"]) == 0
    doc = json.loads(output.read_text())
    assert json.loads(capsys.readouterr().out) == doc
    assert set(doc["machine"]) >= {"cores", "cpu_model", "ram_gb", "kernel", "load_average",
                                   "load_average_end"}
    assert doc["date"] and "--systems" in doc["command"]
    assert doc["systems"] == {} and doc["ceilings"]["consumer_decode_msgs_per_s"] > 0
    assert all(row["met"] is None for row in doc["rows"])
