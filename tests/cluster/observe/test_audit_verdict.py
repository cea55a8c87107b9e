"""The audit's reconciliation, pure: records summed per window, stages of loss, judged windows."""
from cluster.observe.audit_verdict import reconcile, sum_records

W = 60_000


def produced(window, acked, unacked=0, topic="t"):
    return {"source": "producer", "topic": topic, "window_start": window, "window_ms": W,
            "acknowledged": acked, "unacknowledged": unacked}


def consumed(window, n, group="g", topic="t"):
    return {"source": "consumer", "group": group, "topic": topic, "window_start": window,
            "window_ms": W, "consumed": n}


def test_records_are_deltas_summed_per_window_and_filtered():
    records = [produced(0, 3), produced(0, 2, 1), produced(W, 4), produced(0, 9, topic="u"),
               consumed(0, 5), consumed(0, 1, group="h")]
    totals = sum_records(records)
    assert (totals[("t", 0)].acknowledged, totals[("t", 0)].unacknowledged) == (5, 1)
    assert totals[("t", 0)].consumed == {"g": 5, "h": 1}
    assert set(sum_records(records, topic="u")) == {("u", 0)}
    assert sum_records(records, group="h")[("t", 0)].consumed == {"h": 1}
    assert set(sum_records(records, since_ms=W)) == {("t", W)}


def test_each_stage_of_loss_is_named_and_only_closed_windows_are_judged():
    totals = sum_records([
        produced(0, 10), consumed(0, 10),              # nothing lost
        produced(W, 10), consumed(W, 7),               # the broker lost 3
        produced(2 * W, 10, 5), consumed(2 * W, 12),   # acks=0 lost 2, the group 1 more
        produced(3 * W, 10), consumed(3 * W, 13),      # redelivered: duplicates, no loss
        produced(4 * W, 10)])                          # still open (within the grace)
    stored = {("t", 0): 10, ("t", W): 7, ("t", 2 * W): 13, ("t", 3 * W): 10, ("t", 4 * W): 10}
    verdicts = reconcile(totals, stored, now_ms=5 * W + 30_000, grace_ms=60_000)
    got = [(v.window_start // W, v.unacked_lost, v.broker_lost, v.consumer_lost, v.duplicates,
            v.closed, v.loss) for v in verdicts]
    assert got == [
        (0, 0, 0, {"g": 0}, {"g": 0}, True, False),
        (1, 0, 3, {"g": 0}, {"g": 0}, True, True),
        (2, 2, 0, {"g": 1}, {"g": 0}, True, True),
        (3, 0, 0, {"g": 0}, {"g": 3}, True, False),
        (4, 0, 0, {"g": 10}, {"g": 0}, False, False)]


def test_a_group_is_judged_from_its_first_window_and_unaudited_messages_are_extra():
    totals = sum_records([produced(0, 4), produced(W, 4), consumed(W, 4)])
    stored = {("t", 0): 4, ("t", W): 6, ("t", 2 * W): 2}
    verdicts = {v.window_start: v for v in reconcile(totals, stored, 10 * W, 0)}
    assert verdicts[0].consumer_lost == {} and not verdicts[0].loss
    assert verdicts[W].extra == 2 and verdicts[W].consumer_lost == {"g": 0}
    assert verdicts[2 * W].acknowledged == 0 and verdicts[2 * W].consumer_lost == {"g": 2}
    assert verdicts[2 * W].loss          # stored, and the group did not consume it
    assert verdicts[2 * W].to_dict()["consumer_lost"] == {"g": 2}
