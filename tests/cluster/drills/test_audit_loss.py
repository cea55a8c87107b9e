"""The audit drill's stages against two real brokers: a segment deleted by hand, acks=0 sent
to a killed broker, a group consumer that skips one message; ``sluice audit`` must name exactly
that loss, in each stage's window and stage."""
import pytest

from cluster.drills import audit_loss
from tests.helpers import BrokerProcess


def test_judge_names_every_window_and_stage():
    truth = {"A": {"window": 0, "broker_lost": 5}, "B": {"window": 1000, "unacked_lost": 2},
             "C": {"window": 2000, "consumer_lost": 1}}

    def window(start, **lost):
        return {"window_start": start, "broker_lost": 0, "unacked_lost": 0,
                "consumer_lost": {audit_loss.GROUP: 0}, **lost}

    right = [window(0, broker_lost=5), window(1000, unacked_lost=2),
             window(2000, consumer_lost={audit_loss.GROUP: 1}), window(3000)]
    assert all(c.ok for c in audit_loss.judge(truth, {"windows": right, "exit": 3}))
    shifted = [window(0, broker_lost=5), window(1000),
               window(2000, consumer_lost={audit_loss.GROUP: 1}, unacked_lost=2)]
    failed = [c.name for c in audit_loss.judge(truth, {"windows": shifted, "exit": 3})
              if not c.ok]
    assert failed == ["window 1000: the audit names unacked_lost loss of 2",
                      "window 2000: the audit names consumer_lost loss of 1"]
    assert not audit_loss.judge(truth, {"windows": right, "exit": 0})[-1].ok


@pytest.mark.drill
def test_audit_names_each_stage_loss_exactly(zk, tmp_path):
    procs = {i: BrokerProcess(zk, tmp_path, i, log={"flush_ms": 20}).start() for i in range(2)}

    def kill(broker):
        procs[broker].kill()
        procs[broker].start()

    cluster = audit_loss.Cluster(zk, kill, lambda b, t, p: tmp_path / f"broker-{b}" / t / str(p))
    try:
        truth = audit_loss.run_stages(cluster)
        report = audit_loss.audit_report(zk, truth)
    finally:
        for proc in procs.values():
            proc.stop()
    failed = [f"{c.name}: {c.detail}" for c in audit_loss.judge(truth, report) if not c.ok]
    assert not failed, (failed, truth)
    assert truth["A"]["broker_lost"] > 0
