"""``make bench-peers``: sluice and its peers side by side, one at a time, through one harness.

Every system (sluice, Redis Streams, NATS JetStream, RabbitMQ streams) is a module here with the
same interface, a ``System`` (see ``harness.System``): start with its data on disk in a temp dir
on free ports, run the rows, stop. The rows, 200-byte values, each on a fresh stream:

    producer  batch 1, no acknowledgement
    producer  batch 50, no acknowledgement (the system's own batching)
    producer  batch 50, acknowledged (up to 32 batches unacknowledged, the sluice Producer's window)
    consumer  ~1,000 messages per pull, from the batch-50 stream
    disk      bytes per message beyond the value, from the batch-50 stream

A peer's produce clock stops only when its broker holds every message (XLEN, stream info, the
last publish confirm), so a client's buffering cannot inflate a figure. ``ceilings`` measures,
with no broker, what bare Python allows here. ``run`` runs everything and writes
``.bench/peers.json``; ``report`` is the pure part (medians, best peer, ratios, targets, table).
"""
