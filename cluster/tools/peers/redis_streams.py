"""Redis Streams (Debian's redis-server, redis-py): appendonly yes, appendfsync everysec.

Rows: batch 1 without acknowledgement is ``CLIENT REPLY OFF`` then one XADD per socket write
(Redis's fire-and-forget); batch 50 is 50 packed XADDs per write, replies off; batch 50
acknowledged is the same writes with replies on, read once 32 batches are unanswered (a
pipeline with the sluice Producer's window). The unacknowledged clocks stop when XLEN, polled
on a second connection, reaches N. The consumer reads with XRANGE COUNT 1000 from the last id
seen. Disk: the growth of the append-only file while the batch-50 stream was written, with
the automatic AOF rewrite off so a rewrite cannot shrink the file mid-row (a rewrite would store
the streams as listpacks, LZF-compressing the one value sent again and again, which says
nothing about a log of distinct messages).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections import deque
from pathlib import Path

from cluster.tools.peers import harness

SERVER = "redis-server"


class System:
    name = "Redis Streams"
    client = "redis-py: XADD with CLIENT REPLY OFF (no ack) or pipelined replies (ack); XRANGE"

    def __init__(self, workdir: Path | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="peers-redis-"))
        self.process: subprocess.Popen | None = None
        self._disk: dict[str, int] = {}

    @staticmethod
    def missing() -> str | None:
        return None if shutil.which(SERVER) else f"{SERVER} is not installed"

    def start(self) -> None:
        import redis
        self.port = harness.free_port()
        self.process = subprocess.Popen(
            [SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--auto-aof-rewrite-percentage", "0",
             "--daemonize", "no", "--logfile", str(self.workdir / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_port(self.port, self.process, SERVER)
        self.redis = redis.Redis(port=self.port)

    def stop(self) -> None:
        harness.stop_process(self.process)

    def produce(self, stream: str, messages: int, value: bytes, batch: int,
                acknowledged: bool) -> float:
        import redis
        from time import perf_counter
        before = harness.tree_bytes(self.workdir)
        conn = redis.Connection(port=self.port)
        conn.connect()
        try:
            command = ("XADD", stream, "*", "v", value)
            pack = conn.pack_command
            send = conn.send_packed_command
            if batch == 1 and not acknowledged:
                conn.send_command("CLIENT", "REPLY", "OFF")
                started = perf_counter()
                for _ in range(messages):
                    send(pack(*command), check_health=False)
                self._wait_length(stream, messages)
            else:
                if not acknowledged:
                    conn.send_command("CLIENT", "REPLY", "OFF")
                whole = conn.pack_commands([command] * batch)
                unanswered: deque[int] = deque()
                started = perf_counter()
                done = 0
                while done < messages:
                    n = min(batch, messages - done)
                    send(whole if n == batch else conn.pack_commands([command] * n),
                         check_health=False)
                    done += n
                    if acknowledged:
                        unanswered.append(n)
                        if len(unanswered) > harness.WINDOW_BATCHES:
                            self._read_replies(conn, unanswered.popleft())
                while unanswered:
                    self._read_replies(conn, unanswered.popleft())
                if not acknowledged:
                    self._wait_length(stream, messages)
            elapsed = perf_counter() - started
        finally:
            conn.disconnect()
        self._disk[stream] = harness.settled_bytes(self.workdir) - before
        return elapsed

    @staticmethod
    def _read_replies(conn, count: int) -> None:
        for _ in range(count):
            reply = conn.read_response()
            if not reply:
                raise harness.PeerError(f"redis refused an XADD: {reply!r}")

    def _wait_length(self, stream: str, messages: int) -> None:
        harness.wait_until(lambda: self.redis.xlen(stream) >= messages,
                           f"redis did not hold {messages} messages in {stream}")

    def consume(self, stream: str, messages: int) -> float:
        from time import perf_counter
        xrange = self.redis.xrange
        count = nbytes = 0
        start = "-"
        started = perf_counter()
        while count < messages:
            entries = xrange(stream, start, "+", count=harness.PULL_MESSAGES)
            if not entries:
                raise harness.PeerError(f"redis returned {count} of {messages} from {stream}")
            for _, fields in entries:
                nbytes += len(fields[b"v"])
            count += len(entries)
            start = b"(" + entries[-1][0]
        elapsed = perf_counter() - started
        if count != messages:
            raise harness.PeerError(f"redis returned {count} messages, {messages} were sent")
        return elapsed

    def disk_bytes(self, stream: str) -> int:
        return self._disk[stream]
