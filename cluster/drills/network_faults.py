"""The network family of faults: partition-leader, a leader cut off from its followers and
ZooKeeper while its producers still reach it (Jepsen's Kafka 0.8 case of 2013: a leader that
shrinks the ISR to itself and goes on acknowledging loses what it acknowledged).

| drill            | fault                                           | must hold                      |
| ---------------- | ----------------------------------------------- | ------------------------------ |
| partition-leader | black-hole the leader's paths to ZooKeeper      | lost = 0; a new leader elected |
|                  | and its followers past the session              | by the others; the cut leader  |
|                  | timeout; its client endpoint stays reachable;   | acknowledges no acks=all write |
|                  | then heal                                       | after the election; it rejoins |
|                  |                                                 | as a follower, its cut counted |

How the cut is made, as root (cluster/drills/namespaces.py): every broker runs in a network
namespace of its own, with its own address on a bridge; the cut is blackhole routes in the
leader's namespace to ZooKeeper's address and to every other broker, so the kernel drops all
it sends there (its fetches as a follower too), while the host's address, where producers,
consumers and the drill are, stays routed.

Without root, a blocking proxy on loopback (cluster/drills/netproxy.py) per broker in front of
its ZooKeeper server (the broker's own ``zookeeper`` connect string, a
``ClusterConfig.broker_overrides`` entry) and one in front of its ROUTER, registered as its
``replica_advertised_endpoint``: followers fetch from a leader through that proxy, while
producers, consumers and the drill use the ``endpoint`` the broker binds. Cutting both proxies
of a leader leaves it serving its producers, unable to hear ZooKeeper or to be fetched from.
That cut is one way for replica traffic: the cut leader's own fetches (as a follower of other
partitions) go through the other brokers' proxies, which stay open; it cannot change the
property judged, since only fetches from the leader move its high watermark.

The "nothing acknowledged after the election" check is a probe, as pause-leader's: acks=all
writes sent straight to the cut leader's client endpoint once the others elected a new leader,
answered while it is still cut off. Each answer must be an error (its acks=all writes cannot
reach the high watermark: no follower fetches, and its ISR shrink fails in ZooKeeper). The
ledger judges the producer's own writes: an acknowledgement the cut leader gave after the
election would be at offsets the new leader's log does not have, a loss.
"""
from __future__ import annotations

import logging
import socket
import time

import zmq

from cluster.drills import leadership as lead
from cluster.drills import replication_faults as rf
from cluster.drills.context import Check, Context
from cluster.drills.faults import FaultError, wait_broker_back
from cluster.drills.namespaces import BrokerNetwork, Unavailable
from cluster.drills.netproxy import BlackholeProxy
from cluster.drills.verdict import lost_is_zero, restarts
from coordinator import zk as zkconnect

log = logging.getLogger(__name__)

CUTS = "_cuts"                  # ctx.notes key: {broker id: BrokerProxies or NamespaceCut}
NETWORK = "_network"            # ctx.notes key: the BrokerNetwork, when namespaces are used


class BrokerProxies:
    """The two blocking proxies of one broker: its ZooKeeper connection, its replica endpoint."""

    def __init__(self, zookeeper: BlackholeProxy, replica: BlackholeProxy, port: int):
        self.zookeeper = zookeeper
        self.replica = replica
        self.port = port

    way = "blocking proxies"

    def cut(self) -> None:
        self.zookeeper.cut()
        self.replica.cut()

    def evidence(self) -> dict[str, int]:
        return {"zk_dropped_bytes": self.zookeeper.dropped_bytes,
                "replica_dropped_bytes": self.replica.dropped_bytes}

    def restore(self) -> None:
        self.zookeeper.restore()
        self.replica.restore()

    def stop(self) -> None:
        self.zookeeper.stop()
        self.replica.stop()


