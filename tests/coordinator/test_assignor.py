"""The range and sticky assignors, on worked examples."""
from coordinator.assignor import assign, range_assign, sticky_assign


def test_docstring_example_two_consumers_two_topics():
    assert assign({"t0": [0, 1, 2], "t1": [0, 1]}, {"c1": ["t0", "t1"], "c2": ["t0", "t1"]}) == {
        "c1": [("t0", 0), ("t0", 1), ("t1", 0)], "c2": [("t0", 2), ("t1", 1)]}


def test_remainder_goes_to_the_first_consumers():
    # 10 partitions, 3 consumers: n = 3, extra = 1 -> 4, 3, 3 (the paper's formula would drop one)
    assert range_assign(list(range(10)), ["a", "b", "c"]) == {
        "a": [0, 1, 2, 3], "b": [4, 5, 6], "c": [7, 8, 9]}


def test_partitions_sort_as_integers_not_text():
    shares = range_assign([10, 2, 1, 11], ["x", "y"])
    assert shares == {"x": [1, 2], "y": [10, 11]}


def test_more_consumers_than_partitions_leaves_some_idle():
    assert range_assign([0, 1], ["a", "b", "c"]) == {"a": [0], "b": [1], "c": []}


def test_every_partition_owned_exactly_once():
    for partitions in range(0, 30):
        for consumers in range(1, 9):
            shares = range_assign(list(range(partitions)), [f"c{i}" for i in range(consumers)])
            owned = sorted(p for share in shares.values() for p in share)
            assert owned == list(range(partitions))
            sizes = [len(s) for s in shares.values()]
            assert max(sizes) - min(sizes) <= 1


def test_only_subscribers_share_a_topic():
    assert assign({"a": [0, 1], "b": [0]}, {"c1": ["a"], "c2": ["a", "b"]}) == {
        "c1": [("a", 0)], "c2": [("a", 1), ("b", 0)]}


def test_sticky_docstring_example_moves_two_where_range_moves_three():
    owners = {0: "a", 1: "a", 2: "a", 3: "b", 4: "b", 5: "b"}
    assert sticky_assign(list(range(6)), ["a", "b", "c"], owners) == {
        "a": [0, 1], "b": [3, 4], "c": [2, 5]}
    ranged = range_assign(list(range(6)), ["a", "b", "c"])
    moved_by_range = sum(1 for m, ps in ranged.items() for p in ps if owners[p] != m)
    assert moved_by_range == 3


def test_sticky_leaving_member_moves_only_its_own_partitions():
    owners = {p: f"w{p % 4}" for p in range(12)}
    after = sticky_assign(list(range(12)), ["w0", "w1", "w3"], owners)
    for member, ps in after.items():
        for p in ps:
            assert owners[p] == member or owners[p] == "w2", "only w2's partitions move"
    assert sorted(p for ps in after.values() for p in ps) == list(range(12))


def test_sticky_is_balanced_minimal_and_a_fixed_point():
    import random
    rng = random.Random(7)
    for _ in range(300):
        partitions = list(range(rng.randrange(0, 30)))
        members = [f"m{i}" for i in rng.sample(range(10), rng.randrange(1, 8))]
        pool = members + ["gone1", "gone2", None]
        owners = {p: rng.choice(pool) for p in partitions}
        owners = {p: o for p, o in owners.items() if o is not None}
        plan = sticky_assign(partitions, members, owners)
        owned = sorted(p for ps in plan.values() for p in ps)
        assert owned == partitions
        sizes = [len(ps) for ps in plan.values()]
        assert max(sizes) - min(sizes) <= 1
        holdings = {m: sum(1 for o in owners.values() if o == m) for m in members}
        n, extra = divmod(len(partitions), len(members))
        # the fewest moves: every live member keeps n, and the `extra` members holding more
        # than n keep one more; nothing else leaves a live member
        over = [h for h in holdings.values() if h > n]
        fewest = sum(h - n for h in over) - min(extra, len(over))
        moved_from_live = sum(1 for m, ps in plan.items() for p in ps
                              if owners.get(p) in holdings and owners[p] != m)
        assert moved_from_live == fewest
        new_owners = {p: m for m, ps in plan.items() for p in ps}
        assert sticky_assign(partitions, members, new_owners) == plan
