"""A client dropped without close() never keeps its process from exiting.

Each case runs in a subprocess against a real broker and ZooKeeper: the client is used (so it
has its fetch, control and offsets sockets open) and dropped, ``gc.collect()`` runs, and the
process must then exit on its own. In the first cases only the cycle collector can free the
client, and it must be freed (else the case proves nothing); the others stay reachable (their
threads and ZooKeeper watches hold them) and must not hold the exit either. A pyzmq
Context collected in the same cycle as its sockets used to block in ``term()`` (the collector
clears the Context's weak references to its sockets before any finalizer runs, so the
Context's ``__del__`` found none to close). The child's own completion is the condition; the
timeout is only the failure signal."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from clients import Producer
from tests.helpers import BrokerProcess, create_topic

ROOT = __file__.rsplit("/tests/", 1)[0]
FAILED_AFTER_S = 60     # a healthy child is done in a few seconds

HEAD = r"""
import gc, json, sys, threading, weakref
from clients import Consumer, Producer, SimpleConsumer
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

# A producer without threads of its own (acks=1, no linger), dropped with its ZooKeeper client
# stopped: its view's listener and its pool make a cycle.
DEAD_PRODUCER = HEAD + r"""
p = Producer(zk, acks=1, linger_ms=0)
for i in range(50):
    p.send("clicks", b"x", partition=0)
p.flush()
p._pool.zk.stop()
dropped = weakref.ref(p)
del p
"""

# Clients that stay reachable when dropped with their ZooKeeper client running (its watches
# and their own threads hold them): never collected, they must still not keep the process
# from exiting.
LIVE_PRODUCER = HEAD + r"""
p = Producer(zk, acks=1, linger_ms=5)
for i in range(50):
    p.send("clicks", b"x", partition=0)
p.flush()
dropped = weakref.ref(p)
del p
"""

LIVE_COALESCING_PRODUCER = HEAD + r"""
p = Producer(zk, acks=0, batch_size=1)
for i in range(50):
    p.send("clicks", b"x", partition=0)
dropped = weakref.ref(p)
del p
"""

LIVE_MEMBER = HEAD + r"""
c = Consumer(["clicks"], "live", zookeeper=zk, max_wait_ms=200)
got = []
while len(got) < 10:
    got.extend(c.poll(200))
dropped = weakref.ref(c)
del c, got
"""

COLLECTED = r"""
gc.collect()
assert dropped() is None, "the client was not collected: the case proves nothing"
print("collected", flush=True)
"""

EXITS = r"""
gc.collect()
print("collected", flush=True)
"""

CASES = {"dead-member": DEAD_MEMBER + COLLECTED,
         "simple-in-a-cycle": SIMPLE_IN_A_CYCLE + COLLECTED,
         "dead-producer": DEAD_PRODUCER + COLLECTED,
         "live-producer": LIVE_PRODUCER + EXITS,
         "live-coalescing-producer": LIVE_COALESCING_PRODUCER + EXITS,
         "live-member": LIVE_MEMBER + EXITS}


@pytest.fixture(scope="module")
def cluster(zk_server, tmp_path_factory):
    """One broker for the module's cases, in a chroot of its own, with 100 messages on
    ``clicks`` (2 partitions) flushed within 20 ms."""
    connect = f"{zk_server.connect_string}/dropped-{uuid.uuid4().hex[:8]}"
    broker = BrokerProcess(connect, tmp_path_factory.mktemp("dropped"),
                           log={"flush_ms": 20}).start()
    create_topic(connect, "clicks", 2, [broker])
    with Producer(connect, acks=1) as producer:
        for i in range(100):
            producer.send("clicks", b"%03d" % i, partition=i % 2)
    yield connect
    broker.stop()


@pytest.mark.parametrize("case", list(CASES))
def test_a_dropped_client_never_keeps_its_process_from_exiting(cluster, case):
    proc = subprocess.Popen([sys.executable, "-c", CASES[case], json.dumps(cluster)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=FAILED_AFTER_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the process did not exit after dropping its client: {out!r} "
                    f"{err[-2000:]}")
    assert proc.returncode == 0, err
    assert out.split() == ["collected"], (out, err)
