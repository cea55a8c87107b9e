"""ProducerConfig and ConsumerConfig: every default once, validated, carried as plain values."""
from __future__ import annotations

import doctest
import inspect
import json

import pytest

from clients import Consumer, Producer, config
from clients.brokers import BrokerPool
from clients.config import ConsumerConfig, ProducerConfig
from coordinator import zk as zkmod
from coordinator.errors import InvalidArgument
from coordinator.rebalance import RetryPolicy
from tests.clients.conftest import TOPIC


def test_the_module_examples_hold():
    assert doctest.testmod(config).failed == 0


def test_defaults_shared_with_lower_layers_come_from_them():
    consumer = ConsumerConfig()
    assert consumer.session_timeout_ms == zkmod.DEFAULT_SESSION_TIMEOUT_MS
    assert consumer.retry == RetryPolicy()
    pool_defaults = inspect.signature(BrokerPool).parameters
    assert pool_defaults["session_timeout_ms"].default == zkmod.DEFAULT_SESSION_TIMEOUT_MS
    assert pool_defaults["request_timeout_ms"].default == ProducerConfig().request_timeout_ms \
        == consumer.request_timeout_ms


@pytest.mark.parametrize("cls", [ProducerConfig, ConsumerConfig])
def test_a_config_round_trips_through_json(cls):
    changed = {"request_timeout_ms": 1234}
    made = cls.from_dict(changed)
    assert cls.from_dict(json.loads(json.dumps(made.to_dict()))) == made
    assert made.request_timeout_ms == 1234 and made == cls(**changed)


@pytest.mark.parametrize("cls", [ProducerConfig, ConsumerConfig])
def test_unknown_settings_and_positional_values_are_refused(cls):
    with pytest.raises(InvalidArgument, match=f"unknown {cls.__name__} setting"):
        cls.from_dict({"nope": 1})
    with pytest.raises(TypeError):
        cls(5)


def test_build_puts_keyword_arguments_over_a_config():
    base = ConsumerConfig(start="latest", max_poll_records=10)
    built = ConsumerConfig.build(base, max_poll_records=20)
    assert (built.start, built.max_poll_records) == ("latest", 20)
    assert ConsumerConfig.build(base) is base
    assert ConsumerConfig.build() == ConsumerConfig()
    with pytest.raises(InvalidArgument, match="config must be a ConsumerConfig"):
        ConsumerConfig.build(ProducerConfig())
    with pytest.raises(InvalidArgument, match="max_poll_records"):
        ConsumerConfig.build(base, max_poll_records=0)


@pytest.mark.parametrize("values, words", [
    ({"acks": True}, ["acks", "0, 1 or 'all'"]),
    ({"max_request_bytes": 1.5}, ["max_request_bytes", "integer"]),
    ({"retry_backoff_ms": "1"}, ["retry_backoff_ms"]),
])
def test_producer_config_refuses_in_one_line(values, words):
    with pytest.raises(InvalidArgument) as refused:
        ProducerConfig(**values)
    assert "\n" not in str(refused.value) and all(w in str(refused.value) for w in words)


@pytest.mark.parametrize("values, words", [
    ({"auto_commit_ms": True}, ["auto_commit_ms", "None"]),
    ({"max_poll_interval_ms": 0}, ["max_poll_interval_ms", "positive"]),
    ({"max_wait_ms": 0.5}, ["max_wait_ms", "integer"]),
    ({"rebalance_max_tries": 0}, ["rebalance_max_tries"]),
    ({"instance_id": "a/b"}, ["instance id"]),
    ({"instance_id": 7}, ["instance_id", "str"]),
    ({"consumer_id": 7}, ["consumer_id", "str"]),
])
def test_consumer_config_refuses_in_one_line(values, words):
    with pytest.raises(InvalidArgument) as refused:
        ConsumerConfig(**values)
    assert "\n" not in str(refused.value) and all(w in str(refused.value) for w in words)


def test_none_turns_auto_commit_and_the_poll_bound_off():
    off = ConsumerConfig(auto_commit_ms=None, max_poll_interval_ms=None)
    assert (off.auto_commit_ms, off.max_poll_interval_ms) == (None, None)


def test_clients_take_a_config_with_keyword_arguments_over_it(cluster):
    with Producer(cluster, config=ProducerConfig(acks=1, linger_ms=0), batch_size=7) as producer:
        assert (producer.config.acks, producer.config.batch_size, producer.batch_size) == (1, 7, 7)
        producer.send(TOPIC, b"one")
        producer.flush()
        assert producer.acked == 1
    with Consumer([TOPIC], "g-config", cluster, config=ConsumerConfig(start="latest"),
                  rebalance="eager", rebalance_backoff_ms=200) as consumer:
        assert (consumer.config.start, consumer.config.rebalance) == ("latest", "eager")
        assert consumer.member.protocol.name == "eager"


@pytest.mark.parametrize("given, kept", [(0, 0), (1, 1), ("all", "all"), (-1, "all")])
def test_acks_are_0_1_or_all_with_minus_one_for_all(given, kept):
    made = ProducerConfig(acks=given)
    assert made.acks == kept and type(made.acks) is type(kept)
    assert ProducerConfig.from_dict(json.loads(json.dumps(made.to_dict()))) == made


@pytest.mark.parametrize("bad", [2, -2, True, False, "ALL", "1", "-1", -1.0, 1.0, None])
def test_other_acks_are_refused_in_one_line(bad):
    with pytest.raises(InvalidArgument) as refused:
        ProducerConfig(acks=bad)
    assert str(refused.value) == f"acks must be 0, 1 or 'all' (also -1), not {bad!r}"
