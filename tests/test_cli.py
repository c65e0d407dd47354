"""The command line as users run it: real processes, real exit codes, real output."""

from __future__ import annotations

import json
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
    assert result.returncode == 2  # an argument error, found before any work
    assert result.stderr == ("deen export: error: --precision fp16: is for --engine trt, "
                             "triton; --engine onnx takes fp32, int8\n")


def test_argument_errors_exit_2():
    assert _deen("export", "--out", "m.onnx").returncode == 2  # --checkpoint missing
    assert _deen("frobnicate").returncode == 2


def test_bad_output_suffix_is_one_line(reference_checkpoint, tmp_path):
    result = _deen("export", "--checkpoint", str(reference_checkpoint("regdb")),
                   "--out", str(tmp_path / "model.bin"))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"deen export: error: --out {tmp_path / 'model.bin'}: "
                                     "the onnx engine writes a file ending in .onnx")


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
    # without the flip: half the compute; the flip's exports are verified in test_export
    result = _deen("demo", "--variant", "regdb", "--people", "3", "--repeats", "1",
                   "--no-flip", "--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "RANDOMLY INITIALISED" in out
    assert "cross-modality similarity" in out and "vis2" in out and "ir2" in out
    assert "latency" in out and "median of 1" in out and "onnxruntime" in out and "pytorch" in out
    assert "pytorch vs openvino-int8" in out and "openvino-int8 " in out  # the fastest CPU path
    assert "live pipeline (deen run)" in out and "track_started" in out and "rounds in" in out
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == [
        "deen.onnx", "deen.onnx.json", "deen.pt", "deen_int8.bin", "deen_int8.xml",
        "deen_int8.xml.json"]
    kept = tmp_path / "deen.pt"
    assert f"kept: the checkpoint {kept} (deen export --checkpoint {kept} makes other " in out
    # the kept checkpoint is what the exports were made from, so its later exports share the
    # demo's gallery, and it can be exported again
    from deen.fileio import sha256_file

    manifest = json.loads((tmp_path / "deen.onnx.json").read_text())
    assert manifest["source"]["sha256"] == sha256_file(kept)
    assert manifest["embedding"]["flip"] is False
    again = _deen("export", "--checkpoint", str(kept), "--out", str(tmp_path / "again.onnx"),
                  "--no-flip")
    assert again.returncode == 0, again.stderr


def test_demo_uses_the_cached_generated_people_model_when_there_is_one(tmp_path, monkeypatch,
                                                                       capsys):
    from deen import demo
    from deen.train import generated_model

    monkeypatch.setenv("DEEN_LIVE_MODEL_CACHE", str(tmp_path))
    assert generated_model.cached_model() is None
    final = generated_model.cache_dir() / generated_model.STAGES[-1] / "final.pt"
    final.parent.mkdir()
    model, _ = random_model("sysu", 0)
    save_checkpoint(model, final)
    exported = []

    def stop(model, path, **kwargs):
        exported.append(model.variant.name)
        raise SystemExit(0)

    monkeypatch.setattr(demo, "export_onnx", stop)
    with pytest.raises(SystemExit):
        demo.run_demo(None, None, 2, 0, EmbeddingConfig(), None, log=print)
    assert final == generated_model.cached_model() and exported == ["sysu"]
    out = capsys.readouterr().out
    assert "trained here on generated people" in out and "RANDOMLY" not in out
    # Another variant asked for: the cached model is not it, so the demo says so and runs
    # a random model of that variant instead of failing.
    with pytest.raises(SystemExit):
        demo.run_demo(None, "regdb", 2, 0, EmbeddingConfig(), None, log=print)
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
    assert wrong_suffix.returncode == 2
    assert wrong_suffix.stderr.strip().endswith("x.txt: the onnx engine writes a file ending in "
                                                ".onnx")


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
    assert result.returncode == 2 and "Traceback" not in result.stderr  # an argument error
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


def _one_line(result: subprocess.CompletedProcess[str], code: int, line: str) -> None:
    """The command failed with exit ``code`` and printed only ``line`` (on stderr)."""
    assert (result.returncode, result.stderr, result.stdout) == (code, line + "\n", ""), (
        result.returncode, result.stderr, result.stdout)


@pytest.fixture(scope="module")
def tiny_sysu(tmp_path_factory):
    from deen.datasets.synth import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("cli") / "sysu", "sysu",
                                   identities=4, size=(64, 32))


def test_eval_outputs_are_checked_before_anything_is_embedded(small_model, tiny_sysu,
                                                              tmp_path):
    common = ["eval", "--model", str(small_model), "--dataset", "sysu", "--root",
              str(tiny_sysu), "--trials", "1"]
    ranks = tmp_path / "ranks"
    ranks.write_text("a file")
    _one_line(_deen(*common, "--ranks", str(ranks)), 1,
              f"deen eval: error: --ranks {ranks}: is a file, not a folder")
    _one_line(_deen(*common, "--json", str(tmp_path)), 1,
              f"deen eval: error: --json {tmp_path}: is a folder; give a file name")
    ranks.unlink()
    (ranks / "all-search").mkdir(parents=True)
    (ranks / "all-search" / "old.png").write_bytes(b"")
    (ranks / "notes.txt").write_text("mine")
    _one_line(_deen(*common, "--ranks", str(ranks)), 1,
              f"deen eval: error: --ranks {ranks}: holds an earlier result (all-search); "
              "choose another folder, or add --force to replace it")
    done = _deen(*common, "--ranks", str(ranks), "--force")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in ranks.iterdir()) == ["all-search", "indoor-search",
                                                       "notes.txt"]
    assert not (ranks / "all-search" / "old.png").exists()


