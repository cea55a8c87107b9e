"""The drills' eyes (cluster/drills/traffic.py GroupWatch) against a real broker that pauses.

A group whose offsets live in the ``__consumer_offsets`` log has its committed offsets on a
broker: when that broker is paused, the watch cannot read them, and it must still look at the
rest (the registry above all). pause-broker failed this way in a full ``make drill``: the
paused broker led the group's offsets partition, every look failed on the committed offsets,
and the drill never saw the broker's registry node expire ("broker 1's registry node to
expire not seen within 22 s"), although broker 2 took over as controller 4 s into the pause.
"""
from __future__ import annotations

import signal

from clients.brokers import BrokerPool
from clients.log_offsets import open_store
from cluster.drills.traffic import GroupWatch
from coordinator import offset_store_choice
from tests.helpers import BrokerProcess, create_topic

SESSION_S = 4.0     # BrokerProcess's session timeout


def test_the_watch_sees_the_registry_while_the_offsets_broker_is_paused(zk, tmp_path):
    broker = BrokerProcess(zk, tmp_path, 0).start()
    watch = None
    try:
        create_topic(zk, "t", 1)
        broker.wait_hosting("t", 1)
        pool = BrokerPool(zk)
        try:
            store = open_store(pool, "g", default=offset_store_choice.LOG)
            assert offset_store_choice.recorded(pool.zk, "g") == offset_store_choice.LOG
            store.commit({("t", 0): 0})
        finally:
            pool.close()
        watch = GroupWatch(zk, "t", "g", workers=0)
        watch.start()
        seen = watch.wait(lambda look: 0 in look.brokers and look.committed == {0: 0}, 0.0,
                          20, "broker 0 registered and the group's commit read")
        broker.proc.send_signal(signal.SIGSTOP)
        try:
            look_t = watch.wait(lambda look: 0 not in look.brokers, seen,
                                3 * SESSION_S + 10, "broker 0's registry node to expire")
            gone = next(look for look in watch.since(look_t))
            assert gone.lag is None      # the committed offsets are unknown, not zero
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        back = watch.wait(lambda look: 0 in look.brokers and look.committed == {0: 0}, look_t,
                          30, "broker 0 registered again and the commit read again")
        assert back > look_t
    finally:
        if watch is not None:
            watch.stop()
        broker.stop()
