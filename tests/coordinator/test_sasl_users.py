"""The Kafka listener's SASL users in a real ZooKeeper (coordinator/sasl_users.py): stored as
SCRAM keys under the cluster's digest ACL, so a client without the digest reads and changes
nothing; watched; the cluster's own principals refused as user names."""
import threading

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from coordinator import paths, zk as zkconnect
from coordinator.errors import InvalidArgument
from coordinator.sasl_users import SaslUsers
from coordinator.scram import ScramCredential

DIGEST = "sluice:test-digest-not-secret"


@pytest.fixture
def secured(zk):
    client = zkconnect.connect(zk, digest=DIGEST)
    yield client
    client.stop()
    client.close()


def test_users_are_keys_a_stranger_cannot_read_or_change(zk, secured):
    store = SaslUsers(secured)
    credential = ScramCredential.from_password("correct horse")
    assert store.put("alice", credential) is True
    assert store.put("alice", ScramCredential.from_password("battery staple")) is False
    assert store.users()["alice"].matches("battery staple")
    assert b"battery" not in secured.get(paths.sasl_user("alice"))[0]
    hosts, chroot = zkconnect.split_chroot(zk)
    stranger = KazooClient(hosts=hosts)
    stranger.start()
    try:
        for call in (lambda: stranger.get(chroot + paths.sasl_user("alice")),
                     lambda: stranger.get_children(chroot + paths.SASL_USERS),
                     lambda: stranger.set(chroot + paths.sasl_user("alice"), b"{}"),
                     lambda: stranger.delete(chroot + paths.sasl_user("alice")),
                     lambda: stranger.create(chroot + paths.sasl_user("mallory"), b"{}")):
            with pytest.raises(NoAuthError):
                call()
    finally:
        stranger.stop()
        stranger.close()
    assert store.remove("alice") is True and store.remove("alice") is False
    assert store.users() == {}


def test_a_watch_sees_every_change(secured):
    store = SaslUsers(secured)
    seen = []
    changed = threading.Condition()

    def on_change(users):
        with changed:
            seen.append(sorted(users))
            changed.notify_all()
    store.watch(on_change)
    store.put("alice", ScramCredential.from_password("pw-alice"))
    store.put("bob", ScramCredential.from_password("pw-bob"))
    store.remove("alice")
    with changed:
        assert changed.wait_for(lambda: seen and seen[-1] == ["bob"], timeout=10), seen
    assert seen[0] == []


@pytest.mark.parametrize("name", ["admin", "broker-0", "ANONYMOUS", "", "a/b"])
def test_the_clusters_own_principals_and_bad_names_are_refused(secured, name):
    with pytest.raises(InvalidArgument):
        SaslUsers(secured).put(name, ScramCredential.from_password("pw"))