def test_export_refuses_nonsense_before_loading_the_checkpoint(tmp_path):
    missing = tmp_path / "none.pt"  # never read: every refusal comes first
    out = ["--checkpoint", str(missing), "--out", str(tmp_path / "m.onnx")]
    _one_line(_deen("export", *out, "--a", "5"), 2,
              "deen export: error: --a 5: must be between 0 and 1")
    _one_line(_deen("export", *out, "--opset", "5"), 2,
              "deen export: error: --opset 5: must lie between 18 and "
              f"{__import__('onnx').defs.onnx_opset_version()} (the exporter writes no older "
              "opset; ONNX here knows none newer)")
    _one_line(_deen("export", "--checkpoint", str(missing), "--out", str(tmp_path)), 2,
              f"deen export: error: --out {tmp_path}: the onnx engine writes a file ending "
              "in .onnx")
    folder = tmp_path / "m.onnx"
    folder.mkdir()
    _one_line(_deen("export", *out), 1,
              f"deen export: error: --out {folder}: is a folder; give a file name")


def test_an_export_opened_with_other_settings_says_how_it_was_exported(small_model, tmp_path):
    from deen.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(small_model)
    onnx = export_onnx_of(loaded, tmp_path / "m.onnx")
    crops = tmp_path / "crops"
    crops.mkdir()
    common = ["gallery", "add", "ann", "--images", str(crops), "--modality", "visible",
              "--model", str(onnx), "--gallery", str(tmp_path / "g.db")]
    _one_line(_deen(*common, "--no-flip"), 1, "deen gallery add: error: --no-flip: m.onnx was "
              "exported with flip on; run without --no-flip, or re-export it")
    _one_line(_deen(*common, "--a", "0.1"), 1, "deen gallery add: error: --a 0.1: m.onnx was "
              "exported with equal part weights; run without --a, or re-export it")


def export_onnx_of(loaded, out: Path) -> Path:
    from deen.export.onnx_export import export_onnx

    return export_onnx(loaded.model, out, config=EmbeddingConfig(), source=loaded.source,
                       input_size=loaded.input_size).model_path


def test_bench_demo_and_data_refuse_before_any_work(tmp_path):
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "bench.json").write_text("{}")
    (earlier / "deen.onnx").write_text("")
    _one_line(_deen("bench", "--out-dir", str(earlier), "--backends", "pytorch-fp32"), 1,
              f"deen bench: error: --out-dir {earlier}: holds an earlier result (bench.json); "
              "choose another folder, or add --force to replace it")
    _one_line(_deen("bench", "--dataset", "sysu"), 2,
              "deen bench: error: --dataset sysu: --dataset and --root go together (accuracy "
              "on that dataset's test protocol)")
    _one_line(_deen("demo", "--out-dir", str(earlier)), 1,
              f"deen demo: error: --out-dir {earlier}: holds an earlier result (deen.onnx); "
              "choose another folder, or add --force to replace it")
    _one_line(_deen("data", "synth", "--layout", "sysu", "--out", str(earlier)), 1,
              f"deen data synth: error: --out {earlier}: already exists; choose a new folder")
    _one_line(_deen("data", "synth", "--layout", "sysu", "--out", str(tmp_path / "new"),
                    "--identities", "3"), 2,
              "deen data synth: error: --identities 3: must be at least 4 (people for the "
              "train, validation and test splits)")
    _one_line(_deen("data", "scene", "--out", str(tmp_path / "new"), "--seed", "-1"), 2,
              "deen data scene: error: --seed -1: must be at least 0")
    assert _deen("data", "synth", "--layout", "sysu", "--out", str(tmp_path / "new"),
                 "--seed", "-1").returncode == 2  # argparse: a seed is 0 or more
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier"]


def test_train_settings_are_range_checked_and_listed(tmp_path):
    _one_line(_deen("train", "--root", str(tmp_path), "--set", "checkpoint_every=0"), 2,
              "deen train: error: --set checkpoint_every=0: must be at least 1")
    _one_line(_deen("train", "--root", str(tmp_path), "--set", "lr=-0.1"), 2,
              "deen train: error: --set lr=-0.1: must be positive")
    config = tmp_path / "run.toml"
    config.write_text(f'root = "{tmp_path}"\nmomentum = 2.0\n')
    _one_line(_deen("train", "--config", str(config)), 1,
              f"deen train: error: {config}: momentum=2.0: must lie between 0 and 1")
    listed = _deen("train", "--print-config", "--set", "epochs=7")
    assert listed.returncode == 0 and "epochs = 7\n" in listed.stdout
    assert "checkpoint_every = 10\n" in listed.stdout and "schedule = \"paper\"\n" in listed.stdout


def test_help_texts_name_what_the_commands_take(capsys):
    from deen.cli import main

    def help_of(*command: str) -> str:
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        return " ".join(capsys.readouterr().out.split())  # as one line, however wrapped

    text = help_of("eval")
    assert ".xml" in text.split("options:")[0] and "triton://HOST:PORT/NAME" in text
    text = help_of("gallery", "add")
    assert "NAME the person's name" in text and "triton://HOST:PORT/NAME" in text
    assert "--print-config lists every KEY" in help_of("train")
    text = help_of("demo")
    assert "OpenVINO int8" in text and "live pipeline (deen run)" in text
    assert "keep the checkpoint used (deen.pt" in text
