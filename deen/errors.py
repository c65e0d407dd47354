"""The exception types that the command line turns into a one-line message."""

import re
from collections.abc import Callable


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


def redact_url(url: str) -> str:
    """``url`` with its password (``scheme://user:PASSWORD@host``) starred, for messages."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


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
