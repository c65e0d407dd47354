"""The format table drives export, loading and benchmarking; the library never speaks in
flags."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

from deen import formats
from deen.backends import open_embedder
from deen.backends.torch_backend import TorchEmbedder
from deen.cli import main
from deen.errors import BadValueError, DeenError, ParameterError
from deen.export.base import ExportResult, ExportSettings, require_verified
from deen.export.verify import verify_embedder
from deen.formats import BenchBackend, Device, Format, Tolerance
from deen.models.checkpoint import random_model, save_checkpoint
from deen.models.deen import DEEN

SIZE = (64, 24)
PACKAGE = Path(__file__).resolve().parents[1] / "deen"


# A fictitious engine's two modules, written here: its embedder and its exporter. The engine
# stores the model as a deen checkpoint with the suffix .fake and runs it with PyTorch.
class FakeEmbedder(TorchEmbedder):
    @classmethod
    def open(cls, path, *, config=None, variant=None, device=None):
        embedder = cls.from_checkpoint(path, config=config, variant=variant, device="cpu")
        embedder.backend = "fakert"
        return embedder


def export(model: DEEN, out: Path, settings: ExportSettings) -> ExportResult:
    row = formats.get("fake")
    row.check_export(Path(out), settings.precision, settings.dee_op)
    save_checkpoint(model, out, {"input_size": list(settings.input_size)})
    report = verify_embedder(
        TorchEmbedder(model, settings.config, "cpu", settings.input_size),
        FakeEmbedder.open(out, config=settings.config), row.tolerance(settings.precision),
        subject=str(out))
    require_verified(report, Path(out))
    return ExportResult(Path(out), None, {"engine": "fake"}, report)


FAKE = Format(
    name="fake", runtime="fakert", description="a fictitious engine for the table's test",
    suffixes=(".fake",), precisions=("fp32",), device=Device.CPU,
    exporter=f"{__name__}:export", embedder=f"{__name__}:FakeEmbedder",
    tolerances={"fp32": Tolerance(1e-5, 0.9999)}, baked_config=False,
    bench=(BenchBackend("fakert-fp32", "fp32"),))


def test_a_new_engine_is_one_row_and_its_two_modules(tmp_path, capsys):
    model, _ = random_model("regdb", 0)
    checkpoint = tmp_path / "m.pt"
    save_checkpoint(model, checkpoint, {"input_size": list(SIZE)})
    with formats.registered(FAKE):
        with pytest.raises(SystemExit):
            main(["export", "--help"])
        help_text = capsys.readouterr().out
        assert "{onnx,openvino,trt,triton,fake}" in help_text
        assert "a fictitious engine" in help_text
        assert main(["export", "--engine", "fake", "--checkpoint", str(checkpoint),
                     "--out", str(tmp_path / "m.fake"), "--no-flip"]) == 0
        assert "verified: fakert vs pytorch" in capsys.readouterr().out
        embedder = open_embedder(tmp_path / "m.fake")
        assert isinstance(embedder, FakeEmbedder) and embedder.input_size == SIZE
        assert ".fake" in formats.model_suffixes()
        with pytest.raises(SystemExit):
            main(["bench", "--help"])
        assert "fakert-fp32" in capsys.readouterr().out
        assert main(["bench", "--checkpoint", str(checkpoint), "--backends", "fakert-fp32",
                     "--batches", "1", "--runs", "1", "--warmup", "1", "--no-flip",
                     "--out-dir", str(tmp_path / "bench")]) == 0
        report = json.loads((tmp_path / "bench" / "bench.json").read_text())
        assert {t["backend"] for t in report["timings"]} == {"pytorch-fp32", "fakert-fp32"}
    # Gone with its row: no other list remembers it.
    assert "fake" not in formats.export_engines()
    with pytest.raises(DeenError, match="unknown model file type"):
        open_embedder(tmp_path / "m.fake")
    assert main(["bench", "--backends", "fakert-fp32"]) == 2  # an argument error
    assert "unknown fakert-fp32" in capsys.readouterr().err


def test_the_table_checks_exports_before_any_work(tmp_path):
    onnx = formats.get("onnx")
    with pytest.raises(ParameterError, match=r"^precision=bf16: the onnx engine takes"):
        onnx.check_export(tmp_path / "m.onnx", "bf16")
    with pytest.raises(ParameterError, match=r"^dee_op=custom: "):
        formats.get("openvino").check_export(tmp_path / "m.xml", "fp32", "custom")
    with pytest.raises(BadValueError, match=r"^out=.*m\.bin: the onnx engine writes a file "
                                            r"ending in \.onnx$"):
        onnx.check_export(tmp_path / "m.bin", "fp32")
    assert formats.for_path("a.PLAN").name == "trt"
    assert formats.is_checkpoint("x.t") and not formats.is_checkpoint("x.xml")
    assert formats.tolerance("onnx", "fp32") == Tolerance(1e-4, 0.99999)


def test_parameter_errors_are_worded_with_flags_only_by_the_cli(capsys):
    error = ParameterError("opt_batch", 64, "needs {min_batch} <= {opt_batch}",
                           ("min_batch", "opt_batch"))
    assert str(error) == "opt_batch=64: needs min_batch <= opt_batch"
    assert main(["export", "--engine", "trt", "--checkpoint", "x.pt", "--out", "x.engine",
                 "--opt-batch", "64"]) == 2  # an argument error
    err = capsys.readouterr().err.strip()
    assert err.startswith("deen export: error: --max-batch 32: the batch profile")
    assert "--min-batch <= --opt-batch <= --max-batch" in err


_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _module_strings(tree: ast.Module) -> dict[str, list[str]]:
    """Module-level names bound to string constants (used as parts of messages)."""
    out: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = [c.value for c in ast.walk(node.value)
                                       if isinstance(c, ast.Constant) and
                                       isinstance(c.value, str)]
    return out


def flagged_errors(root: Path) -> list[str]:
    """``file:line`` of every DeenError (or subclass) raised outside ``deen/cli.py`` whose
    message text, or a module-level string it uses, names a command-line flag."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "cli.py" and path.parent == root:
            continue
        tree = ast.parse(path.read_text())
        constants = _module_strings(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            func = node.exc.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if not name.endswith("Error"):
                continue
            texts = [c.value for c in ast.walk(node.exc)
                     if isinstance(c, ast.Constant) and isinstance(c.value, str)]
            texts += [t for n in ast.walk(node.exc) if isinstance(n, ast.Name)
                      for t in constants.get(n.id, [])]
            if any(_FLAG.search(text) for text in texts):
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


def test_no_library_error_names_a_flag(tmp_path):
    assert flagged_errors(PACKAGE) == []
    # The check itself catches one.
    fake = tmp_path / "deen"
    fake.mkdir()
    (fake / "lib.py").write_text(
        "HINT = 'pass --root'\n"
        "def f(x):\n"
        "    raise DeenError(f'--serve {x}: bad')\n"
        "def g():\n"
        "    raise ParameterError('root', 1, 'missing; ' + HINT)\n"
        "def h():\n"
        "    raise DeenError('a-b --c')\n")
    (fake / "cli.py").write_text("raise DeenError('--fine here')\n")
    assert flagged_errors(fake) == ["deen/lib.py:3", "deen/lib.py:5", "deen/lib.py:7"]


def test_every_row_names_code_that_exists():
    for row in formats.formats():
        for target in (row.exporter, row.embedder, row.preflight, row.options_type):
            if target is not None:
                assert formats.load(target) is not None, target
        for backend in row.bench:
            assert backend.precision in row.precisions, backend
        assert set(row.tolerances) <= set(row.precisions), row.name
        if row.exportable and row.suffixes:
            assert set(row.tolerances) == set(row.precisions), row.name
    assert np.all([b in formats.bench_backends() for b in formats.default_bench_backends()])
