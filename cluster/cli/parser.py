"""The ``sluice`` command line: every command, its arguments and the function that runs it.

A bad argument is refused here, in one line, with exit code 2 (``OneLineParser``). Each command
sets ``func`` (what runs it) and ``prepare`` (None, or what builds the settings it runs with
before it starts; a setting refused there is a bad argument too: cluster/cli/exits.py).
"""
from __future__ import annotations

import argparse
import json
import sys

from clients.config import ConsumerConfig, ProducerConfig
from cluster.cli import exits
from coordinator.rebalance_protocols import PROTOCOLS

PRODUCER, CONSUMER = ProducerConfig(), ConsumerConfig()   # the CLI's defaults are the clients'


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line, not a usage block."""

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        sys.exit(exits.USAGE)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number >= 1, got 0")
    return value


def _offset(text: str):
    if text in ("earliest", "latest"):
        return text
    try:
        return _non_negative_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected earliest, latest or a byte offset, got {text!r}") from None


def _acks(text: str):
    """``--acks``: 0, 1 or all (-1 is all, as for the Producer)."""
    if text in ("all", "-1"):
        return "all"
    if text in ("0", "1"):
        return int(text)
    raise argparse.ArgumentTypeError(f"expected 0, 1 or all, got {text!r}")


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _common_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """Options every command takes, before or after the command's name."""
    def default(value):
        return value if defaults else argparse.SUPPRESS
    parser.add_argument("--zookeeper", default=default(None),
                        help="ZooKeeper connect string host:port[,...][/chroot] "
                        "(default: $SLUICE_ZK, else the local cluster in --data-dir)")
    parser.add_argument("--data-dir", default=default(".sluice"),
                        help="local cluster dir (default .sluice)")
    parser.add_argument("--credentials", default=default(None), metavar="PATH",
                        help="key file for a secured cluster (default: $SLUICE_CREDENTIALS, "
                        "else the local cluster's admin key in --data-dir)")
    parser.add_argument("-v", "--verbose", action="store_true", default=default(False),
                        help="log more")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="sluice", description="sluice: a distributed commit log "
                           "(the 2011 Kafka paper) on ZooKeeper and ZeroMQ")
    _common_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    commands.required = True

    def command(subparsers, name, func, help_text, prepare=None):
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        _common_options(sub, defaults=False)
        sub.set_defaults(func=func, prepare=prepare)
        return sub

    from cluster.cli import (acl_commands, cluster_commands, group_commands, key_commands,
                             message_commands,
                             segment_commands, topic_commands, user_commands)

    cluster = commands.add_parser("cluster", help="start, stop and inspect the local cluster")
    cluster_actions = cluster.add_subparsers(dest="action", metavar="ACTION",
                                             parser_class=OneLineParser)
    cluster_actions.required = True
    up = command(cluster_actions, "up", cluster_commands.cluster_up,
                 "start ZooKeeper and the brokers", prepare=cluster_commands.cluster_config)
    up.add_argument("--brokers", type=_positive_int, default=3)
    up.add_argument("--zk-ensemble", type=int, choices=(1, 3), default=1)
    up.add_argument("--replication-factor", type=_positive_int, default=None,
                    help="the cluster's default replication factor for new topics (default: "
                    "keep the cluster's, else 1)")
    up.add_argument("--broker-settings", type=_json_object, default=None, metavar="JSON",
                    help='BrokerConfig settings every broker shares, as a JSON object '
                    '(e.g. \'{"replica_lag_time_max_ms": 5000}\')')
    up.add_argument("--unclean-leader-election", action="store_true",
                    help="let the controller elect an out-of-sync replica when no in-sync one "
                    "is alive (losing what only those had; counted and logged)")
    up.add_argument("--detach", action="store_true", help="run in the background and return "
                    "once the cluster is ready")
    up.add_argument("--workers", type=_non_negative_int, default=0)
    up.add_argument("--topic")
    up.add_argument("--group")
    up.add_argument("--handler", help="module:function run for each message by group workers")
    up.add_argument("--rebalance", choices=PROTOCOLS, default=None,
                    help="group workers' rebalance protocol (default cooperative)")
    up.add_argument("--static", action="store_true", default=None,
                    help="group workers are static members (instance id worker-<n>)")
    up.add_argument("--dashboard-port", type=int, default=8080,
                    help="port of the web dashboard and /metrics (default 8080; 0: any free port)")
    up.add_argument("--no-dashboard", action="store_true",
                    help="run without the sampler, the web dashboard and /metrics")
    up.add_argument("--dashboard-host", default="127.0.0.1", metavar="ADDRESS",
                    help="address of the web dashboard and /metrics (default 127.0.0.1, "
                    "loopback only; any other needs a token: see --dashboard-token-file)")
    up.add_argument("--dashboard-token-file", metavar="PATH",
                    help="file (mode 0600) holding the token the dashboard asks for (default: "
                    "made in <data-dir>/security/dashboard_token when --dashboard-host is "
                    "not loopback)")
    up.add_argument("--kafka-port", type=_non_negative_int, default=0, metavar="BASE",
                    help="Kafka protocol listeners: broker i on BASE + i (default 0: a free "
                    "port each)")
    up.add_argument("--no-kafka", action="store_true",
                    help="run the brokers without Kafka protocol listeners")
    up.add_argument("--secure", action="store_true",
                    help="CURVE on every broker socket with an allow list ('sluice keys'), "
                    "digest ACLs on every ZooKeeper node (with --zookeeper: the digest "
                    "user:password in $SLUICE_ZK_DIGEST), SASL_SSL on the Kafka listeners "
                    "('sluice users')")
    up.add_argument("--kafka-plaintext", action="store_true",
                    help="with --secure, keep the Kafka listeners plaintext (no TLS, no SASL; "
                    "their clients are unauthenticated, so the ACLs deny them everything)")
    command(cluster_actions, "down", cluster_commands.cluster_down, "stop the local cluster")
    status = command(cluster_actions, "status", cluster_commands.cluster_status,
                     "processes of the cluster")
    status.add_argument("--json", action="store_true")

    topics = commands.add_parser("topics", help="create, list and describe topics")
    topic_actions = topics.add_subparsers(dest="action", metavar="ACTION",
                                          parser_class=OneLineParser)
    topic_actions.required = True
    create = command(topic_actions, "create", topic_commands.topics_create, "create a topic")
    create.add_argument("topic")
    create.add_argument("--partitions", type=_positive_int, required=True)
    create.add_argument("--replication-factor", type=_positive_int, default=None,
                        help="copies of each partition on distinct brokers (default: the "
                        "cluster's, set by 'cluster up --replication-factor', else 1)")
    create.add_argument("--min-insync-replicas", type=_positive_int, default=1,
                        help="fewer in-sync replicas refuse acks=all produce (1..R, default 1)")
    create.add_argument("--json", action="store_true")
    listing = command(topic_actions, "list", topic_commands.topics_list, "list topics")
    listing.add_argument("--json", action="store_true")
    describe = command(topic_actions, "describe", topic_commands.topics_describe,
                       "partitions of a topic: leader, replicas, in-sync replicas, leader "
                       "epoch, offsets, high watermark, log end per replica")
    describe.add_argument("topic")
    describe.add_argument("--json", action="store_true")
    alter = command(topic_actions, "alter", topic_commands.topics_alter,
                    "add partitions to a topic (only up; keys then map to new partitions)")
    alter.add_argument("topic")
    alter.add_argument("--partitions", type=_positive_int, required=True,
                       help="the new partition count, more than the topic has")
    alter.add_argument("--json", action="store_true")
    tconfig = command(topic_actions, "config", topic_commands.topics_config,
                      "show or change a topic's own settings (retention.ms, retention.bytes, "
                      "segment.bytes, flush.messages, flush.ms, cleanup.policy, "
                      "min.insync.replicas); brokers apply them without a restart")
    tconfig.add_argument("topic")
    tconfig.add_argument("--set", action="append", metavar="NAME=VALUE",
                         help="override a setting (repeatable)")
    tconfig.add_argument("--unset", action="append", metavar="NAME",
                         help="back to the brokers' setting (repeatable)")
    tconfig.add_argument("--json", action="store_true")
    delete = command(topic_actions, "delete", topic_commands.topics_delete,
                     "delete a topic: its data on every broker, its registry and config "
                     "nodes, and every group's offsets for it")
    delete.add_argument("topic")
    delete.add_argument("--force", action="store_true",
                        help="delete even while producers are connected")
    delete.add_argument("--idle-seconds", type=_non_negative_float, default=30.0,
                        help="producers count as connected while a replica of the topic was "
                        "appended to within this many seconds (default 30)")
    delete.add_argument("--json", action="store_true")

    keys = commands.add_parser("keys", help="key pairs and the allow list of a secured cluster")
    key_actions = keys.add_subparsers(dest="action", metavar="ACTION", parser_class=OneLineParser)
    key_actions.required = True
    kcreate = command(key_actions, "create", key_commands.keys_create,
                      "write a new key pair (principal NAME)")
    kcreate.add_argument("name")
    kcreate.add_argument("--output", metavar="PATH",
                         help="where (default <data-dir>/security/keys/NAME.key)")
    kcreate.add_argument("--json", action="store_true")
    kallow = command(key_actions, "allow", key_commands.keys_allow,
                     "put a key on the allow list (applies without a restart)")
    kallow.add_argument("name")
    kallow.add_argument("--public-key", help="its public key (default: read from its key file)")
    kallow.add_argument("--key-file", metavar="PATH",
                        help="its key file (default <data-dir>/security/keys/NAME.key)")
    krevoke = command(key_actions, "revoke", key_commands.keys_revoke,
                      "take a key off the allow list (applies without a restart)")
    krevoke.add_argument("name")

    users = commands.add_parser("users", help="SASL users of the Kafka listeners (PLAIN, "
                                "SCRAM-SHA-256) of a secured cluster")
    user_actions = users.add_subparsers(dest="action", metavar="ACTION",
                                        parser_class=OneLineParser)
    user_actions.required = True
    uadd = command(user_actions, "add", user_commands.users_add,
                   "add a user or change its password (stored salted and iterated, never as "
                   "given)")
    uadd.add_argument("name")
    upass = uadd.add_mutually_exclusive_group()
    upass.add_argument("--password-file", metavar="PATH",
                       help="read the password from the first line of PATH")
    upass.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of stdin")
    uadd.add_argument("--iterations", type=_positive_int, default=4096,
                      help="SCRAM iterations (default 4096, at least 4096)")
    uremove = command(user_actions, "remove", user_commands.users_remove, "remove a user")
    uremove.add_argument("name")
    ulist = command(user_actions, "list", user_commands.users_list, "the users (names only)")
    ulist.add_argument("--json", action="store_true")

    produce = command(commands, "produce", message_commands.produce,
                      "send lines from stdin as messages")
    produce.add_argument("topic")
    produce.add_argument("--key-separator", help="split each line into key SEP value")
    produce.add_argument("--acks", type=_acks, default=1,
                         help="0: no answer, 1: the leader's append, all: every in-sync replica's")
    produce.add_argument("--batch-size", type=_positive_int, default=PRODUCER.batch_size)
    produce.add_argument("--linger-ms", type=_non_negative_int, default=PRODUCER.linger_ms)
    produce.add_argument("--partition", type=_non_negative_int)
    produce.add_argument("--json", action="store_true")

    consume = command(commands, "consume", message_commands.consume,
                      "print messages of a partition or group")
    consume.add_argument("topic")
    consume.add_argument("--partition", type=_non_negative_int)
    consume.add_argument("--offset", type=_offset, default="earliest")
    consume.add_argument("--group")
    consume.add_argument("--max-messages", type=_positive_int)
    consume.add_argument("--timeout-ms", type=_positive_int)
    consume.add_argument("--max-bytes", type=_positive_int, default=CONSUMER.max_bytes)
    consume.add_argument("--json", action="store_true")

    groups = commands.add_parser("groups", help="consumer groups and their per-partition lag")
    group_actions = groups.add_subparsers(dest="action", metavar="ACTION",
                                          parser_class=OneLineParser)
    group_actions.required = True
    glist = command(group_actions, "list", group_commands.groups_list,
                    "consumer groups and their members")
    glist.add_argument("--json", action="store_true")
    gdescribe = command(group_actions, "describe", group_commands.groups_describe,
                        "per-partition owner, offsets, lag, consume rate and stuck flag")
    gdescribe.add_argument("group")
    gdescribe.add_argument("--interval", type=float, default=2.0,
                           help="seconds between the two samples that give rates (default 2)")
    gdescribe.add_argument("--json", action="store_true")

    acls = commands.add_parser("acl", help="authorization rules: who may produce, consume, "
                               "describe or administer which topics and groups")
    acl_actions = acls.add_subparsers(dest="action", metavar="ACTION", parser_class=OneLineParser)
    acl_actions.required = True
    for name, func, verb in (("add", acl_commands.acl_add, "allow"),
                             ("remove", acl_commands.acl_remove, "no longer allow")):
        change = command(acl_actions, name, func, f"{verb} a principal (a key name, or '*' for "
                         "every authenticated one) operations on a topic, a topic prefix or "
                         "a group")
        change.add_argument("principal")
        change.add_argument("operations", nargs="+", metavar="OPERATION",
                            choices=["produce", "consume", "describe", "admin"],
                            help="produce, consume, describe or admin")
        on = change.add_mutually_exclusive_group(required=True)
        on.add_argument("--topic", help="one topic")
        on.add_argument("--topic-prefix", metavar="PREFIX",
                        help="every topic whose name starts with PREFIX ('' for all)")
        on.add_argument("--group", help="one consumer group (consume or describe)")
        change.add_argument("--json", action="store_true")
    acl_listing = command(acl_actions, "list", acl_commands.acl_list, "the rules, by principal")
    acl_listing.add_argument("principal", nargs="?")
    acl_listing.add_argument("--json", action="store_true")

    from cluster.tools import perf
    perf_parser = commands.add_parser("perf", help="the paper's benchmark: one producer's or "
                                      "one consumer's throughput")
    perf_commands = perf_parser.add_subparsers(dest="action", metavar="ACTION",
                                               parser_class=OneLineParser)
    perf_commands.required = True
    perf_produce = command(perf_commands, "produce", perf.produce_command,
                           "send generated messages; records/s, MB/s, acks=1 latency")
    perf_produce.add_argument("topic")
    perf_produce.add_argument("--messages", type=_positive_int, default=1_000_000)
    perf_produce.add_argument("--size", type=_non_negative_int, default=200,
                              help="value bytes per message (default 200, as in the paper)")
    perf_produce.add_argument("--batch-size", type=_positive_int, default=PRODUCER.batch_size)
    perf_produce.add_argument("--acks", type=_acks, default=0, help="0, 1 or all (default 0)")
    perf_produce.add_argument("--linger-ms", type=_non_negative_int,
                              default=PRODUCER.linger_ms)
    perf_produce.add_argument("--max-in-flight", type=_positive_int,
                              help="acks=1: unanswered requests (default: the Producer's, 32)")
    perf_produce.add_argument("--partition", type=_non_negative_int,
                              help="send every message to this partition (default: random)")
    perf_produce.add_argument("--json", action="store_true")
    perf_consume = command(perf_commands, "consume", perf.consume_command,
                           "read messages of one partition; records/s, MB/s")
    perf_consume.add_argument("topic")
    perf_consume.add_argument("--partition", type=_non_negative_int, default=0)
    perf_consume.add_argument("--messages", type=_positive_int, default=1_000_000)
    perf_consume.add_argument("--offset", type=_offset, default="earliest")
    perf_consume.add_argument("--fetch-size", type=_positive_int, default=1 << 20,
                              help="max bytes per fetch (default 1 MiB, the client default)")
    perf_consume.add_argument("--timeout-ms", type=_positive_int, default=10_000,
                              help="give up when no message came for this long")
    perf_consume.add_argument("--json", action="store_true")

    from cluster.observe import terminal_dashboard
    dash = command(commands, "dashboard", terminal_dashboard.command,
                   "live view of processes, brokers and groups (q or Ctrl-C quits)")
    dash.add_argument("--interval", type=float, default=1.0,
                      help="seconds between refreshes (default 1)")
    dash.add_argument("--url", help="a supervisor's dashboard address (default: the one in "
                      "--data-dir's cluster.json)")
    dash.add_argument("--token-file", metavar="PATH", help="the dashboard's token (default: "
                      "the one in --data-dir's cluster.json, when the dashboard needs one)")
    dash.add_argument("--once", action="store_true", help="print one frame and exit")
    dash.add_argument("--json", action="store_true", help="print the latest snapshot as JSON")

    from cluster.drills import command as drills
    drill = commands.add_parser("drill", help="kill-a-process fault drills with a loss ledger",
                                description="run fault drills against a fresh local cluster (or "
                                "the running one in --data-dir) and report what survived")
    drill.add_argument("name", choices=[*drills.DRILLS, "all"], metavar="NAME",
                       help=f"one of {', '.join(drills.DRILLS)}, or all")
    drill.add_argument("--count", type=_positive_int,
                       help="faults to inject (default: 20 for kill-broker and kill-worker, 5 "
                       "for the others)")
    drill.add_argument("--interval", type=_non_negative_float,
                       help="seconds of steady traffic before each fault (default 2)")
    drill.add_argument("--data-dir", dest="drill_data_dir", default=None, metavar="D",
                       help="drill the cluster running there (default: a fresh one in a temp dir)")
    drill.add_argument("--keep", action="store_true", help="keep a fresh cluster's data dir")
    drill.add_argument("--output", metavar="FILE",
                       help="also write every result to FILE as one JSON list")
    drill.add_argument("--json", action="store_true", help="one JSON object per drill")
    drill.add_argument("--workers", type=_positive_int,
                       help="group workers of a fresh cluster (rolling-restart: 12)")
    drill.add_argument("--partitions", type=_positive_int,
                       help="partitions of the drill topic (rolling-restart: 24)")
    drill.add_argument("--protocol", choices=["eager", "cooperative", "all"],
                       help="the workers' rebalance protocol; all: eager, cooperative and "
                       "cooperative+static one after the other (default: cooperative)")
    drill.add_argument("--static", action="store_true",
                       help="static group members (an instance id per worker slot)")
    drill.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    drill.set_defaults(func=drills.command, prepare=None)

    scrub = command(commands, "scrub", segment_commands.scrub, "CRC-check the segments in the "
                    "local cluster's broker dirs and report each bad message by offset (reads "
                    "files only: safe beside a running broker)")
    scrub.epilog = (f"exit status: 0 when every segment is clean, "
                    f"{segment_commands.SCRUB_FOUND_CORRUPTION} when it found corruption (a "
                    f"corrupt message or a torn tail), 1 on an error such as an unknown topic")
    scrub.add_argument("--topic", help="only this topic's partitions")
    scrub.add_argument("--json", action="store_true")

    dump = command(commands, "dump-log", segment_commands.dump_log, "decode a segment file")
    dump.add_argument("segment")
    dump.add_argument("--json", action="store_true")
    dump.add_argument("--preview", type=_non_negative_int, default=40,
                      help="characters of each value to show (default 40)")
    return parser

