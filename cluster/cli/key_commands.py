"""``sluice keys create|allow|revoke``: the secured cluster's key pairs and its allow list.

``create NAME`` writes a key pair to ``--output`` (default ``<data-dir>/security/keys/NAME.key``,
0600) and prints its public half only. ``allow NAME`` puts a key on the allow list (its public
key from ``--public-key``, else from the key file where ``create`` wrote it); ``revoke NAME``
takes it off. Both apply at once on every broker (they watch the list), without a restart, and
both take the operator's key on a secured cluster (coordinator/access.py).
"""
from __future__ import annotations

from pathlib import Path

from cluster.cli.output import print_json
from coordinator import access, allow_list, credentials, zk
from coordinator.authorizer import is_super
from coordinator.errors import InvalidArgument


def _user_key(name: str) -> str:
    """A name a user's key may have: not one of the cluster's own, allowed everything."""
    if is_super(name):
        raise InvalidArgument(f"{name!r} is a name of the cluster's own keys (broker-<id>, "
                              f"{credentials.OPERATOR}), which may do everything: choose another")
    return name


def keys_create(args) -> int:
    _user_key(args.name)
    path = Path(args.output) if args.output else credentials.key_path(args.data_dir, args.name)
    if path.exists():
        raise InvalidArgument(f"{path} exists already: revoke and remove it first, or choose "
                              f"another --output")
    keys = credentials.create(args.name)
    credentials.save(keys, path)
    if args.json:
        print_json({"name": keys.name, "public_key": keys.public_key, "path": str(path)})
    else:
        print(f"key {keys.name} written to {path} (public key {keys.public_key}); let it in "
              f"with 'sluice keys allow {keys.name}'")
    return 0


def keys_allow(args) -> int:
    _user_key(args.name)
    public = args.public_key
    if public is None:
        public = credentials.load(args.key_file or credentials.key_path(args.data_dir,
                                                                        args.name)).public_key
    elif len(public) != 40:
        raise InvalidArgument("--public-key must be a 40-character Z85 CURVE public key")
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
        access.require(client, None, action="keys allow")
        allow_list.allow(client, args.name, public)
    finally:
        client.stop()
        client.close()
    print(f"allowed {args.name}")
    return 0


def keys_revoke(args) -> int:
    client = zk.connect(args.zookeeper, args.data_dir)
    try:
        access.require(client, None, action="keys revoke")
        found = allow_list.revoke(client, args.name)
    finally:
        client.stop()
        client.close()
    if not found:
        raise InvalidArgument(f"{args.name} is not on the allow list")
    print(f"revoked {args.name}")
    return 0