class NamespaceCut:
    """One broker of a BrokerNetwork: the cut is its namespace's blackhole routes."""

    way = "network namespaces"

    def __init__(self, network: BrokerNetwork, broker: int):
        self.network = network
        self.broker = broker

    def cut(self) -> None:
        self.network.cut(self.broker)

    def restore(self) -> None:
        self.network.restore(self.broker)

    def evidence(self) -> dict[str, int]:
        return {"dropped_packets": self.network.dropped_packets(self.broker)}

    def stop(self) -> None:
        """The network is torn down whole by ``cleanup``."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _first_server(ctx: Context, zookeeper: str | None):
    """The (host, port) of the cluster's first ZooKeeper server, read when a broker connects
    (an embedded ensemble has no address before the supervisor starts it)."""
    def upstream() -> tuple[str, int]:
        hosts, _ = zkconnect.split_chroot(zookeeper or zkconnect.resolve(None, ctx.data_dir))
        host, _, port = hosts.split(",")[0].rpartition(":")
        return host, int(port)
    return upstream


def broker_overrides(ctx: Context, zookeeper: str | None) -> dict:
    """A namespace per broker where that can be made (root), else the proxies."""
    try:
        return namespace_overrides(ctx, zookeeper)
    except Unavailable as exc:
        log.info("partition-leader: no network namespaces (%s); blocking proxies instead", exc)
        return proxy_overrides(ctx, zookeeper)


def namespace_overrides(ctx: Context, zookeeper: str | None) -> dict:
    """Make the drill's network (cluster/drills/namespaces.py); every broker in its own."""
    if ctx.drill.zk_ensemble != 1:
        raise FaultError("partition-leader forwards one ZooKeeper server; it runs with one")
    chroot = zkconnect.split_chroot(zookeeper)[1] if zookeeper else ""
    network = BrokerNetwork(ctx.settings.brokers, _first_server(ctx, zookeeper)).setup()
    ctx.notes[NETWORK] = network
    ctx.notes[CUTS] = {b: NamespaceCut(network, b) for b in range(ctx.settings.brokers)}
    return network.broker_overrides(chroot)


def proxy_overrides(ctx: Context, zookeeper: str | None) -> dict:
    """Start every broker's two proxies; each broker gets a fixed port (the replica proxy's
    server), the proxy as its ZooKeeper (same chroot) and as its replica endpoint."""
    if ctx.drill.zk_ensemble != 1:
        raise FaultError("partition-leader proxies one ZooKeeper server; it runs with one")
    chroot = zkconnect.split_chroot(zookeeper)[1] if zookeeper else ""
    proxies = ctx.notes.setdefault(CUTS, {})
    overrides = {}
    for broker in range(ctx.settings.brokers):
        port = _free_port()
        pair = BrokerProxies(BlackholeProxy(_first_server(ctx, zookeeper)).start(),
                             BlackholeProxy("127.0.0.1", port).start(), port)
        proxies[broker] = pair
        overrides[str(broker)] = {"port": port, "zookeeper": pair.zookeeper.address + chroot,
                                  "replica_advertised_endpoint": f"tcp://{pair.replica.address}"}
    return overrides


def cleanup(ctx: Context) -> None:
    for pair in ctx.notes.pop(CUTS, {}).values():
        pair.stop()
    network = ctx.notes.pop(NETWORK, None)
    if network is not None:
        network.teardown()


def _truncated(ctx: Context, broker: int) -> int | None:
    """The broker's truncated_messages (its stats count only what happened: absent is 0);
    None when its METADATA has no stats at all."""
    stats = lead.broker_document(ctx.zk(), broker, zmq.Context.instance()).get("stats")
    return None if stats is None else int(stats.get("truncated_messages", 0))


