"""The web dashboard in a real browser: Debian's chromium, headless, against a live cluster.

``make test`` installs chromium when it is missing (the Makefile's ``chromium`` target); run
directly without it, this test is skipped with that hint. The page marks each plot canvas with
``data-points`` (points drawn) and ``data-series`` (series with points), which ``--dump-dom``
shows once the page has polled live data.
"""
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from html.parser import HTMLParser

import pytest

from clients import Producer
from tests.helpers import create_topic, wait_for

PLOTS = ("msgs-in", "bytes", "consume", "lag", "cpu", "rss")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-dev-shm-usage", "--window-size=1400,1000"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Debian's chromium is not installed: run 'make test' (it installs it) or "
                    "'apt-get install chromium'")
    return path


class Canvases(HTMLParser):
    """Every <canvas id="plot-..."> and its data attributes."""

    def __init__(self):
        super().__init__()
        self.found: dict[str, dict] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "canvas" and (attrs.get("id") or "").startswith("plot-"):
            self.found[attrs["id"][len("plot-"):]] = attrs


def run_chromium(binary: str, profile, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180)


def every_plot_has_data(url: str) -> bool:
    state = json.loads(urllib.request.urlopen(f"{url}api/state?since=0", timeout=10).read())
    keys = ("msgs_in", "bytes_in", "consume", "lag", "cpu", "rss")
    with_data = [p for p in state["points"]
                 if all(any(v is not None for v in p[k].values()) for k in keys)]
    return len(with_data) >= 3


def test_page_draws_live_plots_in_headless_chromium(cluster_factory, tmp_path):
    binary = chromium()
    cluster = cluster_factory(brokers=2, workers=1,
                              worker_settings={"topic": "clicks", "group": "loaders",
                                               "consumer": {"auto_commit_ms": 200},
                                               "handler": "tests.cluster.observe.handlers:"
                                                          "hold_on_block"})
    url = cluster.info()["dashboard"]
    create_topic(cluster.zookeeper, "clicks", 2)
    stop = threading.Event()

    def traffic():
        with Producer(cluster.zookeeper, acks=1, linger_ms=5) as producer:
            i = 0
            while not stop.is_set():
                for _ in range(20):
                    producer.send("clicks", b"click %06d" % i)
                    i += 1
                time.sleep(0.05)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        wait_for(lambda: every_plot_has_data(url), 90,
                 what="three samples with figures for every plot")
        dump = run_chromium(binary, tmp_path / "profile", "--virtual-time-budget=8000",
                            "--dump-dom", url)
        shot = tmp_path / "dashboard.png"
        picture = run_chromium(binary, tmp_path / "profile", "--virtual-time-budget=8000",
                               f"--screenshot={shot}", url)
    finally:
        stop.set()
        thread.join(30)
    assert dump.returncode == 0, dump.stderr[-2000:]
    page = Canvases()
    page.feed(dump.stdout)
    assert set(page.found) == set(PLOTS), page.found
    for name, attrs in page.found.items():
        assert int(attrs["data-points"]) > 0, (name, attrs)
        assert int(attrs["data-series"]) > 0, (name, attrs)
    # one series per broker, per process (supervisor, 2 brokers, 1 worker), per group partition
    assert int(page.found["msgs-in"]["data-series"]) == 2
    assert int(page.found["cpu"]["data-series"]) == 4
    assert int(page.found["lag"]["data-series"]) == 2
    assert 'data-state="live"' in dump.stdout
    assert "supervisor 0" in dump.stdout and "clicks/1" in dump.stdout
    assert picture.returncode == 0, picture.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_the_time_axis_spans_the_history_the_page_has():
    """A few minutes of data fill the plot (not the right edge of a fixed 15-minute axis); the
    labels fall on a step that gives a handful of them. dashboard.js's own functions, in node."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    from pathlib import Path
    script = Path(__file__).resolve().parents[3] / "cluster/observe/web_static/dashboard.js"
    probe = (f"const d = require({json.dumps(str(script))});"
             "console.log(JSON.stringify([[0, 200], [0, 30], [0, 900], [0, 5000], [100, 280]]"
             ".map(([a, b]) => d.axisOf(a, b, 900)).concat([[0, 60, 90, 300].map(d.tickLabel)])))")
    got = json.loads(subprocess.run([node, "-e", probe], capture_output=True, text=True,
                                    check=True, timeout=30).stdout)
    assert got[:5] == [{"span": 200, "step": 60}, {"span": 60, "step": 10},
                       {"span": 900, "step": 300}, {"span": 900, "step": 300},
                       {"span": 180, "step": 30}]
    assert got[5] == ["now", "-1 min", "-90 s", "-5 min"]
