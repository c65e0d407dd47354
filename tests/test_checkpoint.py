"""Checkpoint I/O: the reference format, deen's own, ImageNet ResNet-50 initialisation, and a
clear one-line error for every kind of bad file."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from reference_spec import reference_tensor_specs

from deen.errors import DeenError
from deen.models import DEEN
from deen.models.checkpoint import (
    load_checkpoint,
    load_imagenet_resnet50,
    load_initial_weights,
    model_to_reference_name,
    save_checkpoint,
)


@pytest.mark.parametrize("variant", ["sysu", "regdb"])
def test_reference_checkpoint_loads_with_variant_detected(variant, reference_checkpoint):
    loaded = load_checkpoint(reference_checkpoint(variant))
    assert loaded.model.variant.name == variant
    assert not loaded.model.training
    assert loaded.source_format == "reference"
    unused = {name for name, _, used in reference_tensor_specs(variant) if not used}
    assert set(loaded.ignored) == unused
    assert loaded.metadata["epoch"] == 37 and loaded.metadata["mAP"] == pytest.approx(0.61)


@pytest.mark.parametrize("variant", ["sysu", "regdb"])
def test_model_holds_exactly_the_used_reference_tensors(variant):
    used = {(name, shape) for name, shape, is_used in reference_tensor_specs(variant) if is_used}
    model = DEEN(713 if variant == "sysu" else 206, variant)
    ours = {(model_to_reference_name(k), tuple(v.shape)) for k, v in model.state_dict().items()}
    assert ours == used


def test_llcm_is_chosen_by_flag_and_regdb_is_not_forced(reference_checkpoint):
    loaded = load_checkpoint(reference_checkpoint("sysu"), variant="llcm")
    assert loaded.model.variant.name == "llcm"
    with pytest.raises(DeenError, match="holds a sysu model"):
        load_checkpoint(reference_checkpoint("sysu"), variant="regdb")


def test_dataparallel_prefix_and_bare_state_dict(reference_state, tmp_path):
    state = {f"module.{k}": v for k, v in reference_state("regdb").items()}
    torch.save(state, tmp_path / "bare.pth")
    assert load_checkpoint(tmp_path / "bare.pth").model.variant.name == "regdb"


def test_own_checkpoint_round_trip(reference_checkpoint, tmp_path):
    model = load_checkpoint(reference_checkpoint("regdb")).model
    save_checkpoint(model, tmp_path / "own.pt", {"note": "round trip"})
    loaded = load_checkpoint(tmp_path / "own.pt")
    assert loaded.source_format == "deen" and loaded.metadata == {"note": "round trip"}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["own.pt"]  # no temporary left


def _save(tmp_path, name, payload):
    path = tmp_path / name
    torch.save(payload, path)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(DeenError, match=r"nope\.t: no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.t")


def test_truncated_file(reference_checkpoint, tmp_path):
    data = reference_checkpoint("regdb").read_bytes()
    (tmp_path / "cut.t").write_bytes(data[: len(data) // 3])
    with pytest.raises(DeenError, match=r"cut\.t: not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "cut.t")


def test_foreign_files(tmp_path):
    (tmp_path / "text.t").write_text("hello")
    with pytest.raises(DeenError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "text.t")
    with pytest.raises(DeenError, match="expected a dict"):
        load_checkpoint(_save(tmp_path, "list.t", [torch.zeros(1)]))
    with pytest.raises(DeenError, match=r"missing tensors: DEE\.FC11\.weight"):
        load_checkpoint(_save(tmp_path, "other.t", {"net": {"fc.weight": torch.zeros(2, 2)}}))


def test_missing_unexpected_and_mismatched_tensors_are_named(reference_state, tmp_path):
    state = dict(reference_state("regdb"))
    del state["MFA2.PNL.g.bias"]
    with pytest.raises(DeenError, match=r"missing tensors: MFA2\.PNL\.g\.bias"):
        load_checkpoint(_save(tmp_path, "a.t", {"net": state}))
    state = dict(reference_state("regdb"), **{"extra.head.weight": torch.zeros(3)})
    with pytest.raises(DeenError, match=r"unexpected tensors: extra\.head\.weight"):
        load_checkpoint(_save(tmp_path, "b.t", {"net": state}))
    state = dict(reference_state("regdb"), **{"DEE.FC2.bias": torch.zeros(7)})
    mismatch = r"shape mismatch: DEE\.FC2\.bias \(7,\), expected \(512,\)"
    with pytest.raises(DeenError, match=mismatch):
        load_checkpoint(_save(tmp_path, "c.t", {"net": state}))


class _Exploit:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", self.marker],))


def test_pickled_code_is_never_executed(reference_state, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.t"
    torch.save({"net": reference_state("regdb"), "hook": _Exploit(str(marker))}, path)
    with pytest.raises(DeenError, match=r"evil\.t: refusing to load: the file holds pickled code"):
        load_checkpoint(path)
    assert not marker.exists()


def _torchvision_resnet50_state() -> dict[str, torch.Tensor]:
    """A state dict with torchvision's ResNet-50 names and shapes (conv1, bn1, layer1-4, fc)."""
    donor = DEEN(10, "sysu")
    state = {}
    for name, value in donor.state_dict().items():
        if name.startswith("layer"):
            state[name] = torch.randn_like(value.float()).to(value.dtype)
        elif name.startswith("stems.visible."):
            inner = name.removeprefix("stems.visible.").replace("conv.", "conv1.")
            state[inner.replace("bn.", "bn1.")] = torch.randn_like(value.float()).to(value.dtype)
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    return state


