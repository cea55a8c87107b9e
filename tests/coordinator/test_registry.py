"""The broker registry: what a group member reads (the partitions live brokers announce), and a
broker's registration coming back after its ZooKeeper session expires, even when the first
attempts to register again fail (real ZooKeeper: the session is expired by closing it from a
second client with the same session id and password; an ACL refuses the first attempts); the
ClusterView following partition leaders through their state nodes (brokers registered by hand:
the view only reads registrations)."""
from __future__ import annotations

import json
import logging
import os

import pytest
from kazoo.client import KazooClient
from kazoo.security import ACL, ANYONE_ID_UNSAFE, OPEN_ACL_UNSAFE, Permissions, make_digest_acl

from coordinator import partition_state, paths, registry, topics, zk as zkmod
from coordinator.errors import BrokerUnavailable
from coordinator.partition_state import NO_LEADER, PartitionState
from coordinator.registry import BrokerInfo, BrokerRegistration, ClusterView
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


def test_the_replica_endpoint_reads_back_and_defaults_to_the_client_endpoint():
    """Followers fetch from ``replica_endpoint``; a registration written before it existed (no
    such key) and one left empty both name the client endpoint."""
    info = BrokerInfo(3, "tcp://h:1", "tcp://h:2", "h", 42, "tcp://proxy:7")
    assert BrokerInfo.from_json(3, info.to_json()) == info
    assert info.replica_endpoint == "tcp://proxy:7"
    old = json.dumps({"endpoint": "tcp://h:1", "produce_endpoint": "tcp://h:2", "host": "h",
                      "pid": 42}).encode()
    assert BrokerInfo.from_json(3, old).replica_endpoint == "tcp://h:1"
    assert BrokerInfo(3, "tcp://h:1", "tcp://h:2", "h", 42).replica_endpoint == "tcp://h:1"


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


def registered(client: KazooClient, broker_id: int) -> BrokerRegistration:
    """A registration of broker ``broker_id`` (nothing serves its endpoints: the view only
    reads them)."""
    registration = BrokerRegistration(client, BrokerInfo(
        broker_id, f"tcp://127.0.0.1:{9000 + broker_id}", f"tcp://127.0.0.1:{9500 + broker_id}",
        "test-host", os.getpid()))
    registration.register()
    return registration


def test_the_view_follows_a_partitions_leader_through_its_state_node(zk_client):
    for broker_id in (1, 2):
        registered(zk_client, broker_id)
    topics.create(zk_client, "clicks", 2, replication_factor=2)
    view = ClusterView(zk_client)
    changes = []
    view.add_listener(lambda: changes.append(view.state("clicks", 0)))
    state = view.state("clicks", 0)
    first = view.leader("clicks", 0)
    assert first.broker_id == state.leader == topics.get(zk_client, "clicks").replicas[0][0]
    other = 3 - first.broker_id
    moved = state.elected(other, (other, first.broker_id), 1)
    _, version = partition_state.read(zk_client, "clicks", 0)
    partition_state.write(zk_client, "clicks", 0, moved, version)
    wait_for(lambda: view.leader("clicks", 0).broker_id == other, 10, what="the view to follow")
    assert view.leader("clicks", 0).endpoint == f"tcp://127.0.0.1:{9000 + other}"
    assert view.state("clicks", 0).leader_epoch == 1
    wait_for(lambda: moved in changes, 10, what="the listeners to hear of the new leader")


def test_no_leader_and_an_unregistered_leader_are_lines_to_act_on(zk_client):
    registrations = [registered(zk_client, broker_id) for broker_id in (1, 2)]
    topics.create(zk_client, "clicks", 1, replication_factor=2)
    view = ClusterView(zk_client)
    state, version = partition_state.read(zk_client, "clicks", 0)
    partition_state.write(zk_client, "clicks", 0, PartitionState(NO_LEADER, 1, (2,), 1), version)

    def refused():
        try:
            view.leader("clicks", 0)
        except BrokerUnavailable as exc:
            return str(exc)
        return None
    assert wait_for(refused, 10, what="NO_LEADER") == (
        "no leader for clicks/0: its in-sync replicas [2] are down")
    _, version = partition_state.read(zk_client, "clicks", 0)
    partition_state.write(zk_client, "clicks", 0, PartitionState(2, 2, (2,), 1), version)
    assert wait_for(lambda: refused() is None, 10, what="broker 2 to lead")
    registrations[1].close()
    zk_client.delete(paths.broker(2))
    wait_for(lambda: 2 not in view.brokers(), 10, what="broker 2 to leave the view")
    message = refused()
    assert message is not None and message.startswith(
        "broker 2, the leader of clicks/0, is not registered") and "[2]" in message


def test_a_topic_without_state_nodes_is_led_by_its_one_broker(zk_client):
    registered(zk_client, 4)
    placement = topics.Placement("old", ((4,), (4,)))
    zk_client.ensure_path(paths.TOPIC_CONFIG)
    zk_client.create(paths.topic_config("old"), placement.to_json())
    view = ClusterView(zk_client)
    assert [view.leader("old", p).broker_id for p in (0, 1)] == [4, 4]
    assert view.state("old", 1) == PartitionState.initial((4,))
    with pytest.raises(topics.UnknownPartition):
        view.leader("old", 2)


def test_refresh_reads_the_states_again(zk_client):
    for broker_id in (1, 2):
        registered(zk_client, broker_id)
    topics.create(zk_client, "clicks", 1, replication_factor=2)
    view = ClusterView(zk_client)
    state, version = partition_state.read(zk_client, "clicks", 0)
    other = 3 - state.leader
    assert view.leader("clicks", 0).broker_id == state.leader
    partition_state.write(zk_client, "clicks", 0, state.elected(other, (other,), 1), version)
    view.refresh()
    assert view.leader("clicks", 0).broker_id == other


def test_state_watches_are_kept_only_for_topics_asked_about(zk_client):
    registered(zk_client, 1)
    for name in ("a", "b"):
        topics.create(zk_client, name, 3)
    view = ClusterView(zk_client)
    view.leader("a", 0)
    assert set(view._states) == {"a"} and len(view._states["a"]) == 3
    zk_client.delete(paths.topic_config("a"))
    wait_for(lambda: "a" not in view._states, 10, what="the deleted topic's states to go")
