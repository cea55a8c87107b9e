"""Record batches <-> sluice messages, the offset mapping, message magic 2, and the idempotent
producer's sequence table. Batches are built by kafka-python's producer-side encoder (a
client's code, not ours) with every codec it has."""
import doctest

import pytest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.legacy_records import LegacyRecordBatchBuilder

from broker import message
from broker.kafka import idempotence, records
from coordinator.errors import CorruptMessage, OffsetOutOfRange
from tests.broker.logs import make_log

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def client_batch(rows, codec=0, producer=(-1, -1, -1)):
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False,
                                        producer_id=producer[0], producer_epoch=producer[1],
                                        base_sequence=producer[2], batch_size=1 << 30)
    for i, (key, value, ts, headers) in enumerate(rows):
        builder.append(i, ts, key, value, headers)
    return bytes(builder.build())


ROWS = [(b"k1", b"v" * 300, 1_700_000_000_000, [("trace", b"abc"), ("empty", None)]),
        (None, b"no key", 1_700_000_000_001, []),
        (b"", None, 1_700_000_000_002, []),
        (b"k2", b"", 1_700_000_000_003, [])]


@pytest.mark.parametrize("codec", CODECS)
def test_a_produced_batch_becomes_one_magic_2_message_per_record(codec):
    data, count, batches = records.to_message_set(client_batch(ROWS, CODECS[codec]))
    assert count == 4 and message.validate_set(data) == 4
    got = list(message.decode_set(data, "t", 0, 0))
    assert [(m.key, m.value, m.timestamp, list(m.headers)) for m in got] == \
        [(k, v, ts, [tuple(h) for h in hs]) for k, v, ts, hs in ROWS]
    assert [(b.producer_id, b.count) for b in batches] == [(-1, 4)]


def test_legacy_message_sets_are_accepted_and_get_the_brokers_time_when_they_have_none():
    builder = LegacyRecordBatchBuilder(magic=0, compression_type=0, batch_size=1 << 20)
    builder.append(0, timestamp=None, key=b"a", value=b"old")
    data, count, _ = records.to_message_set(bytes(builder.build()), now_ms=42)
    (m,) = message.decode_set(data, "t", 0, 0)
    assert (count, m.key, m.value, m.timestamp) == (1, b"a", b"old", 42)


def test_a_corrupt_batch_is_refused_whole():
    batch = bytearray(client_batch(ROWS))
    batch[-1] ^= 0xFF
    with pytest.raises(CorruptMessage):
        records.to_message_set(bytes(batch))


def test_a_fetched_set_is_one_batch_with_byte_offsets_whose_last_offset_reaches_the_boundary():
    sets = [message.encode(b"native"), message.encode(b"v", b"k"),
            message.encode_record(None, b"kk", 5, [("h", b"x")])]
    data = b"".join(sets)
    batch, count = records.to_record_batch(data, 1000, leader_epoch=3)
    parsed = DefaultRecordBatch(batch)
    assert parsed.validate_crc() and count == 3
    assert parsed.base_offset == 1000 and parsed.next_offset == 1000 + len(data)
    got = [(r.offset, r.key, r.value, r.headers) for r in parsed]
    assert got == [(1000, None, b"native", []), (1000 + len(sets[0]), b"k", b"v", []),
                   (1000 + len(sets[0]) + len(sets[1]), b"kk", None, [("h", b"x")])]


def test_a_corrupt_message_ends_the_batch_before_it():
    good = message.encode(b"good")
    bad = bytearray(message.encode(b"bad"))
    bad[-1] ^= 1
    batch, count = records.to_record_batch(good + bytes(bad), 0)
    assert count == 1 and DefaultRecordBatch(batch).next_offset == len(good)
    assert records.to_record_batch(bytes(bad), 0) == (b"", 0)


def test_resolve_offset_maps_boundaries_and_just_past_a_start_and_refuses_the_rest(tmp_path):
    log = make_log(tmp_path / "t-0")
    sizes = [len(message.encode(b"x" * n)) for n in (10, 20, 30)]
    for n in (10, 20, 30):
        log.append(message.encode(b"x" * n), 1)
    starts = [0, sizes[0], sizes[0] + sizes[1]]
    end = sum(sizes)
    assert [records.resolve_offset(log, s, end) for s in starts + [end]] == starts + [end]
    assert [records.resolve_offset(log, s + 1, end) for s in starts] == starts[1:] + [end]
    for inside in (5, starts[1] + 7, end + 1):
        with pytest.raises(OffsetOutOfRange):
            records.resolve_offset(log, inside, end)
    log.close()


def test_magic_2_keeps_null_and_empty_apart_and_refuses_lengths_that_run_past():
    data = message.encode_record(None, None, -1) + message.encode_record(b"", b"", 0)
    got = list(message.decode_set(data, "t", 0, 0))
    assert [(m.key, m.value) for m in got] == [(None, None), (b"", b"")]
    bad = bytearray(message.encode_record(b"v", b"key", 1))
    bad[18:22] = (1000).to_bytes(4, "big")      # the key length, past the message
    bad[5:9] = message.zlib.crc32(bytes(bad[9:])).to_bytes(4, "big")
    with pytest.raises(message.InvalidMessage) as caught:
        message.validate_set(bytes(bad))
    assert caught.value.reason == "size"


def test_the_sequence_tables_worked_examples():
    result = doctest.testmod(idempotence)
    assert result.attempted and result.failed == 0


def test_sequences_append_in_order_answer_duplicates_and_refuse_gaps_and_fenced_epochs():
    table = idempotence.SequenceTable()
    key = ("t", 0)
    assert table.judge(key, 9, 1, 0, 5) == idempotence.APPEND
    table.commit(key, 9, 1, 0, 5, offset=100, next_offset=400)
    assert table.judge(key, 9, 1, 0, 5) == idempotence.DUPLICATE
    assert table.duplicate_offsets(key, 9, 0, 5) == (100, 400), \
        "a duplicate's next offset is kept: an acks=all retry waits for the ISR on it"
    assert table.judge(key, 9, 1, 7, 1) == idempotence.OUT_OF_ORDER
    assert table.judge(key, 9, 0, 5, 1) == idempotence.FENCED
    assert table.judge(key, 9, 1, 5, 1) == idempotence.APPEND
    assert table.judge(key, 9, 2, 0, 1) == idempotence.APPEND      # a new epoch starts over
