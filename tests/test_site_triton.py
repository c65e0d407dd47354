"""A model served by a real Triton Inference Server (``deen serve``, PyTriton's server in
its own environment): embeddings through ``triton://`` are the local model's; ``deen run``
works on a served model; the server prints one line when ready and stops on SIGTERM; a
server that is not there, a model it does not serve and a malformed URL get one line; a
deen serve killed by SIGKILL leaves no process, port or folder behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import read_events
from servers import free_port

from deen.address import ListenAddress
from deen.backends import open_embedder
from deen.embedding import EmbeddingConfig
from deen.errors import DeenError
from deen.export.onnx_export import export_onnx
from deen.models.checkpoint import random_model
from deen.scenes import write_stream_pair
from deen.serve.server import OWNER_FILE, ModelServer, process_start, server_python

REPO = Path(__file__).resolve().parents[1]
SIZE = (64, 24)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    try:
        server_python()
    except DeenError as exc:
        pytest.skip(str(exc))
    model, source = random_model("regdb", 0)  # as test_bench exports it: one trace for both
    return export_onnx(model, tmp_path_factory.mktemp("served") / "deen.onnx",
                       config=EmbeddingConfig(flip=False), source=source,
                       input_size=SIZE).model_path


@pytest.fixture(scope="module")
def served(exported):
    with ModelServer(exported, ListenAddress("127.0.0.1", free_port()), "deen") as server:
        yield server


def _deen(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deen", *args], capture_output=True,
                          text=True, cwd=REPO, **kwargs)


def test_served_embeddings_are_the_local_models(served, exported) -> None:
    remote, local = open_embedder(served.url), open_embedder(exported)
    assert (remote.backend, remote.variant, remote.dim, remote.input_size) == (
        "triton", local.variant, local.dim, local.input_size)
    assert remote.config == local.config and remote.fingerprint() is not None
    images = np.random.default_rng(0).standard_normal((6, 3, *SIZE)).astype(np.float32)
    modality = np.array([0, 1, 0, 1, 1, 0])
    a, b = remote.run(images, modality), local.run(images, modality)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.9999
    config = remote.client.get_model_config("deen")
    assert config["max_batch_size"] == 32 and "dynamic_batching" in config


def test_deen_run_uses_a_served_model(served, tmp_path) -> None:
    scene = write_stream_pair(tmp_path / "pair", people=3, seconds=4, fps=10, seed=2)
    events = tmp_path / "events.jsonl"
    done = _deen("run", "--rgb", str(scene.visible), "--ir", str(scene.infrared), "--model",
                 served.url, "--detector", str(scene.boxes), "--no-realtime",
                 "--events", str(events), "--set", "outputs.status_every_s=0", timeout=120)
    assert done.returncode == 0, done.stderr
    assert '"track_started"' in events.read_text() and "faults: none" in done.stderr


def test_bad_served_model_urls_get_one_line(served, tmp_path) -> None:
    port = served.listen.port
    for url, problem in ((f"triton://127.0.0.1:{free_port()}/deen", "cannot reach"),
                         (f"triton://127.0.0.1:{port}/other", "no ready model 'other'"),
                         ("triton://127.0.0.1/deen", "expected triton://HOST:PORT/NAME")):
        done = _deen("run", "--rgb", "x.mp4", "--ir", "y.mp4", "--model", url,
                     "--events", "none", timeout=60)
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert problem in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.serial  # asserts timing: runs alone (scripts/test.sh)
def test_a_run_rides_out_a_model_server_outage(exported, tmp_path) -> None:
    """The server goes away mid-run and comes back on the same port: the run counts the
    failed calls, does not end, and embeds again (new matches after the restart)."""
    scene = write_stream_pair(tmp_path / "pair", people=3, seconds=4, fps=10, seed=2)
    listen = ListenAddress("127.0.0.1", free_port())
    events = tmp_path / "events.jsonl"
    server = ModelServer(exported, listen, "deen")
    run = subprocess.Popen(
        [sys.executable, "-m", "deen", "run", "--rgb", str(scene.visible), "--ir",
         str(scene.infrared), "--loop", "--model", f"triton://{listen.host}:{listen.port}/deen",
         "--detector", str(scene.boxes), "--duration", "120", "--set", "matching.threshold=-1",
         "--set", "matching.without_map=true", "--events", str(events), "--set",
         "outputs.status_every_s=0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and '"match"' not in (
                events.read_text() if events.exists() else ""):
            time.sleep(0.2)
        server.stop()  # the model server goes away …
        time.sleep(3)
        server = ModelServer(exported, listen, "deen")  # … and comes back
        back = time.time()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and run.poll() is None and not any(
                r["event"] == "match" and r["time"] > back for r in read_events(events)):
            time.sleep(0.2)
        run.send_signal(signal.SIGINT)  # an operator's Ctrl-C: the run ends cleanly
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
        server.stop()
    assert run.returncode == 0, stderr
    assert re.search(r"faults: .*embed \d+", stderr), stderr
    assert any(r["event"] == "match" and r["time"] > back for r in read_events(events)), stderr


def test_deen_eval_on_a_served_model_scores_as_the_file_does(served, exported,
                                                             tmp_path) -> None:
    from deen.datasets.synth import write_synthetic_dataset

    root = tmp_path / "sysu"
    write_synthetic_dataset(root, "sysu", identities=6, per_camera=2, size=(64, 32), seed=0)
    scores = []
    for model in (served.url, str(exported)):
        done = _deen("eval", "--model", model, "--dataset", "sysu", "--root", str(root),
                     "--trials", "1", timeout=300)
        assert done.returncode == 0, done.stderr
        scores.append(re.findall(r"\d+\.\d+", done.stdout.split("mAP", 1)[1]))
    assert scores[0] and scores[0] == scores[1], scores


def test_deen_bench_times_a_served_model_beside_the_built_ones(served, tmp_path) -> None:
    out = tmp_path / "bench"
    done = _deen("bench", "--backends", "pytorch-fp32", "--model", served.url, "--no-flip",
                 "--variant", "regdb", "--input-size", "64x24", "--batches", "1,40", "--runs", "2",
                 "--warmup", "1", "--out-dir", str(out), timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "bench.json").read_text())
    accuracy = {a["backend"]: a for a in report["accuracy"]}
    assert accuracy["served:deen"]["min_cosine"] >= 0.9999
    batches = sorted(t["batch"] for t in report["timings"] if t["backend"] == "served:deen")
    assert batches == [1, 40]  # 40 is over the server's 32: sent in two requests
    assert "served:deen" in done.stdout


def test_deen_bench_refuses_a_served_model_of_another_model_or_size(served) -> None:
    for args, problem in ((["--variant", "sysu", "--input-size", "64x24", "--no-flip"],
                           "variant"),
                          (["--variant", "regdb", "--input-size", "128x48", "--no-flip"],
                           "takes 64x24 images"),
                          (["--variant", "regdb", "--input-size", "64x24"], "exported with")):
        done = _deen("bench", "--backends", "pytorch-fp32", "--model", served.url,
                     "--runs", "1", *args, timeout=300)
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert problem in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_client_expecting_other_settings_is_refused(served) -> None:
    with pytest.raises(DeenError, match="serves a model that was exported with flip off; "
                                        "run with flip, or re-export it"):
        open_embedder(served.url, config=EmbeddingConfig(flip=True))
    with pytest.raises(DeenError, match="serves a regdb model, not sysu"):
        open_embedder(served.url, variant="sysu")


def _processes() -> dict[int, tuple[str, int, int, str]]:
    """Every live process: pid → (name, parent, session, state); zombies, which hold
    nothing, left out."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            state, parent, _, session = stat[stat.rindex(")") + 2:].split()[:4]
            if state != "Z":
                found[int(entry.name)] = (name, int(parent), int(session), state)
    return found


