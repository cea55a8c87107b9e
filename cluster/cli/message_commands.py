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
from coordinator.errors import InvalidArgument, MessageTooLarge, SluiceError


class BadLine(SluiceError):
    """``produce`` met a line it cannot send (no key separator, too large) and stopped there;
    the message says how far it got, so a person knows what is stored."""


def produce(args) -> int:
    """Send stdin's lines. A bad line (no key separator; key plus value over the brokers'
    ``max_message_bytes``, which they register, so the producer refuses it before it leaves)
    stops the command after what came before it was sent and answered, and says so; with
    ``--skip-bad-lines`` it is skipped and counted."""
    from clients.producer import Producer
    from clients.config import ProducerConfig
    separator = args.key_separator.encode() if args.key_separator else None
    limit = _brokers_message_limit(args) or ProducerConfig().max_message_bytes
    count = 0
    skipped: list[int] = []
    with Producer(args.zookeeper, batch_size=args.batch_size, linger_ms=args.linger_ms,
                  acks=args.acks, data_dir=args.data_dir, audit=args.audit,
                  audit_window_ms=args.audit_window_ms,
                  max_message_bytes=limit) as producer:
        for number, line in enumerate(sys.stdin.buffer, 1):
            line = line.rstrip(b"\r\n")
            key, bad = None, None
            if separator is not None:
                if separator in line:
                    key, line = line.split(separator, 1)
                else:
                    bad = f"no key separator {args.key_separator!r}"
            if bad is None:
                try:
                    producer.send(args.topic, line, key=key, partition=args.partition)
                    count += 1
                    continue
                except MessageTooLarge:
                    bad = (f"{len(line) + len(key or b'')} bytes of key and value, over the "
                           f"brokers' max_message_bytes of {limit}")
            if not args.skip_bad_lines:
                producer.flush()
                raise BadLine(f"line {number}: {bad}; stopped there: {_so_far(count, producer)}"
                              f" (--skip-bad-lines skips such lines)")
            skipped.append(number)
        producer.flush()
        acked, dropped = producer.acked, producer.dropped
    summary = {"topic": args.topic, "messages": count, "acks": args.acks,
               "acked": acked if args.acks else None, "dropped": dropped,
               "skipped": len(skipped), "skipped_lines": skipped[:SKIPPED_SHOWN]}
    if args.json:
        print_json(summary)
    else:
        detail = f", {acked} acknowledged" if args.acks else ""
        if skipped:
            shown = ", ".join(map(str, skipped[:SKIPPED_SHOWN]))
            detail += (f"; skipped {len(skipped)} bad line(s) (line {shown}"
                       f"{', ...' if len(skipped) > SKIPPED_SHOWN else ''})")
        err.print(f"produced {count} message(s) to {args.topic}{detail}")
    return 0


SKIPPED_SHOWN = 10    # line numbers of skipped lines shown (the count is always whole)


def _so_far(count: int, producer) -> str:
    if producer.acks == 0:
        return f"the {count} line(s) before it were sent (acks=0: not acknowledged)"
    return f"the {count} line(s) before it were sent and {producer.acked} acknowledged"


def _brokers_message_limit(args) -> int | None:
    """The largest message every live broker takes, from their registrations (None: none says
    so, as a broker from before they did)."""
    from kazoo.exceptions import NoNodeError

    from coordinator import paths, zk
    from coordinator.registry import BrokerInfo, message_limit
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
        brokers = {}
        try:
            ids = client.get_children(paths.BROKER_IDS)
        except NoNodeError:
            ids = []
        for child in ids:
            try:
                brokers[int(child)] = BrokerInfo.from_json(int(child),
                                                           client.get(paths.broker(child))[0])
            except NoNodeError:
                continue
        return message_limit(brokers)
    finally:
        client.stop()
        client.close()


def consume(args) -> int:
    if (args.partition is None) == (args.group is None):
        raise InvalidArgument("give either --partition (with --offset) or --group")
    if args.group is not None:
        return _consume_group(args)
    if args.audit:
        raise InvalidArgument("--audit counts what a group commits: give --group")
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
    pipe), never the rest of a polled batch. With ``--audit`` the consumer counts what those
    commits cover (clients/audit.py) and publishes the counts when it closes, or as windows
    close."""
    from clients.consumer import Consumer
    consumer = Consumer([args.topic], args.group, args.zookeeper, max_bytes=args.max_bytes,
                        data_dir=args.data_dir, auto_commit_ms=None, audit=args.audit,
                        audit_window_ms=args.audit_window_ms)
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
    """Per partition, the end of the last message printed, committed once stdout has it: every
    partition's, not only the partition of the last line (whose commit would leave the others'
    printed lines to be printed again by the group's next run)."""

    def __init__(self, consumer, every_s: float = 1.0):
        self.consumer = consumer
        self.every_s = every_s
        self.ends: dict[tuple[str, int], int] = {}
        self.next_commit = time.monotonic() + every_s

    def note(self, m) -> None:
        self.ends[(m.topic, m.partition)] = m.next_offset
        if time.monotonic() >= self.next_commit:
            self.commit()

    def commit(self) -> None:
        """Commit what was printed of the partitions the consumer still owns; a partition
        revoked since the last commit is left out (commit refuses it), and its next owner
        prints its lines since then again: at least once, as before."""
        self.next_commit = time.monotonic() + self.every_s
        if self.ends:
            sys.stdout.flush()
            owned = set(self.consumer.assignment())
            ends, self.ends = self.ends, {}
            mine = {tp: end for tp, end in ends.items() if tp in owned}
            if mine:
                self.consumer.commit(mine)


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
    """One consumed message as ``--json`` prints it: text where it decodes, else base64."""
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
