"""The model server's own process: serves one exported ONNX model through Triton Inference
Server (PyTriton's ``tritonserver`` and its Python backend), with dynamic batching.

It runs in the server environment (``.venv-serve``: PyTriton, which needs NumPy 1.x, and
ONNX Runtime), not in deen's, so it imports nothing from deen: :mod:`deen.serve.server`
starts it with the model, its manifest and the ports, and waits for its ready line.

Two models are served: ``NAME`` (inputs ``images`` N×3×H×W float32 and ``modality`` N×1
int64, output ``embedding`` N×D float32, the exported graph's own contract) and
``NAME_manifest`` (the export manifest as JSON, so a client can check that the served model
is the one it expects before using it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

#: What the worker prints once the server answers (deen.serve.server waits for it).
READY = "deen-serve-ready"


#: Seconds a server whose deen serve died may take to stop as Ctrl-C stops it, before all
#: of its processes are killed.
ORPHAN_GRACE_S = 2.0


def stop_when_orphaned(scratch: Path, grace_s: float = ORPHAN_GRACE_S,
                       poll_s: float = 0.1) -> None:
    """Stop the server when the deen process that started this one dies, even by SIGKILL,
    which it cannot pass on: a served model must not outlive its ``deen serve`` and hold
    the port. First as Ctrl-C does (Triton and PyTriton clean up after themselves); if
    that takes longer than ``grace_s`` (a busy machine), every process of the server is
    killed. Either way ``scratch``, the folder that deen serve would have removed, goes."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        orphaned.set()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(grace_s)
        remove_leftovers(scratch)
        os.killpg(os.getpgrp(), signal.SIGKILL)  # this process leads the server's group

    threading.Thread(target=watch, daemon=True).start()


orphaned = threading.Event()


def remove_leftovers(scratch: Path) -> None:
    """``scratch`` and the shared memory PyTriton made in this process."""
    shutil.rmtree(scratch, ignore_errors=True)
    for memory in Path("/dev/shm").glob(f"pytrtion{os.getpid()}-*"):
        with contextlib.suppress(OSError):
            memory.unlink()


def interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops the server as Ctrl-C does: PyTriton's serve loop then stops Triton
    and the worker removes its workspace (Python's default SIGTERM would skip both)."""
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("manifest")
    parser.add_argument("--name", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--queue-delay-us", type=int, default=2000)
    parser.add_argument("--workspace", required=True,
                        help="a new folder for Triton's sockets and files, removed at the end")
    parser.add_argument("--scratch", required=True,
                        help="deen serve's scratch folder, removed here if deen serve dies")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, interrupt)
    stop_when_orphaned(Path(args.scratch))

    manifest = json.loads(Path(args.manifest).read_text(encoding="utf-8"))
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    height, width = manifest["inputs"]["images"]["shape"][2:]
    dim = int(manifest["output"]["embedding"]["shape"][1])
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()

    @batch
    def embed(images: np.ndarray, modality: np.ndarray) -> dict[str, np.ndarray]:
        out = session.run(["embedding"], {"images": images.astype(np.float32),
                                          "modality": modality.reshape(-1).astype(np.int64)})
        return {"embedding": out[0].astype(np.float32)}

    @batch
    def describe(request: np.ndarray) -> dict[str, np.ndarray]:
        return {"manifest": np.array([[manifest_bytes]] * len(request), dtype=object)}

    config = TritonConfig(http_address=args.host, http_port=args.http_port,
                          grpc_address=args.host, grpc_port=args.grpc_port,
                          metrics_port=args.metrics_port, exit_timeout_secs=5,
                          log_verbose=0)
    try:  # PyTriton leaves its workspace (a copy of the server, 20+ MB) behind
        with Triton(config=config, workspace=args.workspace) as triton:
            triton.bind(model_name=args.name, infer_func=embed,
                        inputs=[Tensor(name="images", dtype=np.float32, shape=(3, height, width)),
                                Tensor(name="modality", dtype=np.int64, shape=(1,))],
                        outputs=[Tensor(name="embedding", dtype=np.float32, shape=(dim,))],
                        config=ModelConfig(max_batch_size=args.max_batch, batcher=DynamicBatcher(
                            max_queue_delay_microseconds=args.queue_delay_us)))
            triton.bind(model_name=f"{args.name}_manifest", infer_func=describe,
                        inputs=[Tensor(name="request", dtype=np.uint8, shape=(1,))],
                        outputs=[Tensor(name="manifest", dtype=bytes, shape=(1,))],
                        config=ModelConfig(max_batch_size=8))
            # On a line of its own: the server's libraries may have written to stdout without
            # ending their line.
            sys.stdout.write(f"\n{READY}\n")
            sys.stdout.flush()
            triton.serve()
    finally:
        shutil.rmtree(args.workspace, ignore_errors=True)
        if orphaned.is_set():
            remove_leftovers(Path(args.scratch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
