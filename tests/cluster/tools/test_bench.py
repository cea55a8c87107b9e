"""The shape of what ``make bench`` writes, from a short run on its own fresh cluster. No timed
assertions: speed lives in the benchmark, not in the tests."""
import json

from cluster.tools import bench


def test_bench_result_has_the_issue_shape():
    result, samples = bench.run(messages=2000, runs=1, replication=False, kafka=False,
                                secure=False)
    assert set(result) == {
        "messages", "message_bytes", "runs", "producer_batch1_msgs_per_s",
        "producer_batch50_msgs_per_s", "producer_acks1_batch50_msgs_per_s", "acks1_latency_ms",
        "consumer_200kb_msgs_per_s", "consumer_msgs_per_s", "storage_overhead_bytes_per_msg",
        "broker_peak_rss_mb", "machine", "producer_acks1_batch50_audit_msgs_per_s",
        "audit_vs_plain_acks1", "audit_cpu_vs_plain_acks1"}
    assert (result["messages"], result["message_bytes"], result["runs"]) == (2000, 200, 1)
    for key in ("producer_batch1_msgs_per_s", "producer_batch50_msgs_per_s",
                "producer_acks1_batch50_msgs_per_s", "consumer_200kb_msgs_per_s",
                "consumer_msgs_per_s"):
        assert result[key] > 0, key
    assert set(result["acks1_latency_ms"]) == {"p50", "p99"}
    assert 0 < result["acks1_latency_ms"]["p50"] <= result["acks1_latency_ms"]["p99"]
    assert result["storage_overhead_bytes_per_msg"] == 9.0, "the paper's 9-byte framing"
    assert 10 < result["broker_peak_rss_mb"] < 1000
    assert set(result["machine"]) == {"cpus", "python"}
    assert len(samples) == 1 and samples[0]["consumer_200kb"]["messages"] == 2000
    assert samples[0]["producer_acks1_batch50_audit"]["acked"] == 2000
    assert result["audit_vs_plain_acks1"] > 0 and result["audit_cpu_vs_plain_acks1"] > 0
    bench.table(result)
    json.dumps(result)


def test_bench_replication_rows():
    """The 3-broker rows (issue 12): acks=all and acks=1 on R=3, their ratios to the
    single-replica acks=1 row of the same run, acks=all latency, consumers R=3 beside R=1."""
    result, samples = bench.run(messages=2000, runs=1, kafka=False, secure=False)
    keys = [key for key, *_ in bench.REPLICATION_FIGURES]
    assert set(keys) | {"acks_all_latency_ms"} <= set(result)
    for key in keys:
        assert result[key] > 0, key
    assert result["acks_all_vs_single_replica_acks1"] == round(
        result["producer_r3_acks_all_batch50_msgs_per_s"]
        / result["producer_acks1_batch50_msgs_per_s"], 3)
    assert 0 < result["acks_all_latency_ms"]["p50"] <= result["acks_all_latency_ms"]["p99"]
    assert samples[0]["consumer_r3"]["messages"] == 2000
    assert samples[0]["producer_r3_acks_all"]["acked"] == 2000
    bench.table(result)
    json.dumps(result)


def test_bench_kafka_client_rows():
    """confluent-kafka and kafka-python through the listener (issue 13): each producer's
    records all acknowledged and read back whole by the same client, the confluent-kafka
    producer's ratio to the native acks=1 row of the same run."""
    result, samples = bench.run(messages=2000, runs=1, replication=False, secure=False)
    keys = [key for key, *_ in bench.KAFKA_FIGURES]
    assert set(keys) <= set(result)
    for key in keys:
        assert result[key] > 0, key
    assert result["kafka_confluent_vs_native_acks1"] == round(
        result["kafka_confluent_producer_msgs_per_s"]
        / result["producer_acks1_batch50_msgs_per_s"], 3)
    for key in bench.KAFKA_KEYS.values():
        assert samples[0][f"kafka_{key}_producer"]["messages"] == 2000
        assert "error" not in samples[0][f"kafka_{key}_producer"]
        assert samples[0][f"kafka_{key}_consumer"]["messages"] == 2000
        assert samples[0][f"kafka_{key}_consumer"]["message_bytes"] == 200
    bench.table(result)
    json.dumps(result)


def test_bench_secure_rows():
    """The --secure rows (issue 14), on their own secured broker up beside the plaintext one,
    its runs taking turns with the plaintext runs: acks=1 batch 50 with every message
    acknowledged and its latency, the consumer reading them all, and the ratios to the
    plaintext rows of the same run."""
    said = []
    result, samples = bench.run(messages=2000, runs=2, replication=False, kafka=False,
                                audit=False, say=said.append)
    assert {key for key, *_ in bench.SECURE_FIGURES} | {"secure_acks1_latency_ms"} <= set(result)
    assert result["secure_vs_plain_producer_acks1"] == round(
        result["producer_secure_acks1_batch50_msgs_per_s"]
        / result["producer_acks1_batch50_msgs_per_s"], 3)
    assert result["secure_vs_plain_consumer"] == round(
        result["consumer_secure_msgs_per_s"] / result["consumer_msgs_per_s"], 3)
    assert 0 < result["secure_acks1_latency_ms"]["p50"] <= result["secure_acks1_latency_ms"]["p99"]
    for sample in samples:
        assert sample["producer_secure_acks1_batch50"]["acked"] == 2000
        assert sample["consumer_secure"]["messages"] == 2000
    order = [("secure" if "secure" in line else "plain", line.split(":")[0]) for line in said
             if line.startswith("run ")]
    turns = [kind for i, (kind, run) in enumerate(order) if i == 0 or order[i - 1] != (kind, run)]
    assert turns == ["plain", "secure", "plain", "secure"], said
    json.dumps(result)


def test_bench_kafka_tls_rows():
    """The Kafka listener's SASL_SSL / plaintext pair that make bench runs after its rows:
    every record produced is read back on both clusters, the ratios are of the medians, and
    the table renders with the 70% target."""
    from rich.console import Console
    from cluster.tools import kafka_tls_bench
    result = kafka_tls_bench.run(2000, 1, 200, say=lambda line: None)
    medians = result["records_per_s_median"]
    for mode in ("producer", "consumer"):
        assert medians[f"{mode}_ratio"] == round(
            medians[f"sasl_ssl_{mode}"] / medians[f"plaintext_{mode}"], 3)
    console = Console(record=True, width=130, file=open("/dev/null", "w"))
    console.print(kafka_tls_bench.table(result))
    text = console.export_text()
    assert "producer" in text and "consumer" in text and "≥ 0.7" in text
    json.dumps(result)
