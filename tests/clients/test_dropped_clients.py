"""A client dropped without close() never hangs its process when it is garbage-collected.

Each case runs in a subprocess against a real broker and ZooKeeper: the client is used (so it
has its fetch, control and offsets sockets open), dropped where only the cycle collector can
free it, collected by ``gc.collect()``, and the process must then exit on its own. A pyzmq
Context collected in the same cycle as its sockets used to block in ``term()`` (the collector
clears the Context's weak references to its sockets before any finalizer runs, so the
Context's ``__del__`` found none to close). The child's own completion is the condition; the
timeout is only the failure signal."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clients import Producer
from tests.helpers import BrokerProcess, create_topic

ROOT = __file__.rsplit("/tests/", 1)[0]
FAILED_AFTER_S = 60     # a healthy child is done in a few seconds

HEAD = r"""
import gc, json, sys, threading, weakref
from clients import Consumer, SimpleConsumer
zk = json.loads(sys.argv[1])
"""

# A group member that died: its ZooKeeper client stopped, never closed. Its rebalance thread
# ends once the poll interval runs out (it finds the client closed); then nothing holds it.
DEAD_MEMBER = HEAD + r"""
c = Consumer(["clicks"], "g", zookeeper=zk, auto_commit_ms=None, max_wait_ms=200,
             session_timeout_ms=4000, max_poll_interval_ms=500)
got = []
while len(got) < 10:
    got.extend(c.poll(200))
c.commit()
c._pool.zk.stop()
dropped = weakref.ref(c)
del c, got
for thread in threading.enumerate():
    if thread.name.startswith("rebalance-"):
        thread.join()
"""

# A SimpleConsumer held in a reference cycle of the application's (an object whose bound
# method is stored on itself, a common shape), dropped with its ZooKeeper client stopped.
SIMPLE_IN_A_CYCLE = HEAD + r"""
class App:
    def __init__(self):
        self.consumer = SimpleConsumer("clicks", 0, zookeeper=zk, max_wait_ms=200)
        self.handler = self.handle
    def handle(self, m):
        pass
app = App()
assert app.consumer.fetch()
app.consumer._pool.zk.stop()
dropped = weakref.ref(app.consumer)
del app
"""

TAIL = r"""
gc.collect()
assert dropped() is None, "the client was not collected: the case proves nothing"
print("collected", flush=True)
"""


@pytest.fixture
def broker(zk, tmp_path):
    proc = BrokerProcess(zk, tmp_path, log={"flush_ms": 20}).start()
    create_topic(zk, "clicks", 2, [proc])
    with Producer(zk, acks=1) as producer:
        for i in range(100):
            producer.send("clicks", b"%03d" % i, partition=i % 2)
    yield proc
    proc.stop()


@pytest.mark.parametrize("case", [DEAD_MEMBER, SIMPLE_IN_A_CYCLE], ids=["dead-member",
                                                                        "simple-in-a-cycle"])
def test_a_dropped_client_is_collected_and_its_process_exits(zk, broker, case):
    proc = subprocess.Popen([sys.executable, "-c", case + TAIL, json.dumps(zk)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=FAILED_AFTER_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the process hung after its dropped client was collected: {out!r} "
                    f"{err[-2000:]}")
    assert proc.returncode == 0, err
    assert out.split() == ["collected"], (out, err)
