"""NATS JetStream (Debian's nats-server -js, nats-py): file storage, the server's default
asynchronous flushing.

Rows, each on a fresh stream capturing one subject: batch 1 without acknowledgement is core
publish, one call per message (nats-py coalesces pending publishes into one socket write: the
issue's comparison); nats-py has no batch of its own beyond that coalescing, so batch 50
without acknowledgement is the same core publish (letting the loop run after every 50 made
smaller writes and a lower figure); batch 50 acknowledged is JetStream ``publish_async``
with at most 32 x 50 acknowledgements pending, all awaited at the end. The unacknowledged
clocks stop when the stream's message count (stream info) reaches N. The consumer is a pull
subscription with no per-message acknowledgement (a log reader), fetching 1,000 messages per
pull. Disk: the growth of the store directory while
the batch-50 stream was written, once its files stopped changing.
"""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from cluster.tools.peers import harness

SERVER = "nats-server"


class System:
    name = "NATS JetStream"
    client = "nats-py: core publish (no ack), JetStream publish_async (ack), pull fetch"

    def __init__(self, workdir: Path | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="peers-nats-"))
        self.process: subprocess.Popen | None = None
        self.loop = asyncio.new_event_loop()
        self._disk: dict[str, int] = {}

    @staticmethod
    def missing() -> str | None:
        return None if shutil.which(SERVER) else f"{SERVER} is not installed"

    def start(self) -> None:
        import nats
        self.port = harness.free_port()
        self.process = subprocess.Popen(
            [SERVER, "-js", "-sd", str(self.workdir / "store"), "-a", "127.0.0.1",
             "-p", str(self.port), "-l", str(self.workdir / "nats.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_port(self.port, self.process, SERVER)
        self.nc = self.loop.run_until_complete(nats.connect(f"nats://127.0.0.1:{self.port}"))
        self.js = self.nc.jetstream(
            publish_async_max_pending=harness.WINDOW_BATCHES * 50)

    def stop(self) -> None:
        try:
            if getattr(self, "nc", None) is not None:
                self.loop.run_until_complete(self.nc.close())
        finally:
            self.loop.close()
            harness.stop_process(self.process)

    def produce(self, stream: str, messages: int, value: bytes, batch: int,
                acknowledged: bool) -> float:
        return self.loop.run_until_complete(
            self._produce(stream, messages, value, batch, acknowledged))

    async def _produce(self, stream, messages, value, batch, acknowledged) -> float:
        from nats.js.api import StorageType, StreamConfig
        await self.js.add_stream(StreamConfig(name=stream, subjects=[stream],
                                              storage=StorageType.FILE))
        before = harness.tree_bytes(self.workdir / "store")
        started = time.perf_counter()
        if acknowledged:
            publish = self.js.publish_async
            for _ in range(messages):
                await publish(stream, value)
            await self.js.publish_async_completed()
        else:
            publish = self.nc.publish
            for _ in range(messages):
                await publish(stream, value)
            await self.nc.flush()
            await self._wait_held(stream, messages)
        elapsed = time.perf_counter() - started
        if acknowledged:
            await self._wait_held(stream, messages)
        self._disk[stream] = harness.settled_bytes(self.workdir / "store") - before
        return elapsed

    async def _wait_held(self, stream: str, messages: int) -> None:
        deadline = time.monotonic() + harness.STORED_TIMEOUT_S
        while (await self.js.stream_info(stream)).state.messages < messages:
            if time.monotonic() > deadline:
                raise harness.PeerError(f"nats did not hold {messages} messages in {stream}")
            await asyncio.sleep(0.002)

    def consume(self, stream: str, messages: int) -> float:
        return self.loop.run_until_complete(self._consume(stream, messages))

    async def _consume(self, stream: str, messages: int) -> float:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        subscription = await self.js.pull_subscribe(
            stream, durable=f"{stream}-reader", stream=stream,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL))
        count = nbytes = 0
        started = time.perf_counter()
        while count < messages:
            batch = await subscription.fetch(min(harness.PULL_MESSAGES, messages - count),
                                             timeout=10)
            for message in batch:
                nbytes += len(message.data)
            count += len(batch)
        elapsed = time.perf_counter() - started
        await subscription.unsubscribe()
        return elapsed

    def disk_bytes(self, stream: str) -> int:
        return self._disk[stream]
