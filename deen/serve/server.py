"""Starting a model server: Triton Inference Server (from PyTriton) serving one exported
ONNX model with dynamic batching, in its own process and its own Python environment.

PyTriton needs NumPy 1.x and deen needs 2.x, so the server runs in a separate virtual
environment (``.venv-serve`` beside deen's ``.venv``, made by ``scripts/setup.sh --dev`` or
``--serve``; ``$DEEN_SERVE_PYTHON`` names another). Its Python backend stub links to the
shared ``libpython`` of that Python, which is put on ``LD_LIBRARY_PATH`` so that the stub
and the standard library it loads are the same release.

Nothing is left behind, however the server ends. Each server has a scratch folder
(``$TMPDIR/deen-serve-*``: the manifest, the server's log, Triton's workspace) whose
``owner.json`` names the process that made it and the server process, each with its start
time (so a reused process id is not taken for it). The server stops when that process
dies, even by SIGKILL, and removes the folder itself (:mod:`deen.serve.triton_worker`);
when both were killed at once (a supervisor killing the whole service), the next start
removes the folders whose processes are all gone, and their shared-memory files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
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


SCRATCH_PREFIX = "deen-serve-"
OWNER_FILE = "owner.json"


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot, from ``/proc``), None when there
    is no such process. With the id it names one process: ids are reused, start times are
    not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the name


def _alive(pid: int | None, started: int | None) -> bool:
    if pid is None:
        return False
    if started is None:  # recorded without /proc: the id alone tells
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return process_start(pid) == started


def _write_owner(folder: Path, **owner: int | None) -> None:
    temporary = folder / f".{OWNER_FILE}"
    temporary.write_text(json.dumps(owner))
    temporary.replace(folder / OWNER_FILE)


def _shared_memory(worker: int) -> list[Path]:
    """The shared-memory files PyTriton made in the server process ``worker``."""
    return list(Path("/dev/shm").glob(f"pytrtion{worker}-*"))


def remove_stale_scratch(root: Path | None = None) -> list[Path]:
    """Remove this user's scratch folders under ``root`` (default: the temporary folder)
    whose recorded processes are all gone, and their shared-memory files; the folders
    removed. A folder without an owner file is left alone: nothing says it is stale."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        try:
            if not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
            owner = json.loads((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):  # no owner recorded: whose it is cannot be known
            continue
        if _alive(owner.get("pid"), owner.get("started")) or _alive(
                owner.get("worker"), owner.get("worker_started")):
            continue
        if owner.get("worker") is not None:
            for memory in _shared_memory(owner["worker"]):
                with contextlib.suppress(OSError):
                    memory.unlink()
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


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
        remove_stale_scratch()
        self.scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
        owner = {"pid": os.getpid(), "started": process_start(os.getpid())}
        _write_owner(self.scratch, **owner)
        manifest_file = self.scratch / "manifest.json"
        manifest_file.write_text(json.dumps(self.manifest))
        self.log_path = self.scratch / "server.log"
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
             "--workspace", str(self.scratch / "triton"), "--scratch", str(self.scratch)],
            stdout=subprocess.PIPE, stderr=self._log_file, text=True, env=env,
            start_new_session=True)
        _write_owner(self.scratch, **owner, worker=self.process.pid,
                     worker_started=process_start(self.process.pid))
        ready = threading.Event()
        threading.Thread(target=self._wait_ready, args=(ready,), daemon=True).start()
        if not ready.wait(READY_TIMEOUT_S) or not self._ready:
            self.stop()
            lines = self.log_path.read_text(errors="replace").splitlines() \
                if self.log_path.exists() else []
            # The last exception line says why (Triton's own lines are prefixed E/W/I).
            errors = [line for line in lines if re.match(r"\w*(Error|Exception)\b", line)]
            shutil.rmtree(self.scratch, ignore_errors=True)
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
            shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
