"""Dataset layouts: synthetic data in every layout reads back; malformed data fails clearly;
the SYSU gallery draw is the reference's (random.seed(trial), random.choice per id/camera)."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from deen.datasets import folder, llcm, regdb, sysu
from deen.datasets.synth import write_synthetic_dataset
from deen.errors import DeenError
from deen.modality import Modality
from deen.preprocess import load_rgb


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    base = tmp_path_factory.mktemp("datasets")
    return {layout: write_synthetic_dataset(base / layout, layout, identities=12, per_camera=2,
                                            size=(32, 16), seed=1)
            for layout in ("sysu", "regdb", "llcm", "folder")}


@pytest.mark.parametrize("layout", ["sysu", "regdb", "llcm", "folder"])
def test_every_layout_reads_back(layout, datasets):
    module = {"sysu": sysu, "regdb": regdb, "llcm": llcm, "folder": folder}[layout]
    records = module.train_records(datasets[layout])
    assert {r.modality for r in records} == {Modality.VISIBLE, Modality.INFRARED}
    assert all(r.path.is_file() for r in records)
    protocol = module.test_protocol(datasets[layout])
    split = protocol[0] if isinstance(protocol, list) else protocol
    train_ids = {r.identity for r in records}
    assert split.query and split.galleries[0]
    if layout != "regdb":  # RegDB trial 1's train/test ids come from its own idx files
        assert not train_ids & {r.identity for r in split.query}
    load_rgb(split.query[0].path)


def test_sysu_protocol_follows_the_reference(datasets):
    root = datasets["sysu"]
    split = sysu.test_protocol(root, "all-search")
    assert {r.camera for r in split.query} <= {3, 6}
    assert len(split.galleries) == 10
    ids = [int(x) for x in (root / "exp" / "test_id.txt").read_text().split(",")]
    for trial in (0, 7):  # the reference's process_gallery_sysu, written out
        random.seed(trial)
        expected = []
        for identity in sorted(f"{i:04d}" for i in ids):
            for camera in ("cam1", "cam2", "cam4", "cam5"):
                folder_path = root / camera / identity
                if folder_path.is_dir():
                    files = sorted(str(folder_path / name) for name in os.listdir(folder_path))
                    expected.append(random.choice(files))
        assert [str(r.path) for r in split.galleries[trial]] == expected
    indoor = sysu.test_protocol(root, "indoor-search")
    assert {r.camera for g in indoor.galleries for r in g} == {1, 2}


def test_llcm_has_no_infrared_camera_3(datasets):
    split = llcm.test_protocol(datasets["llcm"], "infrared-to-visible")
    assert 3 not in {r.camera for r in split.query}
    assert split.ignore_rule == "llcm" and split.dedup_cmc


def test_missing_file(datasets, tmp_path):
    with pytest.raises(DeenError, match=r"test_id\.txt: missing file"):
        sysu.test_protocol(tmp_path)


@pytest.mark.parametrize(("reader", "listing", "content", "message"), [
    (regdb.train_records, "idx/train_visible_1.txt", "Visible/1/a.bmp 1\nVisible/1/b.bmp one\n",
     r"train_visible_1\.txt:2: expected 'relative/path label'"),
    (llcm.train_records, "idx/train_vis.txt", "train_vis/cam1/0001/x.jpg 1\n",
     r"train_vis\.txt: lists train_vis/cam1/0001/x\.jpg, which does not exist"),
    (sysu.test_protocol, "exp/test_id.txt", "1,2,x\n",
     r"test_id\.txt:1: expected comma-separated identity numbers"),
], ids=["label-line-does-not-parse", "listed-image-missing", "id-list-does-not-parse"])
def test_malformed_listings_name_the_file_and_line(reader, listing, content, message, tmp_path):
    path = tmp_path / listing
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(DeenError, match=message):
        reader(tmp_path)


def test_empty_identity_and_unreadable_image(datasets, tmp_path):
    root = tmp_path / "mine"
    for split in ("train",):
        for modality in ("visible", "infrared"):
            (root / split / modality / "0001").mkdir(parents=True)
    (root / "train" / "visible" / "0001" / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DeenError, match=r"infrared/0001: empty identity"):
        folder.train_records(root)
    with pytest.raises(DeenError, match=r"a\.jpg: unreadable image"):
        load_rgb(root / "train" / "visible" / "0001" / "a.jpg")


def test_synth_refuses_to_overwrite_and_cli_errors_are_one_line(datasets):
    result = subprocess.run([sys.executable, "-m", "deen", "data", "synth", "--layout", "sysu",
                             "--out", str(datasets["sysu"])], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().endswith("already exists; choose a new folder")
    assert len(result.stderr.strip().splitlines()) == 1
