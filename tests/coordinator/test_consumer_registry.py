"""The consumer and ownership registries, read back from a real ZooKeeper as members wrote them."""
from coordinator import consumer_registry, paths
from coordinator.membership import Membership
from coordinator.offsets import OffsetStore


def test_an_empty_cluster_has_no_groups_members_or_owners(zk_client):
    assert consumer_registry.groups(zk_client) == []
    assert consumer_registry.members(zk_client, "g") == []
    assert consumer_registry.registrations(zk_client, "g") == {}
    assert consumer_registry.registration(zk_client, "g", "m") is None
    assert consumer_registry.owners(zk_client, "g", "t") == {}
    assert consumer_registry.topics_of(zk_client, "g") == []


def test_members_their_nodes_and_owners_read_as_written(zk_client):
    Membership(zk_client, "loaders", "m2", ["clicks"], "eager", static=False).register()
    Membership(zk_client, "loaders", "m1", ["clicks", "views"], "cooperative",
               static=True).register()
    for partition, owner in ((10, "m1"), (2, "m2")):
        zk_client.create(paths.owner("loaders", "clicks", partition), owner.encode(),
                         ephemeral=True, makepath=True)
    OffsetStore(zk_client, "loaders").commit({("archive", 0): 42})

    assert consumer_registry.groups(zk_client) == ["loaders"]
    assert consumer_registry.members(zk_client, "loaders") == ["m1", "m2"]
    node = consumer_registry.registration(zk_client, "loaders", "m1")
    assert (node["topics"], node["protocol"], node["static"]) == (["clicks", "views"],
                                                                  "cooperative", True)
    assert sorted(consumer_registry.registrations(zk_client, "loaders")) == ["m1", "m2"]
    assert consumer_registry.owners(zk_client, "loaders", "clicks") == {2: "m2", 10: "m1"}
    assert consumer_registry.topics_of(zk_client, "loaders") == ["archive", "clicks", "views"]


def test_a_member_that_left_is_no_longer_read(zk_client):
    leaving = Membership(zk_client, "g", "gone", ["t"], "eager", static=False)
    leaving.register()
    Membership(zk_client, "g", "stays", ["t"], "eager", static=False).register()
    leaving.deregister()
    assert consumer_registry.members(zk_client, "g") == ["stays"]
    assert list(consumer_registry.registrations(zk_client, "g")) == ["stays"]
    assert consumer_registry.registration(zk_client, "g", "gone") is None
