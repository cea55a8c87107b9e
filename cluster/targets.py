"""A callable named ``module:function``: a supervised slot's target and a group worker's handler.

Both come from a person (``--broker-target``, ``--handler``) and cross a process boundary as
text, so one loader turns the text into the callable and says in one line why it cannot::

    load("cluster.workers.loader:hourly_files", "handler")     # the HourlyFiles instance
    load("no.such:run", "broker target")                         # InvalidArgument
    reference(load)                                              # "cluster.targets:load"
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

from coordinator.errors import InvalidArgument


def load(ref: str | Callable[..., Any], what: str) -> Callable[..., Any]:
    """The callable ``ref`` names (``ref`` itself when it is one); ``what`` names it in errors."""
    if callable(ref):
        return ref
    check(ref, what)
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidArgument(f"cannot import {what} {ref!r}: {exc}") from None
    target = module
    for part in attr.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise InvalidArgument(f"{what} {ref!r}: {module_name} has no callable {attr}")
    return target


def check(ref: str | Callable[..., Any], what: str) -> None:
    """Refuse a ``ref`` that is neither a callable nor shaped ``module:function`` (no import)."""
    if callable(ref):
        return
    module_name, sep, attr = ref.partition(":") if isinstance(ref, str) else ("", "", "")
    if not sep or not module_name or not attr:
        raise InvalidArgument(f"{what} must look like module:function, not {ref!r}")


def reference(function: Callable[..., Any]) -> str:
    """``module:function`` for a module-level function (what ``load`` reads back)."""
    return f"{function.__module__}:{function.__qualname__}"
