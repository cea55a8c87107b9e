"""The ``sluice`` command line: every command, its arguments and the function that runs it.

A bad argument is refused here, in one line, with exit code 2 (``OneLineParser``); topic and
group names are checked here too. Each command sets ``func`` (what runs it) and ``prepare``
(None, or what builds the settings it runs with before it starts; a setting refused there is a
bad argument too: cluster/cli/exits.py). Every option has help text that shows its default
(tests/cluster/cli/test_help.py walks this tree).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from clients.config import ConsumerConfig, ProducerConfig
from cluster.cli import exits
from coordinator import paths
from coordinator.errors import InvalidArgument
from coordinator.rebalance_protocols import PROTOCOLS
from coordinator.zk import DEFAULT_DATA_DIR

PRODUCER, CONSUMER = ProducerConfig(), ConsumerConfig()   # the CLI's defaults are the clients'


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line, not a usage block."""

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        sys.exit(exits.USAGE)


def _int_at_least(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected a number >= {least}, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _datetime(text: str) -> int:
    """``--to-datetime``: ISO 8601 as ms since the epoch."""
    from cluster.cli.offset_reset import parse_datetime
    try:
        return parse_datetime(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _since(text: str) -> int:
    """``audit --since``: a span back from now or ISO 8601, as ms since the epoch."""
    from cluster.cli.audit_commands import parse_since
    try:
        return parse_since(text, int(time.time() * 1000))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def _name_of(kind: str):
    """An argument type for a topic or group name, checked as ZooKeeper will need it."""
    def check(text: str) -> str:
        try:
            return paths.check_name(kind, text)
        except InvalidArgument as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    check.__name__ = f"{kind} name"
    return check


_topic = _name_of("topic")
_group = _name_of("group")


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
    parser.add_argument("--data-dir", default=default(DEFAULT_DATA_DIR),
                        help="local cluster dir (default "
                        f"{'%(default)s' if defaults else DEFAULT_DATA_DIR})")
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

    def json_flag(sub, what):
        sub.add_argument("--json", action="store_true", help=f"print {what} as JSON")

    from coordinator import backlog_protection
    from cluster.cli import (acl_commands, cluster_commands, group_commands, key_commands,
                             message_commands,
                             segment_commands, topic_commands, user_commands)

    cluster = commands.add_parser("cluster", help="start, stop and inspect the local cluster")
    cluster_actions = cluster.add_subparsers(dest="action", metavar="ACTION",
                                             parser_class=OneLineParser)
    cluster_actions.required = True
    up = command(cluster_actions, "up", cluster_commands.cluster_up,
                 "start ZooKeeper and the brokers", prepare=cluster_commands.cluster_config)
    up.add_argument("--brokers", type=_positive_int, default=3,
                    help="broker processes (default %(default)s)")
    up.add_argument("--zk-ensemble", type=int, choices=(1, 3), default=1,
                    help="embedded ZooKeeper nodes: 1, or a 3-node ensemble that survives one "
                    "node's loss (default %(default)s; not with --zookeeper)")
    up.add_argument("--replication-factor", type=_positive_int, default=None,
                    help="the cluster's default replication factor for new topics (default: "
                    "keep the cluster's, else 1)")
    up.add_argument("--broker-settings", type=_json_object, default=None, metavar="JSON",
                    help='BrokerConfig settings every broker shares, as a JSON object '
                    '(e.g. \'{"replica_lag_time_max_ms": 5000}\')')
    up.add_argument("--config", metavar="FILE",
                    help="the cluster's settings file: key=value lines (as Kafka's "
                    "server.properties) with keys broker.*, log.*, worker.*, consumer.*")
    up.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="one setting as in --config, over the file's (repeatable)")
    up.add_argument("--unclean-leader-election", action="store_true",
                    help="let the controller elect an out-of-sync replica when no in-sync one "
                    "is alive (losing what only those had; counted and logged)")
    up.add_argument("--detach", action="store_true", help="run in the background and return "
                    "once the cluster is ready")
    up.add_argument("--workers", type=_non_negative_int, default=0,
                    help="consumer-group worker processes, supervised like the brokers "
                    "(default %(default)s; with --topic and --group)")
    up.add_argument("--topic", type=_topic, help="the topic the group workers read")
    up.add_argument("--group", type=_group, help="the consumer group the workers form")
    up.add_argument("--handler", help="module:function run for each message by group workers "
                    "(default: the loader, hourly files in <data-dir>/loaded/<group>/)")
    up.add_argument("--rebalance", choices=PROTOCOLS, default=None,
                    help="group workers' rebalance protocol (default cooperative)")
    up.add_argument("--static", action="store_true", default=None,
                    help="group workers are static members (instance id worker-<n>)")
    up.add_argument("--dashboard-port", type=int, default=8080,
                    help="port of the web dashboard and /metrics (default %(default)s; 0: any "
                    "free port)")
    up.add_argument("--no-dashboard", action="store_true",
                    help="run without the sampler, the web dashboard and /metrics")
    up.add_argument("--dashboard-host", default="127.0.0.1", metavar="ADDRESS",
                    help="address of the web dashboard and /metrics (default %(default)s, "
                    "loopback only; any other needs a token: see --dashboard-token-file)")
    up.add_argument("--dashboard-token-file", metavar="PATH",
                    help="file (mode 0600) holding the token the dashboard asks for (default: "
                    "made in <data-dir>/security/dashboard_token when --dashboard-host is "
                    "not loopback)")
    up.add_argument("--kafka-port", type=_non_negative_int, default=0, metavar="BASE",
                    help="Kafka protocol listeners: broker i on BASE + i (default %(default)s: a "
                    "free port each)")
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
    command(cluster_actions, "down", cluster_commands.cluster_down, "stop the local cluster "
            "(none running: nothing to do)")
    status = command(cluster_actions, "status", cluster_commands.cluster_status,
                     "processes of the cluster (exit status 3 when none runs in --data-dir)")
    json_flag(status, "the status (zookeeper, dashboard, kafka_bootstrap, processes)")

    topics = commands.add_parser("topics", help="create, list and describe topics")
    topic_actions = topics.add_subparsers(dest="action", metavar="ACTION",
                                          parser_class=OneLineParser)
    topic_actions.required = True
    create = command(topic_actions, "create", topic_commands.topics_create, "create a topic")
    create.add_argument("topic", type=_topic, help="its name: 1-249 of a-z A-Z 0-9 . _ -")
    create.add_argument("--partitions", type=_positive_int, required=True,
                        help="how many partitions (required; more can be added later with "
                        "'topics alter')")
    create.add_argument("--replication-factor", type=_positive_int, default=None,
                        help="copies of each partition on distinct brokers (default: the "
                        "cluster's, set by 'cluster up --replication-factor', else 1)")
    create.add_argument("--min-insync-replicas", type=_positive_int, default=1,
                        help="fewer in-sync replicas refuse acks=all produce (1..R, default "
                        "%(default)s)")
    json_flag(create, "the topic's placement")
    listing = command(topic_actions, "list", topic_commands.topics_list, "list topics")
    json_flag(listing, "the topics and their partition counts")
    describe = command(topic_actions, "describe", topic_commands.topics_describe,
                       "partitions of a topic: leader, replicas, in-sync replicas, leader "
                       "epoch, offsets, high watermark, log end per replica")
    describe.add_argument("topic", type=_topic, help="the topic")
    json_flag(describe, "the partitions")
    alter = command(topic_actions, "alter", topic_commands.topics_alter,
                    "add partitions to a topic (only up; keys then map to new partitions)")
    alter.add_argument("topic", type=_topic, help="the topic")
    alter.add_argument("--partitions", type=_positive_int, required=True,
                       help="the new partition count, more than the topic has (required)")
    json_flag(alter, "the new count and the added partitions' replicas")
    tconfig = command(topic_actions, "config", topic_commands.topics_config,
                      "show or change a topic's own settings (retention.ms, retention.bytes, "
                      "segment.bytes, flush.messages, flush.ms, cleanup.policy, "
                      "delete.retention.ms, min.cleanable.dirty.ratio, min.insync.replicas); "
                      "brokers apply them without a restart")
    tconfig.add_argument("topic", type=_topic, help="the topic")
    tconfig.add_argument("--set", action="append", metavar="NAME=VALUE",
                         help="override a setting (repeatable)")
    tconfig.add_argument("--unset", action="append", metavar="NAME",
                         help="back to the brokers' setting (repeatable)")
    json_flag(tconfig, "the topic's own settings")
    delete = command(topic_actions, "delete", topic_commands.topics_delete,
                     "delete a topic: its data on every broker, its registry and config "
                     "nodes, and every group's offsets for it")
    delete.add_argument("topic", type=_topic, help="the topic")
    delete.add_argument("--force", action="store_true",
                        help="delete even while producers are connected")
    delete.add_argument("--idle-seconds", type=_non_negative_float, default=30.0,
                        help="producers count as connected while a replica of the topic was "
                        "appended to within this many seconds (default %(default)g)")
    json_flag(delete, "what was deleted")

    keys = commands.add_parser("keys", help="key pairs and the allow list of a secured cluster")
    key_actions = keys.add_subparsers(dest="action", metavar="ACTION", parser_class=OneLineParser)
    key_actions.required = True
    kcreate = command(key_actions, "create", key_commands.keys_create,
                      "write a new key pair (principal NAME)")
    kcreate.add_argument("name", help="the key's principal name")
    kcreate.add_argument("--output", metavar="PATH",
                         help="where (default <data-dir>/security/keys/NAME.key)")
    json_flag(kcreate, "the name, public key and path")
    kallow = command(key_actions, "allow", key_commands.keys_allow,
                     "put a key on the allow list (applies without a restart)")
    kallow.add_argument("name", help="the key's principal name")
    kallow.add_argument("--public-key", help="its public key (default: read from its key file)")
    kallow.add_argument("--key-file", metavar="PATH",
                        help="its key file (default <data-dir>/security/keys/NAME.key)")
    krevoke = command(key_actions, "revoke", key_commands.keys_revoke,
                      "take a key off the allow list (applies without a restart)")
    krevoke.add_argument("name", help="the key's principal name")

    users = commands.add_parser("users", help="SASL users of the Kafka listeners (PLAIN, "
                                "SCRAM-SHA-256) of a secured cluster")
    user_actions = users.add_subparsers(dest="action", metavar="ACTION",
                                        parser_class=OneLineParser)
    user_actions.required = True
    uadd = command(user_actions, "add", user_commands.users_add,
                   "add a user or change its password (stored salted and iterated, never as "
                   "given)")
    uadd.add_argument("name", help="the SASL user name (not admin or broker-<id>)")
    upass = uadd.add_mutually_exclusive_group()
    upass.add_argument("--password-file", metavar="PATH",
                       help="read the password from the first line of PATH")
    upass.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of stdin")
    uadd.add_argument("--iterations", type=_positive_int, default=4096,
                      help="SCRAM iterations (default %(default)s, at least 4096)")
    uremove = command(user_actions, "remove", user_commands.users_remove, "remove a user")
    uremove.add_argument("name", help="the SASL user name")
    ulist = command(user_actions, "list", user_commands.users_list, "the users (names only)")
    json_flag(ulist, "the user names")

    produce = command(commands, "produce", message_commands.produce,
                      "send lines from stdin as messages")
    produce.add_argument("topic", type=_topic, help="the topic")
    produce.add_argument("--key-separator", metavar="SEP",
                         help="split each line at its first SEP into key and value (default: "
                         "no key); a line without SEP is a bad line")
    produce.add_argument("--acks", type=_acks, default=1,
                         help="0: no answer, 1: the leader's append, all: every in-sync "
                         "replica's (default %(default)s)")
    produce.add_argument("--batch-size", type=_positive_int, default=PRODUCER.batch_size,
                         help="messages per partition batch (default %(default)s)")
    produce.add_argument("--linger-ms", type=_non_negative_int, default=PRODUCER.linger_ms,
                         help="longest wait for a batch to fill (default %(default)s; 0: send "
                         "when full or at the end)")
    produce.add_argument("--partition", type=_non_negative_int,
                         help="send every line to this partition (default: crc32(key) %% "
                         "partitions for keyed lines, a sticky random one for others)")
    produce.add_argument("--skip-bad-lines", action="store_true",
                         help="skip a line without the key separator or over the brokers' "
                         "max_message_bytes, and count it (default: stop at it)")
    produce.add_argument("--audit", action="store_true",
                         help="stamp messages with their send time and publish per-window "
                         "counts (acknowledged, sent without ack) to __audit (default: off)")
    produce.add_argument("--audit-window-ms", type=_positive_int,
                         default=PRODUCER.audit_window_ms, metavar="MS",
                         help="with --audit: the length of a count window (default %(default)s; "
                         "at least 1000)")
    json_flag(produce, "the summary (messages, acked, skipped, ...)")

    consume = command(commands, "consume", message_commands.consume,
                      "print messages of a partition or group")
    consume.add_argument("topic", type=_topic, help="the topic")
    consume.add_argument("--partition", type=_non_negative_int,
                         help="read this one partition from --offset (this or --group)")
    consume.add_argument("--offset", type=_offset, default="earliest",
                         help="with --partition: earliest, latest or a byte offset to start at "
                         "(default %(default)s)")
    consume.add_argument("--group", type=_group,
                         help="read as a member of this consumer group from its committed "
                         "offsets, committing what was printed (this or --partition)")
    consume.add_argument("--max-messages", type=_positive_int,
                         help="stop after this many messages (default: no limit)")
    consume.add_argument("--timeout-ms", type=_positive_int,
                         help="stop when no message came for this long (default: wait until "
                         "Ctrl-C)")
    consume.add_argument("--max-bytes", type=_positive_int, default=CONSUMER.max_bytes,
                         help="most bytes per fetch (default %(default)s)")
    consume.add_argument("--audit", action="store_true",
                         help="with --group: count what each commit covers per window of the "
                         "messages' timestamps and publish the counts to __audit (default: off)")
    consume.add_argument("--audit-window-ms", type=_positive_int,
                         default=CONSUMER.audit_window_ms, metavar="MS",
                         help="with --audit: the length of a count window, the producers' "
                         "(default %(default)s; at least 1000)")
    json_flag(consume, "one object per message (topic, partition, offset, next_offset, key, "
              "value; key_b64, value_b64 when not UTF-8)")

    groups = commands.add_parser("groups", help="consumer groups and their per-partition lag")
    group_actions = groups.add_subparsers(dest="action", metavar="ACTION",
                                          parser_class=OneLineParser)
    group_actions.required = True
    glist = command(group_actions, "list", group_commands.groups_list,
                    "consumer groups and their members")
    json_flag(glist, "the groups, their members and topics")
    gdescribe = command(group_actions, "describe", group_commands.groups_describe,
                        "per-partition owner, offsets, lag, consume rate and stuck flag")
    gdescribe.add_argument("group", type=_group, help="the consumer group")
    gdescribe.add_argument("--interval", type=float, default=2.0,
                           help="seconds between the two samples that give rates (default "
                           "%(default)g)")
    json_flag(gdescribe, "the partitions")
    greset = command(group_actions, "reset-offsets", group_commands.groups_reset_offsets,
                     "move an empty group's committed offsets in a topic (as "
                     "kafka-consumer-groups --reset-offsets); prints the plan: partition, "
                     "current, new")
    greset.add_argument("group", type=_group, help="the consumer group")
    greset.add_argument("--topic", type=_topic, required=True, help="the topic whose offsets move")
    greset.add_argument("--partition", type=_non_negative_int,
                        help="only this partition (default: every partition of the topic)")
    to = greset.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="the log start")
    to.add_argument("--to-latest", action="store_true", help="the log end")
    to.add_argument("--to-datetime", type=_datetime, metavar="ISO",
                    help="the first message stamped at or after this time (ISO 8601, e.g. "
                    "2026-01-02T03:04:05Z; no zone: local time); magic 2 messages carry a "
                    "timestamp")
    to.add_argument("--to-offset", type=_non_negative_int, metavar="N",
                    help="byte offset N, which must be a message boundary")
    to.add_argument("--shift-by", type=_whole_number, metavar="N",
                    help="N messages on from the current offset (back when negative)")
    greset.add_argument("--dry-run", action="store_true",
                        help="print the plan and change nothing")
    json_flag(greset, "the plan")
    gmigrate = command(group_actions, "migrate-offsets", group_commands.groups_migrate_offsets,
                       "move an empty group's committed offsets to the other store (copy, "
                       "flip the group's choice, remove the old copies)")
    gmigrate.add_argument("group", type=_group, help="the consumer group")
    gmigrate.add_argument("--to", required=True, choices=("log", "zookeeper"),
                          help="where the offsets go: the __consumer_offsets log or ZooKeeper")
    json_flag(gmigrate, "what was moved")
    gdelete = command(group_actions, "delete", group_commands.groups_delete,
                      "delete an empty group: its offsets, data-loss notes and registry nodes")
    gdelete.add_argument("group", type=_group, help="the consumer group")
    json_flag(gdelete, "what was deleted")
    gprotect = command(group_actions, "protect", group_commands.groups_protect,
                       "protect a group's unconsumed messages on a topic from retention: when "
                       "its oldest one is within --min-seconds of expiring, warn (alert), hold "
                       "(retention keeps its segments, up to --max-hold-bytes) or refuse "
                       "(hold, and produce to the topic gets BACKLOG_QUOTA_EXCEEDED)")
    gprotect.add_argument("group", type=_group, help="the consumer group")
    gprotect.add_argument("--topic", type=_topic, required=True, help="the topic to protect")
    gprotect.add_argument("--policy", choices=backlog_protection.POLICIES, required=True,
                          help="warn, hold or refuse")
    gprotect.add_argument("--min-seconds", type=_non_negative_int,
                          default=backlog_protection.DEFAULT_MIN_SECONDS,
                          help="at risk when the oldest unconsumed message expires within this "
                          "many seconds (default %(default)s)")
    gprotect.add_argument("--max-hold-bytes", type=_non_negative_int,
                          default=backlog_protection.DEFAULT_MAX_HOLD_BYTES,
                          help="hold and refuse: at most this many bytes per partition kept past "
                          "retention; past it retention deletes anyway (default %(default)s)")
    json_flag(gprotect, "the protection")
    gunprotect = command(group_actions, "unprotect", group_commands.groups_unprotect,
                         "remove a group's backlog protection on a topic")
    gunprotect.add_argument("group", type=_group, help="the consumer group")
    gunprotect.add_argument("--topic", type=_topic, required=True,
                            help="the topic whose protection goes")
    json_flag(gunprotect, "what was removed")

    acls = commands.add_parser("acl", help="authorization rules: who may produce, consume, "
                               "describe or administer which topics and groups")
    acl_actions = acls.add_subparsers(dest="action", metavar="ACTION", parser_class=OneLineParser)
    acl_actions.required = True
    for name, func, verb in (("add", acl_commands.acl_add, "allow"),
                             ("remove", acl_commands.acl_remove, "no longer allow")):
        change = command(acl_actions, name, func, f"{verb} a principal (a key name, or '*' for "
                         "every authenticated one) operations on a topic, a topic prefix or "
                         "a group")
        change.add_argument("principal", help="a key name, or '*' for every authenticated "
                            "principal")
        change.add_argument("operations", nargs="+", metavar="OPERATION",
                            choices=["produce", "consume", "describe", "admin"],
                            help="produce, consume, describe or admin")
        on = change.add_mutually_exclusive_group(required=True)
        on.add_argument("--topic", help="one topic")
        on.add_argument("--topic-prefix", metavar="PREFIX",
                        help="every topic whose name starts with PREFIX ('' for all)")
        on.add_argument("--group", type=_group,
                        help="one consumer group (consume or describe)")
        on.add_argument("--group-prefix", metavar="PREFIX",
                        help="every consumer group whose name starts with PREFIX")
        json_flag(change, "the rules changed")
    acl_listing = command(acl_actions, "list", acl_commands.acl_list, "the rules, by principal")
    acl_listing.add_argument("principal", nargs="?", help="only this principal's rules "
                             "(default: everyone's)")
    json_flag(acl_listing, "the rules")

    from cluster.tools import perf
    perf_parser = commands.add_parser("perf", help="the paper's benchmark: one producer's or "
                                      "one consumer's throughput")
    perf_commands = perf_parser.add_subparsers(dest="action", metavar="ACTION",
                                               parser_class=OneLineParser)
    perf_commands.required = True
    perf_produce = command(perf_commands, "produce", perf.produce_command,
                           "send generated messages; records/s, MB/s, acks=1 latency")
    perf_produce.add_argument("topic", type=_topic, help="the topic")
    perf_produce.add_argument("--messages", type=_positive_int, default=1_000_000,
                              help="messages to send (default %(default)s)")
    perf_produce.add_argument("--size", type=_non_negative_int, default=200,
                              help="value bytes per message (default %(default)s, as in the "
                              "paper)")
    perf_produce.add_argument("--batch-size", type=_positive_int, default=PRODUCER.batch_size,
                              help="messages per partition batch (default %(default)s)")
    perf_produce.add_argument("--acks", type=_acks, default=0,
                              help="0, 1 or all (default %(default)s)")
    perf_produce.add_argument("--linger-ms", type=_non_negative_int,
                              default=PRODUCER.linger_ms,
                              help="longest wait for a batch to fill (default %(default)s)")
    perf_produce.add_argument("--max-in-flight", type=_positive_int,
                              help="acks=1: unanswered requests per broker and partition "
                              f"(default: the Producer's, {PRODUCER.max_in_flight})")
    perf_produce.add_argument("--partition", type=_non_negative_int,
                              help="send every message to this partition (default: random)")
    json_flag(perf_produce, "the figures")
    perf_consume = command(perf_commands, "consume", perf.consume_command,
                           "read messages of one partition; records/s, MB/s")
    perf_consume.add_argument("topic", type=_topic, help="the topic")
    perf_consume.add_argument("--partition", type=_non_negative_int, default=0,
                              help="the partition to read (default %(default)s)")
    perf_consume.add_argument("--messages", type=_positive_int, default=1_000_000,
                              help="messages to read (default %(default)s)")
    perf_consume.add_argument("--offset", type=_offset, default="earliest",
                              help="earliest, latest or a byte offset (default %(default)s)")
    perf_consume.add_argument("--fetch-size", type=_positive_int, default=1 << 20,
                              help="max bytes per fetch (default %(default)s, the client "
                              "default)")
    perf_consume.add_argument("--timeout-ms", type=_positive_int, default=10_000,
                              help="give up when no message came for this long (default "
                              "%(default)s)")
    json_flag(perf_consume, "the figures")

    from cluster.observe import terminal_dashboard
    dash = command(commands, "dashboard", terminal_dashboard.command,
                   "live view of processes, brokers and groups (q or Ctrl-C quits)")
    dash.add_argument("--interval", type=float, default=1.0,
                      help="seconds between refreshes (default %(default)g)")
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
    drill.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="log more")
    drill.set_defaults(func=drills.command, prepare=None)

    from cluster.cli import audit_commands
    audit = command(commands, "audit", audit_commands.audit, "the audit trail: per topic and "
                    "window, messages produced (acknowledged, sent without ack), stored and "
                    "consumed by each group, and what was lost where")
    audit.epilog = (f"exit status: 0 when no judged window shows loss, "
                    f"{audit_commands.AUDIT_FOUND_LOSS} when a window that closed more than "
                    f"--grace ago lost acknowledged or stored messages, 1 on an error")
    audit.add_argument("--topic", type=_topic, help="only this topic (default: every audited "
                       "topic)")
    audit.add_argument("--group", type=_group, help="only this group's consumption (default: "
                       "every group that published counts)")
    audit.add_argument("--since", type=_since, metavar="TIME", help="only windows ending after TIME: a span "
                       "back from now (90s, 15m, 2h, 1d) or ISO 8601 (default: everything in "
                       "__audit)")
    audit.add_argument("--grace", type=float, default=audit_commands.DEFAULT_GRACE_S,
                       metavar="S", help="judge a window once it closed this many seconds ago "
                       "(default %(default)s)")
    json_flag(audit, "every window's counts and verdict")

    scrub = command(commands, "scrub", segment_commands.scrub, "CRC-check the segments in the "
                    "local cluster's broker dirs and report each bad message by offset (reads "
                    "files only: safe beside a running broker)")
    scrub.epilog = (f"exit status: 0 when every segment is clean, "
                    f"{segment_commands.SCRUB_FOUND_CORRUPTION} when it found corruption (a "
                    f"corrupt message or a torn tail), 1 on an error such as an unknown topic")
    scrub.add_argument("--topic", type=_topic, help="only this topic's partitions (default: all)")
    json_flag(scrub, "what was checked and every finding")

    dump = command(commands, "dump-log", segment_commands.dump_log, "decode a segment file")
    dump.add_argument("segment", help="a segment file, <data-dir>/broker-<id>/<topic>/"
                      "<partition>/<20-digit offset>.log")
    json_flag(dump, "one object per entry (with --summary: the summary)")
    dump.add_argument("--preview", type=_non_negative_int, default=40,
                      help="characters of each value to show (default %(default)s)")
    dump.add_argument("--offset", type=_non_negative_int, metavar="START",
                      help="start at this offset (as printed: the segment's start plus a byte "
                      "position, past the gaps of a compacted segment), which must be a message "
                      "boundary; one inside a message is refused, naming the boundaries around "
                      "it; one the cleaner removed starts at its gap's marker, as a fetch does "
                      "(default: the segment's start)")
    dump.add_argument("--max-messages", type=_positive_int, metavar="N",
                      help="stop after N messages (default: all)")
    dump.add_argument("--summary", action="store_true",
                      help="print only the count, bytes, first and last offset and CRC failures "
                      "of the messages, and the gap markers of a compacted segment (from "
                      "--offset, up to --max-messages), nothing per message")
    return parser

