"""ClusterConfig: every cluster setting once, refused with one line naming it, and its command
line read back."""
import pytest

from cluster.errors import ClusterError, ClusterSettingError
from cluster.supervision.config import ClusterConfig
from cluster.supervision.slots import Backoff
from coordinator.errors import InvalidArgument


def test_broker_settings_are_validated(tmp_path, zk):
    with pytest.raises(ClusterError, match="bogus"):
        ClusterConfig(tmp_path, brokers=1, zookeeper=zk, broker_settings={"bogus": 1})
    with pytest.raises(ClusterError, match="broker_id"):
        ClusterConfig(tmp_path, brokers=1, zookeeper=zk, broker_settings={"broker_id": 7})
    with pytest.raises(ClusterError, match="--brokers"):
        ClusterConfig(tmp_path, brokers=0, zookeeper=zk)
    with pytest.raises(ClusterError, match="exclude"):
        ClusterConfig(tmp_path, brokers=1, zookeeper=zk, zk_ensemble=3)


def test_broker_config_gets_id_dir_zookeeper_and_consecutive_ports(tmp_path):
    config = ClusterConfig(tmp_path, broker_settings={"port": 9000, "log": {"flush_ms": 50}}
                           ).broker_config(2, "h:1/x")
    assert (config.broker_id, config.zookeeper, config.port) == (2, "h:1/x", 9002)
    assert config.data_dir == str(tmp_path / "broker-2")
    assert config.log.flush_ms == 50


def test_kafka_listeners_are_base_plus_id_a_free_port_or_none(tmp_path):
    assert ClusterConfig(tmp_path, kafka_port=9092).broker_config(2, "h:1").kafka_port == 9094
    assert ClusterConfig(tmp_path).broker_config(2, "h:1").kafka_port == 0
    assert ClusterConfig(tmp_path, kafka_port=None).broker_config(2, "h:1").kafka_port is None
    for config in (ClusterConfig(tmp_path, kafka_port=9092), ClusterConfig(tmp_path, kafka_port=None)):
        assert ClusterConfig.from_args(config.to_argv()) == config
    with pytest.raises(ClusterSettingError, match="--kafka-port"):
        ClusterConfig(tmp_path, brokers=3, kafka_port=65534)




def test_a_refused_setting_is_an_invalid_argument_naming_it(tmp_path):
    cases = [({"brokers": "3"}, "--brokers"), ({"workers": -1}, "--workers"),
             ({"zk_ensemble": 2}, "--zk-ensemble"), ({"dashboard_port": 70000}, "--dashboard-port"),
             ({"broker_target": "nocolon"}, "--broker-target"),
             ({"workers": 1}, "--topic and --group"),
             ({"workers": 1, "worker_settings": {"topic": "a/b", "group": "g"}}, "topic name"),
             ({"workers": 1, "worker_settings": {"topic": "t", "group": "g",
                                                 "handler": "no_such_module_x:f"}}, "--handler"),
             ({"workers": 1, "worker_settings": {"topic": "t", "group": "g",
                                                 "on_error": "ignore"}}, "on_error"),
             ({"workers": 1, "worker_settings": {"topic": "t", "group": "g",
                                                 "zookeeper": "x"}}, "zookeeper"),
             ({"workers": 1, "worker_settings": {"topic": "t", "group": "g",
                                                 "bogus": 1}}, "unknown WorkerConfig.*bogus")]
    for values, words in cases:
        with pytest.raises(InvalidArgument, match=words) as refused:
            ClusterConfig(tmp_path, **values)
        assert "\n" not in str(refused.value)
    with pytest.raises(InvalidArgument, match="unknown cluster setting.*bogus"):
        ClusterConfig.from_dict({"data_dir": str(tmp_path), "bogus": 1})


def test_the_command_line_reads_back_to_the_same_config(tmp_path):
    config = ClusterConfig(tmp_path, brokers=2, zookeeper="h:1/c", broker_settings={
        "log": {"flush_ms": 50}}, workers=2, worker_settings={
        "topic": "t", "group": "g", "handler": None, "static": True},
        dashboard_port=None, backoff=Backoff(initial_s=0.1))
    assert config.worker_settings == {"topic": "t", "group": "g", "static": True}
    assert ClusterConfig.from_args(config.to_argv()) == config
    assert ClusterConfig.from_dict(config.to_dict()) == config
    defaults = ClusterConfig(tmp_path)
    assert defaults.to_argv() == ["--data-dir", str(tmp_path.resolve()), "--brokers", "3",
                                  "--zk-ensemble", "1", "--broker-target", "broker.server:run",
                                  "--dashboard-port", "8080"]
    assert ClusterConfig.from_args(defaults.to_argv()) == defaults


