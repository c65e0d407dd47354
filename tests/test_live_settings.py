"""deen run's settings tree: a TOML file, --set overrides, flags, --print-config, clear errors;
and the detector table (a detector registered here is one deen run can use)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import tomllib

from deen import settings as tree
from deen.cli import build_parser, main
from deen.runtime import detect
from deen.runtime.detect import Detections, Detector, DetectorKind
from deen.runtime.settings import LiveSettings
from deen.scenes import write_stream_pair
from deen.settings import SettingError


def _print_config(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["run", *args, "--print-config"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_file_then_set_then_flags_give_the_effective_settings(tmp_path, capsys):
    config = tmp_path / "site.toml"
    config.write_text('[matching]\nthreshold = 0.7\nconfirm_rounds = 4\n'
                      '[run]\nduration_s = 30\n[outputs]\nevents = ["a.jsonl", "-"]\n')
    code, out, err = _print_config(capsys, "--config", str(config), "--set",
                                   "matching.threshold=0.65", "--set", "relink.enabled=off",
                                   "--duration", "12", "--no-realtime")
    assert code == 0, err
    effective = tomllib.loads(out)
    assert effective["matching"] == {**effective["matching"], "threshold": 0.65,
                                     "confirm_rounds": 4}
    assert effective["run"]["duration_s"] == 12.0  # the flag wins over the file
    assert effective["relink"]["enabled"] is False and effective["sources"]["realtime"] is False
    assert effective["outputs"]["events"] == ["a.jsonl", "-"]
    # What --print-config prints is a settings file that reads back to the same tree.
    again = tmp_path / "again.toml"
    again.write_text(out)
    assert tree.load(LiveSettings, again) == tree.load(
        LiveSettings, config, ["matching.threshold=0.65", "relink.enabled=off"],
        {"run.duration_s": 12.0, "sources.realtime": False})


@pytest.mark.parametrize(("args", "needle"), [
    (["--set", "matching.threshold=2"], "--set matching.threshold=2: must lie in [-1, 1]"),
    (["--set", "matching.treshold=0.6"], "--set matching.treshold=0.6: no such setting "
                                         "(matching takes threshold,"),
    (["--set", "embedding.budget=many"], "--set embedding.budget=many: expected an integer"),
    (["--set", "nokey"], "--set nokey: expected KEY=VALUE"),
    (["--duration", "-5"], "--duration -5: must be at least 0"),
    (["--video-out", "out.avi"], "--video-out out.avi: must end in .mp4"),
    (["--a", "5"], "--a 5: must be -1 (equal weights) or lie in [0, 1]"),
    (["--config", "missing.toml"], "--config missing.toml: no such settings file"),
])
def test_a_bad_key_or_value_is_one_line_and_exit_2(capsys, args, needle):
    code, out, err = _print_config(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err, err


def test_a_bad_settings_file_names_the_file_and_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    for text, needle in (('[matching]\nthreshold = "high"\n', "matching.threshold = 'high': "
                                                             "expected a number"),
                         ("[matchin]\nthreshold = 0.5\n", "matchin.threshold: no such setting"),
                         ("[relink]\nlead = 'sideways'\n", "relink.lead = sideways: must be "
                                                           "one of visible, infrared, none"),
                         ("[matching\n", "not valid TOML")):
        bad.write_text(text)
        code, _, err = _print_config(capsys, "--config", str(bad))
        assert code == 2 and str(bad) in err and needle in err, err


def test_settings_built_in_python_are_checked_like_files():
    with pytest.raises(SettingError, match=r"matching\.threshold=1\.5: must lie in"):
        LiveSettings().updated({"matching.threshold": 1.5})
    with pytest.raises(SettingError, match="no such setting"):
        LiveSettings().updated({"matching.nope": 1})
    assert LiveSettings().updated({"embedding.budget": 3}).embedding.budget == 3


def test_run_help_keeps_the_operators_flags_only():
    run = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
               ).choices["run"]
    options = [a for a in run._actions if a.option_strings and "--help" not in a.option_strings]
    assert len(options) <= 22, [a.option_strings for a in options]
    for action in options:  # every flag that sets a key says which
        if action.dest not in ("config", "set", "print_config", "force"):
            assert "[" in action.help and "]" in action.help, action.option_strings


class _Fake(Detector):
    name = "fake"
    calls = 0

    def detect(self, image: np.ndarray, stream: str, frame: int) -> Detections:
        type(self).calls += 1
        return Detections(np.array([[60, 40, 100, 160]], np.float32), np.ones(1, np.float32))


def test_a_registered_detector_is_one_row_and_deen_run_uses_it(tmp_path, small_model, capsys):
    pair = write_stream_pair(tmp_path / "pair", people=1, seconds=2, fps=10, seed=3)
    detect.register(DetectorKind("fake", "a test detector", lambda _: _Fake()))
    try:
        assert "fake: a test detector" in detect.detector_help()
        code = main(["run", "--rgb", str(pair.visible), "--ir", str(pair.infrared), "--model",
                     str(small_model), "--device", "cpu", "--detector", "fake",
                     "--no-realtime", "--events", "none", "--set", "outputs.status_every_s=0",
                     "--tracks-out", str(tmp_path / "run")])
    finally:
        del detect.DETECTORS["fake"]
    assert code == 0, capsys.readouterr().err
    assert _Fake.calls == 2 * pair.frames
    rows = (tmp_path / "run" / "rgb.txt").read_text().splitlines()
    assert rows and [float(v) for v in rows[0].split(",")[2:6]] == [60, 40, 40, 120]
