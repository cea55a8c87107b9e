"""The Kafka listener's security settings (issue 14 item 4): validated where they are built,
refused in one line; the cluster's own certificates made once, owner-only."""
import ssl

import pytest

from broker.config import BrokerConfig, KafkaTlsConfig
from cluster.errors import ClusterSettingError
from cluster.supervision import ClusterConfig, certificates
from coordinator.errors import InvalidArgument


def test_kafka_plaintext_goes_with_secure_and_survives_the_command_line(tmp_path):
    with pytest.raises(ClusterSettingError, match="--kafka-plaintext goes with --secure"):
        ClusterConfig(tmp_path, brokers=1, kafka_plaintext=True)
    config = ClusterConfig(tmp_path, brokers=1, secure=True, kafka_plaintext=True)
    assert ClusterConfig.from_args(config.to_argv()) == config


def test_certificates_are_made_once_owner_only_and_load(tmp_path):
    first = certificates.ensure(tmp_path, ["broker.example"])
    made = {p: p.read_bytes() for p in (tmp_path / "security" / "kafka").iterdir()}
    assert sorted(p.name for p in made) == ["broker-key.pem", "broker.pem", "ca-key.pem",
                                            "ca.pem"]
    assert all(p.stat().st_mode & 0o077 == 0 for p in made)
    assert certificates.ensure(tmp_path, ["broker.example"]) == first
    assert {p: p.read_bytes() for p in made} == made               # kept, not made again
    context = ssl.create_default_context(cafile=first.ca_certificate)
    assert context.load_verify_locations(first.ca_certificate) is None
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(first.certificate, first.private_key)


def test_tls_settings_are_checked_at_construction(tmp_path):
    tls = certificates.ensure(tmp_path)
    base = dict(broker_id=0, data_dir=str(tmp_path / "b"), zookeeper="127.0.0.1:2181")
    with pytest.raises(InvalidArgument, match="kafka_sasl needs kafka_tls"):
        BrokerConfig(**base, kafka_sasl=True)
    with pytest.raises(InvalidArgument, match="not a readable file"):
        KafkaTlsConfig(str(tmp_path / "missing.pem"), tls.private_key)
    (tmp_path / "security" / "kafka" / "broker-key.pem").chmod(0o644)
    with pytest.raises(InvalidArgument, match="readable by others"):
        KafkaTlsConfig(tls.certificate, tls.private_key)
    (tmp_path / "security" / "kafka" / "broker-key.pem").chmod(0o600)
    config = BrokerConfig.from_dict({**base, "kafka_tls": vars(tls), "kafka_sasl": True})
    assert config.kafka_security_protocol == "SASL_SSL"
    with pytest.raises(InvalidArgument, match="unknown"):
        BrokerConfig.from_dict({**base, "kafka_tls": {**vars(tls), "password": "x"}})