@pytest.mark.parametrize("variant", ["sysu", "regdb"])
def test_imagenet_initialisation(variant, tmp_path):
    state = _torchvision_resnet50_state()
    path = _save(tmp_path, "resnet50.pth", state)
    model = DEEN(10, variant)
    set_names = load_imagenet_resnet50(model, path)
    loaded = model.state_dict()
    for stem in ("visible", "infrared"):
        assert torch.equal(loaded[f"stems.{stem}.conv.weight"], state["conv1.weight"])
        assert torch.equal(loaded[f"stems.{stem}.bn.running_var"], state["bn1.running_var"])
    assert torch.equal(loaded["layer3.5.conv3.weight"], state["layer3.5.conv3.weight"])
    assert ("layer4.0.conv1.weight" in set_names) == (variant == "sysu")
    del state["layer2.1.bn2.weight"]
    with pytest.raises(DeenError, match=r"missing tensors: layer2\.1\.bn2\.weight"):
        load_imagenet_resnet50(DEEN(10, variant), _save(tmp_path, "cut.pth", state))
    with pytest.raises(DeenError, match="not a torchvision-format ResNet-50"):
        load_imagenet_resnet50(model, _save(tmp_path, "x.pth", {"a": torch.zeros(1)}))


def test_initial_weights_for_fine_tuning(tmp_path):
    """``--set init=CKPT``: every tensor comes from the trained model; the classifier only
    when it has as many identities (other people need a fresh one); variants must match."""
    torch.manual_seed(0)
    trained = DEEN(6, "sysu")
    with torch.no_grad():
        trained.neck.bn.running_mean.uniform_()
    path = tmp_path / "trained.pt"
    save_checkpoint(trained, path)
    same = DEEN(6, "sysu")
    assert "neck.classifier.weight" in load_initial_weights(same, path)
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in same.state_dict().items())
    other_people = DEEN(9, "sysu")
    fresh_classifier = other_people.neck.classifier.weight.clone()
    assert "neck.classifier.weight" not in load_initial_weights(other_people, path)
    assert torch.equal(other_people.neck.classifier.weight, fresh_classifier)
    assert torch.equal(other_people.neck.bn.running_mean, trained.neck.bn.running_mean)
    with pytest.raises(DeenError, match="holds a sysu model"):
        load_initial_weights(DEEN(6, "regdb"), path)


def test_numpy1_metadata_loads(reference_state, tmp_path):
    """Released checkpoints were pickled under numpy 1.x, whose pickles name
    'numpy.core.multiarray' (numpy 2 writes 'numpy._core'); both must load."""
    path = tmp_path / "np2.t"
    torch.save({"net": reference_state("regdb"), "mAP": np.float64(0.5),
                "cmc": np.arange(3.0)}, path)
    old = tmp_path / "np1.t"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w", zipfile.ZIP_STORED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(item, data)
    loaded = load_checkpoint(old)
    assert loaded.metadata["mAP"] == 0.5 and loaded.metadata["cmc"] == [0.0, 1.0, 2.0]


def test_cli_error_is_one_line_without_traceback(reference_state, tmp_path):
    state = dict(reference_state("regdb"))
    del state["bottleneck.weight"]
    bad = _save(tmp_path, "bad.t", {"net": state})
    out = tmp_path / "model.onnx"
    args = [sys.executable, "-m", "deen", "export", "--checkpoint", str(bad), "--out", str(out)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "bad.t" in lines[0] and "missing tensors: bottleneck.weight" in lines[0]
    assert not out.exists()
    debug = subprocess.run([sys.executable, "-m", "deen", "--debug", *args[3:]],
                           capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
