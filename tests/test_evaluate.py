"""COCO evaluation and submissions, driven by a fake model (a test double).

The fakes below stand in for MaskRCNN.detect so that the evaluation and submission
code can be checked against known answers: ground-truth detections must score AP 1.0
in pycocotools' COCOeval, a shifted mask must score exactly the fraction of COCO's
IoU thresholds its (independently computed) IoU passes.
"""
import glob
import hashlib
import json
import os
import warnings

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mrcnn.coco import CocoDataset
from mrcnn.evaluate import (STAT_NAMES, detections_to_coco, evaluate_coco, ground_truth_coco,
                            make_submission, run_cocoeval, write_json_atomic)
from samples.synthetic_tinyvoc import write_synthetic_tinyvoc

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def _key(image):
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def _boxes_of(masks):
    """[N, (y1, x1, y2, x2)] exclusive pixel boxes of [H, W, N] masks (numpy reference)."""
    boxes = []
    for k in range(masks.shape[2]):
        ys, xs = np.nonzero(masks[:, :, k])
        boxes.append([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])
    return np.array(boxes, dtype=np.int32).reshape(-1, 4)


class GroundTruthModel:
    """Test double for MaskRCNN in inference mode: detect() returns each image's
    ground truth (crowds left out), found by hashing the image pixels.

    edit: optional function (internal image id, masks, class_ids) -> (masks, class_ids)
        to perturb the detections.
    batch_size: if set, behaves like Matterport's detect, which required exactly
        BATCH_SIZE images per call.
    """
    mode = "inference"

    def __init__(self, dataset, edit=None, batch_size=None):
        self.dataset = dataset
        self.edit = edit
        self.by_pixels = {_key(dataset.load_image(i)): i for i in dataset.image_ids}
        self.calls = []
        if batch_size:
            self.config = type("FakeConfig", (), {"BATCH_SIZE": batch_size})()

    def detect(self, images, verbose=0):
        if hasattr(self, "config"):
            assert len(images) == self.config.BATCH_SIZE
        self.calls.append(len(images))
        results = []
        for image in images:
            image_id = self.by_pixels[_key(image)]
            masks, class_ids = self.dataset.load_mask(image_id)
            keep = class_ids > 0
            masks, class_ids = masks[:, :, keep], class_ids[keep]
            if self.edit is not None:
                masks, class_ids = self.edit(image_id, masks, class_ids)
            results.append({"rois": _boxes_of(masks), "class_ids": class_ids.astype(np.int32),
                            "scores": np.linspace(0.99, 0.9, len(class_ids)).astype(np.float32),
                            "masks": masks})
        return results


