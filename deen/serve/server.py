"""Starting a model server: Triton Inference Server (from PyTriton) serving one exported
ONNX model with dynamic batching, in its own process and its own Python environment.

PyTriton needs NumPy 1.x and deen needs 2.x, so the server runs in a separate virtual
environment (``.venv-serve`` beside deen's ``.venv``, made by ``scripts/setup.sh --dev`` or
``--serve``; ``$DEEN_SERVE_PYTHON`` names another). Its Python backend stub links to the
shared ``libpython`` of that Python, which is put on ``LD_LIBRARY_PATH`` so that the stub
and the standard library it loads are the same release.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from deen.address import ListenAddress
from deen.errors import DeenError, ParameterError

WORKER = Path(__file__).with_name("triton_worker.py")
READY = "deen-serve-ready"  # the worker's ready line (triton_worker.READY)
#: Seconds the server may take to load the model and answer.
READY_TIMEOUT_S = 120.0


def server_python() -> Path:
    """The Python of the server environment."""
    named = os.environ.get("DEEN_SERVE_PYTHON")
    candidates = [Path(named)] if named else [
        Path(sys.prefix).parent / ".venv-serve" / "bin" / "python",
        Path(__file__).resolve().parents[2] / ".venv-serve" / "bin" / "python"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DeenError("no model-server environment: .venv-serve with PyTriton, which the "
                    "project's set-up script makes (its serve option), or DEEN_SERVE_PYTHON "
                    "naming a Python that has PyTriton and ONNX Runtime")


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class ModelServer:
    """A running server; :meth:`stop` (or leaving the ``with``) ends it."""

    def __init__(self, model: Path, listen: ListenAddress, name: str = "deen",
                 max_batch: int = 32, queue_delay_us: int = 2000) -> None:
        from deen.backends.onnxrt_backend import OnnxRuntimeEmbedder

        model = Path(model)
        if model.suffix.lower() != ".onnx":
            raise ParameterError("model", model, "the server takes an exported .onnx (an "
                                 "ONNX export of the checkpoint)")
        if listen.port == 0:  # clients must be told where to connect
            raise ParameterError("listen", f"{listen.host}:0", "needs a fixed port")
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ParameterError("name", name, "letters, digits, - and _ only")
        embedder = OnnxRuntimeEmbedder(model, device="cpu")  # refuses what is not a deen export
        self.manifest, self.listen, self.name = embedder.manifest, listen, name
        del embedder
        python = server_python()
        self._scratch = tempfile.TemporaryDirectory(prefix="deen-serve-")
        manifest_file = Path(self._scratch.name) / "manifest.json"
        manifest_file.write_text(json.dumps(self.manifest))
        self.log_path = Path(self._scratch.name) / "server.log"
        self._log_file = self.log_path.open("w")
        libdir = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
            capture_output=True, text=True, check=True).stdout.strip()
        env = {**os.environ, "LD_LIBRARY_PATH": ":".join(
            p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p)}
        self.process = subprocess.Popen(
            [str(python), str(WORKER), str(model), str(manifest_file), "--name", name,
             "--host", listen.host, "--http-port", str(listen.port),
             "--grpc-port", str(free_port(listen.host)),
             "--metrics-port", str(free_port(listen.host)),
             "--max-batch", str(max_batch), "--queue-delay-us", str(queue_delay_us),
             "--workspace", str(Path(self._scratch.name) / "triton")],
            stdout=subprocess.PIPE, stderr=self._log_file, text=True, env=env,
            start_new_session=True)
        ready = threading.Event()
        threading.Thread(target=self._wait_ready, args=(ready,), daemon=True).start()
        if not ready.wait(READY_TIMEOUT_S) or not self._ready:
            self.stop()
            lines = self.log_path.read_text(errors="replace").splitlines() \
                if self.log_path.exists() else []
            # The last exception line says why (Triton's own lines are prefixed E/W/I).
            errors = [line for line in lines if re.match(r"\w*(Error|Exception)\b", line)]
            self._scratch.cleanup()
            raise DeenError(f"{model}: the model server did not start "
                            f"({(errors or lines or ['no output'])[-1].strip()})")

    def _wait_ready(self, ready: threading.Event) -> None:
        for line in self.process.stdout:
            if READY in line:
                self._ready = True
                ready.set()
        ready.set()  # the process ended before it was ready: the caller reports why

    _ready = False

    @property
    def url(self) -> str:
        return f"triton://{self.listen.host}:{self.listen.port}/{self.name}"

    def wait(self) -> int:
        return self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):  # nothing of the server outlives it
            os.killpg(self.process.pid, 9)
        self._log_file.close()
        if self._ready:  # else the caller reads the log first, then cleans up
            self._scratch.cleanup()

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