def partition_leader(ctx: Context, record: dict) -> None:
    """Cut a busy partition's leader off from ZooKeeper and its followers until the others
    elected a new leader and its probe writes were answered; then heal the network."""
    partition = ctx.rng.randrange(ctx.settings.partitions)
    before = lead.leadership(ctx.zk(), ctx.topic, partition)
    broker = before.state.leader
    pair = ctx.notes[CUTS][broker]
    pid = ctx.procs.pid("broker", str(broker))
    hosted = ctx.placement().hosted_by(broker)
    truncated_before = _truncated(ctx, broker)
    probe = rf._Probe(ctx, broker, partition)        # the client endpoint, read while registered
    evidence_before = pair.evidence()
    record["cut_by"] = pair.way
    try:
        pair.cut()
        fault_t = time.monotonic()
        record.update(target=f"broker {broker}", pid=pid, partition=partition,
                      epoch_before=before.state.leader_epoch)
        ctx.emit("fault", detail=f"cut broker {broker}, leader of {ctx.topic}/{partition}, off "
                 "from ZooKeeper and its followers; waiting for a new leader")
        try:
            elected = lead.wait_new_leader(ctx.zk(), ctx.topic, partition,
                                           before.state.leader_epoch,
                                           ctx.settings.recovery_timeout_s)
            seen_t = time.monotonic()
            at = lead.monotonic_of(elected.written_at) if elected.written_at else seen_t
            elected_t = min(max(at, fault_t), seen_t)
            record.update(new_leader=elected.state.leader, epoch=elected.state.leader_epoch,
                          isr_after=list(elected.state.isr),
                          election_s=round(elected_t - fault_t, 3))
            deadline = time.monotonic() + rf.NEW_LEADER_ACK_S
            while not ctx.producer.acked_between(elected_t, time.monotonic(), {partition}) \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
            record["acked_by_new_leader"] = ctx.producer.acked_between(
                elected_t, time.monotonic(), {partition})
            probe.send(rf.PROBES)
            ctx.emit("fault", detail=f"{rf.PROBES} acks=all probe writes sent to the cut "
                     f"leader {broker}; collecting its answers while it is still cut off")
            probe.collect(rf.ACK_TIMEOUT_MS / 1000 + 5)
            record.update(probe_sent=len(probe.sent), probe_answers=dict(probe.answers),
                          probe_acked=len(probe.acked))
        finally:
            record.update({k: v - evidence_before[k] for k, v in pair.evidence().items()})
            pair.restore()
    finally:
        probe.close()
    healed_t = time.monotonic()
    record["cut_s"] = round(healed_t - fault_t, 3)
    ctx.emit("fault", detail=f"healed broker {broker}'s network; waiting for it to rejoin")
    back_t = wait_broker_back(ctx, broker, pid, healed_t)
    isr_t = lead.wait_in_isr(ctx.zk(), ctx.topic, hosted, broker, ctx.settings.recovery_timeout_s)
    record["rejoined_isr_s"] = round(isr_t - healed_t, 3)
    state = lead.leadership(ctx.zk(), ctx.topic, partition).state
    record["rejoined_as_follower"] = state.leader != broker or state.leader_epoch > record["epoch"]
    truncated_after = _truncated(ctx, broker)
    record["truncated"] = (None if truncated_before is None or truncated_after is None
                           else truncated_after - truncated_before)
    ctx.recover(record, healed_t, back_t)


def partition_leader_checks(ctx: Context, result: dict, report) -> list[Check]:
    faults = ctx.faults
    acked = sum(f.get("probe_acked", 0) for f in faults)
    sent = sum(f.get("probe_sent", 0) for f in faults)
    result["zombie_acks"] = acked
    result["truncated_messages"] = [f.get("truncated") for f in faults]
    bound = ctx.session_timeout_s + rf.ELECTION_SLACK_S
    return [
        lost_is_zero(report),
        Check("the cut really cut: the leader's traffic was dropped each time (by both of its "
              "proxies, or by its namespace's blackhole routes)",
              bool(faults) and all(_dropped(f) for f in faults),
              "; ".join(_dropped_text(f) for f in faults)),
        Check(f"the others elected a new leader within {bound:g} s every time",
              bool(faults) and all(f.get("election_s") is not None and f["election_s"] <= bound
                                   and f.get("new_leader") != int(f["target"].split()[-1])
                                   for f in faults),
              ", ".join(f"broker {f.get('new_leader')} in {f.get('election_s')} s"
                        for f in faults)),
        Check("the new leader acknowledged writes of the partition while the old one was cut",
              all(f.get("acked_by_new_leader", 0) > 0 for f in faults),
              ", ".join(str(f.get("acked_by_new_leader")) for f in faults)),
        Check("the cut-off leader acknowledged no acks=all write after the election (probe "
              "writes sent to its client endpoint)", sent == rf.PROBES * len(faults)
              and acked == 0, f"{acked} of {sent} acknowledged; answers "
              + "; ".join(str(f.get("probe_answers")) for f in faults)),
        Check("it stayed up (no restart), rejoined the ISR as a follower, and counted what it "
              "cut (truncated_messages)", restarts(ctx, "broker") == 0 and bool(faults)
              and all(f.get("rejoined_as_follower") and f.get("truncated") is not None
                      and f["truncated"] >= 0 for f in faults),
              f"{restarts(ctx, 'broker')} restart(s); " + ", ".join(
                  f"ISR after {f.get('rejoined_isr_s')} s, {f.get('truncated')} truncated"
                  for f in faults)),
        rf._replicas_agree(ctx),
    ]


def _dropped(fault: dict) -> bool:
    if fault.get("cut_by") == NamespaceCut.way:
        return fault.get("dropped_packets", 0) > 0
    return fault.get("zk_dropped_bytes", 0) > 0 and fault.get("replica_dropped_bytes", 0) > 0


def _dropped_text(fault: dict) -> str:
    if fault.get("cut_by") == NamespaceCut.way:
        return f"{fault.get('dropped_packets')} packets dropped in its namespace"
    return (f"ZooKeeper {fault.get('zk_dropped_bytes')} B, replica "
            f"{fault.get('replica_dropped_bytes')} B")
