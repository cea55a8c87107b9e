"""Data-loss notes (coordinator.offsets.merged_note), on worked examples, and their store."""
import doctest
import json

import pytest

from coordinator import offsets, paths
from coordinator.offsets import KEEP_EVENTS, OffsetStore, merged_note


def event(kind, offset, nbytes, messages=None, at=1.0, **extra):
    return {"kind": kind, "offset": offset, "resume": offset + nbytes, "bytes": nbytes,
            "messages": messages, "at": at, **extra}


def test_the_module_examples_hold():
    assert doctest.testmod(offsets).failed == 0


def test_totals_per_kind_and_the_last_events_are_kept():
    note = None
    for i in range(KEEP_EVENTS + 3):
        note = merged_note(note, event("corrupt", 1000 * i, 15, messages=1, at=float(i)))
    note = merged_note(note, event("skipped", 90_000, 20, messages=1, error="ValueError: x"))
    n = KEEP_EVENTS + 3
    assert note["totals"] == {"corrupt": {"events": n, "bytes": 15 * n, "messages": n},
                              "skipped": {"events": 1, "bytes": 20, "messages": 1}}
    assert len(note["events"]) == KEEP_EVENTS
    assert note["events"][-1]["error"] == "ValueError: x"
    assert note["events"][0]["offset"] == 4000, "the oldest events go first"
    assert note["lost_bytes"] == 15 * (KEEP_EVENTS + 3) + 20
    assert note["lost_messages"] == KEEP_EVENTS + 4


def test_a_note_of_the_first_shape_becomes_its_retention_event():
    old = {"committed": 150, "log_start": 750, "lost_bytes": 600, "at": 5.0}
    note = merged_note(old, event("gap", 2000, 16, messages=1))
    assert [e["kind"] for e in note["events"]] == ["retention", "gap"]
    assert note["events"][0] == {"kind": "retention", "offset": 150, "resume": 750, "bytes": 600,
                                 "messages": None, "at": 5.0}
    assert note["lost_bytes"] == 616


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="data-loss kind"):
        merged_note(None, event("misplaced", 0, 1))


def test_events_from_two_stores_are_all_kept(zk_client):
    a, b = OffsetStore(zk_client, "g"), OffsetStore(zk_client, "g")
    a.record_data_loss("t", 0, event("retention", 0, 100, messages=5))
    b.record_data_loss("t", 0, event("gap", 500, 16, messages=1))
    a.record_data_loss("t", 1, event("skipped", 32, 16, messages=1))
    notes = a.data_loss("t")
    assert [e["kind"] for e in notes[0]["events"]] == ["retention", "gap"]
    assert notes[1]["totals"] == {"skipped": {"events": 1, "bytes": 16, "messages": 1}}
    raw = json.loads(zk_client.get(paths.data_loss("g", "t", 0))[0])
    assert raw["lost_bytes"] == 116
