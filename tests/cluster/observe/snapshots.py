"""A snapshot as the sampler makes it, for the tests of what reads one (metrics, history
points, the terminal view), and the Prometheus text parsed back."""
from prometheus_client.parser import text_string_to_metric_families


def snapshot():
    """A snapshot as the sampler makes it: 1 broker, 1 partition, 1 group, 2 processes."""
    return {
        "time": 1_700_000_000.0, "seq": 7, "interval_s": 1.0, "zookeeper": "127.0.0.1:2181",
        "errors": [],
        "processes": [
            {"role": "broker", "id": "0", "pid": 11, "alive": True, "restarts": 1,
             "cpu_percent": 12.5, "cpu_seconds": 3.0, "rss_bytes": 50_000_000, "threads": 9,
             "open_files": 30, "read_bytes": 0, "write_bytes": 4096, "read_bytes_per_s": 0.0,
             "write_bytes_per_s": 4096.0, "ctx_switches": 100, "ctx_switches_per_s": 10.0},
            {"role": "worker", "id": "0", "pid": None, "alive": False, "restarts": 0},
        ],
        "brokers": [{"broker": 0, "endpoint": "tcp://x:1", "up": True, "error": None,
                     "errors": {"offset_out_of_range": 2}, "messages_in": 10, "bytes_in": 300,
                     "bytes_out": 600, "messages_in_per_s": 5.0, "bytes_in_per_s": 150.0,
                     "bytes_out_per_s": 300.0}],
        "partitions": [{"broker": 0, "topic": "clicks", "partition": 0, "start_offset": 0,
                        "end_offset": 300, "visible_end": 300, "segments": 2,
                        "size_bytes": 300, "flushes": 4, "flush_seconds": 0.25,
                        "messages_in": 10, "bytes_in": 300, "bytes_out": 600, "fetches": 3,
                        "messages_in_per_s": 5.0, "bytes_in_per_s": 150.0,
                        "bytes_out_per_s": 300.0}],
        "groups": [{"group": "loaders", "members": ["c1"], "topics": ["clicks"],
                    "state": "settled", "rebalances": 2, "rebalance_seconds_total": 3.0,
                    "last_rebalance_s": 1.0, "rebalancing_for_s": None,
                    "partitions": [{"topic": "clicks", "partition": 0, "owner": "c1",
                                    "committed": 120, "log_start": 0, "log_end": 300,
                                    "lag_bytes": 180, "lag_messages": 6,
                                    "consume_bytes_per_s": 0.0, "consume_msgs_per_s": 0.0,
                                    "stuck": True, "data_loss": None, "error": None,
                                    "retention_seconds_left": 1234.5}]}],
        "sampler": {"ticks": 7, "cpu_seconds": 0.01, "tick_ms": 3.0},
    }


def samples(text: str) -> dict:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found
