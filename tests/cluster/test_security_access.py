"""Group and admin rules on a secured cluster (issue 14), against a real broker process and the
real CLI: joining a native group needs consume on it (by name or prefix), and the CLI's
ZooKeeper writes need admin on the topic or the operator's key. A refusal is
AUTHORIZATION_FAILED naming the operation and the resource; nothing of it is written."""
import pytest

from clients.consumer import Consumer
from cluster import cli
from cluster.supervision import security
from coordinator import allow_list, credentials, paths, topics
from coordinator.acl_store import AclStore
from coordinator.authorizer import Rule
from coordinator.errors import AuthenticationFailed, AuthorizationFailed
from tests.helpers import BrokerProcess, wait_for


@pytest.fixture
def secured(zk, zk_client, tmp_path):
    """One secured broker, topic clicks, an allowed key alice that may consume clicks."""
    configs = security.prepare(tmp_path, zk_client, [0], None)
    alice = credentials.create("alice")
    path = credentials.save(alice, tmp_path / "alice.key")
    allow_list.allow(zk_client, "alice", alice.public_key)
    AclStore(zk_client).add("alice", [Rule("consume", "topic", "clicks")])
    broker = BrokerProcess(zk, tmp_path, 0, security=vars(configs[0])).start()
    topics.create(zk_client, "clicks", partitions=1)
    broker.wait_hosting("clicks", 1)
    yield str(path)
    broker.stop()


@pytest.fixture
def sluice(zk, tmp_path, monkeypatch, capsys):
    """Run the CLI in this process (``--credentials PATH`` when given, else the data dir's
    admin key, as from a shell); (exit code, stderr)."""
    def run(*args, credentials_path=None):
        monkeypatch.delenv(credentials.ENV, raising=False)
        more = ["--credentials", credentials_path] if credentials_path else []
        capsys.readouterr()
        code = cli.main(["--zookeeper", zk, "--data-dir", str(tmp_path), *more, *args])
        return code, capsys.readouterr().err
    return run


def test_joining_a_group_needs_consume_on_it_by_name_or_prefix(zk, zk_client, secured,
                                                               tmp_path):
    AclStore(zk_client).add("alice", [Rule("consume", "group", "billing"),
                                      Rule("consume", "group-prefix", "etl.")])
    for group in ("billing", "etl.daily"):
        consumer = Consumer(["clicks"], group, zookeeper=zk, credentials=secured)
        try:
            wait_for(consumer.assignment, 20, what=f"alice to own clicks/0 in {group}")
        finally:
            consumer.close()
    for group in ("payroll", "etl", "billing2"):
        with pytest.raises(AuthorizationFailed,
                           match=f"principal 'alice' may not consume on group '{group}'"):
            Consumer(["clicks"], group, zookeeper=zk, credentials=secured)
        assert zk_client.exists(paths.group(group)) is None, "nothing written"
    stranger = credentials.save(credentials.create("mallory"), tmp_path / "mallory.key")
    with pytest.raises(AuthenticationFailed, match="allow list"):
        Consumer(["clicks"], "billing", zookeeper=zk, credentials=str(stranger))


def test_admin_commands_need_admin_on_the_topic_or_the_operator_key(zk_client, secured, sluice):
    code, said = sluice("topics", "create", "orders", "--partitions", "1",
                        credentials_path=secured)
    assert code != 0
    assert "principal 'alice' may not admin on topic 'orders'" in said, said
    assert "Traceback" not in said and len(said.strip().splitlines()) == 1
    assert not zk_client.exists(paths.topic_config("orders"))
    # the operator (the local cluster's admin key, the CLI's default) grants a prefix
    code, said = sluice("acl", "add", "alice", "admin", "--topic-prefix", "ord")
    assert code == 0, said
    for args in (("topics", "create", "orders", "--partitions", "1"),
                 ("topics", "config", "orders", "--set", "retention.ms=60000"),
                 ("topics", "alter", "orders", "--partitions", "2")):
        code, said = sluice(*args, credentials_path=secured)
        assert code == 0, (args, said)
    assert topics.get(zk_client, "orders").partitions == 2
    for args, refusal in (
            (("topics", "delete", "clicks", "--force"), "may not admin on topic 'clicks'"),
            (("topics", "config", "clicks", "--set", "retention.ms=1"),
             "may not admin on topic 'clicks'"),
            (("acl", "add", "alice", "produce", "--topic", "clicks"),
             "may not acl add: only the operator's key"),
            (("keys", "revoke", "admin"), "may not keys revoke: only the operator's key")):
        code, said = sluice(*args, credentials_path=secured)
        assert code != 0 and refusal in said, (args, said)
    assert topics.get(zk_client, "clicks").config == {}
    assert "admin" in allow_list.allowed(zk_client)
    assert [str(r) for r in AclStore(zk_client).rules()["alice"]] == [
        "consume on topic 'clicks'", "admin on topic-prefix 'ord'"]


def test_group_admin_needs_consume_on_the_group_and_topic_or_the_operator_key(zk_client, secured,
                                                                              sluice):
    from coordinator.offsets import OffsetStore
    OffsetStore(zk_client, "billing").commit({("clicks", 0): 0})
    reset = ("groups", "reset-offsets", "billing", "--topic", "clicks", "--to-latest")
    code, said = sluice(*reset, credentials_path=secured)
    assert code != 0 and "principal 'alice' may not consume on group 'billing'" in said, said
    assert len(said.strip().splitlines()) == 1
    code, said = sluice("groups", "delete", "billing", credentials_path=secured)
    assert code != 0 and "may not delete group billing: only the operator's key" in said, said
    assert zk_client.exists(paths.group("billing")), "nothing deleted"
    AclStore(zk_client).add("alice", [Rule("consume", "group", "billing")])
    code, said = sluice(*reset, "--dry-run", credentials_path=secured)
    assert code == 0, said
    code, said = sluice("groups", "delete", "billing")          # the operator's key
    assert code == 0, said
    assert zk_client.exists(paths.group("billing")) is None
