"""Making a local cluster secure (``cluster up --secure``, issue 14): its secrets on disk and
its allow list in ZooKeeper.

``<data-dir>/security/`` (0700) gets, once, and keeps across restarts:

| file                       | what                                                          |
| -------------------------- | ------------------------------------------------------------- |
| zookeeper.digest           | the ZooKeeper digest ``sluice:<random>`` (embedded ensemble)  |
| server.key                 | the brokers' CURVE server key pair                             |
| keys/broker-<id>.key       | broker <id>'s own key (principal ``broker-<id>``)              |
| keys/admin.key             | the operator's key, used by the CLI and the dashboard here     |
| keys/workers.key           | the group workers' shared key (``--workers``): consume on their |
|                            | topic and group, nothing else                                  |

every file 0600. The brokers' and admin's public keys are put on the allow list, and the
server's public key at /security/server_key. ``--zookeeper`` with a digest of the user's
(``--zk-digest`` or ``$SLUICE_ZK_DIGEST``) writes that digest's file instead of a fresh one, so
every process of the cluster finds it the same way.
"""
from __future__ import annotations

import logging
from pathlib import Path

from broker.config import SecurityConfig
from coordinator import allow_list, credentials
from coordinator.acl_store import AclStore
from coordinator.authorizer import Rule

logger = logging.getLogger(__name__)

ADMIN = credentials.OPERATOR
WORKERS = "workers"


def broker_name(broker_id: int) -> str:
    return f"broker-{broker_id}"


def ensure_digest(data_dir: str | Path, digest: str | None = None) -> Path:
    """The digest file: the user's digest when given, else the one there, else a new one."""
    path = credentials.security_dir(data_dir) / credentials.DIGEST_FILE
    if digest is not None:
        credentials.write_private(path, credentials.check_digest(digest) + "\n")
    elif not path.exists():
        credentials.write_private(path, credentials.new_digest() + "\n")
    return path


def ensure_key(path: Path, name: str) -> credentials.KeyPair:
    if path.exists():
        return credentials.load(path)
    keys = credentials.create(name)
    credentials.save(keys, path)
    return keys


def prepare(data_dir: str | Path, client, broker_ids, digest_file: Path | None) -> dict:
    """Keys on disk, the allow list and the server key in ZooKeeper (through ``client``, which
    authenticates with the digest when there is one); the SecurityConfig of each broker id."""
    root = credentials.security_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    root.chmod(0o700)
    server = ensure_key(root / credentials.SERVER_KEY, "server")
    allow_list.publish_server_key(client, server.public_key)
    admin = ensure_key(credentials.key_path(data_dir, ADMIN), ADMIN)
    allow_list.allow(client, ADMIN, admin.public_key)
    configs = {}
    for broker_id in broker_ids:
        name = broker_name(broker_id)
        path = credentials.key_path(data_dir, name)
        allow_list.allow(client, name, ensure_key(path, name).public_key)
        configs[broker_id] = SecurityConfig(
            server_key=str((root / credentials.SERVER_KEY).resolve()),
            credentials=str(path.resolve()),
            zookeeper_digest_file=None if digest_file is None else str(digest_file.resolve()))
    return configs


def admin_credentials(data_dir: str | Path) -> str | None:
    """The local cluster's admin key file, if it is secured."""
    path = credentials.key_path(data_dir, ADMIN)
    return str(path) if path.exists() else None


def prepare_workers(data_dir: str | Path, client, topic: str, group: str) -> str:
    """The group workers' shared key (made once), on the allow list, with the rules a worker
    needs: consume on its topic and on its group. Returns the key file's path."""
    path = credentials.key_path(data_dir, WORKERS)
    keys = ensure_key(path, WORKERS)
    allow_list.allow(client, WORKERS, keys.public_key)
    AclStore(client).add(WORKERS, [Rule("consume", "topic", topic),
                                   Rule("consume", "group", group)])
    return str(path.resolve())
