"""The dashboard and /metrics: loopback by default; elsewhere only with a token, and nothing of
the cluster shown without it (issue 14 item 5)."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from cluster.errors import ClusterSettingError
from cluster.observe import dashboard_access
from cluster.observe.web_dashboard import DashboardServer
from cluster.supervision import ClusterConfig
from tests.cluster.observe.snapshots import snapshot
from tests.helpers import ROOT

TOKEN = "t0ken-" + "x" * 30
PATHS = ["/", "/index.html", "/static/dashboard.js", "/api/state?since=0", "/metrics"]


class Snapshots:
    """What the server reads of a Sampler: its latest snapshot and state()."""

    def latest(self) -> dict:
        return snapshot()

    def state(self, since: int) -> dict:
        return {"seq": 7, "latest": snapshot(), "points": []}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


@pytest.fixture
def guarded():
    server = DashboardServer(Snapshots(), 0, host="0.0.0.0", token=TOKEN).start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


def test_off_loopback_without_a_token_is_refused():
    with pytest.raises(ClusterSettingError, match="only with a token"):
        DashboardServer(Snapshots(), 0, host="0.0.0.0")


@pytest.mark.parametrize("path", PATHS)
def test_nothing_without_the_token(guarded, path):
    for headers in ({}, {"Authorization": "Bearer wrong-wrong-wrong-wrong"},
                    {"Cookie": "sluice_dashboard=wrong"}, {"Cookie": "junk;;=\x7f"}):
        status, body, _ = get(guarded + path, headers)
        assert status == 401, (path, headers)
        assert b"clicks" not in body and b"loaders" not in body and b"<html" not in body
    status, _, _ = get(guarded + path.replace("?", "?token=wrong&") if "?" in path
                       else guarded + path + "?token=wrong")
    assert status == 401


@pytest.mark.parametrize("path", PATHS)
def test_the_bearer_token_opens_every_path(guarded, path):
    status, body, _ = get(guarded + path, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and body


def test_a_browser_shows_the_token_once_and_then_has_a_cookie(guarded):
    status, _, headers = get(f"{guarded}/?token={TOKEN}")
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, body, _ = get(f"{guarded}/api/state?since=0", {"Cookie": cookie.split(";")[0]})
    assert status == 200 and json.loads(body)["latest"]["groups"][0]["group"] == "loaders"


def test_loopback_needs_no_token_by_default():
    server = DashboardServer(Snapshots(), 0).start()
    try:
        status, body, _ = get(f"{server.url}metrics")
        assert status == 200 and b"clicks" in body
    finally:
        server.stop()


def test_decisions():
    assert [dashboard_access.is_loopback(h) for h in ("127.0.0.1", "127.9.9.9", "::1",
                                                      "localhost", "0.0.0.0", "example.com")] \
        == [True, True, True, True, False, False]
    assert not dashboard_access.needs_token("127.0.0.1", None)
    assert dashboard_access.needs_token("127.0.0.1", "/some/file")
    assert dashboard_access.needs_token("0.0.0.0", None)
    assert dashboard_access.admits(None, None)
    assert not dashboard_access.admits(TOKEN, None)
    assert not dashboard_access.admits(TOKEN, TOKEN[:-1])
    assert dashboard_access.admits(TOKEN, TOKEN)


def test_token_file_is_made_private_and_a_readable_one_is_refused(tmp_path):
    path = tmp_path / "security" / "dashboard_token"
    token = dashboard_access.load_token(path, create=True)
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert dashboard_access.load_token(path, create=True) == token      # kept, not remade
    os.chmod(path, 0o644)
    with pytest.raises(ClusterSettingError, match="chmod 600"):
        dashboard_access.load_token(path, create=False)
    with pytest.raises(ClusterSettingError, match="cannot read"):
        dashboard_access.load_token(tmp_path / "missing", create=False)
    short = tmp_path / "short"
    short.write_text("abc\n")
    os.chmod(short, 0o600)
    with pytest.raises(ClusterSettingError, match="shorter"):
        dashboard_access.load_token(short, create=False)


def test_config_round_trips_and_refuses_a_bad_token_file(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    os.chmod(token_file, 0o600)
    config = ClusterConfig(tmp_path / "d", dashboard_host="0.0.0.0",
                           dashboard_token_file=str(token_file))
    assert ClusterConfig.from_args(config.to_argv()) == config
    assert ClusterConfig.from_args(ClusterConfig(tmp_path / "d").to_argv()).dashboard_host \
        == "127.0.0.1"
    os.chmod(token_file, 0o640)
    with pytest.raises(ClusterSettingError, match="read by others"):
        ClusterConfig(tmp_path / "d", dashboard_token_file=str(token_file))


def test_a_cluster_bound_beyond_loopback_asks_for_its_token(cluster_factory):
    cluster = cluster_factory(brokers=1, dashboard_host="0.0.0.0", kafka_port=None)
    info = cluster.info()
    token_file = info["dashboard_token_file"]
    assert token_file == str(cluster.data_dir / "security" / "dashboard_token")
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = open(token_file).read().strip()
    url = info["dashboard"].replace("0.0.0.0", "127.0.0.1")
    assert get(url + "metrics")[0] == 401
    status, body, _ = get(url + "metrics", {"Authorization": f"Bearer {token}"})
    assert status == 200 and b"sluice_broker_up" in body
    shown = subprocess.run([sys.executable, "-m", "cluster.cli", "--data-dir",
                            str(cluster.data_dir), "dashboard", "--json"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "processes" in json.loads(shown.stdout)
    status_json = subprocess.run([sys.executable, "-m", "cluster.cli", "--data-dir",
                                  str(cluster.data_dir), "cluster", "status", "--json"],
                                 cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert token not in status_json.stdout and token not in cluster.log_text()
