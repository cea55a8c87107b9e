"""Who may see the web dashboard and ``/metrics``: a loopback address, or whoever has the token.

The dashboard shows the cluster's topics, groups, offsets and processes. By default it listens
on loopback only (127.0.0.1), where only this machine reaches it. Bound anywhere else it needs
a token, and every path (the page, its script, /api/state, /metrics) answers 401 with nothing
of the cluster in it until the token is shown, in one of three ways:

| how                                 | for                                                  |
| ----------------------------------- | ---------------------------------------------------- |
| ``Authorization: Bearer <token>``   | Prometheus (``authorization: {credentials_file}``), |
|                                     | ``sluice dashboard``, curl                           |
| ``/?token=<token>`` once            | a browser: the answer sets an HttpOnly, SameSite=    |
|                                     | Strict cookie and sends it to ``/`` without the token |
|                                     | in its address; the page's requests carry the cookie |
| cookie ``sluice_dashboard=<token>`` | the page's own requests after that                   |

The token is a file's content (mode 0600): ``cluster up --dashboard-token-file PATH``, else
``<data-dir>/security/dashboard_token``, made with 32 random bytes when first needed. Its path
(never the token) is in the cluster's state so that ``sluice dashboard`` finds it. Plain HTTP
carries the token in the clear: beyond a trusted network, put TLS in front.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

from cluster.errors import ClusterSettingError

COOKIE = "sluice_dashboard"
TOKEN_FILE = Path("security") / "dashboard_token"   # under the data dir


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only.

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "10.1.2.3")]
    [True, True, True, False, False]
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False    # a name: it may resolve anywhere


def needs_token(host: str, token_file: str | None) -> bool:
    """A token guards the dashboard off loopback, and wherever one was given."""
    return token_file is not None or not is_loopback(host)


def token_path(data_dir: str | os.PathLike, token_file: str | None) -> Path:
    return Path(token_file) if token_file is not None else Path(data_dir) / TOKEN_FILE


def load_token(path: Path, create: bool) -> str:
    """The token in ``path``; with ``create``, a new random one written there (0600, its
    directory 0700) when the file does not exist. A file others may read is refused."""
    if create and not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(32) + "\n")
    try:
        mode = path.stat().st_mode
        token = path.read_text().strip()
    except OSError as exc:
        raise ClusterSettingError(f"cannot read the dashboard token file {path}: "
                                  f"{exc.strerror}") from None
    if mode & 0o077:
        raise ClusterSettingError(f"the dashboard token file {path} may be read by others "
                                  f"(mode {mode & 0o777:o}): chmod 600 it")
    if len(token) < 16:
        raise ClusterSettingError(f"the dashboard token in {path} is shorter than 16 "
                                  "characters")
    return token


def presented(headers, query: dict) -> str | None:
    """The token a request shows: its bearer header, its cookie, else its ``token`` query."""
    auth = headers.get("Authorization") or ""
    if auth.startswith("Bearer "):
        return auth[len("Bearer "):].strip()
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("Cookie") or "")
    except CookieError:   # a malformed Cookie header shows no token
        cookie = SimpleCookie()
    if COOKIE in cookie:
        return cookie[COOKIE].value
    values = query.get("token")
    return values[0] if values else None


def admits(token: str | None, shown: str | None) -> bool:
    """Whether a request that shows ``shown`` may see the dashboard guarded by ``token``.

    >>> admits(None, None), admits("s3cret-s3cret-s3cret", None), admits("a" * 16, "a" * 16)
    (True, False, True)
    """
    if token is None:
        return True
    return shown is not None and hmac.compare_digest(shown.encode(), token.encode())


def cookie_header(token: str) -> str:
    return f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
