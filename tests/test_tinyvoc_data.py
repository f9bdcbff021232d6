"""The data side of samples/tinyvoc.py and the synthetic tinyvoc writer."""
import filecmp
import json
import os
import warnings

import numpy as np
import pytest

from samples import tinyvoc
from samples.synthetic_tinyvoc import VOC_CLASSES, write_synthetic_tinyvoc

REAL_TINYVOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "..", "shared", "data", "tinyvoc")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tinyvoc"))
    write_synthetic_tinyvoc(path, n_train=12, n_test=4, seed=0)
    return path


def _load(folder, subset, **kwargs):
    dataset = tinyvoc.TinyVOCDataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset.load_tinyvoc(folder, subset, **kwargs)
    dataset.prepare()
    return dataset


def test_config():
    config = tinyvoc.TinyVOCConfig()
    assert config.NAME == "tinyvoc" and config.NUM_CLASSES == 21
    assert list(config.IMAGE_SHAPE) == [512, 512, 3]
    inference = tinyvoc.TinyVOCInferenceConfig()
    assert inference.BATCH_SIZE == 1 and inference.DETECTION_MIN_CONFIDENCE < config.DETECTION_MIN_CONFIDENCE


def test_split_is_seeded_disjoint_and_complete():
    ids = list(range(100, 200))
    train, val = tinyvoc.split_image_ids(ids[::-1], 0.1, seed=3)
    assert (train, val) == tinyvoc.split_image_ids(ids, 0.1, seed=3)  # order of input irrelevant
    assert len(val) == 10 and not set(train) & set(val) and sorted(train + val) == ids
    assert tinyvoc.split_image_ids(ids, 0.1, seed=4)[1] != val
    assert tinyvoc.split_image_ids(ids, 0.0)[1] == []
    assert len(tinyvoc.split_image_ids([1, 2, 3], 0.01)[1]) == 1  # a positive fraction holds out one
    with pytest.raises(ValueError, match="val_fraction"):
        tinyvoc.split_image_ids(ids, 1.0)


def test_train_and_val_subsets(folder):
    with open(os.path.join(folder, "pascal_train.json")) as f:
        raw = json.load(f)
    train = _load(folder, "train", val_fraction=0.25, seed=1)
    val = _load(folder, "val", val_fraction=0.25, seed=1)
    train_ids = {info["id"] for info in train.image_info}
    val_ids = {info["id"] for info in val.image_info}
    assert not train_ids & val_ids
    # Together: every image of the file except the corrupt one and the empty one.
    dropped = {im["id"] for im in raw["images"]
               if im["file_name"] in ("synthetic_000003.jpg", "synthetic_000005.jpg")}
    assert train_ids | val_ids == {im["id"] for im in raw["images"]} - dropped
    expected_train, expected_val = tinyvoc.split_image_ids([im["id"] for im in raw["images"]], 0.25, 1)
    assert val_ids == set(expected_val) - dropped
    assert _load(folder, "val", val_fraction=0.25, seed=1).image_info == val.image_info  # deterministic
    # COCO category ids are the internal ids (1..20 in order), names from VOC.
    assert train.class_names == ["BG"] + list(VOC_CLASSES)
    assert train.map_source_class_id("tinyvoc.15") == 15
    with pytest.raises(ValueError, match="holds out no image"):
        _load(folder, "val", val_fraction=0.0)


def test_test_subset_has_images_without_annotations(folder):
    test = _load(folder, "test")
    with open(os.path.join(folder, "test.json")) as f:
        raw = json.load(f)
    assert [info["id"] for info in test.image_info] == sorted(im["id"] for im in raw["images"])
    for image_id in test.image_ids:
        info = test.image_info[image_id]
        masks, class_ids = test.load_mask(image_id)
        assert masks.shape == (info["height"], info["width"], 0) and class_ids.size == 0
        assert test.load_image(image_id).shape == (info["height"], info["width"], 3)
    assert test.class_map() == {i: i for i in range(1, 21)}


