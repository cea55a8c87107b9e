"""Which store a group's offsets use (pure), the group's offsets partition, and the codec of
the commits in ``__consumer_offsets`` and on the wire."""
import doctest

import pytest

from broker import committed_offsets, protocol
from coordinator import offset_store_choice as choice
from coordinator.errors import InvalidArgument


def test_worked_examples():
    assert doctest.testmod(choice).failed == 0
    assert doctest.testmod(committed_offsets).failed == 0


@pytest.mark.parametrize("recorded, has_zk, default, expected", [
    ("log", False, "zookeeper", "log"),
    ("log", True, "log", "log"),
    ("zookeeper", False, "log", "zookeeper"),
    (None, True, "log", "zookeeper"),
    (None, False, "log", "log"),
    (None, False, "zookeeper", "zookeeper"),
])
def test_a_record_wins_then_old_offset_nodes_then_the_default(recorded, has_zk, default,
                                                              expected):
    assert choice.choose(recorded, has_zk, default) == expected


def test_an_unknown_store_is_refused():
    with pytest.raises(InvalidArgument, match="offset_store must be one of zookeeper, log"):
        choice.choose("redis", False)


def test_a_group_maps_to_one_partition_in_every_process():
    spread = {choice.offsets_partition(f"group-{i}", 8) for i in range(100)}
    assert spread == set(range(8))
    assert all(choice.offsets_partition(f"g{i}", 8) == choice.offsets_partition(f"g{i}", 8)
               for i in range(50))


def test_a_commit_set_replays_into_the_map_and_a_tombstone_deletes(tmp_path):
    from broker.config import LogConfig
    from broker.log import Log
    from broker import message
    log = Log(tmp_path / "p", LogConfig(visible_after_flush=False))
    try:
        for entries in ([("t", 0, 100), ("t", 1, 200)], [("t", 0, 300)], [("t", 1, -1)]):
            data = committed_offsets.commit_set("g", entries, 1700000000000)
            log.append(data, message.validate_set(data))
        held = committed_offsets.OffsetsPartition(log, 0)
        assert held.catch_up(log.end_offset) == 4
        assert held.committed("g") == [("t", 0, 300, 1700000000000)]
        assert held.committed("g", [("t", 1)]) == [] and held.committed("other") == []
    finally:
        log.close()


def test_offset_requests_round_trip():
    header = protocol.encode_offset_commit(7, "g", {("t", 3): 4096, ("u", 0): -1})
    request = protocol.decode_request(header)
    assert (request.api, request.group, request.entries) == (
        protocol.Api.OFFSET_COMMIT, "g", (("t", 3, 4096), ("u", 0, -1)))
    request = protocol.decode_request(protocol.encode_offset_fetch(8, "g", [("t", 3)]))
    assert (request.api, request.group, request.entries) == (protocol.Api.OFFSET_FETCH, "g",
                                                             (("t", 3),))
    with pytest.raises(protocol.MalformedRequest, match="cut short"):
        protocol.decode_request(header[:-3])
