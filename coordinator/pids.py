"""Is a process on this host still alive? Stale ephemeral nodes are told from live ones by it."""
from __future__ import annotations

import os
import socket


def this_host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """True for a running (not zombie) process; a pid we may not signal counts as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
