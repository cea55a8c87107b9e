"""The controller: one broker at a time elects partition leaders, as in Kafka 0.8.

Every broker runs a ``Controller`` candidate. The candidates race to create the ephemeral
``/controller`` node (``{"broker": id, "epoch": n}``); the winner's transaction also moves
``/controller_epoch`` from n - 1 to n on the version it read, so exactly one candidate wins
each epoch. The others watch ``/controller`` and race again when it disappears (its owner's
session ended).

States of a candidate::

    candidate --(won the race: /controller and /controller_epoch in one transaction)--> controller
        ^                                                                                  |
        +--(its /controller is gone or another's, its session was lost, or a write found ---+
            /controller_epoch moved on: FencedWriter)

The controller watches ``/brokers/ids`` and ``/config/topics``; on every change, and once when it
wins, it reads each partition's state and writes what ``coordinator.election.elect`` decides,
conditionally on the state's version and on its own ``/controller_epoch`` version (one
transaction: partition_state.write's fence). A changed state (StaleState: a leader changed
its ISR meanwhile) is read again and decided again; a moved fence means another controller was
elected, and this one stops writing at once. Every ``leader_imbalance_check_ms`` it runs the
preferred-leader rebalance (``election.preferred``).

A broker that restarted before the controller looked (or between two looks) leaves the children
of ``/brokers/ids`` as they were, but its node is a new one. So each look also reads every
registration's ``czxid`` (the node's creation, as Kafka's broker epoch, KIP-380) and compares it
with the one this controller saw at its previous look: a changed one is a broker that failed and
returned, and is passed to ``elect`` as restarted for each partition it is a replica of, until
that partition's decision is written. A controller that just took office has seen nothing yet:
its first look takes every registration as it finds it, not as a restart.

That memory misses a restart no controller saw: the restarted broker was the controller itself,
say, and the one that took office never read its old registration. So each decision also asks
ZooKeeper (``election.restarted_since``): an ISR member whose registration was created after the
state node was last written (czxid > the state's mzxid) restarted since it was put there, and
counts as restarted too, for whichever controller looks, at every look, the preferred-leader
rebalance's included (a restarted preferred replica is not moved to; its restart is decided
first). Once written, the state's mzxid is past that czxid and the restart is not decided again.

An unclean election is never silent: it is logged at WARNING and counted in the persistent
``/brokers/topics/<t>/partitions/<p>/unclean`` (``{"count", "elected", "isr_before",
"leader_epoch", "at"}``), read by ``unclean_elections``, written in the same transaction as the
state that elects, so no crash leaves it uncounted.

Neither memory closes the window between a look and a write: a broker that restarts after the
look read its registration and before the state is written registers under the state's mzxid
and after this controller's read. So every registration also moves ``/brokers/ids``'s own
version on (registry.py, in the registering transaction), and every state write checks the
version the look read: such a write fails, nothing of that look is written, and the next look
finds the restart by its czxid.

All of this runs on the controller's own thread, fed by a queue of events; the ZooKeeper watches
only put events there, so kazoo's event thread is never held up.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Callable

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from coordinator import paths, partition_state, topics
from coordinator.election import Election, elect, preferred, restarted_since
from coordinator.partition_state import (NOT_WRITTEN, FencedWriter, PartitionState,
                                         RegistrationsChanged, StaleState)

log = logging.getLogger(__name__)

_CONTEND, _RECHECK, _LOST, _STOP = "contend", "recheck", "lost", "stop"
STALE_RETRIES = 10     # reads of one partition's state per decision before trying later
RETRY_S = 1.0          # after a ZooKeeper error, the controller tries its work again this late


class Controller:
    """One broker's controller candidate (the module's states). ``start()`` once, ``close()``
    when the broker stops."""

    def __init__(self, client: KazooClient, broker_id: int, unclean_leader_election: bool = False,
                 leader_imbalance_check_ms: int = 30_000):
        self.client = client
        self.broker_id = broker_id
        self.unclean_leader_election = unclean_leader_election
        self.leader_imbalance_check_s = leader_imbalance_check_ms / 1000
        self._events: queue.Queue[str] = queue.Queue()
        self._stopped = threading.Event()
        self._epoch: int | None = None            # set while this candidate is the controller
        self._epoch_version = 0                   # /controller_epoch's version that it set
        self._registrations: dict[int, int] = {}  # broker id -> czxid, at this office's last look
        self._restarted: dict[tuple[str, int], frozenset[int]] = {}   # not yet decided on
        self._registry_version = 0                # /brokers/ids's version at the last read
        self._thread = threading.Thread(target=self._run, name=f"controller-{broker_id}",
                                        daemon=True)

    @property
    def is_controller(self) -> bool:
        return self._epoch is not None

    @property
    def registrations(self) -> dict[int, int]:
        """Broker id -> its registration node's czxid, as this controller's last look read them
        ({} while it is not the controller)."""
        return dict(self._registrations) if self.is_controller else {}

    @property
    def epoch(self) -> int | None:
        """The controller epoch this candidate won, while it is the controller."""
        return self._epoch

    def start(self) -> "Controller":
        for path in (paths.BROKER_IDS, paths.TOPIC_CONFIG):
            self.client.ensure_path(path)
        self.client.add_listener(self._on_session)
        self._thread.start()
        DataWatch(self.client, paths.CONTROLLER, self._on_controller)
        ChildrenWatch(self.client, paths.BROKER_IDS, self._on_change)
        ChildrenWatch(self.client, paths.TOPIC_CONFIG, self._on_change)
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread; a controller gives up /controller so another takes over at once."""
        self._stopped.set()
        self._events.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.client.remove_listener(self._on_session)
        if self.is_controller:
            self._resign("the broker is stopping")

    # --- watches: they only queue events -----------------------------------------------------

    def _on_controller(self, data, stat, event=None):
        if self._stopped.is_set():
            return False
        self._events.put(_CONTEND)

    def _on_change(self, children):
        if self._stopped.is_set():
            return False
        self._events.put(_RECHECK)

    def _on_session(self, state: str) -> None:
        if state == KazooState.LOST:
            self._events.put(_LOST)

    # --- the controller's thread --------------------------------------------------------------

    def _run(self) -> None:
        next_rebalance = time.monotonic() + self.leader_imbalance_check_s
        while True:
            timeout = None
            if self.is_controller:
                timeout = max(0.0, next_rebalance - time.monotonic())
            try:
                events = {self._events.get(timeout=timeout)}
            except queue.Empty:
                events = set()
            while True:
                try:
                    events.add(self._events.get_nowait())
                except queue.Empty:
                    break
            if _STOP in events or self._stopped.is_set():
                return
            try:
                if _LOST in events and self.is_controller:
                    self._epoch = None
                    log.warning("broker %d: ZooKeeper session lost; no longer the controller",
                                self.broker_id)
                if _CONTEND in events:
                    if self._contend():
                        events.add(_RECHECK)
                        next_rebalance = time.monotonic() + self.leader_imbalance_check_s
                if self.is_controller and _RECHECK in events:
                    self._elect_all()
                if self.is_controller and time.monotonic() >= next_rebalance:
                    self._preferred_all()
                    next_rebalance = time.monotonic() + self.leader_imbalance_check_s
            except FencedWriter as exc:
                log.warning("broker %d: %s; no longer the controller", self.broker_id, exc)
                self._resign("fenced by a newer controller epoch")
            except (KazooException, self.client.handler.timeout_exception) as exc:
                log.warning("broker %d controller: ZooKeeper failed (%s: %s); trying again in "
                            "%.0f s", self.broker_id, type(exc).__name__, exc, RETRY_S)
                self._retry_later(events)
            except Exception:
                log.exception("broker %d controller: unexpected failure; trying again in %.0f s",
                              self.broker_id, RETRY_S)
                self._retry_later(events)

    def _retry_later(self, events: set) -> None:
        if self._stopped.wait(RETRY_S):
            return
        for event in events & {_CONTEND, _RECHECK} or {_RECHECK}:
            self._events.put(event)

    # --- becoming the controller -------------------------------------------------------------

    def _contend(self) -> bool:
        """Race for /controller if it is free; True when this candidate just won."""
        try:
            data, stat = self.client.get(paths.CONTROLLER)
        except NoNodeError:
            return self._race()
        if stat.ephemeralOwner == self.client.client_id[0]:
            if not self.is_controller:      # won, but the answer was lost with the connection
                return self._adopt(json.loads(data)["epoch"])
            return False
        if self.is_controller:
            self._epoch = None
            log.warning("broker %d: /controller belongs to broker %s now; no longer the "
                        "controller", self.broker_id, json.loads(data).get("broker"))
        return False

    def _race(self) -> bool:
        try:
            data, stat = self.client.get(paths.CONTROLLER_EPOCH)
            epoch, version = int(data), stat.version
        except NoNodeError:
            epoch, version = 0, None
        mine = json.dumps({"broker": self.broker_id, "epoch": epoch + 1}).encode()
        transaction = self.client.transaction()
        transaction.create(paths.CONTROLLER, mine, ephemeral=True)
        if version is None:
            transaction.create(paths.CONTROLLER_EPOCH, str(epoch + 1).encode())
        else:
            transaction.set_data(paths.CONTROLLER_EPOCH, str(epoch + 1).encode(), version=version)
        results = transaction.commit()
        if any(isinstance(r, Exception) for r in results):
            if not isinstance(results[0], NodeExistsError):
                self._events.put(_CONTEND)      # the epoch moved under us: read it again
            return False
        self._take_office()
        self._epoch = epoch + 1
        self._epoch_version = 0 if version is None else results[1].version
        log.info("broker %d is the controller (controller epoch %d)", self.broker_id, self._epoch)
        return True

    def _adopt(self, epoch: int) -> bool:
        data, stat = self.client.get(paths.CONTROLLER_EPOCH)
        if int(data) != epoch:
            self._resign("its /controller names a past controller epoch")
            return False
        self._take_office()
        self._epoch, self._epoch_version = epoch, stat.version
        log.info("broker %d is the controller (controller epoch %d)", self.broker_id, epoch)
        return True

    def _take_office(self) -> None:
        """Forget what a past office saw: restarts it did not decide on are not this one's to
        guess, and a first look is no restart."""
        self._registrations, self._restarted = {}, {}

    def _resign(self, why: str) -> None:
        """Stop being the controller; give up /controller if it is still this session's, so
        that a new race (with a new epoch) starts."""
        self._epoch = None
        try:
            stat = self.client.exists(paths.CONTROLLER)
            if stat is not None and stat.ephemeralOwner == self.client.client_id[0]:
                self.client.delete(paths.CONTROLLER, version=stat.version)
                log.info("broker %d gave up /controller: %s", self.broker_id, why)
        except (KazooException, self.client.handler.timeout_exception) as exc:
            log.warning("broker %d: could not give up /controller (%s); it goes with the "
                        "session", self.broker_id, exc)

    # --- elections -----------------------------------------------------------------------------

    def _look(self) -> tuple[frozenset[int], frozenset[int], dict[int, int]]:
        """The live brokers, those whose registration is not the one the last look saw, and
        every registration's czxid."""
        now = self._read_registrations()
        restarted = frozenset(b for b, czxid in now.items()
                              if self._registrations.get(b, czxid) != czxid)
        for broker_id in sorted(restarted):
            log.warning("controller epoch %d: broker %d registered again since the last look "
                        "(a restart): it counts as failed and returned", self._epoch, broker_id)
        return frozenset(now), restarted, now

    def _read_registrations(self) -> dict[int, int]:
        """Every live broker's id -> its registration node's czxid; ``/brokers/ids``'s version
        is read first (into ``_registry_version``), so a registration after it moves it on."""
        self._registry_version = self.client.exists(paths.BROKER_IDS).version
        now = {}
        for child in self.client.get_children(paths.BROKER_IDS):
            stat = self.client.exists(paths.broker(int(child)))
            if stat is not None:
                now[int(child)] = stat.czxid
        return now

    def _partitions(self):
        """(topic, partition, replicas) of every placed topic."""
        for topic in topics.names(self.client):
            try:
                placement = topics.get(self.client, topic)
            except topics.UnknownTopic:
                continue
            except topics.CorruptPlacement as exc:
                log.error("controller: skipping topic %s: %s", topic, exc)
                continue
            for partition, replicas in enumerate(placement.replicas):
                yield topic, partition, replicas

    def _elect_all(self) -> None:
        """One look: note restarts on every partition they concern before deciding any, so an
        error midway loses none; a partition's restarts are dropped once it is decided."""
        live, restarted, registrations = self._look()
        partitions = list(self._partitions())
        pending = {}
        for topic, partition, replicas in partitions:
            key = (topic, partition)
            concerned = self._restarted.get(key, frozenset()) | (restarted & set(replicas))
            if concerned:
                pending[key] = concerned
        self._restarted, self._registrations = pending, registrations
        registry_version = self._registry_version
        for topic, partition, replicas in partitions:
            key = (topic, partition)
            decide = (lambda state, written, r=replicas, k=key:
                      elect(state, r, live, self.unclean_leader_election, self._epoch,
                            restarted=self._restarted.get(k, frozenset())
                            | restarted_since(written, registrations)))
            try:
                settled = self._settle(topic, partition, decide, registry_version)
            except RegistrationsChanged as exc:
                self._look_again(exc)
                return
            if settled:
                self._restarted.pop(key, None)

    def _preferred_all(self) -> None:
        registrations = self._read_registrations()
        registry_version = self._registry_version
        live = frozenset(registrations)

        def decide(state, written, replicas):
            since = restarted_since(written, registrations)
            return (elect(state, replicas, live, self.unclean_leader_election, self._epoch,
                          restarted=since)
                    or preferred(state, replicas, live, self._epoch, restarted=since))
        for topic, partition, replicas in self._partitions():
            try:
                self._settle(topic, partition, lambda state, written, r=replicas:
                             decide(state, written, r), registry_version)
            except RegistrationsChanged as exc:
                self._look_again(exc)
                return

    def _look_again(self, exc: RegistrationsChanged) -> None:
        """A broker registered after the look these decisions came from (it may have restarted
        in between, unseen): none of them is written; a new look is queued, which finds the
        restart by its czxid."""
        log.info("controller epoch %d: %s; looking again", self._epoch, exc)
        self._events.put(_RECHECK)

    def _settle(self, topic: str, partition: int,
                decide: Callable[[PartitionState, int | None], Election | None],
                registry_version: int) -> bool:
        """Read, decide (on the state and its node's mzxid, None when there is no node), write
        conditionally; a state changed meanwhile is read again. False: it kept changing, and a
        look later is queued.

        Each write also checks ``/brokers/ids`` at ``registry_version``, the version read with
        the registrations the decision used: every registration moves it on (registry.py), so
        a broker that restarted between that read and this write fails the write
        (RegistrationsChanged, raised for the caller to look again) instead of being elected
        or kept on the ISR as if it had never gone. An unclean election's count goes in the
        same transaction as the state that makes it."""
        for _ in range(STALE_RETRIES):
            found = partition_state.read_with_zxid(self.client, topic, partition)
            if found is None:
                placement = topics.get(self.client, topic)
                found = PartitionState.initial(placement.replicas[partition]), NOT_WRITTEN, None
            state, version, written = found
            election = decide(state, written)
            if election is None:
                return True
            new = election.state
            count = self._unclean_count(topic, partition, state, new) if election.unclean \
                else None
            try:
                partition_state.write(self.client, topic, partition, new, version,
                                      fence=(paths.CONTROLLER_EPOCH, self._epoch_version),
                                      checks=[(paths.BROKER_IDS, registry_version)],
                                      also=count[1] if count else None)
            except (FencedWriter, RegistrationsChanged):
                raise
            except StaleState:
                continue
            log.info("controller epoch %d: %s/%d leader %d epoch %d isr %s (was leader %d "
                     "epoch %d isr %s)", self._epoch, topic, partition, new.leader,
                     new.leader_epoch, list(new.isr), state.leader, state.leader_epoch,
                     list(state.isr))
            if count:
                log.warning("UNCLEAN leader election of %s/%d: broker %d leads at epoch %d "
                            "without being in sync (the ISR was %s, none alive); what only "
                            "they had is lost (unclean elections of this partition: %d)",
                            topic, partition, new.leader, new.leader_epoch, list(state.isr),
                            count[0])
            return True
        log.warning("controller: the state of %s/%d kept changing under %d reads; trying again "
                    "later", topic, partition, STALE_RETRIES)
        self._events.put(_RECHECK)
        return False

    def _unclean_count(self, topic: str, partition: int, before: PartitionState,
                       after: PartitionState) -> tuple[int, Callable]:
        """The partition's next unclean count and the operation that writes it, conditional on
        the count node as read, for the transaction of the electing state write."""
        path = paths.partition_unclean(topic, partition)
        try:
            data, stat = self.client.get(path)
            count, version = 1 + json.loads(data)["count"], stat.version
        except NoNodeError:
            count, version = 1, None
        record = json.dumps({"count": count, "elected": after.leader,
                             "isr_before": list(before.isr), "leader_epoch": after.leader_epoch,
                             "at": time.time()}).encode()

        def add(transaction) -> None:
            if version is None:
                transaction.create(path, record)
            else:
                transaction.set_data(path, record, version=version)
        return count, add


def unclean_elections(client: KazooClient, topic: str, partition: int) -> dict | None:
    """The partition's unclean election record (``{"count", "elected", ...}``), or None."""
    try:
        data, _ = client.get(paths.partition_unclean(topic, partition))
    except NoNodeError:
        return None
    return json.loads(data)
