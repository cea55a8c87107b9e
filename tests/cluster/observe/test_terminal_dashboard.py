"""``sluice dashboard``: a snapshot rendered (pure), then the live view of a supervised cluster
found through its cluster.json, straight from ZooKeeper, and quit with q in a terminal."""
import json
import os
import pty
import select
import subprocess
import sys
import time
import urllib.request

from rich.console import Console

from cluster.observe import terminal_dashboard as dashboard
from cluster.observe.sampler import point
from tests.cluster.observe.snapshots import snapshot
from tests.conftest import REPO
from tests.helpers import wait_for


def test_terminal_view_renders_a_snapshot():
    console = Console(width=160, record=True)
    console.print(dashboard.render(snapshot(), [point(snapshot())] * 3, "test"))
    text = console.export_text()
    assert "broker 0" in text and "12.5%" in text and "47.7 MiB" in text
    assert "clicks/0" in text and "STUCK" in text and "20.6 min" in text
    assert "group loaders: 1 member(s), settled, 2 rebalance(s)" in text
    assert "answered 2 request(s) with offset_out_of_range" in text


def test_terminal_view_shows_the_audit_totals():
    latest = dict(snapshot(), audit={
        "produced": [{"topic": "clicks", "acknowledged": 1200, "unacknowledged": 30}],
        "consumed": [{"group": "loaders", "topic": "clicks", "consumed": 1199}],
        "records": 3, "bad_records": 0})
    console = Console(width=160, record=True)
    console.print(dashboard.render(latest, [point(latest)], "test"))
    text = console.export_text()
    assert "audit trail" in text and "1200" in text and "group loaders" in text
    assert "1199" in text
    console = Console(width=160, record=True)
    console.print(dashboard.render(snapshot(), [point(snapshot())], "test"))
    assert "audit trail" not in console.export_text()


def test_sparkline_scales_to_the_maximum():
    assert dashboard.sparkline([0, 1, 2, None, 4]) == "▁▃▅ █"
    assert dashboard.sparkline([]) == ""


def test_cluster_json_status_and_terminal_view_show_the_dashboard(cluster_factory):
    cluster = cluster_factory(brokers=1)
    url = cluster.info()["dashboard"]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/")
    assert cluster.status()["dashboard"] == url
    with urllib.request.urlopen(url, timeout=10) as reply:
        page = reply.read().decode()
    assert 'id="plot-cpu"' in page and "/static/dashboard.js" in page
    for name in ("dashboard.js", "dashboard.css"):
        with urllib.request.urlopen(f"{url}static/{name}", timeout=10) as reply:
            assert reply.status == 200 and len(reply.read()) > 1000
    wait_for(lambda: json.loads(urllib.request.urlopen(f"{url}api/state?since=0",
                                                       timeout=10).read())["seq"] >= 2,
             30, what="two samples")
    state = json.loads(urllib.request.urlopen(f"{url}api/state?since=0", timeout=10).read())
    assert len(state["points"]) == state["seq"] and state["history_s"] == 900
    newer = json.loads(urllib.request.urlopen(f"{url}api/state?since={state['seq']}",
                                              timeout=10).read())
    assert all(p["seq"] > state["seq"] for p in newer["points"])

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SLUICE_ZK", None)
    once = subprocess.run([sys.executable, "-m", "cluster.cli", "dashboard", "--once",
                           "--data-dir", str(cluster.data_dir)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert once.returncode == 0, once.stderr
    assert "supervisor 0" in once.stdout and "broker 0" in once.stdout and url in once.stdout
    # `sluice dashboard --once | head`: a reader gone before the frame is written ends it as any
    # command (cli/exits.py: quietly, 141), not with rich's own exit status 1
    read_end, write_end = os.pipe()
    os.close(read_end)
    cut = subprocess.run([sys.executable, "-m", "cluster.cli", "dashboard", "--once",
                          "--data-dir", str(cluster.data_dir)], cwd=REPO, env=env,
                         stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(write_end)
    assert (cut.returncode, cut.stderr) == (141, "")
    as_json = subprocess.run([sys.executable, "-m", "cluster.cli", "dashboard", "--json",
                              "--data-dir", str(cluster.data_dir)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    assert {p["role"] for p in json.loads(as_json.stdout)["processes"]} == {"supervisor",
                                                                             "broker"}
    # straight to ZooKeeper (no supervisor address): brokers and groups, no processes
    direct = subprocess.run([sys.executable, "-m", "cluster.cli", "dashboard", "--json",
                             "--zookeeper", cluster.zookeeper, "--data-dir",
                             str(cluster.data_dir / "elsewhere")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert direct.returncode == 0, direct.stderr
    snapshot = json.loads(direct.stdout)
    assert snapshot["processes"] == [] and [b["broker"] for b in snapshot["brokers"]] == [0]


def test_terminal_view_quits_on_q_in_a_terminal(cluster_factory):
    cluster = cluster_factory(brokers=1)
    pid, fd = pty.fork()
    if pid == 0:  # the child: sluice dashboard on a pseudo-terminal
        os.chdir(REPO)
        os.environ["PYTHONPATH"] = str(REPO)
        os.execv(sys.executable, [sys.executable, "-m", "cluster.cli", "dashboard",
                                  "--data-dir", str(cluster.data_dir)])
    output = b""

    def read_some(timeout):
        nonlocal output
        if select.select([fd], [], [], timeout)[0]:
            try:
                output += os.read(fd, 65536)
            except OSError:
                return False
        return True

    try:
        wait_for(lambda: read_some(0.2) and b"broker 0" in output, 60,
                 what="the first frame")
        os.write(fd, b"q")
        deadline = time.monotonic() + 30
        finished = 0
        while not finished and time.monotonic() < deadline:
            if not read_some(0.2):
                time.sleep(0.05)   # the terminal closed: the process is exiting
            finished, status = os.waitpid(pid, os.WNOHANG)
        assert finished, "sluice dashboard did not quit on q"
        pid = 0
        assert os.waitstatus_to_exitcode(status) == 0
        assert b"\x1b[?1049l" in output   # left the alternate screen
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
