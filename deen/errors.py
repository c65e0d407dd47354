"""The one exception type that the command line turns into a one-line message."""


class DeenError(Exception):
    """A problem with the user's input (a file, an argument) or with a result that failed a check.

    The message must stand alone on one line and name what is wrong, e.g.
    ``model.t: missing tensors: DEE.FC11.weight``. The CLI prints it without a traceback
    (unless ``--debug``) and exits non-zero.
    """
