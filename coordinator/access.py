"""Authorization of what goes to ZooKeeper itself rather than through a broker (issue 14).

A native consumer group's membership and offsets, and the CLI's admin commands, are ZooKeeper
writes that no broker sees. On a secured cluster they are checked here, in the process about to
write, against the same rules the brokers use (coordinator/acl_store.py, coordinator/authorizer.py):

| what                                   | needs                                               |
| -------------------------------------- | --------------------------------------------------- |
| a Consumer joining group G             | consume on group G (a group or group-prefix rule)   |
| topics create / alter / config / delete| admin on the topic                                  |
| groups reset-offsets G --topic T       | consume on group G and on topic T (as Kafka's Read) |
| groups delete G                        | a super principal (no per-group delete right yet)   |
| acl add / remove, keys allow / revoke  | a super principal (the operator's ``admin`` key)    |

The caller is the principal of its key file, and only while that key is on the allow list
with the same public key (a revoked key administers nothing). An unsecured cluster (no server
key in ZooKeeper) checks nothing, as before.

This is not a boundary against a hostile process: every sluice process on a secured cluster
authenticates to ZooKeeper with the cluster's one digest, and a holder of the digest can write
with kazoo whatever these checks would refuse. It keeps principals that use sluice's clients and
CLI inside their rules; the boundary is who gets the digest (README, "Security").
"""
from __future__ import annotations

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from coordinator import allow_list, credentials, paths
from coordinator.acl_store import AclStore
from coordinator.authorizer import Authorizer, Operation, is_super
from coordinator.errors import AuthenticationFailed, AuthorizationFailed


def caller(client: KazooClient, keys: credentials.KeyPair | None) -> str | None:
    """The principal ``keys`` stand for on the cluster ``client`` reads; None when the cluster is
    not secured. Raises AuthenticationFailed for no key, or a key that is not on the allow
    list (unknown, revoked, or replaced by another key of that name)."""
    if allow_list.server_key(client) is None:
        return None
    if keys is None:
        raise AuthenticationFailed("the cluster is secured and this client has no key: pass "
                                   "credentials=PATH, --credentials or $SLUICE_CREDENTIALS")
    try:
        listed = client.get(paths.allowed(keys.name))[0].decode("ascii")
    except NoNodeError:
        listed = None
    if listed != keys.public_key:
        raise AuthenticationFailed(f"key {keys.name!r} is not on the cluster's allow list "
                                   f"(unknown or revoked)")
    return keys.name


def check(client: KazooClient, principal: str | None, operation: Operation, kind: str,
          name: str) -> None:
    """Raise AuthorizationFailed unless ``principal`` may do ``operation`` on ``kind name`` by
    the rules in ZooKeeper now; ``principal`` None (security off) may do everything."""
    if principal is None:
        return
    Authorizer(AclStore(client).rules()).check(principal, operation, kind, name)


def check_super(principal: str | None, action: str) -> None:
    """Raise AuthorizationFailed unless ``principal`` (None: security off) is a super principal:
    changing the allow list or the rules is the operator's.

    >>> check_super("admin", "acl add"); check_super(None, "acl add")
    >>> check_super("alice", "acl add")
    Traceback (most recent call last):
    ...
    coordinator.errors.AuthorizationFailed: principal 'alice' may not acl add: only the operator's key (admin) may change the allow list and the rules
    """
    if principal is None or is_super(principal):
        return
    who = f"principal {principal!r}" if principal else "an unauthenticated client"
    raise AuthorizationFailed(f"{who} may not {action}: only the operator's key "
                              f"({credentials.OPERATOR}) may change the allow list and the rules")


def require(client: KazooClient, operation: Operation | None, kind: str = "", name: str = "",
            action: str = "") -> None:
    """The CLI's check before a ZooKeeper write: the caller is the key ``$SLUICE_CREDENTIALS``
    names (the CLI puts ``--credentials`` or the local admin key there). ``operation`` None
    means a super principal is needed for ``action``."""
    principal = caller(client, credentials.resolve(None))
    if operation is None:
        check_super(principal, action)
    else:
        check(client, principal, operation, kind, name)
