"""The client library: Producer, SimpleConsumer (and, for groups, Consumer).

Runs without the cluster package: it needs only ZooKeeper's address (argument, $SLUICE_ZK, or
the local cluster's ``.sluice/zookeeper`` file) to find the brokers.
"""
from broker.message import Message
from broker.protocol import (BrokerUnavailable, CorruptMessage, InvalidOffset, MessageTooLarge,
                             OffsetOutOfRange, RequestTimedOut, SluiceError, StorageError,
                             UnknownTopicOrPartition)
from clients.consumer import Consumer
from clients.producer import Producer
from clients.simple_consumer import SimpleConsumer

__all__ = ["Producer", "SimpleConsumer", "Consumer", "Message", "SluiceError", "BrokerUnavailable",
           "CorruptMessage", "InvalidOffset", "MessageTooLarge", "OffsetOutOfRange",
           "RequestTimedOut", "StorageError", "UnknownTopicOrPartition"]
