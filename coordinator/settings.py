"""Checking a role's settings: the helpers the typed configs share (clients, and the broker's).

A role's config is a frozen dataclass: each setting's default is written once, as its field's
default; ``__post_init__`` checks every value with these helpers, which refuse a bad one with
an InvalidArgument whose one line names the setting; ``from_dict`` (plain values: JSON, a
command line) refuses keys that name no setting, where kafka-python ignores them. It lives in
coordinator/, the bottom of the import graph, so that every package can use it.

>>> integer("batch_size", 0, minimum=1)
Traceback (most recent call last):
  ...
coordinator.errors.InvalidArgument: batch_size must be an integer >= 1, not 0
>>> one_of("acks", True, (0, 1))
Traceback (most recent call last):
  ...
coordinator.errors.InvalidArgument: acks must be 0 or 1, not True
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Iterable, Mapping

from coordinator.errors import InvalidArgument


def reject_unknown(cls: type, values: Mapping[str, Any], what: str | None = None) -> None:
    """Refuse keys of ``values`` that are not fields of the dataclass ``cls``."""
    unknown = sorted(set(values) - {f.name for f in fields(cls)})
    if unknown:
        raise InvalidArgument(f"unknown {what or cls.__name__} setting(s): {', '.join(unknown)}")


def integer(name: str, value: Any, minimum: int) -> None:
    """A whole number (never a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{name} must be an integer >= {minimum}, not {value!r}")


def number(name: str, value: Any, minimum: float = 0, positive: bool = False) -> None:
    """An int or a float (never a bool) of at least ``minimum``; above 0 when ``positive``."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum
            or (positive and value <= 0)):
        wanted = "a positive number" if positive else f"a number >= {minimum}"
        raise InvalidArgument(f"{name} must be {wanted}, not {value!r}")


def one_of(name: str, value: Any, choices: Iterable[Any]) -> None:
    """One of ``choices`` (True is not 1 here, though Python says it equals it)."""
    choices = tuple(choices)
    if not any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in choices):
        listed = (" or ".join(map(repr, choices)) if len(choices) == 2
                  else "one of " + ", ".join(map(repr, choices)))
        raise InvalidArgument(f"{name} must be {listed}, not {value!r}")


def callable_or_none(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise InvalidArgument(f"{name} must be callable or None, not {value!r}")


def text_or_none(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a str or None, not {value!r}")
