"""The replication family of faults: leaders killed, paused, cut off; a disk lost; every broker
restarted; an unclean election. Run with 3 brokers, R = 3, min ISR 2, acks=all (``SETTINGS``).

| drill                   | fault                                        | must hold                  |
| ----------------------- | -------------------------------------------- | -------------------------- |
| kill-leader             | SIGKILL the leader of a partition            | lost = 0; a leader elected |
|                         |                                              | within a few seconds; the  |
|                         |                                              | new one acks; consumers go |
|                         |                                              | on; it rejoins the ISR     |
| pause-leader            | SIGSTOP a leader past its session, SIGCONT   | lost = 0; writes sent to   |
|                         |                                              | the old leader while it    |
|                         |                                              | was paused are never acked |
|                         |                                              | after the election; it     |
|                         |                                              | rejoins as a follower      |
| lose-disk               | SIGSTOP a broker, delete its data dir,       | lost = 0; it rebuilds and  |
|                         | SIGKILL it (the supervisor restarts it)      | rejoins the ISR: how long  |
|                         |                                              | for how many bytes         |
| partition-leader        | (cluster/drills/network_faults.py: blocking proxies cut a leader's ZooKeeper |
|                         | and replica traffic while its producers still reach it)                     |
| rolling-restart-brokers | SIGTERM every broker in turn                 | lost = 0; produce stalls   |
|                         |                                              | <= STALL_BOUND_S a restart;|
|                         |                                              | preferred leaders at end   |
| unclean-election        | with unclean election on: a follower paused  | the election happens; the  |
|                         | out of the ISR, the ISR paused past its      | loss is counted exactly:   |
|                         | sessions, the stale one resumed              | ledger; every cut counted  |

The zombie check of pause-leader is a probe: acks=all writes sent straight to the paused
leader's socket just before SIGCONT (they wait in its socket buffers), with ids in the ledger.
Each answer must be an error; one acknowledgement is a zombie leader acknowledging after the
election (and its ids then count as promised, so the ledger judges them too). The producer's
own batches cannot show this: their requests to the paused broker time out and are resent to
the new leader before it resumes, so a late answer from it would be ignored.

unclean-election pauses (SIGSTOP) the ISR rather than killing it: a killed broker is restarted
by the supervisor at once and re-registers before its old session expires, so the controller
would see an ISR member alive and elect it cleanly. The producer is held (everything sent
answered) before the ISR goes away, so the logs of the ISR end where the acknowledgements end
and what the returning replicas cut is exactly what was acknowledged past the stale replica's
log end when it was elected (its METADATA end_offset then, not its files while paused: resumed,
it may first take in what waited in its sockets): the ledger's figure. The controller writes
its unclean count in the transaction of the electing state node; it is read once every
partition shows the election (waited for a little all the same).

What each returning replica cuts is more than what its files hold past that end when the stale
replica was a leader paused mid-epoch: resumed, it appends in its old epoch the produce
requests that waited in its sockets before it learns it was replaced, while a replica that
led meanwhile wrote those offsets in a newer epoch (often the same messages, resent there in
order). The two logs diverge where that newer epoch began, so the replica cuts from there and
fetches the stale leader's bytes again (``divergence``, from both logs' epoch checkpoints), and
its ``truncated_messages`` must equal the messages its files hold past that point.
"""
from __future__ import annotations

import os
import shutil
import signal
import time

import zmq

from broker import message, protocol
from broker.leader_epochs import LeaderEpochs
from cluster.drills import leadership as lead
from cluster.drills.context import Check, Context
from cluster.drills.faults import FaultError, wait_broker_back
from cluster.drills.verdict import lost_is_zero, restarts