def test_workers_get_the_shared_settings_and_their_own_id(tmp_path):
    config = ClusterConfig(tmp_path, workers=2, worker_settings={"topic": "t", "group": "g",
                                                                  "consumer": {"auto_commit_ms": 200}})
    worker = config.worker_config(1, "h:1/c")
    assert (worker.worker_id, worker.zookeeper, worker.data_dir) == (1, "h:1/c",
                                                                      str(tmp_path.resolve()))
    assert (worker.topic, worker.group, worker.consumer.auto_commit_ms) == ("t", "g", 200)


def test_the_replication_settings_of_a_cluster_read_back_and_reach_every_broker(tmp_path):
    config = ClusterConfig(tmp_path, brokers=3, replication_factor=2, broker_settings={
        "unclean_leader_election": True, "leader_imbalance_check_ms": 500})
    assert ClusterConfig.from_args(config.to_argv()) == config
    assert ClusterConfig.from_dict(config.to_dict()) == config
    assert "--replication-factor" in config.to_argv()
    broker = config.broker_config(1, "h:1/x")
    assert (broker.unclean_leader_election, broker.leader_imbalance_check_ms) == (True, 500)
    assert ClusterConfig(tmp_path).replication_factor is None
    for values, words in [({"replication_factor": 0}, "--replication-factor must be at least 1"),
                          ({"replication_factor": 4}, "--replication-factor 4 needs"),
                          ({"broker_settings": {"unclean_leader_election": "yes"}},
                           "unclean_leader_election must be bool")]:
        with pytest.raises(InvalidArgument, match=words):
            ClusterConfig(tmp_path, brokers=3, **values)


def test_a_broker_override_reaches_that_broker_only_and_reads_back(tmp_path):
    """Per-broker settings over the shared ones: the partition-leader drill gives one broker its
    own ZooKeeper connect string and replica endpoint (proxies), and a fixed port."""
    config = ClusterConfig(tmp_path, brokers=3, zookeeper="h:1/c", broker_settings={
        "port": 9000, "log": {"flush_ms": 50, "segment_bytes": 4096}}, broker_overrides={
        1: {"zookeeper": "127.0.0.1:7001/c", "port": 9500, "log": {"flush_ms": 10},
            "replica_advertised_endpoint": "tcp://127.0.0.1:7002"}})
    assert set(config.broker_overrides) == {"1"}
    one, two = config.broker_config(1, "h:1/c"), config.broker_config(2, "h:1/c")
    assert (one.zookeeper, one.port, one.replica_advertised_endpoint) == (
        "127.0.0.1:7001/c", 9500, "tcp://127.0.0.1:7002")
    assert (one.log.flush_ms, one.log.segment_bytes, one.broker_id) == (10, 4096, 1)
    assert (two.zookeeper, two.port, two.replica_advertised_endpoint) == ("h:1/c", 9002, None)
    assert ClusterConfig.from_args(config.to_argv()) == config
    assert ClusterConfig.from_dict(config.to_dict()) == config
    assert "--broker-overrides" in config.to_argv()
    assert "--broker-overrides" not in ClusterConfig(tmp_path).to_argv()


@pytest.mark.parametrize("overrides,words", [
    ({"3": {}}, "'3' is not the id of a broker of this cluster (0..2)"),
    ({"-1": {}}, "'-1' is not the id"),
    ({"01": {}}, "'01' is not the id"),
    ({True: {}}, "True is not the id"),
    ({"1": {}, 1: {}}, "broker 1 is given twice"),
    ({"0": ["port", 1]}, "broker 0's settings must be a JSON object"),
    ({"0": {"data_dir": "/elsewhere"}}, "broker 0 must not set data_dir"),
    ({"2": {"broker_id": 0}}, "broker 2 must not set broker_id"),
    ({"1": {"colour": "red"}}, "colour"),
    ({"1": {"replica_advertised_endpoint": "nowhere"}}, "replica_advertised_endpoint must be"),
    ({"1": {"zookeeper": 5}}, "zookeeper must be str"),
    ([1], "--broker-overrides must be a JSON object"),
])
def test_a_bad_broker_override_is_refused_naming_it(tmp_path, overrides, words):
    with pytest.raises(ClusterError) as refused:
        ClusterConfig(tmp_path, brokers=3, broker_overrides=overrides)
    assert words in str(refused.value)
