"""Who may watch the web view of ``deen run --serve``: a token, and TLS if asked for.

The view shows both cameras, every track and every gallery name, so it is open only on
loopback. Bound to any other address it requires a token, taken from (first found)

1. the ``token_file`` setting,
2. ``$DEEN_WEB_TOKEN``,
3. the file ``$DEEN_WEB_TOKEN_FILE`` names,
4. else the per-user state file (``$XDG_STATE_HOME/deen/web-token``, by default
   ``~/.local/state/deen/web-token``): generated there on first need, mode 0600, and used
   again by later runs, so an operator's bookmark survives restarts.

On loopback a token given by 1-3 is required too. A token is 16 or more characters of
``A-Z a-z 0-9 . _ ~ -`` (it travels in URLs and cookies); a token file must be readable
by its owner only, as ssh and libpq require of theirs.

A request is let in when it carries the token as ``Authorization: Bearer TOKEN``, as the
cookie set by an earlier visit, or as ``?token=TOKEN`` (which sets that cookie: HttpOnly,
SameSite=Strict, Secure under TLS). Anything else gets a bare 401. Tokens are compared by
their SHA-256 digests with :func:`hmac.compare_digest`, in constant time.

TLS (``tls=(certificate, key)``, PEM files) is served by uvicorn; both files are loaded
once here, so a wrong file is refused in one line before the run starts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from deen.address import is_loopback
from deen.errors import DeenError, ParameterError

TOKEN_ENV = "DEEN_WEB_TOKEN"
TOKEN_FILE_ENV = "DEEN_WEB_TOKEN_FILE"
MIN_TOKEN_LENGTH = 16
_TOKEN = re.compile(r"[A-Za-z0-9._~-]+")
_TOKEN_RULE = (f"must be at least {MIN_TOKEN_LENGTH} characters of A-Z a-z 0-9 . _ ~ - "
               "(it travels in URLs and cookies)")


def state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """This user's state folder for deen: ``$XDG_STATE_HOME/deen``, by default
    ``~/.local/state/deen``."""
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "deen"


@dataclass(frozen=True)
class WebAccess:
    """The rule a :class:`~deen.runtime.web.WebServer` enforces: ``token`` None lets
    everyone in; ``certfile``/``keyfile`` set serve HTTPS. ``source`` says where the token
    came from, for the one line that prints the address (never the token itself)."""

    token: str | None = field(default=None, repr=False)
    source: str = ""
    certfile: Path | None = None
    keyfile: Path | None = None
    generated: bool = False  # the token was made by this start: the operator must learn it

    @property
    def note(self) -> str:
        """Where the token is, for the line that prints the address."""
        if self.token is None:
            return "open: loopback only"
        if self.generated:
            return f"a new token, kept in {self.source}"
        return f"token from {self.source}"

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def accepts(self, presented: str | None) -> bool:
        """Whether ``presented`` is the token, compared in constant time (and, with no
        token, always)."""
        if self.token is None:
            return True
        if not presented:
            return False
        return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(),
                                   hashlib.sha256(self.token.encode()).digest())

    def cookie_name(self, port: int) -> str:
        """One cookie per port: browsers share cookies between the ports of a host, and
        two boxes' views on one host must not overwrite each other's."""
        return f"deen_token_{port}"

    def gate(self, app: Any, port: int) -> Any:
        """``app`` (ASGI) behind the token; ``app`` itself when there is none."""
        return app if self.token is None else _TokenGate(app, self, port)


class _TokenGate:
    """ASGI middleware: HTTP requests without the token get a bare 401."""

    def __init__(self, app: Any, access: WebAccess, port: int) -> None:
        from starlette.requests import cookie_parser  # as Starlette reads cookies

        self.app, self.access, self.cookie = app, access, access.cookie_name(port)
        self.cookies = cookie_parser

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
        cookies = self.cookies(headers.get("cookie", ""))
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        offered = [bearer.strip() if scheme.lower() == "bearer" else None,
                   cookies.get(self.cookie), query[-1] if query else None]
        if not any(self.access.accepts(token) for token in offered if token):
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"www-authenticate", b'Bearer realm="deen"'),
                                    (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if query and self.access.accepts(query[-1]):
            cookie = (f"{self.cookie}={query[-1]}; Path=/; HttpOnly; SameSite=Strict"
                      + ("; Secure" if self.access.tls else ""))

            async def send_with_cookie(message: dict) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []),
                                                      (b"set-cookie", cookie.encode())]}
                await send(message)

            await self.app(scope, receive, send_with_cookie)
            return
        await self.app(scope, receive, send)


def _check_token(token: str, where: str) -> str:
    if len(token) < MIN_TOKEN_LENGTH or not _TOKEN.fullmatch(token):
        raise DeenError(f"{where}: the web view's token {_TOKEN_RULE}")
    return token


def _read_token_file(path: Path, where: str) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise DeenError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DeenError(f"{where}: cannot read the token ({getattr(exc, 'strerror', exc)})"
                        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise DeenError(f"{where}: other users may read it (mode {stat.S_IMODE(mode):04o}); "
                        f"chmod 600 {path}")
    return _check_token(text, where)


def _generated_token(folder: Path) -> tuple[str, Path, bool]:
    """The token kept in ``folder/web-token``, its file, and whether it was made now (mode
    0600) because there was none yet."""
    path = folder / "web-token"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made by an earlier run (or one starting beside this one)
        return _read_token_file(path, str(path)), path, False
    except OSError as exc:
        raise DeenError(f"{path}: cannot keep a web token there ({exc.strerror or exc}); "
                        f"give one in ${TOKEN_ENV} or ${TOKEN_FILE_ENV}") from None
    token = secrets.token_urlsafe(32)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return token, path, True


def _tls_files(tls: tuple[Path | str, Path | str] | None) -> tuple[Path | None, Path | None]:
    if tls is None:
        return None, None
    certfile, keyfile = (Path(p).expanduser() for p in tls)
    for name, path in (("tls_cert", certfile), ("tls_key", keyfile)):
        if not path.is_file():
            raise ParameterError(name, path, "no such file")
    try:  # what uvicorn will do, done here so that a wrong file fails in one line
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise ParameterError("tls_cert", f"{certfile} {keyfile}", "not a PEM certificate and its "
                             f"private key ({getattr(exc, 'reason', None) or exc})") from None
    return certfile, keyfile


def web_access(host: str, token_file: Path | str | None = None,
               tls: tuple[Path | str, Path | str] | None = None,
               environ: Mapping[str, str] = os.environ, generate: bool = True) -> WebAccess:
    """The access rule for a web view bound to ``host`` (see the module's description for
    where the token comes from); ``tls`` is (certificate, key) in PEM files.
    ``generate=False`` checks what is given and leaves the state file alone (its token is
    then None), for a check before anything starts."""
    certfile, keyfile = _tls_files(tls)
    token: str | None = None
    source, generated = "", False
    if token_file is not None:
        token, source = _read_token_file(Path(token_file), f"web.token_file {token_file}"), str(
            token_file)
    elif environ.get(TOKEN_ENV):
        token, source = _check_token(environ[TOKEN_ENV], f"${TOKEN_ENV}"), f"${TOKEN_ENV}"
    elif environ.get(TOKEN_FILE_ENV):
        path = environ[TOKEN_FILE_ENV]
        token = _read_token_file(Path(path), f"${TOKEN_FILE_ENV} {path}")
        source = path
    elif generate and not is_loopback(host):
        token, path, generated = _generated_token(state_dir(environ))
        source = str(path)
    return WebAccess(token, source, certfile, keyfile, generated)
