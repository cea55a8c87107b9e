"""Handlers that test clusters' group workers import by ``module:function``."""
import os
import time

from cluster.workers.loader import hourly_files

BLOCK_ENV = "SLUICE_TEST_BLOCK_FILE"


def block_while_flagged(message):
    """Load like the default handler, but hang on a b"block" message while the flag file exists."""
    if message.value == b"block":
        flag = os.environ.get(BLOCK_ENV, "")
        while flag and os.path.exists(flag):
            time.sleep(0.1)
    hourly_files(message)


block_while_flagged.flush = hourly_files.flush
