"""Kafka's wire protocol beside the ZeroMQ one: a TCP listener in the broker's own loop, serving
the same logs to unmodified Kafka clients (kafka-python, librdkafka, kcat, kafkajs).

| module      | concept                                                               |
| ----------- | --------------------------------------------------------------------- |
| wire        | 4-byte length framing, request and response headers                  |
| request     | KafkaRequest, KafkaContext, DEFERRED: what a handler gets and returns |
| listener    | the non-blocking TCP sockets, in request order per connection         |
| apis        | the dispatch table and the ApiVersions table                          |
| data_apis   | ApiVersions, Metadata, Produce, Fetch, ListOffsets, InitProducerId    |
| records     | Kafka record batches <-> sluice MessageSets, and the offset mapping   |
| group_coordinator | the consumer group protocol's state machine (pure)              |
| group_apis  | FindCoordinator, Join/Sync/Heartbeat/LeaveGroup, OffsetCommit/Fetch   |
| boundaries  | a committed "last consumed + 1" resolved to a boundary, here or remote|
| tls         | the listener's SSLContext from KafkaTlsConfig                         |
| sasl        | SaslHandshake, SaslAuthenticate, the gate before authentication       |
| access      | the ACLs for the SASL user: what each API needs, Kafka's error codes  |
"""
