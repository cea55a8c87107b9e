"""A micro-benchmark of the Kafka listener's record conversion, µs per record, in and out.

    python -m cluster.tools.kafka_codec_bench [--records 500] [--size 200] [--rounds 7]

"in" is a produced record batch v2 (built by kafka-python's producer-side builder, 200-byte
values, no key, as the bench's producers send) turned into a sluice MessageSet; "out" is a
fetched MessageSet of magic 2 messages turned into one record batch v2. Each is timed for
broker/kafka/records.py (the hand-written codec) and for the reference: the same conversion
through kafka-python's ``kafka.record`` classes record by record, as the listener did first.
The two are timed alternately, round after round, in this thread's CPU time (not wall time: a
loaded machine's waits for a core do not count), and the best round of each is printed.
"""
from __future__ import annotations

import argparse
import time

from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from broker import message
from broker.kafka import records

CODECS = {"none": 0, "lz4": 3, "zstd": 4}
_UNBOUNDED = 1 << 62


def reference_in(data: bytes) -> tuple[bytes, int]:
    """A produced batch to a MessageSet through kafka-python's reader, record by record."""
    now_ms = int(time.time() * 1000)
    out = []
    for batch in MemoryRecords(data):
        if not batch.validate_crc():
            raise ValueError("crc")
        for record in batch:
            ts = record.timestamp
            out.append(message.encode_record(record.value, record.key,
                                             now_ms if ts is None or ts < 0 else ts,
                                             record.headers))
    return b"".join(out), len(out)


def reference_out(data: bytes, base: int) -> tuple[bytes, int]:
    """A fetched MessageSet to one batch v2 through kafka-python's builder."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=_UNBOUNDED)
    count = 0
    end = base
    for m in message.decode_set(data, "", 0, base):
        builder.append(m.offset - base, -1 if m.timestamp is None else m.timestamp, m.key,
                       m.value, m.headers)
        count += 1
        end = m.next_offset
    builder._last_offset = end - 1 - base
    return bytes(builder.build()), count


def produced_batch(n: int, size: int, codec: int) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=_UNBOUNDED)
    now = int(time.time() * 1000)
    value = bytes(range(256)) * (size // 256 + 1)
    for i in range(n):
        builder.append(i, now + i // 50, None, value[i % 7:i % 7 + size], [])
    return bytes(builder.build())


def best_us(fn, n: int, repeat: int) -> float:
    """Best CPU µs per record over ``repeat`` calls of ``fn`` (``n`` records each)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best / n * 1e6


def run(n: int = 500, size: int = 200, rounds: int = 7, repeat: int = 5) -> list[tuple]:
    """Rows ``(path, codec, reference µs/record, records.py µs/record)``."""
    rows = []
    for name, codec in CODECS.items():
        batch = produced_batch(n, size, codec)
        if reference_in(batch) != records.to_message_set(batch)[:2]:
            raise AssertionError(f"the two decoders disagree on a {name} batch")
        ref = new = float("inf")
        for _ in range(rounds):
            ref = min(ref, best_us(lambda: reference_in(batch), n, repeat))
            new = min(new, best_us(lambda: records.to_message_set(batch), n, repeat))
        rows.append(("in", name, ref, new))
    stored, _ = records.to_message_set(produced_batch(n, size, 0))[:2]
    ref = new = float("inf")
    for _ in range(rounds):
        ref = min(ref, best_us(lambda: reference_out(stored, 1000), n, repeat))
        new = min(new, best_us(lambda: records.to_record_batch(stored, 1000), n, repeat))
    rows.append(("out", "none", ref, new))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.tools.kafka_codec_bench",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500, help="records per batch")
    parser.add_argument("--size", type=int, default=200, help="value bytes")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"{args.records} records of {args.size} B per batch, best of {args.rounds} rounds")
    print(f"{'path':<5} {'codec':<6} {'kafka-python µs/rec':>20} {'records.py µs/rec':>18} "
          f"{'speed-up':>9}")
    for path, codec, ref, new in run(args.records, args.size, args.rounds):
        print(f"{path:<5} {codec:<6} {ref:>20.2f} {new:>18.2f} {ref / new:>8.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
