"""``deen serve``: one exported model served to many boxes by Triton Inference Server.

    server.py         starts the server process and waits until it answers (deen's side)
    triton_worker.py  the server process itself, in the server environment (.venv-serve)

Clients reach it as ``triton://HOST:PORT/NAME`` (:mod:`deen.backends.triton_backend`).
"""
