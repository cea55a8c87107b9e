"""The consumer's decode (message.decode_into, decode_set): the run of plain messages decoded in
one walk, everything else entry by entry, every CRC checked, offsets as the entries' positions."""
import random
import struct
import zlib

import pytest

from broker import message
from broker.message import InvalidMessage, Message


def entries(*parts):
    """(bytes, [(offset, next_offset)]) of the entries back to back from offset 0."""
    spans, pos = [], 0
    for part in parts:
        spans.append((pos, pos + len(part)))
        pos += len(part)
    return b"".join(parts), spans


def decoded(data, base=0):
    out = []
    message.decode_into(out, data, "t", 3, base)
    return out


def test_a_mixed_set_decodes_every_entry_with_its_byte_offset():
    parts = [message.encode(b"a"), message.encode(b""), message.encode(b"v", b"k"),
             message.encode_record(None, b"key", 17, [("h", b"x")]), message.encode(b"after"),
             message.encode_record(b"r", None, 18)]
    data, spans = entries(*parts)
    out = decoded(data, base=1000)
    assert all(type(m) is Message for m in out)
    assert [(m.offset, m.next_offset) for m in out] == [(1000 + a, 1000 + b) for a, b in spans]
    assert [(m.topic, m.partition) for m in out] == [("t", 3)] * 6
    assert [(m.key, m.value, m.timestamp, m.headers) for m in out] == [
        (None, b"a", None, ()), (None, b"", None, ()), (b"k", b"v", None, ()),
        (b"key", None, 17, (("h", b"x"),)), (None, b"after", None, ()), (None, b"r", 18, ())]
    assert all(type(m.value) is bytes for m in out if m.value is not None)


def test_a_plain_run_after_a_gap_continues_at_the_resume_offset():
    data = message.encode(b"a") + message.encode_gap(5000) + message.encode(b"b") * 2
    end = []
    out = []
    message.decode_into(out, memoryview(data), "t", 0, 0, end)
    assert [(m.offset, m.next_offset, m.value) for m in out] == [
        (0, 10, b"a"), (5000, 5010, b"b"), (5010, 5020, b"b")]
    assert end == [5020]


@pytest.mark.parametrize("where", [0, 3, 7])
def test_a_corrupt_message_in_a_plain_run_keeps_the_good_ones_before_it(where):
    one = message.encode(b"x" * 20)
    data = bytearray(one * 8)
    data[where * len(one) + 15] ^= 0x10
    out = []
    with pytest.raises(InvalidMessage) as info:
        message.decode_into(out, bytes(data), "t", 0, 700)
    assert info.value.reason == "crc"
    assert info.value.position == 700 + where * len(one)
    assert [m.offset for m in out] == [700 + i * len(one) for i in range(where)]
    handed = []
    with pytest.raises(InvalidMessage):
        for m in message.decode_set(bytes(data), "t", 0, 700):
            handed.append(m.offset)
    assert handed == [m.offset for m in out]


def test_an_entry_below_the_minimum_size_is_refused_even_with_a_zero_crc():
    """size 0 with a stored CRC of 0 (the CRC of no bytes) must not pass as an empty value."""
    good = message.encode(b"a")
    data = good + struct.pack(">IBI", 0, 0, 0) + message.encode(b"b")
    out = []
    with pytest.raises(InvalidMessage) as info:
        message.decode_into(out, data, "t", 0, 0)
    assert info.value.position == len(good)
    assert [m.value for m in out] == [b"a"]


@pytest.mark.parametrize("cut, whole", [(1, 2), (8, 2), (9, 2), (12, 1)])
def test_a_trailing_partial_entry_is_left_for_the_next_fetch(cut, whole):
    data = message.encode(b"a") * 3
    end = []
    out = []
    message.decode_into(out, data[:-cut], "t", 0, 40, end)
    assert [m.offset for m in out] == [40 + 10 * i for i in range(whole)]
    assert end == [40 + 10 * whole]


def test_a_magic_byte_turned_keyed_is_a_typed_error_not_a_struct_error():
    """The magic byte is outside the CRC: a plain message whose magic flips to 1 still matches
    its CRC, and its payload is no keyed payload (too short for the key length, or a key length
    past the end). Before, the first raised struct.error and the second was handed out with a
    cut key; a consumer must get CorruptMessage's InvalidMessage for both."""
    short = bytearray(message.encode(b"abc"))
    short[4] = message.MAGIC_KEYED
    payload = b"\x00" + struct.pack(">I", 1000) + b"k"
    long_key = struct.pack(">IBI", 5 + len(payload), 1, zlib.crc32(payload)) + payload
    good = message.encode(b"first")
    for bad in (bytes(short), long_key):
        out = []
        with pytest.raises(InvalidMessage) as info:
            message.decode_into(out, good + bad, "t", 0, 0)
        assert info.value.position == len(good)
        assert [m.value for m in out] == [b"first"]


def test_decode_set_raises_only_after_handing_out_the_good_messages():
    data = bytearray(message.encode(b"a") * 2 + message.encode(b"b"))
    data[-1] ^= 1
    it = message.decode_set(bytes(data), "t", 0, 0)
    assert next(it).value == b"a"
    assert next(it).value == b"a"
    with pytest.raises(InvalidMessage):
        next(it)


def test_decode_into_hands_out_what_decode_set_yields_for_any_damage():
    """The two walks agree message for message and on the error, over sets of every kind of
    entry with a flipped bit, a cut, or junk after them (a seeded sample)."""
    rng = random.Random(16)
    for _ in range(500):
        parts = []
        for _ in range(rng.randrange(8)):
            kind, value = rng.random(), rng.randbytes(rng.randrange(30))
            if kind < 0.5:
                parts.append(message.encode(value))
            elif kind < 0.7:
                parts.append(message.encode(value, rng.randbytes(rng.randrange(5))))
            elif kind < 0.85:
                parts.append(message.encode_record(value, b"k", 5, [("h", b"x")]))
            else:
                parts.append(message.encode_gap(rng.randrange(10**6)))
        data = bytearray(b"".join(parts))
        damage = rng.random()
        if data and damage < 0.3:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif data and damage < 0.45:
            del data[rng.randrange(len(data)):]
        elif damage < 0.5:
            data += rng.randbytes(rng.randrange(1, 12))
        base = rng.randrange(1000)
        lazy, lazy_end, lazy_error = [], [], None
        try:
            lazy.extend(message.decode_set(bytes(data), "t", 1, base, lazy_end))
        except InvalidMessage as bad:
            lazy_error = (bad.reason, bad.position)
        whole, whole_end, whole_error = [], [], None
        try:
            message.decode_into(whole, memoryview(bytes(data)), "t", 1, base, whole_end)
        except InvalidMessage as bad:
            whole_error = (bad.reason, bad.position)
        assert (whole, whole_end, whole_error) == (lazy, lazy_end, lazy_error)
