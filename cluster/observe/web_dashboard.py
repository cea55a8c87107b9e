"""The web dashboard: one page, its JSON feed and ``/metrics``, served from a thread.

| path                 | what                                                               |
| -------------------- | ------------------------------------------------------------------ |
| /                    | the dashboard page (cluster/observe/web_static/index.html)           |
| /static/<file>       | its script and style sheet; nothing is loaded from the network     |
| /api/state?since=N   | ``Sampler.state(N)``: latest snapshot + history points after seq N |
| /metrics             | Prometheus text (cluster.observe.metrics)                                  |

The page polls /api/state once a second, asking only for points it has not seen. Off
loopback the server needs a ``token``, and answers nothing of the cluster without it
(cluster/observe/dashboard_access.py).

    server = DashboardServer(sampler, port=8080).start()   # port 0: any free port
    server.url  # "http://127.0.0.1:8080/"; server.stop()
    DashboardServer(sampler, 8080, host="0.0.0.0", token=secret)   # no token: refused
"""
from __future__ import annotations

import errno
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from cluster.errors import ClusterSettingError
from cluster.observe import dashboard_access, metrics

log = logging.getLogger(__name__)

STATIC_PACKAGE = "cluster.observe.web_static"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
DEFAULT_PORT = 8080


def static_file(name: str) -> tuple[bytes, str] | None:
    """A file shipped in cluster/observe/web_static and its content type; None if there is none."""
    suffix = name[name.rfind("."):] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
        return None
    try:
        return resources.files(STATIC_PACKAGE).joinpath(name).read_bytes(), STATIC_TYPES[suffix]
    except (FileNotFoundError, IsADirectoryError):
        return None


class _Handler(BaseHTTPRequestHandler):
    server_version = "sluice-dashboard"
    sampler = None  # set on the subclass made per server
    token = None    # likewise: None, or what every request must show

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not dashboard_access.admits(self.token, dashboard_access.presented(self.headers,
                                                                               query)):
            self._send(HTTPStatus.UNAUTHORIZED, b"this dashboard needs its token (an "
                       b"Authorization: Bearer header, or ?token= once in a browser)\n",
                       "text/plain; charset=utf-8", {"WWW-Authenticate": "Bearer"})
            return
        if self.token is not None and "token" in query:
            self._send(HTTPStatus.SEE_OTHER, b"", "text/plain; charset=utf-8", {
                "Location": url.path, "Set-Cookie": dashboard_access.cookie_header(self.token)})
            return
        if url.path in ("/", "/index.html"):
            self._static("index.html")
        elif url.path.startswith("/static/"):
            self._static(url.path[len("/static/"):])
        elif url.path == "/api/state":
            try:
                since = int(query.get("since", ["0"])[0])
            except ValueError:
                self._send(HTTPStatus.BAD_REQUEST, b"since must be a whole number\n",
                           "text/plain; charset=utf-8")
                return
            body = json.dumps(self.sampler.state(since), allow_nan=False).encode()
            self._send(HTTPStatus.OK, body, "application/json")
        elif url.path == "/metrics":
            self._send(HTTPStatus.OK, metrics.render(self.sampler.latest), metrics.CONTENT_TYPE)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def _static(self, name: str) -> None:
        found = static_file(name)
        if found is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
        else:
            self._send(HTTPStatus.OK, *found)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str,
              headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away mid-answer; nothing to tell it

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
        log.debug("%s %s", self.address_string(), format % args)


class DashboardServer:
    """An HTTP server for one sampler, on ``host:port`` (0: a free port) in a daemon thread.

    When ``port`` is taken and ``fallback`` is true, a free port is used instead (logged), so a
    second local cluster still gets a dashboard; ``url`` is the address actually served.
    A ``host`` other than loopback is refused without a ``token``.
    """

    def __init__(self, sampler, port: int = DEFAULT_PORT, host: str = "127.0.0.1",
                 fallback: bool = True, token: str | None = None):
        if token is None and not dashboard_access.is_loopback(host):
            raise ClusterSettingError(f"the dashboard may listen on {host}, beyond loopback, "
                                      "only with a token")
        handler = type("Handler", (_Handler,), {"sampler": sampler, "token": token})
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or not fallback or port == 0:
                raise
            self.httpd = ThreadingHTTPServer((host, 0), handler)
            log.warning("dashboard port %d is in use; serving on %d instead", port,
                        self.httpd.server_address[1])
        self.httpd.daemon_threads = True
        self.host = host
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> "DashboardServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={
            "poll_interval": 0.5}, name="sluice-dashboard", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self.httpd.server_close()
