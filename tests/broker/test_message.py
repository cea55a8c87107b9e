"""The message format, byte by byte, and the whole-set checks the broker relies on."""
import struct
import zlib

import pytest

from broker import message
from broker.message import InvalidMessage


def test_unkeyed_message_costs_nine_bytes_and_crc_covers_the_payload():
    entry = message.encode(b"hello")
    assert len(entry) == 9 + 5
    size, magic, crc = struct.unpack_from(">IBI", entry)
    assert (size, magic) == (10, 0)
    assert crc == zlib.crc32(b"hello")
    assert entry[9:] == b"hello"


def test_keyed_message_puts_attributes_and_key_inside_the_crc():
    entry = message.encode(b"v", key=b"user-1")
    size, magic, crc = struct.unpack_from(">IBI", entry)
    assert magic == 1
    payload = entry[9:]
    assert payload == b"\x00" + struct.pack(">I", 6) + b"user-1" + b"v"
    assert crc == zlib.crc32(payload)
    assert size == 5 + len(payload)


def test_offsets_are_byte_positions():
    data = message.encode_set([(None, b"a" * 200), (b"k", b"v"), (None, b"")])
    got = list(message.decode_set(data, "t", 3, base_offset=1000))
    assert [m.offset for m in got] == [1000, 1209, 1225]
    assert [m.next_offset for m in got] == [1209, 1225, 1234]
    assert got[1].key == b"k" and got[1].value == b"v" and got[1].partition == 3
    assert got[2].value == b"" and got[2].key is None


def test_validate_counts_a_whole_set():
    data = message.encode_set([(None, b"x")] * 50)
    assert message.validate_set(data) == 50


@pytest.mark.parametrize("cut", [1, 5, 9, 13])
def test_truncated_set_is_rejected_with_its_position(cut):
    data = message.encode_set([(None, b"abcdef")] * 3)
    with pytest.raises(InvalidMessage) as info:
        message.validate_set(data[:-cut])
    assert info.value.reason == "truncated"
    assert info.value.position == 30
    assert info.value.valid_count == 2


def test_flipped_byte_fails_the_crc():
    data = bytearray(message.encode_set([(None, b"abcdef")] * 3))
    data[15 + 10] ^= 0x01
    with pytest.raises(InvalidMessage) as info:
        message.validate_set(data)
    assert info.value.reason == "crc" and info.value.position == 15


def test_flipped_attributes_byte_fails_the_crc():
    data = bytearray(message.encode(b"v", key=b"k"))
    data[9] ^= 0x04
    with pytest.raises(InvalidMessage, match="CRC"):
        message.validate_set(data)


def test_unknown_magic_and_absurd_sizes_are_rejected():
    data = bytearray(message.encode(b"v"))
    data[4] = 7
    with pytest.raises(InvalidMessage) as info:
        message.validate_set(data)
    assert info.value.reason == "magic"
    with pytest.raises(InvalidMessage) as info:
        message.validate_set(struct.pack(">IBI", 0xFFFFFFFF, 0, 0) + b"x")
    assert info.value.reason == "too_large"
    with pytest.raises(InvalidMessage) as info:
        message.validate_set(struct.pack(">IBI", 2, 0, 0))
    assert info.value.reason == "size"
    with pytest.raises(InvalidMessage):
        message.validate_set(b"")


def test_key_length_past_the_end_is_rejected_even_with_a_matching_crc():
    payload = b"\x00" + struct.pack(">I", 1000) + b"k"
    entry = struct.pack(">IBI", 5 + len(payload), 1, zlib.crc32(payload)) + payload
    with pytest.raises(InvalidMessage, match="key length"):
        message.validate_set(entry)


def test_message_over_the_limit_is_too_large():
    with pytest.raises(InvalidMessage) as info:
        message.validate_set(message.encode(b"x" * 2000), max_message_bytes=1000)
    assert info.value.reason == "too_large"


def test_valid_prefix_stops_at_the_first_bad_entry():
    good = message.encode_set([(None, b"abc")] * 4)
    assert message.valid_prefix(good) == (len(good), 4)
    assert message.valid_prefix(good + b"\x00\x00") == (len(good), 4)
    broken = bytearray(good)
    broken[12 * 2 + 9] ^= 0xFF
    assert message.valid_prefix(broken) == (24, 2)


