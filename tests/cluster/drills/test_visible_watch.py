"""torn-segment's look at a broker's visible ends (cluster/drills/storage_faults.py
VisibleWatch) against a real broker: the drill damages only what is not visible yet, so it
must know when a flush made more visible between its look and its SIGSTOP. In a full
``make drill`` (load 13) the look went stale in that window and two of the torn messages had
been consumed before the cut; with a fetch parked at the looked-at end, a flush answers it."""
from __future__ import annotations

import signal

import zmq

from broker import message, protocol
from clients.brokers import BrokerPool
from cluster.drills.storage_faults import VisibleWatch
from tests.helpers import BrokerProcess, create_topic, wait_for

FLUSH_EVERY = 10


def _produce(endpoint: str, count: int) -> None:
    """``count`` acks=1 messages, each answered (appended, not flushed below FLUSH_EVERY)."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        for n in range(count):
            sock.send_multipart([protocol.encode_produce(n + 1, "t", 0, 1),
                                 message.encode_set([(None, b"v%d" % n)])])
            assert sock.poll(10_000), "no answer to a produce"
            protocol.decode_response(sock.recv_multipart()[0], protocol.PRODUCE_REPLY)
    finally:
        sock.close(linger=0)


def test_a_flush_between_the_look_and_the_pause_is_seen(zk, tmp_path):
    broker = BrokerProcess(zk, tmp_path, 0, log={"flush_messages": FLUSH_EVERY,
                                                 "flush_ms": 600_000}).start()
    try:
        create_topic(zk, "t", 1)
        broker.wait_hosting("t", 1)
        _produce(broker.endpoint, 3)                 # appended, acknowledged, not visible
        quiet = VisibleWatch(broker.endpoint, "t", [0])
        try:
            assert quiet.park() == {0: 0}
            broker.proc.send_signal(signal.SIGSTOP)
            try:
                assert not quiet.moved(0.3)          # nothing became visible: the look holds
            finally:
                broker.proc.send_signal(signal.SIGCONT)
        finally:
            quiet.close()
        raced = VisibleWatch(broker.endpoint, "t", [0])
        try:
            assert raced.park() == {0: 0}
            _produce(broker.endpoint, FLUSH_EVERY)   # the flush makes the tail visible
            pool = BrokerPool(zk)
            try:
                wait_for(lambda: pool.offset("t", 0, protocol.LATEST) > 0,
                         what="the flush to make the messages visible")
            finally:
                pool.close()
            broker.proc.send_signal(signal.SIGSTOP)
            try:
                assert raced.moved(0.3)              # the look went stale before the pause
            finally:
                broker.proc.send_signal(signal.SIGCONT)
        finally:
            raced.close()
    finally:
        broker.stop()
