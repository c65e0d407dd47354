"""deen.fileio.check_output: the one check of every output, before any work."""

from __future__ import annotations

import pytest

from deen.errors import ParameterError
from deen.fileio import check_output, require_new_folder


def test_a_new_file_or_folder_passes_and_nothing_is_created(tmp_path):
    assert check_output(tmp_path / "a" / "b" / "out.json", "json") == tmp_path / "a/b/out.json"
    assert check_output(tmp_path / "run", "tracks_out", folder=True) == tmp_path / "run"
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_where_a_file_is_wanted_is_replaced_later(tmp_path):
    (tmp_path / "out.json").write_text("{}")
    assert check_output(tmp_path / "out.json", "json") == tmp_path / "out.json"
    assert (tmp_path / "out.json").read_text() == "{}"  # the writer replaces it, not the check


def test_a_folder_where_a_file_is_wanted_and_a_file_where_a_folder_is(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ParameterError) as folder:
        check_output(tmp_path, "json")
    assert str(folder.value) == f"json={tmp_path}: is a folder; give a file name"
    assert folder.value.parameter == "json"
    with pytest.raises(ParameterError) as file:
        check_output(tmp_path / "file", "ranks", folder=True)
    assert str(file.value) == f"ranks={tmp_path / 'file'}: is a file, not a folder"


def test_nothing_can_be_written_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ParameterError, match=r"^out=.*/file/deeper/m.onnx: .*/file is a file, "
                                             "so nothing can be written under it$"):
        check_output(tmp_path / "file" / "deeper" / "m.onnx", "out")


def test_a_folder_that_cannot_be_written_is_found_by_trying():
    # /proc takes no new files, whoever runs the test (root included)
    with pytest.raises(ParameterError, match=r"^out_dir=/proc/deen-test: cannot write in /proc"):
        check_output("/proc/deen-test", "out_dir", folder=True)


def test_an_earlier_result_needs_force_which_deletes_only_that_result(tmp_path):
    run = tmp_path / "run"
    (run / "timelines").mkdir(parents=True)
    (run / "timelines" / "p1.png").write_bytes(b"png")
    (run / "score.json").write_text("{}")
    (run / "rgb.txt").write_text("kept")  # not one of this writer's results
    results = ("score.json", "score.md", "timelines")
    with pytest.raises(ParameterError) as refused:
        check_output(run, "out_dir", folder=True, results=results)
    assert refused.value.render(lambda n: f"--{n.replace('_', '-')}", "--out-dir run") == (
        "--out-dir run: holds an earlier result (score.json, timelines); choose another "
        "folder, or add --force to replace it")
    assert str(refused.value).endswith("or add force to replace it")
    assert (run / "score.json").exists()  # refused: nothing deleted
    assert check_output(run, "out_dir", folder=True, results=results, force=True) == run
    assert sorted(p.name for p in run.iterdir()) == ["rgb.txt"]


def test_a_folder_without_earlier_results_needs_no_force(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert check_output(tmp_path, "out_dir", folder=True, results=("bench.json",)) == tmp_path
    assert (tmp_path / "notes.txt").exists()


def test_whole_folder_writers_need_a_new_folder_even_with_force(tmp_path):
    (tmp_path / "scene").mkdir()
    with pytest.raises(ParameterError, match=r"^out=.*/scene: already exists; choose a new "
                                             "folder$"):
        check_output(tmp_path / "scene", "out", folder=True, new=True, force=True)
    with pytest.raises(ParameterError, match="already exists"):
        require_new_folder(tmp_path / "scene")
    assert require_new_folder(tmp_path / "new") == tmp_path / "new"
