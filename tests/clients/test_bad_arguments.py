"""The Python API refuses bad arguments with a clear one-line error (InvalidArgument, which is
a ValueError and a TypeError, or the error a broker would give), and a refused constructor
leaves nothing running behind it (docs/drills.md, "Findings", 5).
"""
from __future__ import annotations

import threading

import pytest

from broker import protocol
from clients import Consumer, Producer, SimpleConsumer
from tests.clients.conftest import TOPIC


def refused(error, words, make):
    """``make()`` raises ``error`` whose one-line message holds ``words``, leaving no thread."""
    before = threading.active_count()
    try:
        made = make()
    except error as exc:
        message = str(exc)
    else:
        close = getattr(made, "close", None)
        if close is not None:
            close()
        pytest.fail(f"accepted: {made!r}")
    assert "\n" not in message
    for word in words:
        assert word in message, message
    assert threading.active_count() <= before, "a refused constructor left threads running"


@pytest.mark.parametrize("kwargs, error, words", [
    ({"acks": 2}, ValueError, ["acks", "0, 1 or 'all'"]),
    ({"acks": "1"}, ValueError, ["acks"]),
    ({"batch_size": 0}, ValueError, ["batch_size"]),
    ({"batch_size": 2.5}, ValueError, ["batch_size"]),
    ({"max_in_flight": 0}, ValueError, ["max_in_flight"]),
    ({"request_timeout_ms": -1}, ValueError, ["request_timeout_ms"]),
    ({"linger_ms": -1}, ValueError, ["linger_ms"]),
    ({"retries": -1}, ValueError, ["retries"]),
    ({"partitioner": "round-robin"}, ValueError, ["partitioner"]),
    ({"zookeeper": 2181}, TypeError, ["zookeeper", "connect string"]),
    ({"bogus": 1}, TypeError, ["bogus"]),
])
def test_producer_refuses_bad_settings(kwargs, error, words):
    refused(error, words, lambda: Producer(**kwargs))


@pytest.mark.parametrize("kwargs", [{"linger_ms": "5"}, {"retry_backoff_ms": -1},
                                    {"max_message_bytes": 0}])
def test_producer_refuses_bad_settings_not_yet_checked(cluster, kwargs):
    refused((ValueError, TypeError), [next(iter(kwargs))], lambda: Producer(cluster, **kwargs))


def test_producer_send_refuses_bad_messages(cluster):
    with Producer(cluster, acks=1) as producer:
        refused(TypeError, ["value", "bytes", "str"], lambda: producer.send(TOPIC, "text"))
        refused(TypeError, ["value", "bytes"], lambda: producer.send(TOPIC, 42))
        refused(TypeError, ["key", "bytes"], lambda: producer.send(TOPIC, b"v", key="k"))
        refused(protocol.UnknownTopicOrPartition, ["unknown topic", "nope"],
                lambda: producer.send("nope", b"v"))
        refused(protocol.UnknownTopicOrPartition, ["0..1", "9"],
                lambda: producer.send(TOPIC, b"v", partition=9))
        refused(protocol.UnknownTopicOrPartition, ["0..1", "-1"],
                lambda: producer.send(TOPIC, b"v", partition=-1))
        refused(protocol.MessageTooLarge, ["max_message_bytes"],
                lambda: producer.send(TOPIC, b"v" * (2 << 20)))
        producer.send(TOPIC, b"fine")
    refused(RuntimeError, ["closed"], lambda: producer.send(TOPIC, b"v"))


@pytest.mark.parametrize("args, kwargs, error, words", [
    ((TOPIC, -1), {}, ValueError, ["partition"]),
    ((TOPIC, "0"), {}, ValueError, ["partition"]),
    ((TOPIC, 0), {"offset": -5}, ValueError, ["offset"]),
    ((TOPIC, 0), {"offset": "middle"}, ValueError, ["offset", "earliest"]),
    ((TOPIC, 0), {"offset": 2.5}, ValueError, ["offset"]),
    ((TOPIC, 0), {"max_bytes": 0}, ValueError, ["max_bytes"]),
    ((TOPIC, 0), {"zookeeper": ["h:1"]}, TypeError, ["zookeeper"]),
    ((TOPIC, 0), {"on_corrupt": "ignore"}, ValueError, ["on_corrupt", "skip"]),
])
def test_simple_consumer_refuses_bad_arguments(args, kwargs, error, words):
    refused(error, words, lambda: SimpleConsumer(*args, **kwargs))


@pytest.mark.parametrize("topic, partition", [("nope", 0), (TOPIC, 9)])
def test_simple_consumer_refused_for_the_cluster_leaves_nothing_running(cluster, topic,
                                                                        partition):
    refused(protocol.UnknownTopicOrPartition, [str(partition) if partition else topic],
            lambda: SimpleConsumer(topic, partition, zookeeper=cluster))


@pytest.mark.parametrize("kwargs, error, words", [
    ({"start": "middle"}, ValueError, ["start", "earliest"]),
    ({"auto_commit_ms": 0}, ValueError, ["auto_commit_ms"]),
    ({"zookeeper": 2181}, TypeError, ["zookeeper"]),
    ({"max_poll_records": 0}, ValueError, ["max_poll_records"]),
    ({"max_poll_records": 2.5}, ValueError, ["max_poll_records", "integer"]),
    ({"on_corrupt": "ignore"}, ValueError, ["on_corrupt", "skip", "raise"]),
    ({"before_commit": "flush"}, TypeError, ["before_commit", "callable"]),
])
def test_consumer_refuses_bad_settings(kwargs, error, words):
    refused(error, words, lambda: Consumer([TOPIC], "g", **kwargs))


@pytest.mark.parametrize("topics_, group, kwargs, error, word", [
    ([TOPIC], "a/b", {}, ValueError, "group name"),
    ([], "g", {}, ValueError, "topic"),
    (None, "g", {}, TypeError, "topics"),
    ([TOPIC], 5, {}, TypeError, "group"),
    ([TOPIC], "g", {"rebalance": "nope"}, ValueError, "rebalance"),
    ([TOPIC], "g", {"session_timeout_ms": 0}, ValueError, "session_timeout_ms"),
    ([TOPIC], "g", {"max_bytes": 0}, ValueError, "max_bytes"),
])
def test_consumer_refuses_bad_arguments_before_connecting(cluster, topics_, group, kwargs, error,
                                                          word):
    refused(error, [word], lambda: Consumer(topics_, group, cluster, **kwargs))


def test_commit_refuses_what_is_not_a_message_or_offsets(cluster):
    with Consumer([TOPIC], "g-commit-args", cluster, rebalance_backoff_ms=200) as c:
        refused(TypeError, ["Message", "offset"], lambda: c.commit([("clicks", 0)]))
        refused(TypeError, ["(topic, partition)"], lambda: c.commit({"clicks": 0}))
        refused(ValueError, ["not owned"], lambda: c.commit({("clicks", 5): 0}))
