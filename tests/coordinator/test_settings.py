"""The helpers typed configs check their settings with: one line naming the setting."""
import doctest
from dataclasses import dataclass

import pytest

from coordinator import settings
from coordinator.errors import InvalidArgument


def test_the_module_examples_hold():
    assert doctest.testmod(settings).failed == 0


@dataclass(frozen=True)
class Example:
    size: int = 1
    name: str = "x"


def test_unknown_keys_are_refused_by_name():
    settings.reject_unknown(Example, {"size": 2})
    with pytest.raises(InvalidArgument, match=r"unknown Example setting\(s\): bogus, zz"):
        settings.reject_unknown(Example, {"zz": 1, "size": 2, "bogus": 3})
    with pytest.raises(InvalidArgument, match="unknown Producer setting"):
        settings.reject_unknown(Example, {"bogus": 3}, what="Producer")


@pytest.mark.parametrize("value", [0, -1, 2.5, "3", True, None])
def test_integer_refuses_what_is_not_a_whole_number_at_least_the_minimum(value):
    with pytest.raises(InvalidArgument, match=r"^n must be an integer >= 1, not "):
        settings.integer("n", value, minimum=1)


def test_numbers_may_be_floats_but_not_bools():
    settings.number("wait_ms", 0.5)
    settings.number("wait_ms", 0)
    for value in (-1, True, "5"):
        with pytest.raises(InvalidArgument, match="wait_ms must be a number >= 0"):
            settings.number("wait_ms", value)
    with pytest.raises(InvalidArgument, match="timeout_ms must be a positive number, not 0"):
        settings.number("timeout_ms", 0, positive=True)


def test_one_of_names_the_choices():
    settings.one_of("start", "latest", ("earliest", "latest"))
    settings.one_of("acks", 1, (0, 1))
    with pytest.raises(InvalidArgument, match="start must be 'earliest' or 'latest', not 'x'"):
        settings.one_of("start", "x", ("earliest", "latest"))
    with pytest.raises(InvalidArgument, match="must be one of 'a', 'b', 'c', not"):
        settings.one_of("mode", ["a"], ("a", "b", "c"))


def test_callables_and_text():
    settings.callable_or_none("hook", None)
    settings.callable_or_none("hook", print)
    settings.text_or_none("id", None)
    with pytest.raises(InvalidArgument, match="hook must be callable or None"):
        settings.callable_or_none("hook", "print")
    with pytest.raises(InvalidArgument, match="id must be a str or None, not 5"):
        settings.text_or_none("id", 5)
