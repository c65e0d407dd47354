"""Who may watch the web view (``deen.runtime.web_access``): where the token comes from, the
files it is kept in, and a real web server (uvicorn, bound to every address, reached over
127.0.0.1 with a real HTTP client) that lets in the token and only the token, over HTTP
and over TLS."""

from __future__ import annotations

import shutil
import ssl
import stat
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from deen.address import ListenAddress
from deen.errors import DeenError, ParameterError
from deen.runtime.web import LiveView, WebServer
from deen.runtime.web_access import TOKEN_ENV, TOKEN_FILE_ENV, WebAccess, web_access

TOKEN = "a-site-token-of-32-characters-00"
PATHS = ("/", "/video.mjpg", "/status.json", "/events", "/schema.json", "/static/app.js")


def _private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_loopback_is_open_unless_a_token_is_given(tmp_path) -> None:
    state = {"XDG_STATE_HOME": str(tmp_path)}
    for host in ("127.0.0.1", "::1", "localhost"):
        assert web_access(host, environ=state).token is None
    assert not (tmp_path / "deen").exists()  # nothing generated for loopback
    given = web_access("127.0.0.1", environ={**state, TOKEN_ENV: TOKEN})
    assert given.token == TOKEN and given.note == f"token from ${TOKEN_ENV}"
    assert TOKEN not in repr(given)


def test_beyond_loopback_a_token_is_generated_once_into_a_private_file(tmp_path) -> None:
    state = {"XDG_STATE_HOME": str(tmp_path / "state")}
    first = web_access("0.0.0.0", environ=state)
    kept = tmp_path / "state" / "deen" / "web-token"
    assert first.generated and first.source == str(kept)
    assert len(first.token) >= 32 and kept.read_text().strip() == first.token
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    again = web_access("192.0.2.1", environ=state)  # a later run: the same token, not new
    assert again.token == first.token and not again.generated
    assert web_access("box.site", environ=state).token == first.token  # a name: not loopback


def test_the_token_comes_from_the_setting_then_the_environment(tmp_path) -> None:
    setting = _private(tmp_path / "setting", "from-the-setting-file-000\n")
    named = _private(tmp_path / "named", "from-the-named-file-00000\n")
    environ = {TOKEN_ENV: TOKEN, TOKEN_FILE_ENV: str(named),
               "XDG_STATE_HOME": str(tmp_path / "state")}
    assert web_access("0.0.0.0", setting, environ=environ).token == "from-the-setting-file-000"
    assert web_access("0.0.0.0", environ=environ).token == TOKEN
    del environ[TOKEN_ENV]
    assert web_access("0.0.0.0", environ=environ).token == "from-the-named-file-00000"
    assert not (tmp_path / "state").exists()


def test_bad_tokens_and_token_files_are_refused_without_showing_them(tmp_path) -> None:
    cases = [({TOKEN_ENV: "short-secret"}, f"${TOKEN_ENV}: the web view's token must be "
                                           "at least 16"),
             ({TOKEN_ENV: "has spaces in the secret"}, "A-Z a-z 0-9"),
             ({TOKEN_FILE_ENV: str(tmp_path / "none")}, "no such file")]
    shared = tmp_path / "shared"
    shared.write_text(TOKEN)
    shared.chmod(0o644)
    cases.append(({TOKEN_FILE_ENV: str(shared)}, "other users may read it (mode 0644); "
                                                 f"chmod 600 {shared}"))
    for environ, problem in cases:
        with pytest.raises(DeenError) as caught:
            web_access("0.0.0.0", environ=environ)
        message = str(caught.value)
        assert problem in message and "\n" not in message, message
        assert "secret" not in message and TOKEN not in message, message


