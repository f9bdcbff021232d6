"""End to end: samples/tinyvoc.py run as the user runs it, in a subprocess.

One module fixture writes a synthetic tinyvoc folder (polygon and RLE annotations, a
crowd region, a grayscale and a corrupt JPEG, invalid annotations) and trains a tiny
model on it (128 px, ResNet-50, random init: 2 steps of heads, then 2 of all layers).
The other tests evaluate, submit, detect and resume from that checkpoint. Submissions
are checked with pycocotools against test.json and against the JPEGs themselves.

The subprocesses run without TF_CPP_MIN_LOG_LEVEL in their environment, so the tests
also check that the CLI keeps TensorFlow's C++ log flood out of its output by itself.
"""
import csv
import json
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from samples.synthetic_tinyvoc import write_synthetic_tinyvoc
from samples.tinyvoc import split_image_ids

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "samples", "tinyvoc.py")
REAL_TINYVOC = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "tinyvoc"))
VAL_FRACTION, SEED = "0.25", "0"
SMALL = ["--image-size", "128"]
# The `trained` fixture's first (heads) epoch; with TRAIN_SEED it repeats exactly.
FIRST_EPOCH = ["--heads-epochs", 1, "--steps", 2, "--val-steps", 1, "--val-fraction", VAL_FRACTION,
               "--seed", SEED]
TRAIN_SEED = 5
SUBMISSION_KEYS = {"image_id", "category_id", "segmentation", "score"}
# COCOeval's area ranges (gt "area", in pixels) of the APs/APm/APl and ARs/ARm/ARl rows.
AREA_RANGES = {"s": (0, 32 ** 2), "m": (32 ** 2, 96 ** 2), "l": (96 ** 2, 1e10)}


def run_cli(*args, timeout=600):
    """Runs ``python samples/tinyvoc.py ARGS`` in a fresh process; returns the result."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["MPLBACKEND"] = "Agg"
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=timeout)


def ok(proc):
    """Asserts a clean run (exit 0, no traceback, no TF cost-model flood); returns stdout."""
    detail = f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, detail
    assert "Traceback" not in proc.stderr, detail
    assert "PredictCost" not in proc.stderr, detail
    return proc.stdout


def fails_clearly(proc, *needles):
    """Asserts a non-zero exit whose stderr names every needle and has no traceback."""
    detail = f"rc={proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-2000:]}"
    assert proc.returncode != 0, detail
    assert "Traceback" not in proc.stderr, detail
    for needle in needles:
        assert needle in proc.stderr, detail


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A synthetic folder, and a run trained on it by the train command."""
    base = tmp_path_factory.mktemp("tinyvoc_cli")
    data, logs = base / "data", base / "logs"
    info = write_synthetic_tinyvoc(str(data), n_train=12, n_test=4, seed=0)
    proc = run_cli("train", "--dataset", data, "--weights", "none", "--logs", logs, *SMALL,
                   *FIRST_EPOCH, "--all-epochs", 1, "--train-seed", TRAIN_SEED)
    runs = os.listdir(logs) if logs.is_dir() else []
    return {"info": info, "data": data, "logs": logs, "proc": proc,
            "run": logs / runs[0] if len(runs) == 1 else None}


def _checkpoint(run, epoch):
    return run / f"mask_rcnn_tinyvoc_{epoch:04d}.h5"


def _weights(path, layer):
    with h5py.File(path, "r") as f:
        return np.array(f[layer][f"{layer}/kernel:0"])


def _all_weights(path):
    """{(layer, weight name): value} of every weight in a checkpoint."""
    from mrcnn import keras2_h5

    with keras2_h5.open_h5(str(path)) as f:
        return {(layer.name, name): keras2_h5.read_value(keras2_h5.dataset(layer, name, path), path)
                for layer in keras2_h5.file_layers(keras2_h5.weights_root(f, path), path)
                for name in layer.weight_names}


