"""The command line as users run it: real processes, real exit codes, real output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deen.embedding import EmbeddingConfig
from deen.models.checkpoint import random_model, save_checkpoint


def _deen(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deen", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_fp16_is_for_tensorrt_only(tmp_path):
    result = _deen("export", "--precision", "fp16", "--checkpoint", "x.t", "--out",
                   str(tmp_path / "m.onnx"))
    assert result.returncode == 1 and "--engine trt" in result.stderr


def test_argument_errors_exit_2():
    assert _deen("export", "--out", "m.onnx").returncode == 2  # --checkpoint missing
    assert _deen("frobnicate").returncode == 2


def test_bad_output_suffix_is_one_line(reference_checkpoint, tmp_path):
    result = _deen("export", "--checkpoint", str(reference_checkpoint("regdb")),
                   "--out", str(tmp_path / "model.bin"))
    assert result.returncode == 1
    assert result.stderr.strip() == (f"deen export: error: {tmp_path / 'model.bin'}: "
                                     "the output file must end in .onnx")


SCRIPTS = Path(sys.executable).parent


@pytest.mark.skipif(not (SCRIPTS / "deen-export").exists(), reason="deen is not pip-installed")
def test_console_script_aliases():
    result = subprocess.run([SCRIPTS / "deen-export", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--checkpoint" in result.stdout
    result = subprocess.run([SCRIPTS / "deen-run"], capture_output=True, text=True)
    assert result.returncode == 2 and "deen run" in result.stderr  # --rgb/--ir/--model missing
    result = subprocess.run([SCRIPTS / "deen-bench", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--backends" in result.stdout


def test_demo_runs_on_the_embedded_default(tmp_path):
    result = _deen("demo", "--variant", "regdb", "--people", "3", "--repeats", "1",
                   "--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "RANDOMLY INITIALISED" in out
    assert "cross-modality similarity" in out and "vis2" in out and "ir2" in out
    assert "latency" in out and "median of 1" in out and "onnxruntime" in out and "pytorch" in out
    assert "pytorch vs openvino-int8" in out and "openvino-int8 " in out  # the fastest CPU path
    assert "live pipeline (deen run)" in out and "track_started" in out and "rounds in" in out
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == [
        "deen.onnx", "deen.onnx.json", "deen_int8.bin", "deen_int8.xml", "deen_int8.xml.json"]


def test_demo_uses_the_cached_generated_people_model_when_there_is_one(tmp_path, monkeypatch,
                                                                       capsys):
    from deen import demo
    from deen.train import generated_model

    monkeypatch.setenv("DEEN_LIVE_MODEL_CACHE", str(tmp_path))
    assert generated_model.cached_model() is None
    final = generated_model.cache_dir() / "scenes-run" / "final.pt"
    final.parent.mkdir()
    model, _ = random_model("sysu", 0)
    save_checkpoint(model, final)
    exported = []

    def stop(model, path, **kwargs):
        exported.append(model.variant.name)
        raise SystemExit(0)

    monkeypatch.setattr(demo, "export_onnx", stop)
    with pytest.raises(SystemExit):
        demo.run_demo(None, None, 2, 0, EmbeddingConfig(), None)
    assert final == generated_model.cached_model() and exported == ["sysu"]
    out = capsys.readouterr().out
    assert "trained here on generated people" in out and "RANDOMLY" not in out
    # Another variant asked for: the cached model is not it, so the demo says so and runs
    # a random model of that variant instead of failing.
    with pytest.raises(SystemExit):
        demo.run_demo(None, "regdb", 2, 0, EmbeddingConfig(), None)
    out = capsys.readouterr().out
    assert "is a sysu model, not regdb: not using it" in out and "RANDOMLY INITIALISED" in out
    assert exported == ["sysu", "regdb"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_works_before_or_after_the_subcommand(where, tmp_path):
    args = ["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "x.onnx")]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    result = _deen(*args)
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert result.stderr.strip().endswith("none.pt: no such checkpoint file")


def test_an_unreadable_checkpoint_is_described_not_numbered(tmp_path):
    (tmp_path / "notes.pt").write_text("hi there")
    result = _deen("export", "--checkpoint", str(tmp_path / "notes.pt"), "--out",
                   str(tmp_path / "x.onnx"))
    assert result.returncode == 1 and result.stderr.strip().endswith(
        "notes.pt: not a readable PyTorch checkpoint (neither a PyTorch zip archive nor a "
        "pickle; truncated, or another format)")
    wrong_suffix = _deen("export", "--checkpoint", str(tmp_path / "notes.pt"), "--out",
                         str(tmp_path / "x.txt"))  # the suffix is checked before any loading
    assert wrong_suffix.returncode == 1
    assert wrong_suffix.stderr.strip().endswith("x.txt: the output file must end in .onnx")


def test_written_files_follow_the_umask(tmp_path):
    """Atomic writes start from private temporary files; what they publish is readable by
    others as any file the process makes (umask 022 → 0644, folders 0755)."""
    import os

    from deen.datasets.synth import write_synthetic_dataset
    from deen.fileio import atomic_path

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "out.bin") as partial:
            partial.write_bytes(b"x")
        made = write_synthetic_dataset(tmp_path / "data", "sysu", identities=4, per_camera=1,
                                       size=(32, 16))
    finally:
        os.umask(old)
    assert (tmp_path / "out.bin").stat().st_mode & 0o777 == 0o644
    assert made.stat().st_mode & 0o777 == 0o755


def _every_parser(parser, path=("deen",)):
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _every_parser(sub, (*path, name))


def test_every_option_of_every_subcommand_says_what_it_takes_and_its_default():
    """Walks each subcommand's --help: every option has help, and every option with a
    default shows it."""
    import argparse

    from deen.cli import build_parser

    flags = (argparse._HelpAction, argparse._VersionAction, argparse._StoreConstAction)
    missing = []
    for path, parser in _every_parser(build_parser()):
        assert parser.format_help()
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or isinstance(action, flags[:2]):
                continue
            flag = max(action.option_strings, key=len)
            if not action.help:
                missing.append(f"{' '.join(path)} {flag}: no help")
            elif isinstance(action, flags[2]):  # an on/off flag has no default to show
                if any(f"(default: {b})" in formatter._expand_help(action)
                       for b in (True, False)):  # "--no-flip ... (default: True)" misleads
                    missing.append(f"{' '.join(path)} {flag}: a flag shows a default")
            elif action.default is not None and action.default not in ([], "") and \
                    "default" not in formatter._expand_help(action):
                missing.append(f"{' '.join(path)} {flag}: default not shown")
    assert not missing, "\n".join(missing)


def test_one_similarity_scale_for_users():
    """The demo, the README's example and deen run report the same cosine in [-1, 1]."""
    import numpy as np

    from deen.embedding import cosine_similarity
    from deen.runtime.matching import unit

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 12)) * 20, rng.normal(size=(4, 12)) * 5  # raw scales differ
    similarity = cosine_similarity(a, b)
    assert similarity.shape == (3, 4) and np.abs(similarity).max() <= 1 + 1e-12
    np.testing.assert_allclose(similarity[1, 2], unit(a[1]) @ unit(b[2]))
    np.testing.assert_allclose(cosine_similarity(a[0], a[0]), [[1.0]])


@pytest.mark.parametrize("size", ["100x37", "0x0", "384x"])
def test_an_input_size_deen_cannot_run_at_is_one_line_before_any_work(size):
    result = _deen("bench", "--input-size", size)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "argument --input-size: " in result.stderr.strip().splitlines()[-1]


def test_run_refuses_a_video_out_that_is_not_mp4_before_loading_anything(tmp_path):
    result = _deen("run", "--rgb", "a.mp4", "--ir", "b.mp4", "--model", "none.onnx",
                   "--video-out", str(tmp_path / "out.avi"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("out.avi: must end in .mp4 (the annotated view is "
                                          "written as MPEG-4)")


def test_an_unbounded_tolerance_is_said_in_words():
    from types import SimpleNamespace

    from deen.export.verify import VerificationReport
    from deen.formats import Tolerance

    case = SimpleNamespace(max_abs_diff=0.3, min_cosine=0.995, passed=True)
    report = VerificationReport("pytorch", "openvino-int8", Tolerance(float("inf"), 0.99),
                                (case,))
    assert "not bounded" in report.summary() and "inf" not in report.summary()
