"""The broker registry: what a group member reads (the partitions live brokers announce), and a
broker's registration coming back after its ZooKeeper session expires, even when the first
attempts to register again fail (real ZooKeeper: the session is expired by closing it from a
second client with the same session id and password; an ACL refuses the first attempts)."""
from __future__ import annotations

import json
import logging
import os

from kazoo.client import KazooClient
from kazoo.security import ACL, ANYONE_ID_UNSAFE, OPEN_ACL_UNSAFE, Permissions, make_digest_acl

from coordinator import paths, registry, zk as zkmod
from coordinator.registry import BrokerInfo, BrokerRegistration
from tests.helpers import create_topic
from tests.helpers import BrokerProcess, wait_for


def test_hosted_partitions_follow_the_brokers_sessions(zk, zk_client, tmp_path):
    assert registry.hosted_partitions(zk_client, "clicks") == []
    brokers = [BrokerProcess(zk, tmp_path, i).start() for i in range(2)]
    try:
        placement = create_topic(zk, "clicks", 4, brokers)
        assert registry.hosted_partitions(zk_client, "clicks") == [0, 1, 2, 3]
        brokers[0].stop()
        left = [p for p in range(4) if placement.brokers[p] != brokers[0].broker_id]
        wait_for(lambda: registry.hosted_partitions(zk_client, "clicks") == left,
                 what="the stopped broker's partitions to leave the registry")
    finally:
        for proc in brokers:
            proc.stop()


def expire(zk: str, client: KazooClient) -> None:
    """End ``client``'s session on the server: a second client takes it over and closes it."""
    session_id, password = client.client_id
    thief = KazooClient(hosts=zk, client_id=(session_id, password))
    thief.start(timeout=10)
    thief.stop()
    thief.close()


def test_a_failed_re_registration_is_retried_until_it_succeeds(zk, caplog):
    admin = zkmod.connect(zk)
    admin.add_auth("digest", "admin:secret")
    client = zkmod.connect(zk, session_timeout=4)
    info = BrokerInfo(7, "tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "test-host", os.getpid())
    registration = BrokerRegistration(client, info)
    try:
        registration.register()
        registration.publish("clicks", [0, 2])
        old_session = client.client_id[0]
        assert admin.exists(paths.broker(7)).ephemeralOwner == old_session
        admin.set_acls(paths.BROKER_IDS, [make_digest_acl("admin", "secret", all=True),
                                          ACL(Permissions.READ, ANYONE_ID_UNSAFE)])
        with caplog.at_level(logging.WARNING, logger="coordinator.registry"):
            expire(zk, client)
            wait_for(lambda: any("failed" in r.getMessage() and "retrying" in r.getMessage()
                                 for r in caplog.records), 30,
                     what="a failed attempt to register again")
        assert admin.exists(paths.broker(7)) is None
        admin.set_acls(paths.BROKER_IDS, OPEN_ACL_UNSAFE)

        def registered_again():
            stat = admin.exists(paths.broker(7))
            return stat is not None and stat.ephemeralOwner not in (0, old_session)
        wait_for(registered_again, 30, what="broker 7 to register again")
        assert json.loads(admin.get(paths.broker(7))[0])["endpoint"] == info.endpoint
        hosted = paths.broker_topic_partitions("clicks", 7)
        wait_for(lambda: admin.exists(hosted), 10, what="the hosted partitions again")
        assert json.loads(admin.get(hosted)[0]) == [0, 2]
    finally:
        registration.close()
        client.stop()
        client.close()
        admin.stop()
        admin.close()
