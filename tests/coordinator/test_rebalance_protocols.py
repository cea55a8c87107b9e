"""The eager and cooperative protocol objects answer what differs between the two."""
import pytest

from coordinator import paths, rebalance_protocols
from coordinator.errors import InvalidArgument
from coordinator.rebalance import Snapshot, State
from coordinator.rebalance_protocols import Cooperative, Eager


def test_names_give_fresh_protocol_objects():
    assert isinstance(rebalance_protocols.named("eager"), Eager)
    assert isinstance(rebalance_protocols.named("cooperative"), Cooperative)
    assert rebalance_protocols.named("eager") is not rebalance_protocols.named("eager")
    assert sorted(rebalance_protocols.PROTOCOLS) == ["cooperative", "eager"]


@pytest.mark.parametrize("name", ["nope", "", None, ["eager"]])
def test_an_unknown_protocol_is_refused_in_one_line(name):
    with pytest.raises(InvalidArgument, match="rebalance must be 'eager' or 'cooperative'"):
        rebalance_protocols.named(name)


def test_only_the_cooperative_protocol_watches_the_owner_nodes():
    assert Eager().watched("g", ["a", "b"]) == []
    assert Cooperative().watched("g", ["a", "b"]) == [paths.owners("g", "a"),
                                                      paths.owners("g", "b")]


def test_only_a_cooperative_member_short_of_its_goal_looks_again_unprompted():
    assert [Eager().wait_s(state) for state in State] == [None] * len(State)
    assert {state: Cooperative().wait_s(state) for state in State
            if Cooperative().wait_s(state) is not None} == {
        State.REBALANCING: rebalance_protocols.SETTLE_RECHECK_S}


def test_eager_forgets_its_last_success():
    eager = Eager()
    eager.last_success = Snapshot.of({"c": ["t"]}, {"t": [0]})
    eager.forget()
    assert eager.last_success is None
