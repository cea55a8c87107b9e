"""Local ZooKeeper servers for a development cluster: one standalone node or a 3-node ensemble.

Each node is Debian's ZooKeeper (``QuorumPeerMain``) in its own java process, with its own
directory holding ``zoo.cfg``, ``myid``, the snapshots and transaction logs and ``zookeeper.log``
(the process's stdout and stderr). Ports are picked free at construction and kept, so a node that
is killed and started again (a fault drill) comes back with the same data and the same address.

Every node runs in a new session, so a Ctrl-C aimed at the parent does not take ZooKeeper down
before the brokers that depend on it, and (on Linux) it asks the kernel for SIGTERM when its
parent dies, so a SIGKILLed supervisor leaves no java behind.

    ensemble = ZooKeeperEnsemble(Path(".sluice/zookeeper-data"), size=3)
    ensemble.start()
    ensemble.wait_ready(timeout=30)
    ensemble.kill(2); ...; ensemble.start_node(2)
    ensemble.stop()
"""
from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from coordinator.errors import InvalidArgument, SluiceError

log = logging.getLogger(__name__)

JAR_DIR_ENV = "SLUICE_ZK_JARS"
DEFAULT_JAR_DIR = "/usr/share/java"
REQUIRED_JARS = ("zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar")
OPTIONAL_JARS = (
    "netty-handler.jar", "netty-common.jar", "netty-transport.jar", "netty-buffer.jar",
    "netty-codec.jar", "netty-resolver.jar", "netty-transport-native-epoll.jar",
    "netty-transport-native-unix-common.jar", "metrics-core.jar", "commons-cli.jar",
    "snappy-java.jar",
)
SLF4J_BINDINGS = ("slf4j-simple.jar", "slf4j-nop.jar")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
NOT_FOUND = "ZooKeeper server jars not found: run 'make cluster-up' or apt-get install zookeeper"
LOG_FILE = "zookeeper.log"
HOST = "127.0.0.1"
SERVING_MODES = ("standalone", "leader", "follower")
_PR_SET_PDEATHSIG = 1


class ZooKeeperError(SluiceError):
    """A local ZooKeeper server could not be found, started or reached; the message is one line."""


@dataclass(frozen=True)
class ZooKeeperInstall:
    """Where java and the server's classpath are."""

    java: str
    classpath: tuple[str, ...]


def find_install() -> ZooKeeperInstall:
    """The java binary and ZooKeeper jars on this machine ($SLUICE_ZK_JARS overrides the jar dir)."""
    jar_dir = Path(os.environ.get(JAR_DIR_ENV) or DEFAULT_JAR_DIR)
    if not all((jar_dir / jar).is_file() for jar in REQUIRED_JARS):
        raise ZooKeeperError(NOT_FOUND)
    java = _find_java()
    if java is None:
        raise ZooKeeperError("java not found: install a JRE (apt-get install zookeeper pulls one in) "
                             "or set JAVA_HOME")
    jars = [jar_dir / jar for jar in REQUIRED_JARS + OPTIONAL_JARS if (jar_dir / jar).is_file()]
    binding = next((jar_dir / b for b in SLF4J_BINDINGS if (jar_dir / b).is_file()), None)
    if binding is not None:
        jars.append(binding)
    return ZooKeeperInstall(java=java, classpath=tuple(str(j) for j in jars))


