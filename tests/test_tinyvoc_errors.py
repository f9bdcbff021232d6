"""Bad input and faults through the tinyvoc CLI, in-process (``main([...])``).

Every user mistake ends in ``error: <message naming the file and the problem>`` on
stderr and exit code 2, found before the long work where it can be; faults (full disk,
killed writes) lose nothing. tests/test_tinyvoc_cli.py runs a few of these cases in
real subprocesses to prove no traceback reaches the user.
"""
import csv
import errno
import json
import logging
import os
import re
import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from mrcnn import fileio, training
from samples import tinyvoc
from samples.synthetic_tinyvoc import write_synthetic_tinyvoc

SMALL = ["--image-size", "128"]


@pytest.fixture(scope="module")
def clean_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tinyvoc_errors") / "data"
    write_synthetic_tinyvoc(str(folder), n_train=6, n_test=2, seed=1, with_defects=False)
    return folder


@pytest.fixture
def data(clean_data, tmp_path):
    """A private copy of the synthetic folder, to spoil."""
    folder = tmp_path / "data"
    shutil.copytree(clean_data, folder)
    return folder


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if the command gets as far as building a model."""
    def too_late(args):
        raise AssertionError("the problem was found only after building the model")
    monkeypatch.setattr(tinyvoc, "_inference_model", too_late)


def fails(capsys, *args):
    """Runs main(args); asserts exit code 2 and an 'error:' line; returns stderr."""
    with pytest.raises(SystemExit) as info:
        tinyvoc.main([str(a) for a in args])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert re.search(r"^error: ", err, flags=re.M) and "Traceback" not in err, err
    return err


def _edit_json(path, change):
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))
    return raw


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.mark.parametrize("json_name, command", [("pascal_train.json", "train"),
                                                ("test.json", "submit")])
def test_duplicate_image_ids(data, capsys, json_name, command):
    def duplicate(raw):
        raw["images"][1]["id"] = raw["images"][0]["id"]

    raw = _edit_json(data / json_name, duplicate)
    err = fails(capsys, command, "--dataset", data, "--weights", "none", "--logs", data / "logs")
    first, second = raw["images"][0], raw["images"][1]
    assert f"image id {first['id']} is used twice" in err
    assert first["file_name"] in err and second["file_name"] in err and json_name in err


def test_evaluate_refuses_other_categories_up_front(data, capsys, no_model):
    def three_categories(raw):
        used = {a["category_id"] for a in raw["annotations"]}
        raw["categories"] = [c for c in raw["categories"] if c["id"] in used][:3]
        kept = {c["id"] for c in raw["categories"]}
        raw["annotations"] = [a for a in raw["annotations"] if a["category_id"] in kept]

    raw = _edit_json(data / "pascal_train.json", three_categories)
    err = fails(capsys, "evaluate", "--dataset", data, "--weights", "none", "--val-fraction", 0.5)
    assert f"pascal_train.json has {len(raw['categories'])} categories" in err
    assert "predicts 20" in err


@pytest.mark.parametrize("command", ["submit", "evaluate", "train", "detect"])
def test_read_only_output_is_found_before_the_work(data, capsys, no_model, read_only_folder,
                                                   command):
    out = read_only_folder / "result.json"
    args = {"submit": ["--dataset", data, "--out", out],
            "evaluate": ["--dataset", data, "--out", out, "--val-fraction", 0.5],
            "train": ["--dataset", data, "--logs", read_only_folder / "logs"],
            "detect": ["--image", next((data / "test_images").iterdir()),
                       "--out", read_only_folder / "picture.png"]}[command]
    err = fails(capsys, command, "--weights", "none", *args)
    assert str(read_only_folder) in err and "not writable" in err
    assert os.listdir(read_only_folder) in ([], ["logs"])  # nothing written


def test_logs_under_a_regular_file(data, capsys, no_model):
    blocker = data / "a_file"
    blocker.write_text("not a folder")
    err = fails(capsys, "train", "--dataset", data, "--weights", "none", "--logs", blocker / "logs")
    assert str(blocker) in err and "--logs folder" in err


def test_detect_on_a_truncated_image_names_it(data, capsys, no_model):
    image = next((data / "test_images").iterdir())
    _truncate(image)
    err = fails(capsys, "detect", "--image", image, "--weights", "none")
    assert str(image) in err and "cannot decode" in err


def test_config_error_is_reported_by_its_own_message(data, capsys):
    err = fails(capsys, "submit", "--dataset", data, "--weights", "none", "--image-size", 100)
    assert "IMAGE_MAX_DIM = 100" in err and "divisible by 64" in err


def test_detect_reads_a_cmyk_image_and_creates_the_out_folder(data, capsys, tmp_path, monkeypatch):
    from mrcnn.model import MaskRCNN
    pixels = np.asarray(Image.open(next((data / "test_images").iterdir())).convert("RGB"))
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(pixels).convert("CMYK").save(cmyk, quality=95)
    seen = []
    detect = MaskRCNN.detect

    def recording_detect(self, images, verbose=0):
        seen.extend(images)
        return detect(self, images, verbose=verbose)

    monkeypatch.setattr(MaskRCNN, "detect", recording_detect)
    out = tmp_path / "new_folder" / "picture.png"
    tinyvoc.main(["detect", "--image", str(cmyk), "--weights", "none", "--logs",
                  str(tmp_path / "logs"), *SMALL, "--out", str(out)])
    with Image.open(cmyk) as image:
        np.testing.assert_array_equal(seen[0], np.asarray(image.convert("RGB")))
    with Image.open(out) as picture:
        assert picture.format == "PNG"
    assert f"saved {out}" in capsys.readouterr().out


def test_full_disk_during_submit_keeps_the_old_file(data, capsys, tmp_path, monkeypatch):
    out = tmp_path / "out" / "submission.json"
    out.parent.mkdir()
    out.write_text("[]")
    # A zero-byte temp file, as kill -9 of an earlier submit leaves it.
    stale = out.parent / ".submission.json.k9x_2abc.tmp"
    stale.write_bytes(b"")
    os.utime(stale, (1e9, 1e9))
    real_fsync = fileio._fsync_path

    def full_disk(path):
        if "submission.json" in os.path.basename(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(path)

    monkeypatch.setattr(fileio, "_fsync_path", full_disk)
    err = fails(capsys, "submit", "--dataset", data, "--weights", "none", "--logs",
                tmp_path / "logs", *SMALL, "--out", out)
    assert str(out) in err and "disk is full" in err
    assert out.read_text() == "[]" and os.listdir(out.parent) == ["submission.json"]


def test_training_skips_a_truncated_jpeg_then_a_full_disk_keeps_the_last_checkpoint(
        data, capsys, tmp_path, caplog, monkeypatch):
    train = json.loads((data / "pascal_train.json").read_text())
    victim = data / "train_images" / train["images"][2]["file_name"]
    _truncate(victim)
    logs = tmp_path / "logs"
    common = ["--dataset", data, "--logs", logs, "--image-size", 64, "--all-epochs", 0,
              "--val-fraction", 0, "--no-augment"]
    with caplog.at_level(logging.WARNING, logger="mrcnn.data"):
        tinyvoc.main([str(a) for a in ["train", "--weights", "none", "--heads-epochs", 1,
                                       "--steps", 3, *common]])
    # 3 steps of 2 images visit all 6 images: the truncated one is read, skipped, named.
    assert victim.name in caplog.text and "unreadable" in caplog.text
    (run,) = logs.iterdir()
    with open(run / "training_log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0]
    assert "Done: 1 epochs" in capsys.readouterr().out

    # kill -9 during the next checkpoint left its temp file; the resumed run removes it
    # and, when the disk fills while writing epoch 2, says so and keeps epoch 1.
    stale = run / ".mask_rcnn_tinyvoc_0002.h5.q7w_e8rt.tmp"
    stale.write_bytes(b"\0" * 1000)
    os.utime(stale, (1e9, 1e9))
    real_fsync = fileio._fsync_path

    def full_disk(path):
        if "_0002.h5" in os.path.basename(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(path)

    monkeypatch.setattr(fileio, "_fsync_path", full_disk)
    err = fails(capsys, "train", "--weights", "last", "--heads-epochs", 2, "--steps", 1, *common)
    assert str(run / "mask_rcnn_tinyvoc_0002.h5") in err and "disk is full" in err
    assert sorted(p.name for p in run.iterdir() if ".h5" in p.name) == ["mask_rcnn_tinyvoc_0001.h5"]
    last = training.find_last(logs, "tinyvoc")
    assert last.endswith("mask_rcnn_tinyvoc_0001.h5")
    with h5py.File(last, "r") as f:
        assert np.isfinite(np.asarray(f["conv1"]["conv1/kernel:0"])).all()


@pytest.mark.parametrize("content", [b"", b"weights? no, a text file\n"])
def test_unreadable_weights_file(data, capsys, tmp_path, content):
    weights = tmp_path / "broken.h5"
    weights.write_bytes(content)
    err = fails(capsys, "submit", "--dataset", data, "--weights", weights, "--logs",
                tmp_path / "logs", *SMALL, "--out", tmp_path / "submission.json")
    assert str(weights) in err
    assert not (tmp_path / "submission.json").exists()


def test_synth_with_too_few_images_for_the_defects_is_a_message(capsys, tmp_path):
    err = fails(capsys, "synth", tmp_path / "out", "--train", "3")
    assert "n_train >= 7" in err and "--no-defects" in err
    assert not (tmp_path / "out").exists()  # refused before writing anything
    assert tinyvoc.main(["synth", str(tmp_path / "out"), "--train", "3", "--no-defects"])[
        "train_images"] == 3
