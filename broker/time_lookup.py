"""Where a partition's messages reach a time: the first message, in log order, whose timestamp
is at or after it (Kafka's offsets-for-times). One lookup, served twice: the Kafka listener's
ListOffsets by time (broker/kafka/data_apis.py) and the native OFFSET_FOR_TIME request that
``sluice groups reset-offsets --to-datetime`` asks (broker/handlers.py).

Magic 2 messages carry a timestamp; older ones have none and are passed over. There is no time
index: the lookup reads the log from its start up to the message found (a whole MessageSet per
read, decoded at once), so its cost is a read of that much of the partition.
"""
from __future__ import annotations

from broker import message

SCAN_BYTES = 1 << 20        # bytes per read of the scan
NONE = (-1, -1)             # no message at or after the time: (offset, timestamp)


def offset_for_time(log, time_ms: int, end: int) -> tuple[int, int]:
    """``(offset, timestamp)`` of the first message below ``end`` stamped at or after
    ``time_ms``; ``NONE`` when there is none."""
    offset = log.start_offset
    while offset < end:
        data, data_end, _ = log.read_span(offset, SCAN_BYTES, upto=end)
        if not data:
            break
        for m in message.decode_set(data, "", 0, offset):
            if m.timestamp is not None and m.timestamp >= time_ms:
                return m.offset, m.timestamp
        if data_end <= offset:
            break
        offset = data_end       # past the read, and past a compacted log's gaps
    return NONE
