"""``deen export --engine openvino``: IRs verified against PyTorch, read by every consumer,
and bad input refused with one line and nothing left behind. Real OpenVINO and NNCF; the
smaller RegDB variant at 64×24 and few calibration images, so that the suite stays fast."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from deen.backends import open_embedder
from deen.backends.artifact import manifest_path_for
from deen.backends.openvino_backend import RT_INFO_KEY, OpenVinoEmbedder
from deen.backends.torch_backend import TorchEmbedder
from deen.bench.harness import people_batch
from deen.bench.run import cpu_has_bf16
from deen.embedding import EmbeddingConfig
from deen.errors import DeenError
from deen.export.compare import row_cosines
from deen.export.onnx_export import export_onnx
from deen.export.openvino_export import IGNORED_MODULES, export_openvino
from deen.export.verify import verify_embedder
from deen.formats import tolerance
from deen.models.checkpoint import load_checkpoint, random_model, save_checkpoint

pytest.importorskip("openvino")
SIZE = (64, 24)
VARIANT = "regdb"


def _deen(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deen", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model, _ = random_model(VARIANT, 0)
    path = tmp_path_factory.mktemp("ov-ckpt") / "model.pt"
    save_checkpoint(model, path, {"input_size": list(SIZE)})
    return path


@pytest.fixture(scope="module")
def exports(checkpoint, tmp_path_factory):
    """fp32 (by the CLI, as a user runs it, from an ONNX export of the same weights) and int8
    (API, reusing that ONNX) IRs: one PyTorch trace for all of them."""
    folder = tmp_path_factory.mktemp("ov")
    loaded = load_checkpoint(checkpoint)  # every export records this checkpoint as its source
    model, source = loaded.model, loaded.source
    onnx = export_onnx(model, folder / "fp32.onnx", config=EmbeddingConfig(), source=source,
                       input_size=SIZE)
    fp32 = folder / "deen_fp32.xml"
    done = _deen("export", "--engine", "openvino", "--checkpoint", str(checkpoint),
                 "--onnx", str(onnx.model_path), "--out", str(fp32))
    assert done.returncode == 0, done.stderr
    assert "verified: openvino-fp32 vs pytorch" in done.stdout
    int8 = export_openvino(model, folder / "deen_int8.xml", config=EmbeddingConfig(),
                           source=source, input_size=SIZE, precision="int8",
                           onnx_path=onnx.model_path, calibration_images=8)
    return {"fp32": fp32, "int8": int8.model_path, "model": model, "onnx": onnx.model_path}


def test_fp32_ir_matches_pytorch_within_1e3(exports) -> None:
    reference = TorchEmbedder(exports["model"], EmbeddingConfig(), "cpu", SIZE)
    candidate = open_embedder(exports["fp32"])
    assert isinstance(candidate, OpenVinoEmbedder) and candidate.backend == "openvino-fp32"
    images, codes = people_batch(5, SIZE, seed=11)  # mixed visible/infrared
    expected, got = reference.run(images, codes), candidate.run(images, codes)
    assert got.shape == expected.shape == (5, 6 * 1024)
    assert np.abs(got - expected).max() <= 1e-3
    assert row_cosines(expected, got).min() >= tolerance("openvino", "fp32").min_cosine
    # A mixed batch gives each row what a batch of one gives it (stems picked per row).
    alone = candidate.run(images[1:2], codes[1:2])
    assert np.abs(alone - got[1:2]).max() < 1e-4


def test_ir_carries_its_manifest_and_the_sidecar_adds_verification(exports) -> None:
    import openvino as ov

    xml = exports["fp32"]
    inner = json.loads(str(ov.Core().read_model(str(xml)).get_rt_info(RT_INFO_KEY).astype(str)))
    sidecar = json.loads(manifest_path_for(xml).read_text())
    assert inner["engine"] == sidecar["engine"] == "openvino"
    assert inner["openvino"]["inference_precision"] == "fp32"
    assert inner["inputs"]["images"]["shape"] == ["batch", 3, *SIZE]
    assert sidecar["verification"]["passed"] and sidecar["file"] == xml.name
    assert sidecar["weights_file"] == xml.with_suffix(".bin").name
    assert sorted(p.name for p in xml.parent.iterdir() if p.name.startswith("deen_fp32")) == \
        ["deen_fp32.bin", "deen_fp32.xml", "deen_fp32.xml.json"]


def test_int8_ir_is_quantised_and_close_to_fp32(exports) -> None:
    import openvino as ov

    xml = exports["int8"]
    ops = ov.Core().read_model(str(xml)).get_ordered_ops()
    quantised = {op.get_friendly_name() for op in ops if op.get_type_name() == "FakeQuantize"}
    assert len(quantised) > 20
    manifest = json.loads(manifest_path_for(xml).read_text())
    assert manifest["precision"] == "int8" and manifest["quantization"]["tool"].startswith(
        "nncf")
    assert "MatMul" in manifest["quantization"]["float_op_types"]
    assert manifest["verification"]["min_cosine"] >= tolerance("openvino", "int8").min_cosine
    assert set(IGNORED_MODULES[VARIANT]) <= set(manifest["quantization"]["float_modules"])
    # The layers kept in float run in bf16 where the CPU has it.
    assert manifest["openvino"]["inference_precision"] == "bf16"
    # MFA's affinity products and the residual additions read float values: no FakeQuantize
    # feeds a MatMul or an Add.
    for op in ops:
        if op.get_type_name() in ("MatMul", "Add"):
            inputs = [op.input_value(i).get_node().get_type_name()
                      for i in range(op.get_input_size())]
            assert "FakeQuantize" not in inputs, op.get_friendly_name()


def test_bf16_ir_records_what_it_needs(exports, tmp_path) -> None:
    _, source = random_model(VARIANT, 0)
    result = export_openvino(exports["model"], tmp_path / "m.xml", config=EmbeddingConfig(),
                             source=source, input_size=SIZE, precision="bf16",
                             onnx_path=exports["onnx"])
    manifest = result.manifest
    assert manifest["openvino"]["inference_precision"] == "bf16"
    assert "AVX512_BF16" in manifest["openvino"]["note"]
    embedder = OpenVinoEmbedder(result.model_path)
    assert embedder.execution_precision == ("bf16" if cpu_has_bf16() else "f32")
    assert OpenVinoEmbedder(result.model_path, inference_precision="fp32"
                            ).execution_precision == "f32"


def test_consumers_take_the_ir(exports, tmp_path) -> None:
    from deen.datasets.synth import write_synthetic_dataset

    root = tmp_path / "sysu"
    write_synthetic_dataset(root, "sysu", identities=6, per_camera=2, size=(64, 32), seed=0)
    done = _deen("eval", "--model", str(exports["fp32"]), "--dataset", "sysu", "--root",
                 str(root), "--trials", "1")
    assert done.returncode == 0, done.stderr
    assert "openvino-fp32" in done.stdout and "mAP" in done.stdout
    crops = tmp_path / "crops"
    crops.mkdir()
    import cv2

    from deen.modality import Modality
    from deen.synthetic import make_people, render_person

    rng = np.random.default_rng(0)
    for i, person in enumerate(make_people(2, seed=0)):
        cv2.imwrite(str(crops / f"{i}.png"), render_person(person, Modality.VISIBLE, rng))
    done = _deen("gallery", "add", "ann", "--images", str(crops), "--modality", "visible",
                 "--model", str(exports["int8"]), "--gallery", str(tmp_path / "g.db"))
    assert done.returncode == 0, done.stderr


def test_verification_names_a_degenerate_checkpoint(exports) -> None:
    model, _ = random_model("regdb", 0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()  # every feature is zero: the reference divides 0 by 0
    degenerate = TorchEmbedder(model, EmbeddingConfig(), "cpu", SIZE)
    with pytest.raises(DeenError, match=r"m\.xml: pytorch itself gives non-finite embeddings"):
        verify_embedder(degenerate, open_embedder(exports["fp32"]),
                        tolerance("openvino", "fp32"), subject="m.xml")


def _one_line_error(done: subprocess.CompletedProcess, *needles: str, code: int = 1) -> None:
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_export_input_gets_one_line_and_leaves_nothing(checkpoint, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _one_line_error(_deen("export", "--engine", "openvino", "--checkpoint", str(checkpoint),
                          "--out", str(out / "m.onnx")), "m.onnx", ".xml", code=2)
    _one_line_error(_deen("export", "--engine", "openvino", "--precision", "int8",
                          "--checkpoint", str(checkpoint), "--out", str(out / "m.xml"),
                          "--calib", str(tmp_path / "missing")), "--calib", "missing")
    _one_line_error(_deen("export", "--engine", "openvino", "--precision", "fp16",
                          "--checkpoint", str(checkpoint), "--out", str(out / "m.xml")),
                    "fp16", code=2)
    assert list(out.iterdir()) == []


def test_unreadable_or_mismatched_ir_gets_one_line(exports, tmp_path) -> None:
    xml = tmp_path / "broken.xml"
    xml.write_text("<net><layers>")
    shutil.copy(exports["fp32"].with_suffix(".bin"), xml.with_suffix(".bin"))
    with pytest.raises(DeenError, match=r"broken\.xml: not a readable OpenVINO model"):
        open_embedder(xml)
    lonely = tmp_path / "lonely.xml"
    shutil.copy(exports["fp32"], lonely)
    with pytest.raises(DeenError, match=r"lonely\.bin: missing"):
        open_embedder(lonely)
    short = tmp_path / "short.xml"
    shutil.copy(exports["fp32"], short)
    short.with_suffix(".bin").write_bytes(exports["fp32"].with_suffix(".bin").read_bytes()[:999])
    with pytest.raises(DeenError, match=r"short\.xml: not a readable OpenVINO model"):
        open_embedder(short)
    # Same size, other bytes: only the recorded hash tells.
    swapped = tmp_path / "swapped.xml"
    shutil.copy(exports["fp32"], swapped)
    weights = bytearray(exports["fp32"].with_suffix(".bin").read_bytes())
    weights[100:108] = b"\x00" * 8
    swapped.with_suffix(".bin").write_bytes(bytes(weights))
    with pytest.raises(DeenError, match=r"swapped\.bin: does not match swapped\.xml"):
        open_embedder(swapped)
    # The command line says the same in one line.
    _one_line_error(_deen("eval", "--model", str(swapped), "--dataset", "sysu", "--root",
                          str(tmp_path)), "swapped.bin")


def test_a_gallery_takes_every_export_of_its_checkpoint_and_names_another(exports, checkpoint,
                                                                          tmp_path) -> None:
    """Enrolled with the int8 IR, the gallery takes the fp32 IR, the ONNX export and the
    checkpoint itself (one checkpoint, one embedding setting); another checkpoint's export
    is refused with both models named in words."""
    import cv2

    from deen.modality import Modality
    from deen.runtime.gallery import Gallery
    from deen.runtime.live import enrol
    from deen.synthetic import make_people, render_person

    crops = tmp_path / "crops"
    crops.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(crops / "0.png"), render_person(make_people(1)[0], Modality.VISIBLE, rng))
    gallery = tmp_path / "g.db"
    for name, model in (("a", exports["int8"]), ("b", exports["fp32"]), ("c", exports["onnx"]),
                        ("d", checkpoint)):
        assert enrol(gallery, name, crops, Modality.VISIBLE, open_embedder(model, device="cpu"),
                     model) == 1
    with Gallery.open_existing(gallery) as opened:
        assert [n for n, _, _ in opened.identities()] == ["a", "b", "c", "d"]

    other, _ = random_model(VARIANT, 4)
    other_path = tmp_path / "other.pt"
    save_checkpoint(other, other_path, {"input_size": list(SIZE)})
    other_onnx = tmp_path / "other.onnx"
    made = _deen("export", "--checkpoint", str(other_path), "--out", str(other_onnx))
    assert made.returncode == 0, made.stderr
    refused = _deen("gallery", "add", "e", "--images", str(crops), "--modality", "visible",
                    "--model", str(other_onnx), "--gallery", str(gallery))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith(
        f"deen gallery add: error: {gallery}: gallery was built with deen_int8.xml (OpenVINO "
        "int8 export of checkpoint model.pt, SHA-256 "), refused.stderr
    assert ("not with other.onnx (ONNX fp32 export of checkpoint other.pt, SHA-256 "
            in refused.stderr and "(another checkpoint)" in refused.stderr), refused.stderr


def test_a_gallery_of_the_earlier_file_identity_still_opens_or_says_how_to_rebuild(
        exports, tmp_path) -> None:
    """Galleries recorded the model file's hash before they recorded its checkpoint's: the
    same file still opens them; another export of the checkpoint gets how to rebuild."""
    import sqlite3

    from deen.fileio import sha256_file
    from deen.runtime.gallery import Gallery, model_id

    gallery = tmp_path / "old.db"
    int8 = open_embedder(exports["int8"])
    old_id = f"{sha256_file(exports['int8'])[:16]}:{VARIANT}:flip=True:a=None"
    with Gallery(gallery, old_id, int8.dim):  # what an earlier deen wrote
        pass
    with sqlite3.connect(gallery) as db:
        assert db.execute("SELECT value FROM meta WHERE key='model'").fetchone()[0] == old_id
    Gallery(gallery, model_id(exports["int8"], int8), int8.dim).close()
    onnx = open_embedder(exports["onnx"])
    with pytest.raises(DeenError, match=r"gallery was built by an earlier deen, which recorded "
                                        r"the model file .* rebuild it: enrol its people again "
                                        r"into a new gallery$"):
        Gallery(gallery, model_id(exports["onnx"], onnx), onnx.dim)
