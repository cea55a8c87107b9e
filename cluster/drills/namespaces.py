"""A network of one namespace per broker, for the partition-leader drill when root is there:
the issue's first choice, a cut in the kernel rather than in a proxy the drill runs.

    host: bridge slb<tok>   10.A.B.1  (producers, consumers, the drill: the host's address)
                            10.A.B.2  (a forwarder to ZooKeeper's loopback port, never cut)
    broker i: namespace sluice-<tok>-b<i>, eth0 10.A.B.(10+i), default route via 10.A.B.1

Each broker binds its own address (``host``) and joins its namespace before it opens a socket
(broker/netns.py). ``cut(i)`` adds blackhole routes in broker i's namespace to the ZooKeeper
address and to every other broker: what it sends there is dropped (counted by the kernel as
``OutNoRoutes``), so its session expires, its followers' fetches go unanswered and its own
fetches as a follower fail, while the host's address, where its producers are, stays routed.
``restore(i)`` deletes the routes.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import shutil
import subprocess
from typing import Callable

from cluster.drills.netproxy import BlackholeProxy
from cluster.errors import ClusterError

log = logging.getLogger(__name__)

BROKER_PORT = 9092              # every broker has an address of its own
_HOST, _ZOOKEEPER, _FIRST_BROKER = 1, 2, 10


class Unavailable(ClusterError):
    """Namespaces cannot be made here (not root, no ``ip``, a kernel without them): the drill
    falls back to blocking proxies."""


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise Unavailable(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.0.0.0/8 that no interface of the host uses (random: drills run in parallel)."""
    used = [ipaddress.ip_interface(word).network
            for line in _ip("-o", "-4", "addr", "show").splitlines()
            for word in line.split()[3:4]]
    for _ in range(50):
        net = ipaddress.ip_network(f"10.{secrets.randbelow(100) + 100}."
                                   f"{secrets.randbelow(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise Unavailable("no free 10.x.y.0/24 for the drill's bridge")


class BrokerNetwork:
    def __init__(self, brokers: int, zookeeper: Callable[[], tuple[str, int]]):
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise Unavailable("network namespaces need root and iproute2's ip")
        self.brokers = brokers
        self.token = secrets.token_hex(3)
        self.bridge = f"slb{self.token}"
        self.subnet = _free_subnet()
        self._upstream = zookeeper
        self.forwarder: BlackholeProxy | None = None
        self._made: list[str] = []          # namespaces made, for teardown

    def address(self, index: int) -> str:
        return str(self.subnet[index])

    def broker_address(self, broker: int) -> str:
        return self.address(_FIRST_BROKER + broker)

    def namespace(self, broker: int) -> str:
        return f"sluice-{self.token}-b{broker}"

    def setup(self) -> "BrokerNetwork":
        prefix = self.subnet.prefixlen
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            for index in (_HOST, _ZOOKEEPER):
                _ip("addr", "add", f"{self.address(index)}/{prefix}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for b in range(self.brokers):
                ns, veth = self.namespace(b), f"slv{self.token}{b}"
                _ip("netns", "add", ns)
                self._made.append(ns)
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("link", "set", veth, "master", self.bridge, "up")
                _ip("-n", ns, "addr", "add", f"{self.broker_address(b)}/{prefix}", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "route", "add", "default", "via", self.address(_HOST))
            self.forwarder = BlackholeProxy(self._upstream, listen=self.address(_ZOOKEEPER))
            self.forwarder.start()
        except (Unavailable, OSError):
            self.teardown()
            raise
        log.info("drill network %s on %s: brokers in namespaces %s", self.bridge, self.subnet,
                 ", ".join(self._made))
        return self

    def broker_overrides(self, chroot: str) -> dict:
        """Per broker: its address, its namespace, ZooKeeper through the bridge."""
        return {str(b): {"host": self.broker_address(b), "port": BROKER_PORT,
                         "network_namespace": self.namespace(b),
                         "zookeeper": self.forwarder.address + chroot}
                for b in range(self.brokers)}

    def _cut_to(self, broker: int) -> list[str]:
        return [self.address(_ZOOKEEPER)] + [self.broker_address(o) for o in range(self.brokers)
                                             if o != broker]

    def cut(self, broker: int) -> None:
        for address in self._cut_to(broker):
            _ip("-n", self.namespace(broker), "route", "add", "blackhole", f"{address}/32")

    def restore(self, broker: int) -> None:
        for address in self._cut_to(broker):
            _ip("-n", self.namespace(broker), "route", "del", "blackhole", f"{address}/32")

    def dropped_packets(self, broker: int) -> int:
        """The namespace's IP OutNoRoutes: what its blackhole routes dropped so far."""
        done = subprocess.run(["ip", "netns", "exec", self.namespace(broker), "cat",
                               "/proc/net/snmp"], capture_output=True, text=True, timeout=10,
                              check=True)
        names, values = [line.split()[1:] for line in done.stdout.splitlines()
                         if line.startswith("Ip:")][:2]
        return int(values[names.index("OutNoRoutes")])

    def teardown(self) -> None:
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder = None
        for ns in self._made:
            try:
                _ip("netns", "del", ns)       # its veth pair goes with it
            except Unavailable as exc:
                log.warning("drill network: %s", exc)
        self._made.clear()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=10)
