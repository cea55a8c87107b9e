"""Poll-interval liveness (coordinator.liveness) as pure timer logic."""
import pytest

from coordinator.liveness import PollTimer


def test_poll_timer():
    timer = PollTimer(2.0, now=100.0)
    assert not timer.expired(101.9) and timer.remaining(101.0) == 1.0
    assert timer.expired(102.1) and timer.remaining(103) == 0.0
    timer.touch(103.0)
    assert not timer.expired(104.0)
    off = PollTimer(None, now=0.0)
    assert not off.expired(1e9) and off.remaining(5) is None
    with pytest.raises(ValueError):
        PollTimer(0, now=0.0)
