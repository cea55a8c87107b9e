"""``sluice produce`` and ``sluice consume``: lines from stdin in, messages out as lines.

``consume --group`` commits exactly what it printed: a message counts as processed once its line
reached stdout, never the rest of a polled batch, so the next run of the group starts at the
next message.
"""
from __future__ import annotations

import base64
import json
import sys
import time

from cluster.cli.output import err, print_json
from coordinator.errors import InvalidArgument


def produce(args) -> int:
    from clients.producer import Producer
    separator = args.key_separator.encode() if args.key_separator else None
    count = 0
    with Producer(args.zookeeper, batch_size=args.batch_size, linger_ms=args.linger_ms,
                  acks=args.acks, data_dir=args.data_dir) as producer:
        for line in sys.stdin.buffer:
            line = line.rstrip(b"\r\n")
            key = None
            if separator is not None:
                if separator not in line:
                    raise InvalidArgument(f"line {count + 1} has no key separator "
                                          f"{args.key_separator!r}")
                key, line = line.split(separator, 1)
            producer.send(args.topic, line, key=key, partition=args.partition)
            count += 1
        producer.flush()
        acked, dropped = producer.acked, producer.dropped
    summary = {"topic": args.topic, "messages": count, "acks": args.acks,
               "acked": acked if args.acks else None, "dropped": dropped}
    if args.json:
        print_json(summary)
    else:
        detail = f", {acked} acknowledged" if args.acks else ""
        err.print(f"produced {count} message(s) to {args.topic}{detail}")
    return 0


def consume(args) -> int:
    if (args.partition is None) == (args.group is None):
        raise InvalidArgument("give either --partition (with --offset) or --group")
    if args.group is not None:
        return _consume_group(args)
    from clients.simple_consumer import SimpleConsumer
    consumer = SimpleConsumer(args.topic, args.partition, args.offset, args.zookeeper,
                              max_bytes=args.max_bytes, timeout_ms=args.timeout_ms,
                              max_wait_ms=min(500, args.timeout_ms or 500),
                              data_dir=args.data_dir)
    try:
        _print_messages(consumer, args)
    finally:
        consumer.close()
    return 0


def _consume_group(args) -> int:
    """Print the group's messages and commit exactly what was printed: a message counts once
    its line is flushed to stdout (every second and at the end, also on Ctrl-C or a closed
    pipe), never the rest of a polled batch."""
    from clients.consumer import Consumer
    consumer = Consumer([args.topic], args.group, args.zookeeper, max_bytes=args.max_bytes,
                        data_dir=args.data_dir, auto_commit_ms=None)
    printed = _Printed(consumer)
    try:
        _print_messages(_until_idle(consumer, args.timeout_ms), args, printed.note)
    finally:
        try:
            printed.commit()
        finally:
            consumer.close()
    return 0


class _Printed:
    """The last message printed, committed once stdout has it."""

    def __init__(self, consumer, every_s: float = 1.0):
        self.consumer = consumer
        self.every_s = every_s
        self.last = None
        self.next_commit = time.monotonic() + every_s

    def note(self, m) -> None:
        self.last = m
        if time.monotonic() >= self.next_commit:
            self.commit()

    def commit(self) -> None:
        self.next_commit = time.monotonic() + self.every_s
        if self.last is not None:
            sys.stdout.flush()
            self.consumer.commit(self.last)


def _until_idle(consumer, timeout_ms):
    """A group consumer's messages until none came for timeout_ms (forever when None)."""
    last = time.monotonic()
    while True:
        batch = consumer.poll(200)
        for m in batch:
            yield m
        if batch:
            last = time.monotonic()
        elif timeout_ms is not None and (time.monotonic() - last) * 1000 >= timeout_ms:
            return


def _print_messages(messages, args, on_printed=None) -> None:
    """One line per message until --max-messages; ``on_printed(m)`` after each line."""
    printed = 0
    write = sys.stdout.write
    for m in messages:
        if args.json:
            write(json.dumps(message_json(m)) + "\n")
        else:
            write(m.value.decode("utf-8", "replace") + "\n")
        printed += 1
        if on_printed is not None:
            on_printed(m)
        if args.max_messages is not None and printed >= args.max_messages:
            break
    sys.stdout.flush()


def message_json(m) -> dict:
    """One consumed message as INTERFACE.md shows it: text where it decodes, else base64."""
    value = {"topic": m.topic, "partition": m.partition, "offset": m.offset,
             "next_offset": m.next_offset}
    for name, data in (("key", m.key), ("value", m.value)):
        if data is None:
            value[name] = None
            continue
        try:
            value[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            value[f"{name}_b64"] = base64.b64encode(data).decode()
    return value