SETTINGS = dict(brokers=3, replication_factor=3, min_insync_replicas=2)
ELECTION_SLACK_S = 5.0     # a leader elected within the session timeout and this much more
STALL_BOUND_S = 5.0        # rolling-restart-brokers: the longest produce stall per restart
PROBE_BASE = 9_000_000_000     # ledger ids of the pause-leader probe writes
PROBES = 5
NEW_LEADER_ACK_S = 10.0    # pause-leader: how long the new leader may take to ack a write
ACK_TIMEOUT_MS = 4000      # the drills' brokers give up on an acks=all write this soon
BROKER_SETTINGS = {"ack_timeout_ms": ACK_TIMEOUT_MS, "replica_lag_time_max_ms": 2000,
                   "leader_imbalance_check_ms": 2000}


def _partition_of_leader(ctx: Context) -> lead.Leadership:
    """A random partition and its leadership now (every partition is as busy: the producer
    spreads its messages at random)."""
    partition = ctx.rng.randrange(ctx.settings.partitions)
    return lead.leadership(ctx.zk(), ctx.topic, partition)


def _led_by(ctx: Context, broker: int) -> set[int]:
    return {p for p in range(ctx.settings.partitions)
            if lead.leadership(ctx.zk(), ctx.topic, p).state.leader == broker}


def _elected(ctx: Context, record: dict, before: lead.Leadership, fault_t: float) -> float:
    """Wait for the partition's next election; record it; its monotonic time."""
    elected = lead.wait_new_leader(ctx.zk(), ctx.topic, before.partition,
                                   before.state.leader_epoch, ctx.settings.recovery_timeout_s)
    seen_t = time.monotonic()
    at = lead.monotonic_of(elected.written_at) if elected.written_at else seen_t
    at = min(max(at, fault_t), seen_t)
    record.update(new_leader=elected.state.leader, epoch=elected.state.leader_epoch,
                  isr_after=list(elected.state.isr), election_s=round(at - fault_t, 3))
    return at


def _acked_by_new_leader(ctx: Context, partition: int, elected_t: float, epoch: int,
                         later_leaders: bool = False) -> int:
    """The producer's acknowledgements of ``partition`` from the election on, waiting up to
    NEW_LEADER_ACK_S for the first: the producer learns of the move only when its requests to
    the old leader time out or are refused, which may be after the drill saw the election. While
    the epoch is still ``epoch`` only the elected leader answers acks=all writes; counting
    stops where a later election (a preferred-leader move) took over, unless ``later_leaders``:
    a killed broker restarted and registered again at once can be elected back (the preferred
    leader) before the producer's first write reached the interim one, and the acknowledgements
    of that later leader show just as well that the partition takes writes again (seen: 0 acks
    counted although the producer went on writing at epoch + 2)."""
    deadline = time.monotonic() + NEW_LEADER_ACK_S
    while True:
        now = lead.leadership(ctx.zk(), ctx.topic, partition)
        end, moved = time.monotonic(), now.state.leader_epoch != epoch
        if moved and now.written_at and not later_leaders:
            end = min(end, lead.monotonic_of(now.written_at))
        acked = ctx.producer.acked_between(elected_t, end, {partition})
        if acked or (moved and not later_leaders) or time.monotonic() >= deadline:
            return acked
        time.sleep(0.1)


# --- kill-leader ---------------------------------------------------------------------------

def kill_leader(ctx: Context, record: dict) -> None:
    before = _partition_of_leader(ctx)
    broker = before.state.leader
    hosted = ctx.placement().hosted_by(broker)
    fault_t = time.monotonic()
    pid = ctx.procs.kill("broker", str(broker))
    record.update(target=f"broker {broker}", pid=pid, partition=before.partition,
                  epoch_before=before.state.leader_epoch)
    ctx.emit("fault", detail=f"SIGKILLed broker {broker}, leader of {ctx.topic}/"
             f"{before.partition}; waiting for a new leader")
    elected_t = _elected(ctx, record, before, fault_t)
    new_pid = ctx.procs.wait_replaced("broker", str(broker), pid, ctx.settings.recovery_timeout_s)
    back_t = wait_broker_back(ctx, broker, new_pid, fault_t)
    record["acked_by_new_leader"] = _acked_by_new_leader(ctx, before.partition, elected_t,
                                                         record["epoch"], later_leaders=True)
    ctx.emit("waiting", detail=f"broker {broker} back in the ISR")
    isr_t = lead.wait_in_isr(ctx.zk(), ctx.topic, hosted, broker, ctx.settings.recovery_timeout_s)
    record["rejoined_isr_s"] = round(isr_t - fault_t, 3)
    ctx.recover(record, fault_t, back_t)


