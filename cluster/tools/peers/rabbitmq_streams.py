"""RabbitMQ streams (Debian's rabbitmq-server with its stream plugin, rstream): a stream queue
is RabbitMQ's append-only log, the paper's model, and rstream (on PyPI) speaks its binary
protocol; a classic durable queue through pika would measure a queue, not a log.

A node of our own: its data, logs, config, Erlang cookie and epmd on free ports in the temp
dir. Rows, each on a fresh stream: batch 1 without acknowledgement is rstream's ``send``, one
call per message (rstream buffers sends and publishes them in frames: its own coalescing);
batch 50 is ``send_batch`` of 50 messages, one publish frame; batch 50 acknowledged is
``send_batch`` with a confirm callback, at most 32 batches unconfirmed. Publish confirms come
in order once the stream has written the messages, so the unacknowledged clocks stop at the
confirm of the last message sent (the only one asked for). The consumer subscribes from the
first offset with 1,000-message credit's worth of chunks; it counts what it was handed. Disk:
the growth of the node's data dir while the batch-50 stream was written.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path

from cluster.tools.peers import harness

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
USER = PASSWORD = "guest"


class System:
    name = "RabbitMQ streams"
    client = "rstream: send (no ack), send_batch (batch 50), confirm callbacks (ack); subscribe"

    def __init__(self, workdir: Path | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="peers-rabbitmq-"))
        self.process: subprocess.Popen | None = None
        self.loop = asyncio.new_event_loop()
        self._disk: dict[str, int] = {}
        self.producer = None

    @staticmethod
    def missing() -> str | None:
        return None if os.access(SERVER, os.X_OK) else "rabbitmq-server is not installed"

    def _environment(self) -> dict:
        self.port, self.stream_port = harness.free_port(), harness.free_port()
        self.epmd_port, dist_port = harness.free_port(), harness.free_port()
        (self.workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"stream.listeners.tcp.default = 127.0.0.1:{self.stream_port}\n"
            "stream.advertised_host = 127.0.0.1\n"
            f"stream.advertised_port = {self.stream_port}\n")
        (self.workdir / "enabled_plugins").write_text("[rabbitmq_stream].\n")
        self.node = f"peers{self.port}@localhost"
        return {**os.environ, "HOME": str(self.workdir), "RABBITMQ_NODENAME": self.node,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(dist_port),
                "ERL_EPMD_PORT": str(self.epmd_port),
                "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(self.workdir / "data"),
                "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
                "RABBITMQ_PID_FILE": str(self.workdir / "rabbitmq.pid"),
                "RABBITMQ_CONF_ENV_FILE": str(self.workdir / "rabbitmq-env.conf")}

    def start(self) -> None:
        from rstream import Producer
        self.env = self._environment()
        with open(self.workdir / "server.out", "ab") as out:
            self.process = subprocess.Popen([SERVER], stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, env=self.env,
                                            cwd=self.workdir)
        harness.wait_port(self.stream_port, self.process, "rabbitmq-server",
                          timeout=2 * harness.START_TIMEOUT_S)
        self.producer = Producer("127.0.0.1", self.stream_port, username=USER, password=PASSWORD,
                                 default_batch_publishing_delay=0.001)
        self.loop.run_until_complete(self.producer.start())

    def stop(self) -> None:
        try:
            if self.producer is not None:
                self.loop.run_until_complete(self.producer.close())
        finally:
            self.loop.close()
            harness.stop_process(self.process)
            if getattr(self, "env", None):     # the epmd this node started, on its own port
                subprocess.run(["epmd", "-kill"], env=self.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False)

    def produce(self, stream: str, messages: int, value: bytes, batch: int,
                acknowledged: bool) -> float:
        return self.loop.run_until_complete(
            self._produce(stream, messages, value, batch, acknowledged))

    async def _produce(self, stream, messages, value, batch, acknowledged) -> float:
        producer = self.producer
        await producer.create_stream(stream)
        data = self.workdir / "data"
        before = harness.tree_bytes(data)
        done = asyncio.Event()
        confirmed = [0]
        window = asyncio.Semaphore(harness.WINDOW_BATCHES)

        refused = []        # a callback's exception would stay inside rstream: say it here

        def last_confirmed(status) -> None:
            if not status.is_confirmed:
                refused.append(status)
            done.set()

        def batch_confirmed(status) -> None:
            if not status.is_confirmed:
                refused.append(status)
                done.set()
            confirmed[0] += 1
            if confirmed[0] % batch == 0 or confirmed[0] == messages:
                window.release()
            if confirmed[0] == messages:
                done.set()

        started = time.perf_counter()
        if batch == 1:
            send = producer.send
            for _ in range(messages - 1):
                await send(stream, value)
            await send(stream, value, on_publish_confirm=last_confirmed)
        else:
            whole = [value] * batch
            for sent in range(0, messages, batch):
                n = min(batch, messages - sent)
                chunk = whole if n == batch else [value] * n
                if acknowledged:
                    await window.acquire()
                    await producer.send_batch(stream, chunk, on_publish_confirm=batch_confirmed)
                elif sent + n < messages:
                    await producer.send_batch(stream, chunk)
                else:
                    await producer.send_batch(stream, chunk[:-1] or [value])
                    await producer.send_batch(stream, [value],
                                              on_publish_confirm=last_confirmed)
        try:
            await asyncio.wait_for(done.wait(), harness.STORED_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise harness.PeerError(f"rabbitmq did not confirm {stream}'s last message within "
                                    f"{harness.STORED_TIMEOUT_S:g} s") from None
        elapsed = time.perf_counter() - started
        if refused:
            raise harness.PeerError(f"rabbitmq refused {len(refused)} publish(es) to {stream}")
        self._disk[stream] = harness.settled_bytes(data) - before
        return elapsed

    def consume(self, stream: str, messages: int) -> float:
        return self.loop.run_until_complete(self._consume(stream, messages))

    async def _consume(self, stream: str, messages: int) -> float:
        from rstream import Consumer, ConsumerOffsetSpecification, OffsetType
        consumer = Consumer("127.0.0.1", self.stream_port, username=USER, password=PASSWORD)
        await consumer.start()
        count = [0]
        done = asyncio.Event()

        def handle(message, context) -> None:
            count[0] += 1
            if count[0] >= messages:
                done.set()

        try:
            started = time.perf_counter()
            await consumer.subscribe(stream, handle, decoder=bytes,
                                     offset_specification=ConsumerOffsetSpecification(
                                         OffsetType.FIRST, None))
            try:
                await asyncio.wait_for(done.wait(), harness.STORED_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise harness.PeerError(f"rabbitmq delivered {count[0]} of {messages} from "
                                        f"{stream}") from None
            elapsed = time.perf_counter() - started
        finally:
            await consumer.close()
        return elapsed

    def disk_bytes(self, stream: str) -> int:
        return self._disk[stream]
