"""The Kafka listener's audit counts per window from whole record batches: a batch whose
timestamps share a window is counted from its record count, one across a window edge (or
whose CreateTimes fall back within it) message by message; the counts are exact either way."""
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.legacy_records import LegacyRecordBatchBuilder

from broker.kafka import records
from broker.kafka.audit_tally import window_counts

W = 1_700_000_000_000          # a window start for 1 s windows
WINDOW_MS = 1000


def kafka_batch(stamps, keyed=False, codec=0):
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 30)
    for i, ts in enumerate(stamps):
        builder.append(i, ts, b"k%d" % i if keyed else None, b"v%d" % i,
                       [("h", b"x")] if keyed else [])
    return bytes(builder.build())


def legacy_set(stamps):
    builder = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 20)
    for i, ts in enumerate(stamps):
        builder.append(i, timestamp=ts, key=None, value=b"old%d" % i)
    return bytes(builder.build())


def test_batches_within_a_window_counted_whole_across_an_edge_walked_exactly():
    inside = [W + 100, W + 200, W + 900]
    straddling = [W + 998, W + 999, W + 1000, W + 1001]
    falling_back = [W + 2500, W + 1500]    # header: first = max = W+2500, one window by it
    keyed = [W + 3000, W + 3999]
    data = (kafka_batch(inside) + kafka_batch(straddling) + kafka_batch(falling_back)
            + kafka_batch(keyed, keyed=True, codec=1) + legacy_set([W + 3999, W + 4000]))
    message_set, count, batches = records.to_message_set(data, now_ms=W, spans=True)
    assert count == 13 and sum(b.size for b in batches) == len(message_set)
    assert [(b.lowest, b.highest) for b in batches] == [
        (W + 100, W + 900), (W + 998, W + 1001), (W + 1500, W + 2500), (W + 3000, W + 3999),
        (W + 3999, W + 3999), (W + 4000, W + 4000)]     # an uncompressed legacy set: one each
    expected = {W: 5, W + 1000: 3, W + 2000: 1, W + 3000: 3, W + 4000: 1}
    assert window_counts(message_set, WINDOW_MS, batches) == expected
    assert window_counts(message_set, WINDOW_MS) == expected


def test_a_batch_within_one_window_is_not_walked():
    """Its bytes blanked out, the counts stay: only its record count was used."""
    data = kafka_batch([W + 1, W + 2, W + 3]) + kafka_batch([W + 999, W + 1000])
    message_set, _, batches = records.to_message_set(data, now_ms=W, spans=True)
    blanked = bytes(batches[0].size) + message_set[batches[0].size:]
    assert window_counts(blanked, WINDOW_MS, batches) == {W: 4, W + 1000: 1}


def test_records_without_a_timestamp_count_in_the_window_of_their_arrival():
    message_set, _, batches = records.to_message_set(kafka_batch([-1, -1]), now_ms=W + 5,
                                                     spans=True)
    assert (batches[0].lowest, batches[0].highest) == (W + 5, W + 5)
    assert window_counts(message_set, WINDOW_MS, batches) == {W: 2}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 5000), min_size=0, max_size=12), min_size=1,
                max_size=6), st.sampled_from([1000, 1500, 60_000]))
def test_batch_counts_equal_the_walk_of_every_message(stamp_lists, window_ms):
    data = b"".join(kafka_batch([W + s for s in stamps]) for stamps in stamp_lists)
    message_set, count, batches = records.to_message_set(data, now_ms=W, spans=True)
    counts = window_counts(message_set, window_ms, batches)
    assert counts == window_counts(message_set, window_ms)
    assert sum(counts.values()) == count == sum(len(s) for s in stamp_lists)