def test_synthetic_folder_has_the_promised_defects(trained):
    """The fixture's data really contains what the end-to-end run must survive."""
    data = trained["data"]
    with open(data / "pascal_train.json") as f:
        raw = json.load(f)
    segms = [a["segmentation"] for a in raw["annotations"]]
    assert any(isinstance(s, list) for s in segms)                      # polygons
    assert any(isinstance(s, dict) and isinstance(s["counts"], str) for s in segms)   # RLE
    crowds = [a for a in raw["annotations"] if a["iscrowd"]]
    assert len(crowds) == 1 and isinstance(crowds[0]["segmentation"]["counts"], list)
    defects = trained["info"]["defects"]
    assert Image.open(data / "train_images" / defects["grayscale"]).mode == "L"
    with pytest.raises(OSError):
        Image.open(data / "train_images" / defects["corrupt"]).load()
    assert len(os.listdir(data / "train_images")) == 12


def test_train_heads_then_all(trained):
    out = ok(trained["proc"])
    assert "Training network heads to epoch 1" in out and "Training all layers to epoch 2" in out
    run = trained["run"]
    assert run is not None and re.fullmatch(r"tinyvoc\d{8}T\d{4}", run.name)
    assert _checkpoint(run, 1).is_file() and _checkpoint(run, 2).is_file()
    with open(run / "training_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(np.isfinite(float(r["loss"])) and np.isfinite(float(r["val_loss"])) for r in rows)
    # The second stage trained the backbone too (the heads stage alone would not move it).
    assert not np.array_equal(_weights(_checkpoint(run, 1), "res5c_branch2c"),
                              _weights(_checkpoint(run, 2), "res5c_branch2c"))
    # Bad data was reported as warnings, not as errors.
    err = trained["proc"].stderr
    assert "unreadable or corrupt file" in err and "unknown category id" in err


def _expected_val(trained):
    """The val images evaluate must score and their gt, worked out from the raw files."""
    data, defects = trained["data"], trained["info"]["defects"]
    with open(data / "pascal_train.json") as f:
        raw = json.load(f)
    _, val_ids = split_image_ids([im["id"] for im in raw["images"]], float(VAL_FRACTION), int(SEED))
    bad_anns = {defects["zero_area"], defects["degenerate_polygon"], defects["unknown_category"]}
    anns = [a for a in raw["annotations"] if a["image_id"] in val_ids and a["id"] not in bad_anns]
    unusable = {defects["corrupt"], defects["empty_image"]}
    images = {im["id"] for im in raw["images"] if im["id"] in val_ids
              and im["file_name"] not in unusable and any(a["image_id"] == im["id"] for a in anns)}
    return images, [a for a in anns if a["image_id"] in images]


def _printed_tables(stdout):
    """{eval type: 12 numbers} parsed from COCOeval's printed summaries."""
    tables = {}
    for eval_type, block in re.findall(r"COCO (bbox|segm) evaluation:(.*?)(?=COCO (?:bbox|segm) "
                                       r"evaluation:|\Z)", stdout, flags=re.S):
        tables[eval_type] = [float(v) for v in re.findall(
            r"Average (?:Precision|Recall) +\((?:AP|AR)\) @\[.*?\] = (-?\d+\.\d+)", block)]
    return tables


def test_evaluate_prints_tables_and_writes_json(trained):
    ok(trained["proc"])
    checkpoint = _checkpoint(trained["run"], 2)
    out = ok(run_cli("evaluate", "--dataset", trained["data"], "--weights", checkpoint,
                     "--logs", trained["logs"], *SMALL, "--val-fraction", VAL_FRACTION,
                     "--seed", SEED))
    path = str(checkpoint)[:-3] + "_coco_eval.json"
    assert f"Wrote {path}" in out
    with open(path) as f:
        report = json.load(f)
    images, gt = _expected_val(trained)
    assert report["weights"] == str(checkpoint) and report["images"] == len(images) > 0
    tables = _printed_tables(out)
    assert set(tables) == set(report["stats"]) == {"bbox", "segm"}
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    for eval_type, printed in tables.items():
        stats = report["stats"][eval_type]
        assert list(stats) == names and len(printed) == 12
        np.testing.assert_allclose([stats[n] for n in names], printed, atol=5e-4)
        # COCOeval reports -1 exactly for the area ranges without (non-crowd) gt.
        for size, (lo, hi) in AREA_RANGES.items():
            has_gt = any(lo <= a["area"] <= hi and not a["iscrowd"] for a in gt)
            for name in (f"AP{size}", f"AR{size}"):
                assert (stats[name] == -1) == (not has_gt), (eval_type, name, stats[name])
                assert stats[name] == -1 or 0 <= stats[name] <= 1


def check_submission(path, dataset_dir):
    """Checks a submission file against test.json and the JPEGs; returns its entries."""
    with open(path) as f:
        results = json.load(f)
    assert isinstance(results, list)
    gt = COCO(str(dataset_dir / "test.json"))
    loaded = gt.loadRes(str(path))   # pycocotools' own validation, from the file
    assert len(loaded.getAnnIds()) == len(results)
    sizes = {}
    for image in gt.dataset["images"]:
        with Image.open(dataset_dir / "test_images" / image["file_name"]) as jpeg:
            sizes[image["id"]] = (jpeg.height, jpeg.width)
    categories = set(gt.getCatIds())
    for r in results:
        assert set(r) == SUBMISSION_KEYS
        assert isinstance(r["image_id"], int) and r["image_id"] in sizes
        assert isinstance(r["category_id"], int) and r["category_id"] in categories
        assert isinstance(r["score"], float) and 0 <= r["score"] <= 1
        assert isinstance(r["segmentation"]["counts"], str)
        assert tuple(r["segmentation"]["size"]) == sizes[r["image_id"]]
        rle = {"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"].encode()}
        assert mask_utils.decode(rle).shape == sizes[r["image_id"]]
    return results


