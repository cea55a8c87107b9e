"""Broker settings: typed, validated, unknown keys refused, every refusal an InvalidArgument."""
import pytest

from broker.config import BrokerConfig, LogConfig
from broker.flush import FlushPolicy
from coordinator.errors import InvalidArgument

BASE = {"broker_id": 0, "data_dir": "/tmp/b0", "zookeeper": "127.0.0.1:2181"}


def test_a_config_round_trips_through_plain_values():
    config = BrokerConfig.from_dict({**BASE, "port": 9092, "log": {"flush_ms": 20}})
    assert config.log.flush_ms == 20 and config.port == 9092
    assert BrokerConfig.from_dict(config.to_dict()) == config
    assert config.replica_advertised_endpoint is None
    proxied = BrokerConfig.from_dict({**BASE, "replica_advertised_endpoint": "tcp://h:9093"})
    assert BrokerConfig.from_dict(proxied.to_dict()) == proxied


@pytest.mark.parametrize("values,words", [
    ({**BASE, "colour": "red"}, "unknown BrokerConfig setting(s): colour"),
    ({**BASE, "log": {"flush_every": 3}}, "unknown LogConfig setting(s): flush_every"),
    ({"broker_id": 0, "data_dir": "/tmp/b0"}, "needs the setting(s): zookeeper"),
    ({**BASE, "port": "9092"}, "port must be int"),
    ({**BASE, "broker_id": True}, "broker_id must be int"),
    ({**BASE, "log": {"visible_after_flush": 1}}, "visible_after_flush must be bool"),
    ({**BASE, "log": {"retention_bytes": 0}}, "retention_bytes must be positive"),
    ({**BASE, "log": [1]}, "LogConfig settings must be an object"),
    ({**BASE, "port": 70000}, "port must be 0..65535"),
    ({**BASE, "network_namespace": "../netns"}, "network_namespace must be a name as ip netns takes it"),
    ({**BASE, "max_fetch_bytes": 0}, "max_fetch_bytes must be positive"),
    ({**BASE, "max_request_bytes": 100}, "must hold one message"),
    ({**BASE, "replica_advertised_endpoint": "127.0.0.1:9093"},
     "replica_advertised_endpoint must be tcp://host:port"),
    ({**BASE, "replica_advertised_endpoint": "tcp://127.0.0.1:0"},
     "replica_advertised_endpoint must be tcp://host:port"),
    ({**BASE, "replica_advertised_endpoint": 9093}, "replica_advertised_endpoint must be str"),
    ({**BASE, "group_min_session_timeout_ms": 0}, "group_min_session_timeout_ms must be positive"),
    ({**BASE, "group_max_session_timeout_ms": 5000},
     "group_max_session_timeout_ms must be at least group_min_session_timeout_ms"),
    ({**BASE, "group_initial_rebalance_delay_ms": -1},
     "group_initial_rebalance_delay_ms must not be negative"),
    ({**BASE, "connections_max_reauth_ms": -1}, "connections_max_reauth_ms must be >= 0"),
])
def test_a_refused_setting_is_an_invalid_argument_that_says_why(values, words):
    with pytest.raises(InvalidArgument) as refused:
        BrokerConfig.from_dict(values)
    assert words in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_settings_built_directly_are_checked_too():
    with pytest.raises(InvalidArgument, match="segment_bytes must be positive"):
        LogConfig(segment_bytes=0)
    with pytest.raises(InvalidArgument, match="retention_bytes must be int or null"):
        LogConfig(retention_bytes=1.5)
    with pytest.raises(InvalidArgument, match="flush messages and flush ms must be positive"):
        FlushPolicy(0, 100)
