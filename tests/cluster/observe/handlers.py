"""Group-worker handlers the dashboard tests' workers import by ``module:function``."""
import os
import time

HOLD_ENV = "SLUICE_TEST_HOLD_FILE"
SLOW_ENV = "SLUICE_TEST_SLOW_PARTITION"


def hold_on_block(message):
    """Do nothing, except hang on a message starting with b"block" while the hold file exists."""
    if message.value.startswith(b"block"):
        flag = os.environ.get(HOLD_ENV, "")
        while flag and os.path.exists(flag):
            time.sleep(0.05)


def slow_partition(message):
    """Take 5 ms per message of the partition named in $SLUICE_TEST_SLOW_PARTITION (a lagging
    consumer for demonstrations and screenshots); others are free."""
    if str(message.partition) == os.environ.get(SLOW_ENV, ""):
        time.sleep(0.005)