def test_submit(trained):
    ok(trained["proc"])
    out_path = trained["logs"].parent / "out" / "submission.json"
    out = ok(run_cli("submit", "--dataset", trained["data"], "--weights",
                     _checkpoint(trained["run"], 2), "--logs", trained["logs"], *SMALL,
                     "--out", out_path))
    assert "4/4" in out   # per-image progress
    results = check_submission(out_path, trained["data"])
    assert f"Wrote {len(results)} detections on 4 images to {out_path}" in out
    assert len(results) > 0
    assert not [f for f in os.listdir(out_path.parent) if f != "submission.json"]  # no tmp left


def test_detect_writes_a_png(trained):
    ok(trained["proc"])
    # The grayscale training image: detect must convert it to RGB itself.
    image = trained["data"] / "train_images" / trained["info"]["defects"]["grayscale"]
    png = trained["logs"].parent / "detections.png"
    out = ok(run_cli("detect", "--image", image, "--weights", _checkpoint(trained["run"], 2),
                     "--logs", trained["logs"], *SMALL, "--out", png))
    with Image.open(png) as picture:
        assert picture.format == "PNG"
        pixels = np.asarray(picture.convert("RGB"))
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and pixels.std() > 0
    count = int(re.search(r"(\d+) instances; saved (.*)", out).group(1))
    assert len(re.findall(r"^  \w+ +\d\.\d{3}$", out, flags=re.M)) == count


def test_train_seed_repeats_a_run_from_its_initial_weights(trained, tmp_path):
    """The same --train-seed in a new process gives the same checkpoint, bit for bit:
    the random initial weights are seeded too, not only the steps."""
    ok(trained["proc"])
    logs = tmp_path / "logs"
    ok(run_cli("train", "--dataset", trained["data"], "--weights", "none", "--logs", logs,
               *SMALL, *FIRST_EPOCH, "--all-epochs", 0, "--train-seed", TRAIN_SEED))
    [run] = logs.iterdir()
    first, second = _all_weights(_checkpoint(trained["run"], 1)), _all_weights(_checkpoint(run, 1))
    assert first.keys() == second.keys() and len(first) > 300
    for key, value in first.items():
        np.testing.assert_array_equal(value, second[key], err_msg=key)