def _certificate(folder: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_tls_files_are_checked_before_anything_starts(tmp_path) -> None:
    cert, key = _certificate(tmp_path)
    assert web_access("127.0.0.1", tls=(cert, key)).scheme == "https"
    with pytest.raises(ParameterError, match="no such file"):
        web_access("127.0.0.1", tls=(cert, tmp_path / "nothere.pem"))
    with pytest.raises(ParameterError, match="not a PEM certificate and its private key"):
        web_access("127.0.0.1", tls=(key, cert))


class _Client:
    """urllib against the server's port on 127.0.0.1 (never its other addresses)."""

    def __init__(self, server: WebServer, context: ssl.SSLContext | None = None) -> None:
        self.base = f"{server.access.scheme}://127.0.0.1:{server.port}"
        self.context = context

    def get(self, path: str, **headers: str) -> tuple[int, dict[str, list[str]], bytes]:
        request = urllib.request.Request(self.base + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.context) as reply:
                # a stream's headers say it is let in (this view has no frames to send)
                streams = path.startswith(("/video.mjpg", "/events"))
                return reply.status, _headers(reply.headers), b"" if streams else reply.read()
        except urllib.error.HTTPError as refused:
            return refused.code, _headers(refused.headers), refused.read()


def _headers(message) -> dict[str, list[str]]:
    return {k.lower(): message.get_all(k) for k in message}


@pytest.fixture
def guarded():
    """A server bound to every address, with a token."""
    server = WebServer(LiveView({}), ListenAddress("0.0.0.0", 0),
                       WebAccess(TOKEN, f"${TOKEN_ENV}")).start()
    yield server
    server.stop()


def test_without_the_token_every_path_is_a_bare_401(guarded) -> None:
    client = _Client(guarded)
    wrong = "b" * len(TOKEN)  # the right length, the wrong token
    for path in PATHS:
        for headers, query in (({}, ""), ({"Authorization": f"Bearer {wrong}"}, ""),
                               ({"Cookie": f"deen_token_{guarded.port}={wrong}"}, ""),
                               ({"Authorization": f"Basic {TOKEN}"}, ""),
                               ({}, f"?token={wrong}"), ({}, "?token=")):
            status, reply_headers, body = client.get(path + query, **headers)
            assert (status, body) == (401, b""), (path, headers, query)
            assert "set-cookie" not in reply_headers
            assert reply_headers["www-authenticate"] == ['Bearer realm="deen"']


def test_the_token_lets_in_by_header_query_and_then_cookie(guarded) -> None:
    client = _Client(guarded)
    for path in PATHS:
        status, headers, body = client.get(path, Authorization=f"Bearer {TOKEN}")
        assert status == 200 and (body or headers["content-type"][0].startswith(
            ("multipart/x-mixed-replace", "text/event-stream"))), path
    status, headers, page = client.get(f"/?token={TOKEN}")
    assert status == 200 and b'id="view"' in page
    cookie = headers["set-cookie"][0]
    assert cookie.startswith(f"deen_token_{guarded.port}={TOKEN}; Path=/;")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    status, _, body = client.get("/status.json", Cookie=cookie.split(";")[0])
    assert status == 200 and body == b'{"state":"starting"}'


def test_loopback_without_a_token_is_open(tmp_path) -> None:
    server = WebServer(LiveView({}), ListenAddress("127.0.0.1", 0),
                       web_access("127.0.0.1", environ={})).start()
    try:
        assert server.login_url == server.url and "token" not in server.login_url
        assert _Client(server).get("/status.json")[0] == 200
    finally:
        server.stop()


def test_over_tls_the_token_and_a_secure_cookie(tmp_path) -> None:
    cert, key = _certificate(tmp_path)
    token_file = _private(tmp_path / "token", TOKEN + "\n")
    server = WebServer(LiveView({}), ListenAddress("0.0.0.0", 0),
                       web_access("0.0.0.0", token_file, (cert, key), environ={})).start()
    try:
        assert server.url.startswith("https://") and TOKEN not in server.login_url
        client = _Client(server, ssl.create_default_context(cafile=str(cert)))
        assert client.get("/status.json")[0] == 401
        status, headers, _ = client.get(f"/status.json?token={TOKEN}")
        assert status == 200 and "; Secure" in headers["set-cookie"][0]
        with pytest.raises(OSError):  # plain HTTP gets no answer (a reset or a TLS alert)
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5)
    finally:
        server.stop()