def _find_java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home, "bin", "java"), os.X_OK):
        return str(Path(home, "bin", "java"))
    found = shutil.which("java")
    if found:
        return found
    return "/usr/bin/java" if os.access("/usr/bin/java", os.X_OK) else None


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free right now on 127.0.0.1 (held together so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def four_letter(port: int, command: str, timeout: float = 2.0, host: str = HOST) -> str:
    """Send a four-letter-word command (ruok, srvr, mntr, stat) and return the whole reply."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(command.encode("ascii"))
        chunks = []
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def server_mode(port: int, timeout: float = 1.0, host: str = HOST) -> str | None:
    """The mode the node on ``port`` reports to ``srvr`` ('standalone', 'leader', 'follower';
    others while it elects), None when it does not answer."""
    try:
        reply = four_letter(port, "srvr", timeout=timeout, host=host)
    except OSError:
        return None
    for line in reply.splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return None


@dataclass(frozen=True)
class Peer:
    """One ensemble member's identity and its three ports."""

    myid: int
    client_port: int
    peer_port: int
    election_port: int

    @property
    def server_line(self) -> str:
        return f"server.{self.myid}={HOST}:{self.peer_port}:{self.election_port}"


class _StartedInContext:
    """``with X(...) as x``: started and serving inside, stopped after (even on failure)."""

    def __enter__(self):
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class ZooKeeperServer(_StartedInContext):
    """One ZooKeeper node: standalone when ``peers`` is empty, else a member of that ensemble."""

    def __init__(self, directory: str | os.PathLike, client_port: int | None = None, *,
                 myid: int = 1, peers: tuple[Peer, ...] = (), tick_ms: int = 500,
                 heap_mb: int = 256, force_sync: bool = True,
                 install: ZooKeeperInstall | None = None):
        self.directory = Path(directory).resolve()
        self.myid = myid
        self.peers = tuple(peers)
        if self.peers:
            me = next((p for p in self.peers if p.myid == myid), None)
            if me is None:
                raise InvalidArgument(f"myid {myid} is not among the peers")
            client_port = me.client_port
        self.client_port = client_port or free_ports(1)[0]
        self.tick_ms = tick_ms
        self.heap_mb = heap_mb
        self.force_sync = force_sync
        self._install = install
        self._process: subprocess.Popen | None = None
        self._log_file = None
        self.last_exit_code: int | None = None

    def __repr__(self) -> str:
        return f"ZooKeeperServer(myid={self.myid}, port={self.client_port}, pid={self.pid})"

    @property
    def connect_string(self) -> str:
        return f"{HOST}:{self.client_port}"

    @property
    def endpoint(self) -> str:
        return f"tcp://{HOST}:{self.client_port}"

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE

    @property
    def config_path(self) -> Path:
        return self.directory / "zoo.cfg"

    @property
    def pid(self) -> int | None:
        """The java process's pid while it runs, else None."""
        return self._process.pid if self.is_running() else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def started(self) -> bool:
        """start() was called and neither stop() nor kill() since (it may have crashed)."""
        return self._process is not None

    def config_text(self) -> str:
        lines = [
            f"tickTime={self.tick_ms}",
            "initLimit=10",
            "syncLimit=5",
            f"dataDir={self.directory / 'data'}",
            f"clientPort={self.client_port}",
            f"clientPortAddress={HOST}",
            "maxClientCnxns=0",
            "admin.enableServer=false",
            "4lw.commands.whitelist=ruok,stat,mntr,srvr",
            "autopurge.snapRetainCount=3",
            "autopurge.purgeInterval=1",
            f"forceSync={'yes' if self.force_sync else 'no'}",
        ]
        lines += [p.server_line for p in self.peers]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Write the config and launch java; returns at once (see wait_ready)."""
        if self.is_running():
            raise ZooKeeperError(f"ZooKeeper node {self.myid} is already running (pid {self.pid})")
        install = self._install or find_install()
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        if self.peers:
            (data / "myid").write_text(f"{self.myid}\n")
        self.config_path.write_text(self.config_text())
        command = [
            install.java, f"-Xmx{self.heap_mb}m", "-XX:+UseSerialGC",
            "-cp", ":".join(install.classpath),
            "-Dzookeeper.admin.enableServer=false",
            f"-Dzookeeper.log.dir={self.directory}",
            MAIN_CLASS, str(self.config_path),
        ]
        self._close_log()
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"--- starting ZooKeeper node {self.myid} at {time.ctime()}\n".encode())
        self._log_file.flush()
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            cwd=self.directory, start_new_session=True, preexec_fn=parent_death_hook(),
        )
        log.info("started ZooKeeper node %s (pid %s) on port %s", self.myid, self._process.pid,
                 self.client_port)

    def mode(self) -> str | None:
        """'standalone', 'leader' or 'follower' when the node serves, else None."""
        return server_mode(self.client_port)

    def is_ready(self) -> bool:
        """Answers ruok and reports a serving mode (a member out of quorum reports none)."""
        try:
            if four_letter(self.client_port, "ruok", timeout=1.0) != "imok":
                return False
        except OSError:
            return False
        return self.mode() in SERVING_MODES

    def check_alive(self) -> None:
        """Raise ZooKeeperError, naming the log file, if the started process has exited."""
        if self._process is not None and self._process.poll() is not None:
            raise ZooKeeperError(
                f"ZooKeeper node {self.myid} exited with code {self._process.returncode} "
                f"while starting: see {self.log_path}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the node serves; raise ZooKeeperError naming the log file if it does not."""
        if self._process is None:
            raise ZooKeeperError(f"ZooKeeper node {self.myid} is not started")
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            if self.is_ready():
                return
            if time.monotonic() >= deadline:
                raise ZooKeeperError(f"ZooKeeper node {self.myid} on port {self.client_port} not "
                                     f"ready after {timeout:g} s: see {self.log_path}")
            time.sleep(0.1)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("ZooKeeper node %s (pid %s) ignored SIGTERM for %g s; killing it",
                            self.myid, self._process.pid, grace)
                self._process.kill()
                self._process.wait()
        log.info("stopped ZooKeeper node %s (exit code %s)", self.myid, self._process.returncode)
        self._forget_process()

    def kill(self) -> None:
        """SIGKILL, as a crash would; data and ports are kept for a later start()."""
        if self._process is None or self._process.poll() is not None:
            raise ZooKeeperError(f"ZooKeeper node {self.myid} is not running")
        self._process.kill()
        self._process.wait()
        log.info("killed ZooKeeper node %s", self.myid)
        self._forget_process()

    def _forget_process(self) -> None:
        self.last_exit_code = self._process.returncode
        self._process = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class ZooKeeperEnsemble(_StartedInContext):
    """One (standalone) or three ZooKeeper nodes under ``directory``/zk-<myid>, ids 1..size."""

    def __init__(self, directory: str | os.PathLike, size: int = 1, *, tick_ms: int = 500,
                 heap_mb: int = 256, force_sync: bool = True,
                 install: ZooKeeperInstall | None = None):
        if size not in (1, 3):
            raise InvalidArgument(f"a local ZooKeeper ensemble has 1 or 3 nodes, not {size}")
        self.directory = Path(directory).resolve()
        self.size = size
        options = dict(tick_ms=tick_ms, heap_mb=heap_mb, force_sync=force_sync, install=install)
        if size == 1:
            self.nodes = [ZooKeeperServer(self.directory / "zk-1", **options)]
        else:
            ports = free_ports(3 * size)
            peers = tuple(Peer(i + 1, *ports[3 * i:3 * i + 3]) for i in range(size))
            self.nodes = [ZooKeeperServer(self.directory / f"zk-{p.myid}", myid=p.myid,
                                          peers=peers, **options) for p in peers]

    def __repr__(self) -> str:
        return f"ZooKeeperEnsemble({self.connect_string!r}, pids={self.pids})"

    @property
    def connect_string(self) -> str:
        return ",".join(node.connect_string for node in self.nodes)

    @property
    def pids(self) -> dict[int, int | None]:
        return {node.myid: node.pid for node in self.nodes}

    def node(self, myid: int) -> ZooKeeperServer:
        for node in self.nodes:
            if node.myid == myid:
                return node
        raise InvalidArgument(f"no ZooKeeper node {myid}: ids are 1..{self.size}")

    def start(self) -> None:
        """Launch every node (not already running); returns at once (see wait_ready)."""
        try:
            for node in self.nodes:
                if not node.is_running():
                    node.start()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 30.0) -> dict[int, str]:
        """Every started node serves (for an ensemble: in a quorum, following or leading), all
        in one look; returns that look's mode of each started node by myid.

        One look at all of them, not one node after the other: while an ensemble elects, a node
        that served a moment ago may be back in the election (no mode) when the last one comes
        up. A node taken down with kill() or stop() is not waited for, so a drill can wait for
        the survivors of a lost node.
        """
        deadline = time.monotonic() + timeout
        while True:
            started = [node for node in self.nodes if node.started]
            for node in started:
                node.check_alive()
            modes = {node.myid: node.mode() for node in started}
            if all(mode in SERVING_MODES for mode in modes.values()):
                return modes
            if time.monotonic() >= deadline:
                waiting = ", ".join(f"{myid} ({mode or 'not serving'})"
                                    for myid, mode in modes.items() if mode not in SERVING_MODES)
                raise ZooKeeperError(f"ZooKeeper node(s) {waiting} not ready after {timeout:g} s:"
                                     f" see {self.directory}")
            time.sleep(0.1)

    def stop(self, grace: float = 10.0) -> None:
        """Stop every node in parallel, so the last ones do not wait out a lost quorum in turn."""
        threads = [threading.Thread(target=node.stop, args=(grace,)) for node in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def kill(self, myid: int) -> None:
        self.node(myid).kill()

    def start_node(self, myid: int) -> None:
        """Start one node again after kill(), with its old data and ports."""
        self.node(myid).start()


def parent_death_hook():
    """A preexec hook asking Linux to SIGTERM the child when its parent dies (None elsewhere).

    Linux sends that signal when the *thread* that forked exits, so the hook is only used from
    the main thread: a node started from a short-lived drill thread must outlive that thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return hook
