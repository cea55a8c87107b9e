"""Where a consumer goes after a fetch error (clients.resume), on worked examples."""
import doctest

import pytest

from broker import protocol
from clients import resume
from clients.resume import Decision, decide, estimated_messages, locate


def test_the_module_examples_hold():
    assert doctest.testmod(resume).failed == 0


@pytest.mark.parametrize("error", [protocol.BrokerUnavailable("away"),
                                   protocol.RequestTimedOut("slow"),
                                   protocol.UnknownTopicOrPartition("not open yet"),
                                   protocol.NotLeader("moved")])
def test_passing_failures_are_fetched_again(error):
    assert decide(error, 100, "skip") == resume.RETRY


def test_an_error_naming_where_data_resumes_moves_there():
    assert decide(protocol.OffsetGap("gap", resume_offset=4096), 100, "raise") == \
        Decision("resume", "gap", 4096), "a gap is never the application's to decide"
    assert decide(protocol.OffsetOutOfRange("gone", resume_offset=4096), 100, "raise") == \
        Decision("resume", "retention", 4096)
    assert decide(protocol.CorruptMessage("crc", resume_offset=131), 100, "skip") == \
        Decision("resume", "corrupt", 131)


def test_no_resume_offset_or_one_that_does_not_move_forward_is_raised():
    assert decide(protocol.CorruptMessage("crc"), 100, "skip") == resume.RAISE
    assert decide(protocol.CorruptMessage("crc", resume_offset=131), 100, "raise") == resume.RAISE
    assert decide(protocol.OffsetGap("gap", resume_offset=100), 100, "skip") == resume.RAISE
    assert decide(protocol.OffsetOutOfRange("gone", resume_offset=50), 100, "skip") == \
        resume.RAISE, "a resume offset behind the position would loop"
    assert decide(protocol.InvalidOffset("mid-message"), 100, "skip") == resume.RAISE
    assert decide(protocol.StorageError("disk"), 100, "skip") == resume.RAISE


def test_out_of_range_without_a_resume_offset_is_located_from_the_log_bounds():
    assert decide(protocol.OffsetOutOfRange("outside"), 100, "skip") == resume.LOCATE
    assert locate(100, 4096, 9000, "earliest") == Decision("resume", "retention", 4096)
    assert locate(9500, 4096, 9000, "earliest") == Decision("reset", "past_end", 4096)
    assert locate(9500, 4096, 9000, "latest") == Decision("reset", "past_end", 9000)
    assert locate(5000, 4096, 9000, "latest") == resume.RETRY, "readable again meanwhile"


def test_estimated_messages_use_the_mean_size_seen():
    assert estimated_messages(1600, seen_bytes=800, seen_messages=50) == 100
    assert estimated_messages(5, seen_bytes=800, seen_messages=50) == 1, "some bytes: a message"
    assert estimated_messages(0, seen_bytes=800, seen_messages=50) == 0
    assert estimated_messages(1600, seen_bytes=0, seen_messages=0) is None


def test_a_named_error_keeps_its_type_and_resume_offset():
    named = resume.named(protocol.CorruptMessage("CRC mismatch", resume_offset=131), "t", 3, 100)
    assert type(named) is protocol.CorruptMessage and named.retriable is False
    assert (named.topic, named.partition, named.offset, named.resume_offset) == ("t", 3, 100, 131)
    assert str(named) == "t/3 at offset 100: CRC mismatch"
