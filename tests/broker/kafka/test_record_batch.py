"""The hand-written record batch v2 codec against kafka-python's: its builder makes the batches
the decoder takes, its reader judges the batches the encoder makes, on random records."""
import doctest

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from broker import message
from broker.kafka import record_batch, records, wire
from coordinator.errors import CorruptMessage, MessageTooLarge

CODECS = [0, 1, 2, 3, 4]       # none, gzip, snappy, lz4, zstd

payloads = st.one_of(st.none(), st.binary(max_size=300), st.just(b"L" * 9000))
header_lists = st.lists(st.tuples(st.text(max_size=12), st.one_of(st.none(), st.binary(max_size=40))),
                        max_size=3)
timestamps = st.one_of(st.integers(0, 2), st.integers(0, 1 << 20))   # runs of one, and apart
rows = st.lists(st.tuples(payloads, payloads, timestamps, header_lists),
                min_size=1, max_size=40)
PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def client_batch(batch_rows, codec=0, first_ts=1_700_000_000_000, producer=(-1, -1, -1)):
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False,
                                        producer_id=producer[0], producer_epoch=producer[1],
                                        base_sequence=producer[2], batch_size=1 << 30)
    for i, (key, value, ts, headers) in enumerate(batch_rows):
        builder.append(i, first_ts + ts, key, value, headers)
    return bytes(builder.build())


def stored(data):
    return [(m.key, m.value, m.timestamp, m.headers) for m in message.decode_set(data, "t", 0, 0)]


def expected(batch_rows, first_ts=1_700_000_000_000):
    return [(k, v, first_ts + ts, tuple(tuple(h) for h in hs)) for k, v, ts, hs in batch_rows]


@PROPERTY
@given(rows, rows, st.sampled_from(CODECS), st.integers(0, (1 << 40) - 1),
       st.integers(0, 1 << 30))
def test_the_decoder_keeps_every_field_of_kafka_pythons_batches(first, second, codec, pid, seq):
    data = client_batch(first, codec, producer=(pid, 3, seq)) + client_batch(second, 0)
    message_set, count, batches = records.to_message_set(data, now_ms=1)
    assert count == len(first) + len(second) == message.validate_set(message_set)
    assert stored(message_set) == expected(first) + expected(second)
    assert [(b.producer_id, b.producer_epoch, b.base_sequence, b.count) for b in batches] == \
        [(pid, 3, seq, len(first)), (-1, -1, -1, len(second))]


sluice_messages = st.lists(st.one_of(
    st.builds(lambda v: message.encode(v), st.binary(max_size=300)),
    st.builds(lambda k, v: message.encode(v, k), st.binary(max_size=20), st.binary(max_size=300)),
    st.builds(message.encode_record, payloads, payloads,
              st.one_of(st.integers(-1, 1), st.integers(-1, 1 << 42)), header_lists)),
    min_size=1, max_size=40)


@PROPERTY
@given(sluice_messages, st.integers(0, 1 << 50), st.integers(-1, 1 << 20))
def test_kafka_pythons_reader_reads_the_encoders_batches_with_byte_offsets(sets, base, epoch):
    data = b"".join(sets)
    batch, count = records.to_record_batch(data, base, leader_epoch=epoch)
    parsed = DefaultRecordBatch(batch)
    assert parsed.validate_crc() and count == len(sets)
    assert (parsed.base_offset, parsed.leader_epoch, parsed.records_count) == \
        (base, epoch, len(sets))
    assert parsed.next_offset == base + len(data)
    got = [(r.offset, r.key, r.value, r.timestamp, [tuple(h) for h in r.headers]) for r in parsed]
    want = [(m.offset, m.key, m.value, -1 if m.timestamp is None else m.timestamp,
             [tuple(h) for h in m.headers]) for m in message.decode_set(data, "t", 0, base)]
    assert got == want
    assert parsed.max_timestamp == max(w[3] for w in want)


