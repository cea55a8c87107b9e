"""Entering a named network namespace (``ip netns add NAME``), so a broker can run with an
address and routes of its own: the partition-leader drill cuts one broker's paths to its
followers and ZooKeeper in the kernel while its producers still reach it.

``enter`` must run before the broker opens any socket or starts a thread: a namespace belongs
to the thread that joins it and to the threads it starts afterwards.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re

from coordinator.errors import InvalidArgument

log = logging.getLogger(__name__)

NETNS_DIR = "/run/netns"          # where ``ip netns add`` pins its namespaces
CLONE_NEWNET = 0x40000000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_name(name: str) -> str:
    """A namespace name as ``ip netns`` takes it, never a path.

    >>> check_name("sl-3f2a-b0")
    'sl-3f2a-b0'
    >>> check_name("../etc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    coordinator.errors.InvalidArgument: network_namespace must be a name as ip netns takes it, ...
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise InvalidArgument(f"network_namespace must be a name as ip netns takes it, "
                              f"not {name!r}")
    return name


def enter(name: str) -> None:
    """Move the calling thread into the namespace ``ip netns add NAME`` made (needs root)."""
    path = os.path.join(NETNS_DIR, check_name(name))
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"cannot enter network namespace {name}: {os.strerror(err)}")
    finally:
        os.close(fd)
    log.info("entered network namespace %s", name)
