"""``sluice users add|remove|list``: the Kafka listener's SASL users (issue 14 item 4).

    sluice users add alice --password-file alice.pass     # or --password-stdin, or a prompt
    sluice users remove alice
    sluice users list [--json]

A password is never taken on the command line (other users of the host see command lines):
from a file (warned about when others can read it), the first line of stdin, or a prompt.
What is stored (coordinator/sasl_users.py) is a salted, iterated SCRAM-SHA-256 credential,
never the password; PLAIN logins are checked against the same. A user's name is its principal
for ``sluice acl``; brokers watch the users, so a change applies to the next login.
"""
from __future__ import annotations

import getpass
import sys
from pathlib import Path

from cluster.cli.output import err, print_json, print_table
from coordinator import credentials, scram, zk
from coordinator.errors import InvalidArgument
from coordinator.sasl_users import SaslUsers, check_user


def _password(args) -> str:
    if args.password_file is not None:
        path = Path(args.password_file)
        try:
            text = path.read_text(encoding="utf-8")
            if path.stat().st_mode & 0o077:
                err.print(f"warning: {path} can be read by other users: chmod 600 it")
        except OSError as exc:
            raise InvalidArgument(f"cannot read the password file {path}: "
                                  f"{exc.strerror}") from None
        password = text.splitlines()[0] if text else ""
    elif args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise InvalidArgument("the two passwords differ; nothing was changed")
    else:
        raise InvalidArgument("give the password with --password-file PATH or "
                              "--password-stdin (never on the command line)")
    if not password:
        raise InvalidArgument("the password is empty")
    return password


def users_add(args) -> int:
    check_user(args.name)
    credential = scram.ScramCredential.from_password(_password(args),
                                                     iterations=args.iterations)
    if credentials.find_digest(data_dir=args.data_dir) is None:
        err.print("warning: this cluster is not secured (no ZooKeeper digest found): its Kafka "
                  "listeners ask for no SASL, and anyone who reaches ZooKeeper can read the "
                  "stored keys; start it with 'cluster up --secure'")
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
        new = SaslUsers(client).put(args.name, credential)
    finally:
        client.stop()
        client.close()
    err.print(f"{'added' if new else 'changed the password of'} SASL user {args.name} "
              f"({scram.SCRAM_SHA_256}, {args.iterations} iterations; PLAIN too); grant it "
              f"rules with 'sluice acl add {args.name} ...'")
    return 0


def users_remove(args) -> int:
    check_user(args.name)
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
        found = SaslUsers(client).remove(args.name)
    finally:
        client.stop()
        client.close()
    if not found:
        raise InvalidArgument(f"there is no SASL user {args.name}")
    err.print(f"removed SASL user {args.name} (its open connections stay until they close)")
    return 0


def users_list(args) -> int:
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
        users = SaslUsers(client).users()
    finally:
        client.stop()
        client.close()
    rows = [{"name": name, "mechanisms": list(scram.MECHANISMS),
             "iterations": cred.iterations} for name, cred in sorted(users.items())]
    if args.json:
        print_json(rows)
    else:
        print_table("SASL users of the Kafka listener", ["name", "mechanisms", "iterations"],
                    [[r["name"], ", ".join(r["mechanisms"]), r["iterations"]] for r in rows])
    return 0


__all__ = ["users_add", "users_remove", "users_list"]