@PROPERTY
@given(rows, st.sampled_from(CODECS), st.data())
def test_a_changed_byte_is_refused_or_lands_outside_what_the_crc_covers(batch_rows, codec, data):
    batch = bytearray(client_batch(batch_rows, codec))
    at = data.draw(st.integers(0, len(batch) - 1))
    batch[at] ^= data.draw(st.integers(1, 255))
    try:
        message_set, _, _ = records.to_message_set(bytes(batch), now_ms=1)
    except CorruptMessage:
        return
    assert at < 8 or 12 <= at < 16          # base offset and leader epoch: the broker's fields
    assert stored(message_set) == expected(batch_rows)


def test_a_round_trip_through_both_directions_keeps_what_kafka_clients_sent():
    sent = [(b"k", b"v" * 200, 5, [("h", None)]), (None, None, 6, []), (b"", b"", 7, [])]
    message_set, _, _ = records.to_message_set(client_batch(sent, 3))
    batch, _ = records.to_record_batch(message_set, 4096)
    got = [(r.key, r.value, r.timestamp, r.headers) for r in DefaultRecordBatch(batch)]
    assert got == [(k, v, 1_700_000_000_000 + ts, hs) for k, v, ts, hs in sent]


def test_a_record_without_a_timestamp_gets_the_brokers_time():
    data = client_batch([(None, b"x", 0, [])], first_ts=-1)
    message_set, _, _ = records.to_message_set(data, now_ms=42)
    assert stored(message_set) == [(None, b"x", 42, ())]


def test_a_record_over_the_max_message_bytes_refuses_the_request():
    data = client_batch([(None, b"x" * 100, 0, []), (None, b"y" * 2000, 1, [])])
    with pytest.raises(MessageTooLarge):
        records.to_message_set(data, max_message_bytes=1000)
    assert records.to_message_set(data, max_message_bytes=3000)[1] == 2


@pytest.mark.parametrize("cut", [1, 30, 61])
def test_a_truncated_request_is_refused(cut):
    data = client_batch([(None, b"x" * 100, 0, [])])
    with pytest.raises(CorruptMessage):
        records.to_message_set(data[:-cut])


@pytest.mark.parametrize("tail", [1, 10, 16, 17, 40])
def test_bytes_after_the_last_whole_batch_refuse_the_request(tail):
    data = client_batch([(None, b"x" * 100, 0, [])])
    with pytest.raises(CorruptMessage):
        records.to_message_set(data + data[:tail])


def test_a_control_batch_is_refused():
    data = bytearray(client_batch([(b"\x00\x00\x00\x01", b"", 0, [])]))
    data[22] |= record_batch.CONTROL
    data[17:21] = record_batch.crc32c(bytes(data[21:])).to_bytes(4, "big")
    with pytest.raises(CorruptMessage):
        records.to_message_set(bytes(data))


def test_offsets_past_two_bytes_of_varint_are_written_in_three_and_more():
    sets = [message.encode(b"x" * 5000) for _ in range(600)]      # ~3 MB: deltas past 2^21
    batch, count = records.to_record_batch(b"".join(sets), 7)
    offsets = [r.offset for r in DefaultRecordBatch(batch)]
    assert count == 600 and offsets == [7 + i * len(sets[0]) for i in range(600)]


def test_varints_read_back_what_they_write():
    for value in (0, -1, 1, 63, -64, 64, 8191, 8192, -8193, 1 << 20, 1 << 35, -(1 << 62)):
        assert record_batch.read_varint(record_batch.zigzag_varint(value) + b"\x00", 0) == \
            (value, len(record_batch.zigzag_varint(value)))
    for z in (0, 1, 16383, 16384, (1 << 21) - 1, 1 << 21, 1 << 40):
        assert record_batch._varint_of_zigzag(z) == \
            record_batch.zigzag_varint((z >> 1) ^ -(z & 1))


@pytest.mark.parametrize("module", [record_batch, records, wire])
def test_the_worked_examples(module):
    result = doctest.testmod(module)
    assert result.attempted and result.failed == 0