def test_layout_errors_name_what_is_missing(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found.*nowhere(.|\n)*Expected layout"):
        tinyvoc.TinyVOCDataset().load_tinyvoc(str(tmp_path / "nowhere"))
    os.makedirs(tmp_path / "half" / "test_images")
    with pytest.raises(FileNotFoundError, match="lacks train_images and pascal_train.json"):
        tinyvoc.TinyVOCDataset().load_tinyvoc(str(tmp_path / "half"), "train")
    with pytest.raises(FileNotFoundError, match="lacks test.json"):
        tinyvoc.TinyVOCDataset().load_tinyvoc(str(tmp_path / "half"), "test")
    with pytest.raises(ValueError, match="subset"):
        tinyvoc.TinyVOCDataset().load_tinyvoc(folder, "training")


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tinyvoc.main(["submit", "--dataset", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "missing" in err and "Expected layout" in err and "Traceback" not in err


@pytest.mark.skipif(not os.path.isdir(REAL_TINYVOC), reason="real tinyvoc copy not present")
def test_real_test_set_loads():
    test = _load(REAL_TINYVOC, "test")
    assert test.num_images == 100 and test.class_names[1:] == list(VOC_CLASSES)
    assert test.skipped["images"] == {}
    with pytest.raises(FileNotFoundError, match="pascal_train.json"):
        tinyvoc.TinyVOCDataset().load_tinyvoc(REAL_TINYVOC, "train")


def test_config_from_command_line(tmp_path):
    parser = tinyvoc.build_parser()
    args = parser.parse_args(["train", "--dataset", "d", "--weights", "none"])
    config = tinyvoc.make_config(args, False, "none", train_images=11, val_images=3)
    assert (config.STEPS_PER_EPOCH, config.VALIDATION_STEPS) == (6, 2)  # ceil(11/2), ceil(3/2)
    assert config.BACKBONE == "resnet50"
    args = parser.parse_args(["train", "--dataset", "d", "--weights", "coco", "--steps", "2",
                              "--val-steps", "1", "--image-size", "128"])
    config = tinyvoc.make_config(args, False, "coco", train_images=11, val_images=3)
    assert (config.STEPS_PER_EPOCH, config.VALIDATION_STEPS) == (2, 1)
    assert config.BACKBONE == "resnet101" and list(config.IMAGE_SHAPE) == [128, 128, 3]
    args = parser.parse_args(["detect", "--image", "x.jpg", "--weights", "none", "--min-confidence", "0.3"])
    config = tinyvoc.make_config(args, True, "none")
    assert config.DETECTION_MIN_CONFIDENCE == 0.3 and config.BATCH_SIZE == 1
    for command in ("evaluate", "submit"):
        args = parser.parse_args([command, "--dataset", "d"])
        assert args.weights == "last" and args.func.__name__ == f"cmd_{command}"


def _checkpoint_file(path, stage4_blocks="af", norm="batch"):
    """A real Keras-2 weights file (mrcnn.weights.save_weights) with Matterport's names."""
    import keras
    from mrcnn.weights import save_weights

    image = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 1, name="conv1")(image)
    x = (keras.layers.BatchNormalization(name="bn_conv1") if norm == "batch"
         else keras.layers.GroupNormalization(groups=1, name="bn_conv1"))(x)
    for block in stage4_blocks:
        x = keras.layers.Conv2D(2, 1, name=f"res4{block}_branch2a")(x)
    save_weights(keras.Model(image, x), path)
    return str(path)


def test_backbone_is_read_from_checkpoint(tmp_path):
    parser = tinyvoc.build_parser()
    for blocks, expected in (("aw", "resnet101"), ("af", "resnet50"), ("", "resnet50")):
        path = _checkpoint_file(tmp_path / f"{blocks or 'none'}.h5", blocks)
        args = parser.parse_args(["submit", "--dataset", "d", "--weights", path])
        weights = tinyvoc.resolve_weights(args)
        assert weights == path
        assert tinyvoc.make_config(args, True, weights).BACKBONE == expected
    (tmp_path / "not_h5.h5").write_text("x")
    args = parser.parse_args(["submit", "--dataset", "d", "--weights", str(tmp_path / "not_h5.h5")])
    with pytest.raises(tinyvoc.InputError, match="not_h5.h5"):
        tinyvoc.make_config(args, True, tinyvoc.resolve_weights(args))


def test_weights_last_is_resolved_once_to_the_newest_checkpoint(tmp_path):
    run = tmp_path / "logs" / "tinyvoc20260101T0000"
    run.mkdir(parents=True)
    _checkpoint_file(run / "mask_rcnn_tinyvoc_0001.h5", "af")
    newest = _checkpoint_file(run / "mask_rcnn_tinyvoc_0002.h5", "aw", norm="group")
    parser = tinyvoc.build_parser()
    args = parser.parse_args(["evaluate", "--dataset", "d", "--logs", str(tmp_path / "logs")])
    assert args.weights == "last" and tinyvoc.resolve_weights(args) == newest
    config = tinyvoc.make_config(args, True, newest)
    assert (config.BACKBONE, config.BACKBONE_NORM) == ("resnet101", "group")
    args = parser.parse_args(["evaluate", "--dataset", "d", "--logs", str(tmp_path / "empty")])
    with pytest.raises(tinyvoc.InputError, match="--weights=last"):
        tinyvoc.resolve_weights(args)


def test_synthetic_writer_is_deterministic(tmp_path):
    a, b, c = (str(tmp_path / name) for name in "abc")
    info = write_synthetic_tinyvoc(a, n_train=8, n_test=2, seed=5)
    write_synthetic_tinyvoc(b, n_train=8, n_test=2, seed=5)
    write_synthetic_tinyvoc(c, n_train=8, n_test=2, seed=6)
    files = ["pascal_train.json", "test.json"] + [
        os.path.join(d, f) for d in ("train_images", "test_images") for f in sorted(os.listdir(os.path.join(a, d)))]
    assert len(files) == 2 + 8 + 2
    match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert not mismatch and not errors
    assert not filecmp.cmp(os.path.join(a, "pascal_train.json"), os.path.join(c, "pascal_train.json"),
                           shallow=False)
    with open(info["test_json"]) as f:
        test = json.load(f)
    assert "annotations" not in test and len(test["categories"]) == 20
    assert [(im["height"], im["width"]) for im in test["images"]] == [(128, 160), (160, 128)]


def test_synth_command(tmp_path, capsys):
    tinyvoc.main(["synth", str(tmp_path / "s"), "--train", "7", "--test", "1"])
    assert len(os.listdir(tmp_path / "s" / "train_images")) == 7
    assert "7 training and 1 test images" in capsys.readouterr().out


def test_augmentation_moves_masks_with_the_image():
    augmentation = tinyvoc.build_augmentation()
    image = np.zeros((32, 48, 3), np.uint8)
    image[4:10, 2:8] = 255
    mask = np.zeros((1, 32, 48), np.uint8)
    mask[0, 4:10, 2:8] = 1
    for _ in range(8):
        out = augmentation(image=image, masks=mask)
        assert out["image"].shape == image.shape and out["masks"][0].shape == mask[0].shape
        bright = out["image"].max(axis=2) > 127
        # The mask still covers the (moved) bright square, up to interpolation at its border.
        overlap = np.logical_and(bright, out["masks"][0] > 0).sum() / max(bright.sum(), 1)
        assert overlap > 0.7


def test_backbone_norm_is_read_from_checkpoint(tmp_path):
    parser = tinyvoc.build_parser()
    for norm in ("batch", "group"):
        path = _checkpoint_file(tmp_path / f"{norm}.h5", norm=norm)
        args = parser.parse_args(["submit", "--dataset", "d", "--weights", path])
        assert tinyvoc.make_config(args, True, tinyvoc.resolve_weights(args)).BACKBONE_NORM == norm
    for argv, expected in ((["--weights", "none"], "batch"), (["--weights", "coco"], "batch"),
                           (["--weights", "none", "--backbone-norm", "group"], "group")):
        args = parser.parse_args(["train", "--dataset", "d"] + argv)
        assert tinyvoc.choose_norm(args, tinyvoc.describe_weights(args.weights)) == expected