def _election_checks(ctx: Context) -> list[Check]:
    bound = ctx.session_timeout_s + ELECTION_SLACK_S
    times = [f.get("election_s") for f in ctx.faults]
    return [
        Check(f"a new leader within {bound:g} s (session timeout + {ELECTION_SLACK_S:g} s) "
              "every time", bool(times) and all(t is not None and t <= bound for t in times),
              ", ".join(f"{t} s" for t in times)),
        Check("the new leader acknowledged writes of the partition",
              all(f.get("acked_by_new_leader", 0) > 0 for f in ctx.faults),
              ", ".join(str(f.get("acked_by_new_leader")) for f in ctx.faults)),
    ]


def kill_leader_checks(ctx: Context, result: dict, report) -> list[Check]:
    return [
        lost_is_zero(report),
        *_election_checks(ctx),
        Check("supervisor restarted the broker each time",
              restarts(ctx, "broker") == len(ctx.faults),
              f"{restarts(ctx, 'broker')} restart(s) for {len(ctx.faults)} kill(s)"),
        Check("the killed broker rejoined the ISR of its partitions each time",
              all("rejoined_isr_s" in f for f in ctx.faults),
              ", ".join(f"{f.get('rejoined_isr_s')} s" for f in ctx.faults)),
        _replicas_agree(ctx),
    ]


# --- pause-leader --------------------------------------------------------------------------