def test_resume_continues_the_epoch_count(trained):
    ok(trained["proc"])
    # The run as a kill after epoch 1 would have left it (in a copy: others use the run).
    logs = trained["logs"].parent / "resume_logs"
    run = logs / trained["run"].name
    run.mkdir(parents=True)
    shutil.copy(_checkpoint(trained["run"], 1), run)
    with open(trained["run"] / "training_log.csv") as f:
        header, first_epoch = f.readlines()[:2]
    (run / "training_log.csv").write_text(header + first_epoch)
    out = ok(run_cli("train", "--dataset", trained["data"], "--weights", "last", "--logs", logs,
                     *SMALL, "--heads-epochs", 2, "--all-epochs", 0, "--steps", 1,
                     "--val-steps", 0, "--val-fraction", VAL_FRACTION, "--seed", SEED))
    assert str(_checkpoint(run, 1)) in out   # loaded the last checkpoint
    assert "Training network heads to epoch 2" in out and "Training all layers" not in out
    assert os.listdir(logs) == [run.name]     # the same run folder, no new one
    assert sorted(p.name for p in run.glob("*.h5")) == [_checkpoint(run, 1).name,
                                                         _checkpoint(run, 2).name]
    with open(run / "training_log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]
    # Started from the checkpoint's weights: the heads moved, the frozen backbone did not.
    # (fpn_p2 feeds the RPN, whose losses always have anchors to learn from; the mask
    # head only learns in a step that happens to sample a positive ROI.)
    assert not np.array_equal(_weights(_checkpoint(run, 1), "fpn_p2"),
                              _weights(_checkpoint(run, 2), "fpn_p2"))
    np.testing.assert_array_equal(_weights(_checkpoint(run, 1), "res5c_branch2c"),
                                  _weights(_checkpoint(run, 2), "res5c_branch2c"))


@pytest.mark.skipif(not os.path.isdir(os.path.join(REAL_TINYVOC, "test_images")),
                    reason=f"real tinyvoc test images not found at {REAL_TINYVOC}")
def test_submit_on_three_real_images_with_random_weights(tmp_path):
    with open(os.path.join(REAL_TINYVOC, "test.json")) as f:
        real = json.load(f)
    # Three images of different sizes, so mixed-up axes or a wrong image show.
    chosen, seen = [], set()
    for image in real["images"]:
        if (image["height"], image["width"]) not in seen:
            seen.add((image["height"], image["width"]))
            chosen.append(image)
        if len(chosen) == 3:
            break
    folder = tmp_path / "real3"
    (folder / "test_images").mkdir(parents=True)
    for image in chosen:
        shutil.copy(os.path.join(REAL_TINYVOC, "test_images", image["file_name"]),
                    folder / "test_images")
    with open(folder / "test.json", "w") as f:
        json.dump({"images": chosen, "categories": real["categories"]}, f)
    out_path = tmp_path / "real_submission.json"
    ok(run_cli("submit", "--dataset", folder, "--weights", "none", "--logs", tmp_path / "logs",
               *SMALL, "--out", out_path))
    results = check_submission(out_path, folder)
    assert len(results) > 0
    assert {r["image_id"] for r in results} <= {image["id"] for image in chosen}


############################################################
#  Bad input: a message naming the problem, a non-zero exit, no traceback
############################################################

def test_missing_dataset_folder(tmp_path):
    missing = tmp_path / "no_such_folder"
    for command in ("train", "evaluate", "submit"):
        fails_clearly(run_cli(command, "--dataset", missing, "--weights", "none"),
                      str(missing), "Expected layout")


def test_missing_or_broken_json(tmp_path):
    (tmp_path / "train_images").mkdir()
    (tmp_path / "test_images").mkdir()
    fails_clearly(run_cli("train", "--dataset", tmp_path, "--weights", "none"),
                  "pascal_train.json", "Expected layout")
    fails_clearly(run_cli("submit", "--dataset", tmp_path, "--weights", "none"),
                  "test.json", "Expected layout")
    (tmp_path / "pascal_train.json").write_text("{not json")
    fails_clearly(run_cli("evaluate", "--dataset", tmp_path, "--weights", "none"),
                  str(tmp_path / "pascal_train.json"), "not valid JSON")


def test_no_usable_image(tmp_path):
    (tmp_path / "test_images").mkdir()
    (tmp_path / "test_images" / "a.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with open(tmp_path / "test.json", "w") as f:
        json.dump({"images": [{"id": 1, "file_name": "a.jpg", "height": 10, "width": 10}],
                   "categories": [{"id": 1, "name": "x"}]}, f)
    fails_clearly(run_cli("submit", "--dataset", tmp_path, "--weights", "none"),
                  "no usable image", "a.jpg")


def test_validation_split_without_usable_image(tmp_path):
    info = write_synthetic_tinyvoc(str(tmp_path), n_train=12, n_test=1, seed=0)
    with open(tmp_path / "pascal_train.json") as f:
        images = json.load(f)["images"]
    corrupt = next(im["id"] for im in images if im["file_name"] == info["defects"]["corrupt"])
    # A seed whose one-image validation split (the default 0.1 of 12) is the corrupt JPEG.
    ids = [im["id"] for im in images]
    seed = next(s for s in range(100) if split_image_ids(ids, 0.1, s)[1] == [corrupt])
    fails_clearly(run_cli("train", "--dataset", tmp_path, "--weights", "none", "--seed", seed),
                  "validation split", f"--seed={seed}", "no usable image")


def test_missing_image_weights_or_checkpoint(tmp_path):
    missing = tmp_path / "nothing.jpg"
    fails_clearly(run_cli("detect", "--image", missing, "--weights", "none"), str(missing))
    write_synthetic_tinyvoc(str(tmp_path / "data"), n_train=1, n_test=1, with_defects=False)
    no_weights = tmp_path / "no_weights.h5"
    fails_clearly(run_cli("submit", "--dataset", tmp_path / "data", "--weights", no_weights),
                  str(no_weights))
    empty_logs = tmp_path / "empty_logs"
    empty_logs.mkdir()
    fails_clearly(run_cli("submit", "--dataset", tmp_path / "data", "--weights", "last",
                          "--logs", empty_logs, *SMALL), "No checkpoint", str(empty_logs))


def test_user_mistakes_in_real_processes(tmp_path):
    """The error funnel in a real process: exit code 2, the problem named, no traceback
    (tests/test_tinyvoc_errors.py covers many more cases in-process)."""
    data = tmp_path / "data"
    write_synthetic_tinyvoc(str(data), n_train=2, n_test=2, with_defects=False)
    with open(data / "test.json") as f:
        test = json.load(f)
    test["images"][1]["id"] = test["images"][0]["id"]
    with open(data / "test.json", "w") as f:
        json.dump(test, f)
    proc = run_cli("submit", "--dataset", data, "--weights", "none")
    fails_clearly(proc, f"image id {test['images'][0]['id']} is used twice",
                  test["images"][0]["file_name"], test["images"][1]["file_name"])
    assert proc.returncode == 2

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = run_cli("train", "--dataset", data, "--weights", "none", "--logs", blocker / "logs")
    fails_clearly(proc, str(blocker), "--logs folder")
    assert proc.returncode == 2

    # A Config error comes after TensorFlow is loaded: still one line, no traceback.
    proc = run_cli("train", "--dataset", data, "--weights", "none", "--image-size", "100")
    fails_clearly(proc, "IMAGE_MAX_DIM = 100", "divisible by 64")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and len(errors) == 1 and "IMAGE_MAX_DIM" in errors[0]