def _serve(exported: Path, port: int, scratch_root: Path, name: str = "deen"
           ) -> subprocess.Popen:
    """``deen serve`` started as a user starts it; returns once it says it is ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "deen", "serve", str(exported), "--listen", f"127.0.0.1:{port}",
         "--name", name],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "TMPDIR": str(scratch_root)})
    assert f"triton://127.0.0.1:{port}/{name}" in process.stdout.readline()
    return process


def _port_free(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return True
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_deen_serve_stops_on_sigterm_and_a_killed_one_leaves_nothing_behind(exported) -> None:
    """SIGKILL cannot be passed on: the server notices its deen serve is gone and stops
    (and ends every process of its own that is slow to), so within 5 s no server process
    is left and the port is free, and its scratch folder is gone. A scratch folder whose
    processes were all killed at once (a supervisor killing the whole service) is removed
    by the next start, and one whose process lives is not. A deen serve that is asked to
    stop (SIGTERM) serves its model under the name it was given until then, stops within
    30 s with status 0 and removes its scratch folder."""
    scratch_root = Path(tempfile.mkdtemp(prefix="ds-"))  # short: Triton's sockets live there
    try:
        port = free_port()
        process = _serve(exported, port, scratch_root)
        worker = next(pid for pid, (_, parent, _, _) in _processes().items()
                      if parent == process.pid)
        server = {pid: info[0] for pid, info in _processes().items() if info[2] == worker}
        assert "tritonserver" in server.values(), server
        process.kill()
        killed = time.monotonic()
        process.wait()
        while time.monotonic() - killed < 10 and not (
                _port_free(port) and not set(server) & set(_processes())):
            time.sleep(0.05)
        took = time.monotonic() - killed
        left = {pid: name for pid, name in server.items() if pid in _processes()}
        print(f"server processes gone and port free {took:.1f} s after the SIGKILL")
        assert took < 5 and not left and _port_free(port), (took, left)
        assert not list(scratch_root.glob("deen-serve-*"))
        with pytest.raises(DeenError, match="cannot reach"):
            open_embedder(f"triton://127.0.0.1:{port}/deen")

        # Left by processes that are gone (a process that has ended), by one that lives,
        # and by someone unknown (no owner file: not known to be stale).
        ended = subprocess.Popen(["true"])
        ended.wait()
        stale, live, unknown = (scratch_root / f"deen-serve-{name}"
                                for name in ("stale", "live", "unknown"))
        for folder, pid in ((stale, ended.pid), (live, os.getpid()), (unknown, None)):
            (folder / "triton").mkdir(parents=True)
            if pid is not None:
                (folder / OWNER_FILE).write_text(json.dumps(
                    {"pid": pid, "started": process_start(pid) or 0}))
        process = _serve(exported, port, scratch_root, name="box_model")
        ours = [f for f in scratch_root.glob("deen-serve-*") if f not in (stale, live, unknown)]
        assert not stale.exists() and live.is_dir() and unknown.is_dir() and len(ours) == 1
        assert open_embedder(f"triton://127.0.0.1:{port}/box_model").dim == 6 * 1024
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert not ours[0].exists()
        with pytest.raises(DeenError, match="cannot reach"):
            open_embedder(f"triton://127.0.0.1:{port}/box_model")
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)