class _Probe:
    """acks=all writes straight to one broker's request socket, answers collected."""

    def __init__(self, ctx: Context, broker: int, partition: int):
        self.ctx = ctx
        self.partition = partition
        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(lead.endpoint(ctx.zk(), broker))
        self.sent: dict[int, tuple[int, bytes]] = {}     # correlation id -> (seq, message set)
        self.answers: dict[str, int] = {}
        self.acked: list[int] = []

    def send(self, count: int) -> None:
        first = PROBE_BASE + len(self.ctx.faults) * 100
        for n in range(count):
            seq = first + n
            payload = message.encode_set([(None, self.ctx.ledger.id(seq))])
            corr = len(self.sent) + 1
            self.sent[corr] = (seq, payload)
            self.ctx.ledger.record_sent(seq)
            self.socket.send_multipart([protocol.encode_produce(
                corr, self.ctx.topic, self.partition, protocol.ACKS_ALL), payload])

    def collect(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while sum(self.answers.values()) < len(self.sent) and time.monotonic() < deadline:
            if not self.socket.poll(100):
                continue
            frames = self.socket.recv_multipart()
            corr = protocol.RESPONSE.unpack_from(frames[0])[0]
            seq, payload = self.sent[corr]
            try:
                _, (base, _) = protocol.decode_response(frames[0], protocol.PRODUCE_REPLY)
            except protocol.SluiceError as exc:
                self.answers[type(exc).__name__] = self.answers.get(type(exc).__name__, 0) + 1
                continue
            self.answers["acknowledged"] = self.answers.get("acknowledged", 0) + 1
            self.acked.append(seq)
            self.ctx.ledger.on_delivery(self.ctx.topic, self.partition, payload, base, None)

    def close(self) -> None:
        self.socket.close(linger=0)


def pause_leader(ctx: Context, record: dict) -> None:
    """SIGSTOP a partition's leader until another was elected; probe it; SIGCONT."""
    before = _partition_of_leader(ctx)
    broker = before.state.leader
    hosted = ctx.placement().hosted_by(broker)
    probe = _Probe(ctx, broker, before.partition)
    try:
        pid = ctx.procs.pause("broker", str(broker))
        fault_t = time.monotonic()
        record.update(target=f"broker {broker}", pid=pid, partition=before.partition,
                      epoch_before=before.state.leader_epoch)
        ctx.emit("fault", detail=f"SIGSTOPped broker {broker}, leader of {ctx.topic}/"
                 f"{before.partition}; waiting for a new leader")
        try:
            elected_t = _elected(ctx, record, before, fault_t)
            record["acked_by_new_leader"] = _acked_by_new_leader(ctx, before.partition,
                                                                 elected_t, record["epoch"])
            probe.send(PROBES)
        finally:
            ctx.procs.resume(pid)
        resumed_t = time.monotonic()
        record["paused_s"] = round(resumed_t - fault_t, 3)
        ctx.emit("fault", detail=f"SIGCONT broker {broker}; collecting its answers to "
                 f"{PROBES} probe writes")
        probe.collect(ACK_TIMEOUT_MS / 1000 + 5)
        record.update(probe_sent=len(probe.sent), probe_answers=dict(probe.answers),
                      probe_acked=len(probe.acked))
    finally:
        probe.close()
    back_t = wait_broker_back(ctx, broker, pid, resumed_t)
    isr_t = lead.wait_in_isr(ctx.zk(), ctx.topic, hosted, broker, ctx.settings.recovery_timeout_s)
    record["rejoined_isr_s"] = round(isr_t - resumed_t, 3)
    state = lead.leadership(ctx.zk(), ctx.topic, before.partition).state
    record["rejoined_as_follower"] = state.leader != broker or state.leader_epoch > record["epoch"]
    ctx.recover(record, resumed_t, back_t)


def pause_leader_checks(ctx: Context, result: dict, report) -> list[Check]:
    acked = sum(f.get("probe_acked", 0) for f in ctx.faults)
    sent = sum(f.get("probe_sent", 0) for f in ctx.faults)
    result["zombie_acks"] = acked
    return [
        lost_is_zero(report),
        *_election_checks(ctx),
        Check("the old leader acknowledged nothing after the election (acks=all writes sent "
              "to it while paused)", sent == PROBES * len(ctx.faults) and acked == 0,
              f"{acked} of {sent} acknowledged; answers "
              + "; ".join(str(f.get("probe_answers")) for f in ctx.faults)),
        Check("the same process came back (no restart) and rejoined the ISR as a follower",
              restarts(ctx, "broker") == 0 and all(f.get("rejoined_as_follower")
                                                   for f in ctx.faults),
              f"{restarts(ctx, 'broker')} restart(s); "
              + ", ".join(f"{f.get('rejoined_isr_s')} s" for f in ctx.faults)),
        _replicas_agree(ctx),
    ]


# --- lose-disk -----------------------------------------------------------------------------

def _topic_bytes(ctx: Context, broker: int) -> int:
    root = ctx.files.broker_dir(broker) / ctx.topic
    return sum(f.stat().st_size for f in root.glob("*/*.log")) if root.exists() else 0


def lose_disk(ctx: Context, record: dict) -> None:
    """SIGSTOP a broker (nothing more is written), delete its data dir, SIGKILL it: the
    supervisor starts it on an empty dir; it must rebuild from the leaders."""
    brokers = ctx.procs.ids("broker")
    broker = int(brokers[len(ctx.faults) % len(brokers)])
    hosted = ctx.placement().hosted_by(broker)
    root = ctx.files.broker_dir(broker)
    pid = ctx.procs.pause("broker", str(broker))
    fault_t = time.monotonic()
    record.update(target=f"broker {broker}", pid=pid, lost_bytes=_topic_bytes(ctx, broker))
    try:
        for child in list(root.iterdir()):
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    finally:
        os.kill(pid, signal.SIGKILL)
    ctx.emit("fault", detail=f"deleted broker {broker}'s data dir ({record['lost_bytes']:,} "
             "bytes of the topic) and SIGKILLed it")
    new_pid = ctx.procs.wait_replaced("broker", str(broker), pid, ctx.settings.recovery_timeout_s)
    back_t = wait_broker_back(ctx, broker, new_pid, fault_t)
    ctx.emit("waiting", detail=f"broker {broker} rebuilding its replicas")
    isr_t = lead.wait_in_isr(ctx.zk(), ctx.topic, hosted, broker, ctx.settings.recovery_timeout_s)
    rebuilt = _topic_bytes(ctx, broker)
    record.update(rebuild_s=round(isr_t - back_t, 3), rebuilt_bytes=rebuilt,
                  rebuild_mb_per_s=round(rebuilt / 1e6 / max(isr_t - back_t, 1e-3), 2))
    ctx.recover(record, fault_t, back_t)


def lose_disk_checks(ctx: Context, result: dict, report) -> list[Check]:
    result["rebuilds"] = [{k: f.get(k) for k in ("target", "lost_bytes", "rebuilt_bytes",
                                                  "rebuild_s", "rebuild_mb_per_s")}
                          for f in ctx.faults]
    return [
        lost_is_zero(report),
        Check("it rebuilt its replicas and rejoined the ISR each time (bytes in seconds)",
              bool(ctx.faults) and all(f.get("rebuilt_bytes", 0) >= f.get("lost_bytes", 1)
                                       for f in ctx.faults),
              "; ".join(f"{f.get('target')}: {f.get('lost_bytes')} bytes lost, "
                        f"{f.get('rebuilt_bytes')} rebuilt in {f.get('rebuild_s')} s"
                        for f in ctx.faults)),
        _replicas_agree(ctx),
    ]


# --- rolling-restart-brokers ---------------------------------------------------------------

def rolling_restart_brokers(ctx: Context, record: dict) -> None:
    brokers = ctx.procs.ids("broker")
    broker = int(brokers[len(ctx.faults) % len(brokers)])
    led = _led_by(ctx, broker)
    fault_t = time.monotonic()
    pid = ctx.procs.signal("broker", str(broker), signal.SIGTERM)
    record.update(target=f"broker {broker}", pid=pid, led=sorted(led))
    ctx.emit("fault", detail=f"SIGTERMed broker {broker} (leader of {sorted(led)})")
    new_pid = ctx.procs.wait_replaced("broker", str(broker), pid, ctx.settings.recovery_timeout_s)
    back_t = wait_broker_back(ctx, broker, new_pid, fault_t)
    lead.wait_in_isr(ctx.zk(), ctx.topic, ctx.placement().hosted_by(broker), broker,
                     ctx.settings.recovery_timeout_s)
    time.sleep(1.0)
    record["stall_s"] = round(ctx.producer.max_ack_gap(fault_t, time.monotonic(), led), 3) \
        if led else 0.0
    ctx.recover(record, fault_t, back_t)
    if len(ctx.faults) + 1 == ctx.settings.count:
        _wait_balanced(ctx, record)


def _wait_balanced(ctx: Context, record: dict) -> None:
    """After the last restart: every partition led by its preferred replica again."""
    placement = ctx.placement()
    started = time.monotonic()
    try:
        for p in range(ctx.settings.partitions):
            lead.wait_for(ctx.zk(), ctx.topic, p,
                          lambda s, want=placement.replicas[p][0]: s.leader == want,
                          max(0.1, started + ctx.settings.recovery_timeout_s - time.monotonic()),
                          f"preferred leader {placement.replicas[p][0]}")
        record["balanced_after_s"] = round(time.monotonic() - started, 3)
    except FaultError as exc:
        record["balanced_error"] = str(exc)


def rolling_restart_brokers_checks(ctx: Context, result: dict, report) -> list[Check]:
    stalls = [f.get("stall_s") for f in ctx.faults]
    result["stall_s_max"] = max((s for s in stalls if s is not None), default=None)
    last = ctx.faults[-1] if ctx.faults else {}
    return [
        lost_is_zero(report),
        Check(f"produce stalled at most {STALL_BOUND_S:g} s per restart (on the partitions "
              "the broker led)", bool(stalls) and all(s is not None and s <= STALL_BOUND_S
                                                       for s in stalls),
              ", ".join(f"{s} s" for s in stalls)),
        Check("leadership rebalanced at the end (every partition led by its preferred replica)",
              "balanced_after_s" in last,
              last.get("balanced_error") or f"after {last.get('balanced_after_s')} s"),
        _replicas_agree(ctx),
    ]


# --- unclean-election ----------------------------------------------------------------------

def _log_ends(ctx: Context, broker: int) -> dict[int, int]:
    """The end of each of the broker's logs of the topic, from its files (it is paused)."""
    ends = {}
    root = ctx.files.broker_dir(broker) / ctx.topic
    for p in ctx.placement().hosted_by(broker):
        segments = sorted((root / str(p)).glob("*.log"), key=lambda f: int(f.stem))
        ends[p] = int(segments[-1].stem) + segments[-1].stat().st_size if segments else 0
    return ends


def _messages_past(ctx: Context, broker: int, cuts: dict[int, int]) -> int:
    """How many messages the broker's files of the topic hold past ``cuts`` (partition -> byte
    offset): what it must cut when it follows a leader whose log diverges from its own there
    (read while it is paused)."""
    count = 0
    root = ctx.files.broker_dir(broker) / ctx.topic
    for p, end in cuts.items():
        segments = sorted((root / str(p)).glob("*.log"), key=lambda f: int(f.stem))
        if not segments:
            continue
        data = b"".join(f.read_bytes() for f in segments)
        start = end - int(segments[0].stem)
        if 0 <= start < len(data):
            count += message.validate_set(data[start:], len(data))
    return count


def _epochs(ctx: Context, broker: int, partition: int) -> list[tuple[int, int]]:
    """The ``(epoch, start)`` entries of the broker's leader-epoch checkpoint of the partition
    (the file is rewritten whole by a rename, so it can be read while the broker runs)."""
    return LeaderEpochs(ctx.files.broker_dir(broker) / ctx.topic / str(partition)).entries


def divergence(entries: list[tuple[int, int]], end: int, leader_entries: list[tuple[int, int]],
               leader_end: int) -> int:
    """Where a replica's log stops being a prefix of its leader's: the first offset the two
    logs hold in different leader epochs, or the shorter log's end. Bytes written in the same
    epoch at the same offset are the same bytes (one leader wrote them, the others copied),
    so this is the cut a returning replica must make, found from both logs' epoch entries and
    ends, independently of the OFFSET_FOR_EPOCH rounds that find it on the broker.

    A stale leader resumed before it learns it was replaced may append, in its old epoch,
    produce requests that waited in its sockets; elected uncleanly, it leads with that tail.
    A replica that led the partition meanwhile wrote the same offsets in a newer epoch, so it
    cuts from where its own epoch began, below the new leader's end::

        >>> divergence([(0, 0), (1, 2900)], 8120, [(0, 0), (2, 4350)], 4350)
        2900
        >>> divergence([(0, 0)], 5000, [(0, 0), (1, 4350)], 4350)
        4350
        >>> divergence([(0, 0)], 300, [(0, 0)], 900)
        300
    """
    def epoch_at(offset, table):
        found = -1
        for epoch, start in table:
            if start > offset:
                break
            found = epoch
        return found
    shorter = min(end, leader_end)
    for offset in sorted({0, *(s for _, s in entries), *(s for _, s in leader_entries)}):
        if offset >= shorter:
            break
        if epoch_at(offset, entries) != epoch_at(offset, leader_entries):
            return offset
    return shorter


def _truncated(ctx: Context, broker: int) -> int | None:
    doc = lead.broker_document(ctx.zk(), broker, zmq.Context.instance())
    stats = doc.get("stats")
    return None if stats is None else int(stats.get("truncated_messages", 0))   # a Counter's


def _unclean_counted(ctx: Context, before: dict[int, int]) -> dict[int, int]:
    """The controller's new unclean elections per partition, written with the state node that
    elects (one transaction), waited for up to ELECTION_SLACK_S all the same; a count that
    stays put reads 0, one counted twice reads 2."""
    deadline = time.monotonic() + ELECTION_SLACK_S
    while True:
        counted = {p: lead.unclean_elections(ctx.zk(), ctx.topic, p).get("count", 0) - n
                   for p, n in before.items()}
        if all(counted.values()) or time.monotonic() >= deadline:
            return counted
        time.sleep(lead.POLL_S)


def _elected_ends(ctx: Context, stale: int, partitions) -> dict[int, int]:
    """The stale replica's log ends once it leads every partition (the producer held, the ISR
    paused: nothing is appended meanwhile), from its METADATA rows. These, not its files while
    it was paused, are where the new epoch begins: a paused broker resumed may first take in
    what waited in its sockets (a produce request to a partition it still thought it led, a
    fetch answer), and truncate or keep it before it leads."""
    want = set(partitions)
    doc = lead.broker_document(ctx.zk(), stale, zmq.Context.instance())
    ends = {row["partition"]: int(row["end_offset"]) for row in doc.get("partitions", ())
            if row.get("topic") == ctx.topic and row.get("partition") in want}
    missing = want - set(ends)
    if missing:
        raise FaultError(f"broker {stale}'s METADATA has no row for {ctx.topic}/"
                         f"{sorted(missing)}")
    return ends


def unclean_election(ctx: Context, record: dict) -> None:
    client, s = ctx.zk(), ctx.settings
    brokers = [int(b) for b in ctx.procs.ids("broker")]
    stale = brokers[len(ctx.faults) % len(brokers)]
    isr = [b for b in brokers if b != stale]
    partitions = range(s.partitions)
    unclean_before = {p: lead.unclean_elections(client, ctx.topic, p).get("count", 0)
                      for p in partitions}
    truncated_before = {b: _truncated(ctx, b) for b in isr}
    stale_pid = ctx.procs.pause("broker", str(stale))
    fault_t = time.monotonic()
    record.update(target=f"broker {stale} (stale), ISR {isr}", stale=stale)
    pids = {}
    try:
        ctx.emit("fault", detail=f"SIGSTOPped broker {stale}; waiting for it to leave the ISR")
        out_t = lead.wait_out_of_isr(client, ctx.topic, partitions, stale, s.recovery_timeout_s)
        deadline = time.monotonic() + s.recovery_timeout_s
        while ctx.producer.acked_between(out_t, time.monotonic()) < max(10, s.rate // 2):
            if time.monotonic() > deadline:
                raise FaultError("nothing acknowledged while the stale replica was out")
            time.sleep(0.1)
        ctx.producer.hold()
        stale_ends = _log_ends(ctx, stale)
        for b in isr:
            pids[b] = ctx.procs.pause("broker", str(b))
        isr_ends = {b: _log_ends(ctx, b) for b in isr}
    finally:
        ctx.procs.resume(stale_pid)
    ctx.emit("fault", detail=f"paused the ISR {isr}, resumed broker {stale}: waiting for the "
             "unclean election")
    try:
        for p in partitions:
            lead.wait_for(client, ctx.topic, p, lambda st: st.leader == stale,
                          s.recovery_timeout_s, f"broker {stale} elected (unclean)")
        record["election_s"] = round(time.monotonic() - fault_t, 3)
        record["unclean_counted"] = _unclean_counted(ctx, unclean_before)
        elected_ends = _elected_ends(ctx, stale, partitions)
        leader_epochs = {p: _epochs(ctx, stale, p) for p in partitions}
        cuts = {b: {p: divergence(_epochs(ctx, b, p), isr_ends[b].get(p, 0), leader_epochs[p],
                                  elected_ends[p]) for p in partitions} for b in isr}
        record["to_cut"] = {b: _messages_past(ctx, b, cuts[b]) for b in isr}
        record["cuts"] = cuts
    finally:
        for pid in pids.values():
            ctx.procs.resume(pid)
    resumed_t = time.monotonic()
    acked = dict(ctx.ledger.acked)
    earlier = ctx.notes.setdefault("_expected_lost", set())     # lost at an earlier fault
    expected = {seq for seq, ((_, p), offset) in acked.items()
                if offset >= elected_ends.get(p, 0)} - earlier
    record.update(expected_lost=len(expected), stale_ends=stale_ends, elected_ends=elected_ends)
    earlier.update(expected)
    reused = ctx.notes.setdefault("_reused", {})
    for p in partitions:
        top = max(ends.get(p, 0) for ends in isr_ends.values())
        if top > elected_ends.get(p, 0):
            reused.setdefault((ctx.topic, p), []).append((elected_ends.get(p, 0), top))
    back_t = max(wait_broker_back(ctx, b, pids[b], resumed_t) for b in isr)
    for b in isr:
        lead.wait_in_isr(client, ctx.topic, ctx.placement().hosted_by(b), b,
                         s.recovery_timeout_s)
    truncated_after = {b: _truncated(ctx, b) for b in isr}
    record["truncated"] = {b: None if truncated_before[b] is None or truncated_after[b] is None
                           else truncated_after[b] - truncated_before[b] for b in isr}
    ctx.producer.release()
    ctx.recover(record, fault_t, back_t)


def unclean_election_checks(ctx: Context, result: dict, report) -> list[Check]:
    expected = sum(f.get("expected_lost", 0) for f in ctx.faults)
    result["unclean_lost"] = expected
    counted = [f.get("unclean_counted", {}) for f in ctx.faults]
    cut_ok = [bool(f.get("truncated")) and all(
        f["truncated"].get(b) == n for b, n in f.get("to_cut", {}).items())
        for f in ctx.faults]
    return [
        Check("the unclean election happened every time, counted by the controller once per "
              "partition", bool(counted) and all(c and all(n == 1 for n in c.values())
                                                 for c in counted), str(counted)),
        Check("something acknowledged was lost (the fault did what it should)", expected > 0,
              f"{expected} acknowledged message(s) past the stale replica's log ends"),
        Check("the ledger's loss is exactly the acknowledged messages past the stale replica's "
              "log ends", report.lost == report.lost_excused and report.not_stored == expected,
              f"lost {report.lost} ({report.lost_excused} expected), not in the log "
              f"{report.not_stored}, expected {expected}"),
        Check("every cut is counted exactly: each returning replica's truncated_messages grew "
              "by the messages its files held past where its log diverged from the new "
              "leader's", bool(cut_ok) and all(cut_ok),
              "; ".join(f"{f.get('truncated')} for {f.get('to_cut')} (acknowledged among them "
                        f"{f.get('expected_lost')})" for f in ctx.faults)),
    ]


# --- shared --------------------------------------------------------------------------------

def _replicas_agree(ctx: Context) -> Check:
    """Every replica of every partition is a byte prefix of its longest replica (read from the
    brokers' files after the cluster stopped): followers copy the leader byte for byte."""
    placement = ctx.placement()
    differ = []
    for p, replicas in enumerate(placement.replicas):
        logs = {}
        for b in replicas:
            root = ctx.files.broker_dir(b) / ctx.topic / str(p)
            segments = sorted(root.glob("*.log"), key=lambda f: int(f.stem))
            start = int(segments[0].stem) if segments else 0
            logs[b] = (start, b"".join(f.read_bytes() for f in segments))
        longest = max(logs.values(), key=lambda v: v[0] + len(v[1]))
        for b, (start, data) in logs.items():
            offset = start - longest[0]
            if offset < 0 or longest[1][offset:offset + len(data)] != data:
                differ.append(f"{ctx.topic}/{p} on broker {b}")
    return Check("every replica is a byte prefix of the partition's longest replica",
                 not differ, ", ".join(differ[:10]))
