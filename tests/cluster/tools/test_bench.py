"""The shape of what ``make bench`` writes, from a short run on its own fresh cluster. No timed
assertions: speed lives in the benchmark, not in the tests."""
import json

from cluster.tools import bench


def test_bench_result_has_the_issue_shape():
    result, samples = bench.run(messages=2000, runs=1)
    assert set(result) == {
        "messages", "message_bytes", "runs", "producer_batch1_msgs_per_s",
        "producer_batch50_msgs_per_s", "producer_acks1_batch50_msgs_per_s", "acks1_latency_ms",
        "consumer_200kb_msgs_per_s", "consumer_msgs_per_s", "storage_overhead_bytes_per_msg",
        "broker_peak_rss_mb", "machine"}
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
    json.dumps(result)
