"""The exception types that the command line turns into a one-line message."""

import re
from collections.abc import Callable
from urllib.parse import unquote


class DeenError(Exception):
    """A problem with the user's input (a file, an argument) or with a result that failed a check.

    The message must stand alone on one line and name what is wrong, e.g.
    ``model.t: missing tensors: DEE.FC11.weight``. The CLI prints it without a traceback
    (unless ``--debug``) and exits non-zero.
    """


class UsageError(DeenError):
    """An argument the command line was given is malformed or out of range (a flag's value,
    a settings key, a settings file): the command line exits 2, as for its own parse
    errors, before any work has started."""


def first_line(exc: BaseException) -> str:
    """A library exception's first meaningful line, for a one-line message (its name if it
    has none). Runtimes put pages of context after it (ONNX Runtime, the exporter) or
    source locations before it (OpenVINO's ``Exception from …``/``Check … failed at …``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    meaningful = [line for line in lines
                  if not line.startswith(("Exception from ", "Check '"))]
    return (meaningful or lines or [type(exc).__name__])[0]


#: Query options that carry a secret (libpq's ``?password=``, ``?sslpassword=``).
_SECRET_OPTIONS = re.compile(r"(?i)([?&](?:ssl)?password=)[^&#]*")


def _userinfo_end(url: str) -> int:
    """Where ``scheme://USER:PASSWORD@`` ends (the index of its ``@``), -1 without one.
    The last ``@`` before any query or fragment counts, so a password that holds an
    unescaped ``@`` or ``/`` is still taken whole."""
    start = url.find("://")
    if start < 0:
        return -1
    stop = min((i for i in (url.find("?", start), url.find("#", start)) if i >= 0),
               default=len(url))
    at = url.rfind("@", start, stop)
    return at if at >= 0 and ":" in url[start + 3:at] else -1


def url_secrets(url: str) -> list[str]:
    """The passwords ``url`` carries, as written: ``scheme://USER:PASSWORD@…`` and any
    password option of its query (empty ones left out)."""
    found = []
    at = _userinfo_end(url)
    if at >= 0:
        found.append(url[url.find("://") + 3:at].split(":", 1)[1])
    found += [m.group(0)[len(m.group(1)):] for m in _SECRET_OPTIONS.finditer(url)]
    return [secret for secret in found if secret]


def url_has_password(url: str) -> bool:
    return bool(url_secrets(url))


def redact_url(url: str) -> str:
    """``url`` with its password (``scheme://user:PASSWORD@host``, ``?password=``) starred,
    for messages."""
    at = _userinfo_end(url)
    if at >= 0:
        start = url.find("://") + 3
        user = url[start:at].split(":", 1)[0]
        url = f"{url[:start]}{user}:***{url[at:]}"
    return _SECRET_OPTIONS.sub(r"\1***", url)


def redact(text: str, url: str) -> str:
    """``text`` (a library's message about ``url``) with ``url`` and its passwords starred
    wherever they appear, as written or decoded: a driver may quote either."""
    text = text.replace(url, redact_url(url))
    for secret in url_secrets(url):
        for form in sorted({secret, unquote(secret)}, key=len, reverse=True):
            text = text.replace(form, "***")
    return text


class ParameterError(DeenError):
    """A bad value of one named parameter of a library function.

    The message names parameters as Python callers know them (``precision=bf16: …``); the
    command line re-words it with the flags that set them (``--precision bf16: …``), so the
    library never speaks in flags. ``problem`` may mention other parameters as ``{name}``
    placeholders, one per entry of ``mentions``; they render as the plain names here.
    """

    def __init__(self, parameter: str, value: object, problem: str,
                 mentions: tuple[str, ...] = ()) -> None:
        self.parameter, self.value, self.problem, self.mentions = (parameter, value, problem,
                                                                   mentions)
        super().__init__(self.render(lambda name: name, f"{parameter}={value}"))

    def render(self, name_of: Callable[[str], str], subject: str) -> str:
        """The message with ``subject`` first and each mentioned parameter as ``name_of``
        names it."""
        problem = self.problem
        if self.mentions:
            problem = problem.format(**{m: name_of(m) for m in self.mentions})
        return f"{subject}: {problem}"


class BadValueError(ParameterError):
    """A value that is wrong in itself, whatever the files and machines: malformed (``HOST:PORT``
    without a port) or out of range (``a=5`` for a weight in [0, 1]). The command line treats
    it as an argument error, as argparse treats a flag it cannot parse (exit 2); every other
    :class:`ParameterError` (a missing input, an output that cannot be written, a device that
    is not there) is an input or run error (exit 1)."""
