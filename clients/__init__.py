"""The client library: Producer, SimpleConsumer and, for groups, Consumer.

Runs without the cluster package: it needs only ZooKeeper's address (argument, $SLUICE_ZK, or
the local cluster's ``.sluice/zookeeper`` file) to find the brokers.

| module          | holds                                                                    |
| --------------- | ------------------------------------------------------------------------ |
| config          | ProducerConfig and ConsumerConfig: every client setting and its default  |
| producer        | the Producer: batches per partition, acks 0, 1, all, sequenced retries   |
| partitioner     | random (sticky per batch) or by a stable hash of the key                 |
| simple_consumer | one partition from an offset, as the paper's consumer API                |
| consumer        | a consumer group member: delivery, commits, fetch errors                 |
| log_offsets     | LogOffsetStore (offsets in __consumer_offsets) and open_store            |
| fetcher         | one long-poll fetch in flight per partition                              |
| resume          | where a consumer goes after a fetch error (pure)                         |
| brokers         | the BrokerPool: discovery and the sockets to each broker                 |
| connection      | one request socket to one broker, with correlation ids                   |
"""
from broker.message import Message
from broker.protocol import (BrokerUnavailable, CorruptMessage, InvalidOffset, InvalidRecord,
                             MessageTooLarge, OffsetOutOfRange, RequestTimedOut, SluiceError,
                             StorageError, UnknownTopicOrPartition)
from clients.config import ConsumerConfig, ProducerConfig
from clients.consumer import Consumer
from clients.producer import Producer
from clients.simple_consumer import SimpleConsumer
from coordinator.errors import InvalidArgument

__all__ = ["Producer", "SimpleConsumer", "Consumer", "ProducerConfig", "ConsumerConfig", "Message",
           "SluiceError", "InvalidArgument", "BrokerUnavailable", "CorruptMessage", "InvalidOffset",
           "InvalidRecord", "MessageTooLarge", "OffsetOutOfRange", "RequestTimedOut",
           "StorageError", "UnknownTopicOrPartition"]