class BrightPixelsModel:
    """Test double for the test set (no ground truth): one "tvmonitor" (class 20)
    detection covering the image's bright pixels."""
    mode = "inference"

    def __init__(self, mask_shape=None):
        self.mask_shape = mask_shape

    def detect(self, images, verbose=0):
        results = []
        for image in images:
            mask = (image.max(axis=2) > 140)[:, :, None]
            if self.mask_shape is not None:
                mask = np.zeros(self.mask_shape + (1,), dtype=bool)
                mask[:4, :4] = True
            results.append({"rois": _boxes_of(mask), "class_ids": np.array([20], np.int32),
                            "scores": np.array([0.8], np.float32), "masks": mask})
        return results


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A synthetic folder without defects and its dataset."""
    folder = str(tmp_path_factory.mktemp("clean"))
    info = write_synthetic_tinyvoc(folder, n_train=8, n_test=3, seed=1, with_defects=False)
    dataset = CocoDataset()
    dataset.load_coco(info["train_json"], os.path.join(folder, "train_images"))
    dataset.prepare()
    return info, dataset


@pytest.fixture(scope="module")
def defective(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("defects"))
    info = write_synthetic_tinyvoc(folder, n_train=8, n_test=3, seed=2, with_defects=True)
    dataset = CocoDataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset.load_coco(info["train_json"], os.path.join(folder, "train_images"))
    dataset.prepare()
    return info, dataset


def _assert_perfect(stats):
    # AR1 is left out: with one detection per image and category it is below 1
    # wherever an image has two instances of a category (see _expected_ar1).
    for name in ("AP", "AP50", "AP75", "AR10", "AR100"):
        assert stats[name] == pytest.approx(1.0), name
    for name in ("APs", "APm", "APl", "ARs", "ARm", "ARl"):
        # -1: COCOeval has no ground truth of that size.
        assert stats[name] == pytest.approx(1.0) or stats[name] == -1, name


def test_ground_truth_detections_score_ap_one(clean, capsys):
    _, dataset = clean
    stats = evaluate_coco(GroundTruthModel(dataset), dataset, dataset.coco, progress=True)
    assert set(stats) == {"bbox", "segm"}
    for eval_type in ("bbox", "segm"):
        assert list(stats[eval_type]) == list(STAT_NAMES)
        _assert_perfect(stats[eval_type])
        assert stats[eval_type]["AR1"] == pytest.approx(_expected_ar1(dataset.coco))
    out = capsys.readouterr().out
    # pycocotools' standard table was printed, for both types.
    assert out.count("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]") == 2


def _expected_ar1(coco):
    """AR@1 of perfect detections, counted by hand: per category, an image recalls at
    most one of its instances; AR is the mean of the per-category recalls."""
    recalls = []
    for category in coco.getCatIds():
        per_image = {}
        for ann in coco.loadAnns(coco.getAnnIds(catIds=[category], iscrowd=False)):
            per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
        if per_image:
            recalls.append(len(per_image) / sum(per_image.values()))
    return np.mean(recalls)


def test_skipped_annotations_are_left_out_of_the_default_ground_truth(defective):
    _, dataset = defective
    model = GroundTruthModel(dataset)
    stats = evaluate_coco(model, dataset, eval_type="segm", progress=False, verbose=False)
    _assert_perfect(stats["segm"])
    gt = ground_truth_coco(dataset)
    kept = sum(len(info["annotations"]) for info in dataset.image_info)
    assert len(gt.anns) == kept
    # The raw file cannot even be evaluated: pycocotools reads the 2-point polygon
    # [x0, y0, x1, y1] as a box and fails.
    with pytest.raises(TypeError):
        evaluate_coco(model, dataset, dataset.coco, eval_type="segm", progress=False, verbose=False)
    # Without that one, the zero-area annotation is unmatchable ground truth of
    # its category, and AP drops below 1.
    info, _ = defective
    with open(info["train_json"]) as f:
        raw = json.load(f)
    raw["annotations"] = [a for a in raw["annotations"] if a["id"] != info["defects"]["degenerate_polygon"]]
    coco = COCO()
    coco.dataset = raw
    coco.createIndex()
    stats = evaluate_coco(model, dataset, coco, eval_type="segm", progress=False, verbose=False)
    assert stats["segm"]["AP"] < 1.0


def test_shifted_mask_scores_the_thresholds_its_iou_passes(clean):
    _, dataset = clean
    # An image with a single non-crowd instance, so AP is that instance's alone.
    image_id = next(i for i in dataset.image_ids if len(dataset.load_mask(i)[1]) == 1
                    and dataset.load_mask(i)[1][0] > 0)
    gt_mask = dataset.load_mask(image_id)[0][:, :, 0]
    shift = max(1, int(_boxes_of(gt_mask[:, :, None])[0, 3] - _boxes_of(gt_mask[:, :, None])[0, 1]) // 6)

    def shift_right(_, masks, class_ids):
        return np.roll(masks, shift, axis=1), class_ids

    model = GroundTruthModel(dataset, edit=shift_right)
    detection = model.detect([dataset.load_image(image_id)])[0]
    [result] = detections_to_coco(dataset.image_info[image_id]["id"], detection, dataset)

    shifted = detection["masks"][:, :, 0]
    iou_numpy = np.logical_and(shifted, gt_mask).sum() / np.logical_or(shifted, gt_mask).sum()
    gt_rle = mask_utils.encode(np.asfortranarray(gt_mask.astype(np.uint8)))
    dt_rle = dict(result["segmentation"], counts=result["segmentation"]["counts"].encode())
    iou_coco = mask_utils.iou([dt_rle], [gt_rle], [0])[0, 0]
    assert iou_coco == pytest.approx(iou_numpy)
    assert 0.5 < iou_numpy < 0.95

    stats = evaluate_coco(model, dataset, dataset.coco, eval_type="segm", image_ids=[image_id],
                          progress=False, verbose=False)["segm"]
    passed = np.mean(COCO_IOU_THRESHOLDS <= iou_numpy + 1e-12)
    assert stats["AP"] == pytest.approx(passed)
    assert stats["AP50"] == pytest.approx(1.0)
    assert stats["AP75"] == pytest.approx(float(iou_numpy >= 0.75))


def test_no_detections_give_zero_ap(clean):
    _, dataset = clean

    def drop_all(_, masks, class_ids):
        return masks[:, :, :0], class_ids[:0]

    stats = evaluate_coco(GroundTruthModel(dataset, edit=drop_all), dataset, dataset.coco,
                          progress=False, verbose=False)
    assert stats["bbox"]["AP"] == 0 and stats["segm"]["AR100"] == 0


def test_batches_follow_the_model_batch_size(clean):
    _, dataset = clean
    model = GroundTruthModel(dataset, batch_size=3)
    stats = evaluate_coco(model, dataset, dataset.coco, eval_type="bbox", limit=7,
                          progress=False, verbose=False)
    assert model.calls == [3, 3, 3]  # 7 images: the last batch is padded
    _assert_perfect(stats["bbox"])


def test_detections_to_coco_fields(clean):
    _, dataset = clean
    masks = np.zeros((10, 12, 2), dtype=bool)
    masks[2:5, 3:9, 0] = True
    masks[0:1, 0:1, 1] = True
    results = {"rois": np.array([[2, 3, 5, 9], [0, 0, 1, 1]]), "class_ids": np.array([20, 5]),
               "scores": np.array([0.5, 0.25], np.float32), "masks": masks}
    out = detections_to_coco(7, results, {20: 120, 5: 105})
    assert [r["category_id"] for r in out] == [120, 105]
    assert out[0]["bbox"] == [3.0, 2.0, 6.0, 3.0]
    assert out[0]["segmentation"]["size"] == [10, 12]
    assert isinstance(out[0]["segmentation"]["counts"], str)
    decoded = mask_utils.decode(dict(out[0]["segmentation"], counts=out[0]["segmentation"]["counts"].encode()))
    np.testing.assert_array_equal(decoded.astype(bool), masks[:, :, 0])
    json.dumps(out)  # plain Python types only
    # Through a Dataset: internal id -> its COCO category id.
    tv = dataset.class_names.index("tvmonitor")
    assert detections_to_coco(1, dict(results, class_ids=np.array([tv, tv])), dataset)[0]["category_id"] == 20
    with pytest.raises(ValueError, match="class id 3"):
        detections_to_coco(7, dict(results, class_ids=np.array([3, 5])), {20: 120, 5: 105})
    with pytest.raises(ValueError, match="original size"):
        detections_to_coco(7, results, {20: 120, 5: 105}, image_shape=(11, 12))


def _records(info):
    with open(info["test_json"]) as f:
        images = json.load(f)["images"]
    folder = os.path.join(info["folder"], "test_images")
    return [(im["id"], os.path.join(folder, im["file_name"]), im["height"], im["width"]) for im in images]


def test_submission_validates_with_load_res(clean, tmp_path):
    info, dataset = clean
    records = _records(info)
    test_coco = COCO(info["test_json"])
    out = tmp_path / "sub" / "submission.json"
    report = make_submission(BrightPixelsModel(), records, dataset, out, coco=test_coco, progress=False)
    assert report["images"] == len(records) and report["skipped"] == []
    with open(out) as f:
        submission = json.load(f)
    assert len(submission) == report["detections"] == len(records)
    sizes = {im["id"]: (im["height"], im["width"]) for im in test_coco.dataset["images"]}
    for entry in submission:
        assert set(entry) == {"image_id", "category_id", "segmentation", "score"}
        assert entry["image_id"] in sizes
        assert entry["category_id"] in test_coco.getCatIds()
        decoded = mask_utils.decode(dict(entry["segmentation"], counts=entry["segmentation"]["counts"].encode()))
        assert decoded.shape == sizes[entry["image_id"]]
        path = next(r[1] for r in records if r[0] == entry["image_id"])
        expected = np.asarray(Image.open(path).convert("RGB")).max(axis=2) > 140
        np.testing.assert_array_equal(decoded.astype(bool), expected)
    loaded = test_coco.loadRes(str(out))  # independent validation of the written file
    assert len(loaded.anns) == len(submission)
    assert glob.glob(str(tmp_path / "sub" / ".*")) == []  # no temporary file left


def test_submission_skips_unreadable_images_and_rejects_bad_masks(clean, tmp_path):
    info, dataset = clean
    records = _records(info)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xffgarbage")
    records[1] = (records[1][0], str(broken), records[1][2], records[1][3])
    out = tmp_path / "submission.json"
    with pytest.warns(UserWarning, match="skipped 1 of 3 images.*broken.jpg"):
        report = make_submission(BrightPixelsModel(), records, dataset, out, progress=False)
    assert report["skipped"] == ["broken.jpg"] and report["images"] == 2

    # Masks not at the image's size: an error, and the previous file stays as it was.
    before = out.read_bytes()
    with pytest.raises(ValueError, match="original size"):
        make_submission(BrightPixelsModel(mask_shape=(5, 5)), _records(info), dataset, out, progress=False)
    assert out.read_bytes() == before

    wrong_size = [(r[0], r[1], r[2] + 1, r[3]) for r in _records(info)]
    with pytest.raises(ValueError, match="record says"):
        make_submission(BrightPixelsModel(), wrong_size, dataset, tmp_path / "x.json", progress=False)
    assert not (tmp_path / "x.json").exists()


def test_run_cocoeval_rejects_unknown_type(clean):
    with pytest.raises(ValueError, match="iou_type"):
        run_cocoeval(clean[1].coco, [], "keypoints")


def test_write_json_atomic(tmp_path):
    path = tmp_path / "out.json"
    write_json_atomic({"a": np.int64(3), "b": np.float32(0.5), "c": np.arange(3)}, path)
    assert json.loads(path.read_text()) == {"a": 3, "b": 0.5, "c": [0, 1, 2]}
    assert os.listdir(tmp_path) == ["out.json"]

    class Unserializable:
        pass

    with pytest.raises(TypeError):
        write_json_atomic({"x": Unserializable()}, path)
    # The failed write left the old file intact and no temporary file behind.
    assert json.loads(path.read_text()) == {"a": 3, "b": 0.5, "c": [0, 1, 2]}
    assert os.listdir(tmp_path) == ["out.json"]

    write_json_atomic([1, 2], path)
    assert json.loads(path.read_text()) == [1, 2]
    assert os.listdir(tmp_path) == ["out.json"]


def test_ground_truth_fills_missing_area_and_bbox(clean):
    info, dataset = clean
    reference = COCO(info["train_json"])
    stripped = CocoDataset()
    stripped.load_coco(info["train_json"], os.path.join(info["folder"], "train_images"))
    stripped.prepare()
    for image in stripped.image_info:
        image["annotations"] = [{k: v for k, v in a.items() if k not in ("area", "bbox")}
                                for a in image["annotations"]]
    gt = ground_truth_coco(stripped)
    by_segmentation = {json.dumps(a["segmentation"]): a for a in reference.dataset["annotations"]}
    kinds = set()
    for ann in gt.dataset["annotations"]:
        expected = by_segmentation[json.dumps(ann["segmentation"])]
        # The synthetic writer took area and bbox from the rasterized masks as well.
        assert ann["area"] == pytest.approx(expected["area"])
        assert ann["bbox"] == pytest.approx(expected["bbox"])
        kinds.add("polygon" if isinstance(ann["segmentation"], list)
                  else "rle-" + type(ann["segmentation"]["counts"]).__name__)
    assert kinds == {"polygon", "rle-str", "rle-list"}


def test_evaluation_leaves_out_an_unreadable_image_with_a_warning(clean, tmp_path, capsys):
    """One undecodable file costs its own image only: the others are detected and scored
    (perfectly, by ground-truth detections), the warning names the file, and the
    progress bar still counts all 8 images."""
    import copy

    from mrcnn.errors import UserInputError

    _, dataset = clean
    model = GroundTruthModel(dataset)
    spoiled = copy.deepcopy(dataset)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xffgarbage")
    spoiled.image_info[1]["path"] = str(broken)
    with pytest.warns(UserWarning, match="left out 1 of 8 images.*broken.jpg"):
        stats = evaluate_coco(model, spoiled, progress=True, verbose=False)
    assert "8/8" in capsys.readouterr().out
    _assert_perfect(stats["segm"])
    _assert_perfect(stats["bbox"])

    for info in spoiled.image_info:
        info["path"] = str(broken)
    with pytest.warns(UserWarning), pytest.raises(UserInputError, match="none of the 8 images"):
        evaluate_coco(model, spoiled, progress=False, verbose=False)
