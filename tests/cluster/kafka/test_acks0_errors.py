"""A Produce with acks=0 gets no response, so an error in it (the partition led elsewhere, an
unknown topic) can reach the client only one way: as Kafka's broker does, the connection is
closed, and the client refreshes its metadata on reconnecting. Otherwise a fire-and-forget
producer whose partition moved keeps sending to the old leader, every batch dropped, until its
next periodic metadata refresh (5 minutes by default). An acks=0 produce that succeeds keeps
its connection. The requests are kafka-python's protocol classes and record builder."""
import socket
import struct

from kafka.protocol.producer import ProduceRequest
from kafka.record.default_records import DefaultRecordBatchBuilder

from tests.helpers import create_topic

TOPIC = "fire"


def produce_frame(correlation_id: int, topic: str, partition: int) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    builder.append(0, timestamp=1_700_000_000_000, key=b"k", value=b"forgotten", headers=[])
    body = ProduceRequest(version=8, transactional_id=None, acks=0, timeout_ms=5000,
                          topic_data=[ProduceRequest.TopicProduceData(
                              name=topic, partition_data=[
                                  ProduceRequest.TopicProduceData.PartitionProduceData(
                                      index=partition, records=bytes(builder.build()))])]
                          ).encode(version=8)
    return header(0, 8, correlation_id) + bytes(body)


def header(api_key: int, version: int, correlation_id: int) -> bytes:
    return struct.pack(">hhih", api_key, version, correlation_id, 1) + b"t"


def send(sock, frame: bytes) -> None:
    sock.sendall(struct.pack(">i", len(frame)) + frame)


def api_versions_answer(sock):
    """Send ApiVersions v0; the correlation id of the answer, or None when the broker closed."""
    send(sock, header(18, 0, 99))
    head = read(sock, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">i", head)
    frame = read(sock, size)
    return None if frame is None else struct.unpack_from(">i", frame)[0]


def read(sock, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def test_an_acks0_produce_that_fails_closes_its_connection_and_one_that_works_does_not(
        kafka_broker, zk):
    procs = [kafka_broker(broker_id=b) for b in range(2)]
    placement = create_topic(zk, TOPIC, 4, procs)
    here = [p for p in range(4) if 0 in placement.replicas[p]]
    elsewhere = [p for p in range(4) if 0 not in placement.replicas[p]]
    assert here and elsewhere, placement.replicas
    host, port = procs[0].info["kafka_endpoint"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        send(sock, produce_frame(1, TOPIC, here[0]))
        assert api_versions_answer(sock) == 99
        send(sock, produce_frame(2, TOPIC, elsewhere[0]))           # NOT_LEADER_OR_FOLLOWER
        assert api_versions_answer(sock) is None
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        send(sock, produce_frame(3, "absent", 0))                   # UNKNOWN_TOPIC_OR_PARTITION
        assert api_versions_answer(sock) is None