def test_whole_prefix_cuts_back_to_a_boundary():
    data = message.encode_set([(None, b"abc")] * 4)
    assert message.whole_prefix(data) == 48
    assert message.whole_prefix(data[:47]) == 36
    assert message.whole_prefix(data[:3]) == 0


def test_check_entry_tells_a_message_start_from_the_middle_of_one():
    data = message.encode_set([(None, b"hello world")] * 3)
    assert message.check_entry(data) == 20
    assert message.check_entry(data[20:]) == 20
    for pos in (1, 4, 9, 13):
        with pytest.raises(InvalidMessage):
            message.check_entry(data[pos:])


def test_decode_set_raises_on_a_corrupt_fetched_message():
    data = bytearray(message.encode_set([(None, b"abc")] * 2))
    data[-1] ^= 1
    with pytest.raises(InvalidMessage) as info:
        list(message.decode_set(data, "t", 0, 500))
    assert info.value.position == 512


def test_check_crc_and_key_value_for_dump_log():
    data = message.encode(b"value", key=b"key") + message.encode(b"plain")
    assert message.key_value(data, 0) == (b"key", b"value")
    second = len(message.encode(b"value", key=b"key"))
    assert message.key_value(data, second) == (None, b"plain")
    assert message.check_crc(data, second)
    broken = bytearray(data)
    broken[-1] ^= 1
    assert not message.check_crc(broken, second)


def test_validate_sets_judges_each_set_alone_in_one_walk():
    sets = [message.encode(b"a"), message.encode_set([(None, b"b"), (b"k", b"c")]),
            message.encode(b"d")]
    body = b"".join(sets)
    assert message.validate_sets(body, [len(s) for s in sets]) == (4, [])
    assert message.validate_sets(body, [len(body)]) == (message.validate_set(body), [])
    bad = bytearray(sets[1])
    bad[-1] ^= 1
    count, refused = message.validate_sets(sets[0] + bytes(bad) + sets[2],
                                           [len(s) for s in sets])
    assert count == 2 and [(i, e.reason, e.position, e.valid_count) for i, e in refused] == [
        (1, "crc", len(message.encode(b"b")), 1)]


def test_validate_sets_refuses_an_empty_set_and_one_over_the_message_limit():
    one = message.encode(b"x" * 100)
    count, refused = message.validate_sets(one + one, [0, len(one), len(one)], 50)
    assert count == 0 and [(i, e.reason) for i, e in refused] == [
        (0, "truncated"), (1, "too_large"), (2, "too_large")]
def _stamped(value: bytes, stamp: int = 1_700_000_000_000) -> bytes:
    return message.encode_prefixed(value, *message.stamped_prefix(stamp))


def test_an_audited_set_is_counted_whole_and_a_mixed_one_past_its_plain_run():
    run = [_stamped(b"v%d" % i) for i in range(5)]
    assert message.validate_set(b"".join(run)) == 5
    mixed = b"".join(run + [message.encode(b"plain"), message.encode_record(b"v", b"k", 1),
                            message.encode_record(b"h", None, 2, [("n", b"x")]), run[0]])
    assert message.validate_set(mixed) == 9
    assert message.validate_set(memoryview(mixed)) == 9


@pytest.mark.parametrize("where", ["crc", "size", "truncated"])
def test_a_bad_entry_inside_an_audited_run_is_found_with_its_position(where):
    one = _stamped(b"abcdef")
    data = bytearray(one * 4)
    bad_at = 2 * len(one)
    if where == "crc":
        data[bad_at + len(one) - 1] ^= 0x01
    elif where == "size":       # a key length past the end, its CRC made to match
        data[bad_at + 18:bad_at + 22] = struct.pack(">I", 99)
        crc = zlib.crc32(data[bad_at + 9:bad_at + len(one)])
        data[bad_at + 5:bad_at + 9] = struct.pack(">I", crc)
    else:
        data = data[:bad_at + len(one) - 1]
    with pytest.raises(InvalidMessage) as info:
        message.validate_set(data)
    assert (info.value.reason, info.value.position, info.value.valid_count) == (where, bad_at, 2)
