"""Tests for mrcnn.data: load_image_gt, augmentation, build_rpn_targets, DataGenerator."""
import logging
import sys
import types

import albumentations as A
import numpy as np
import pytest
import scipy.ndimage

from mrcnn.boxes import compute_overlaps
from mrcnn.config import Config
from mrcnn.data import DataGenerator, ImageLoadError, apply_augmentation, build_rpn_targets, load_image_gt
from mrcnn.dataset import Dataset
from mrcnn.images import parse_image_meta
from mrcnn.masks import expand_mask


class TinyConfig(Config):
    NAME = "tiny"
    NUM_CLASSES = 3
    IMAGES_PER_GPU = 2
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    MINI_MASK_SHAPE = (28, 28)
    MAX_GT_INSTANCES = 5


class RectDataset(Dataset):
    """In-memory images with filled rectangles; one instance per rectangle."""

    def __init__(self, images):
        """images: list of (height, width, [(y1, x1, y2, x2, class_id), ...])."""
        super().__init__()
        self.add_class("rect", 1, "one")
        self.add_class("rect", 2, "two")
        for i, (height, width, rects) in enumerate(images):
            self.add_image("rect", image_id=i, path=None, height=height, width=width, rects=rects)
        self.prepare()

    def load_image(self, image_id):
        info = self.image_info[image_id]
        image = np.full((info["height"], info["width"], 3), 40, dtype=np.uint8)
        for k, (y1, x1, y2, x2, _) in enumerate(info["rects"]):
            image[y1:y2, x1:x2] = (100 + 50 * (k % 3), 255 - 60 * (k % 3), 30 * (k % 3))
        return image

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        masks = np.zeros((info["height"], info["width"], len(info["rects"])), dtype=bool)
        for k, (y1, x1, y2, x2, _) in enumerate(info["rects"]):
            masks[y1:y2, x1:x2, k] = True
        return masks, np.array([r[4] for r in info["rects"]], dtype=np.int32)

    def image_reference(self, image_id):
        return f"rect image #{image_id}"


def _tight_boxes(masks):
    """Brute-force tight boxes of [H, W, N] masks."""
    boxes = []
    for i in range(masks.shape[2]):
        ys, xs = np.nonzero(masks[:, :, i])
        boxes.append([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])
    return np.array(boxes).reshape(-1, 4)


IMAGES = [
    (60, 100, [(5, 10, 30, 40, 1), (20, 60, 55, 95, 2)]),
    (80, 80, [(10, 10, 70, 30, 2)]),
    (100, 50, [(0, 0, 40, 50, 1), (50, 5, 90, 45, 1), (60, 20, 70, 30, 2)]),
    (64, 64, [(30, 30, 50, 50, 2)]),
    (90, 120, [(10, 70, 50, 118, 1)]),
]


@pytest.fixture(scope="module")
def config():
    return TinyConfig()


@pytest.fixture(scope="module")
def dataset():
    return RectDataset(IMAGES)


# ---------------------------------------------------------------- load_image_gt

def test_load_image_gt_full_masks_match_boxes_and_image(dataset, config):
    image, meta, class_ids, bbox, mask = load_image_gt(dataset, config, 0, use_mini_mask=False)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert mask.shape == (128, 128, 2) and mask.dtype == bool
    assert class_ids.tolist() == [1, 2] and class_ids.dtype == np.int32
    assert bbox.dtype == np.int32
    np.testing.assert_array_equal(bbox, _tight_boxes(mask))
    # min_dim 64 scales 60x100 by 64/60 to 64x107, centred in 128x128.
    parsed = parse_image_meta(meta[None])
    scale, window = parsed["scale"][0], parsed["window"][0]
    assert scale == pytest.approx(64 / 60)
    np.testing.assert_array_equal(window, [32, 10, 96, 117])
    expected = (np.array([5, 10, 30, 40]) * scale + [window[0], window[1], window[0], window[1]])
    np.testing.assert_allclose(bbox[0], expected, atol=1.0)
    # Masks stay on their rectangles: the image has the rectangle colour under the mask.
    # Interpolation blends one pixel at the edges, so look 2 pixels inside.
    inner = scipy.ndimage.binary_erosion(mask[:, :, 0], iterations=2)
    assert inner.sum() > 500
    assert (image[inner] == (100, 255, 0)).all()
    np.testing.assert_array_equal(parsed["active_class_ids"][0], [1, 1, 1])
    np.testing.assert_array_equal(parsed["original_image_shape"][0], [60, 100, 3])


def test_load_image_gt_mini_masks_expand_back_to_full(dataset, config):
    _, _, _, bbox_full, full = load_image_gt(dataset, config, 2, use_mini_mask=False)
    _, _, _, bbox, mini = load_image_gt(dataset, config, 2)
    assert mini.shape == (28, 28, 3)
    np.testing.assert_array_equal(bbox, bbox_full)
    expanded = expand_mask(bbox, mini, (128, 128))
    # Rectangles survive the mini-mask round trip almost exactly.
    assert (expanded != full).mean() < 0.002


def test_horizontal_flip_keeps_masks_aligned(dataset, config):
    base = load_image_gt(dataset, config, 0, use_mini_mask=False)
    for aug in (A.HorizontalFlip(p=1.0), A.Compose([A.HorizontalFlip(p=1.0)])):
        image, meta, class_ids, bbox, mask = load_image_gt(dataset, config, 0, aug, use_mini_mask=False)
        np.testing.assert_array_equal(image, np.fliplr(base[0]))
        np.testing.assert_array_equal(mask, np.fliplr(base[4]))
        np.testing.assert_array_equal(class_ids, base[2])
        np.testing.assert_array_equal(bbox, _tight_boxes(np.fliplr(base[4])))
        np.testing.assert_array_equal(meta, base[1])


def test_instances_pushed_out_by_augmentation_are_dropped(config):
    ds = RectDataset([(128, 128, [(10, 5, 40, 30, 1), (60, 90, 100, 125, 2)])])
    shift = A.Affine(translate_px={"x": 40, "y": 0}, p=1.0)
    image, _, class_ids, bbox, mask = load_image_gt(ds, config, 0, shift, use_mini_mask=False)
    assert class_ids.tolist() == [1]
    np.testing.assert_array_equal(bbox, [[10, 45, 40, 70]])
    assert mask.shape == (128, 128, 1)
    assert (image[mask[:, :, 0]] == (100, 255, 0)).all()


def test_crop_mode_drops_instances_outside_the_crop():
    class CropConfig(TinyConfig):
        IMAGE_RESIZE_MODE = "crop"
        IMAGE_MIN_DIM = 64

    ds = RectDataset([(64, 192, [(10, 5, 30, 40, 1), (20, 150, 50, 180, 2)])])
    seen = set()
    for seed in range(6):
        image, meta, class_ids, bbox, mask = load_image_gt(
            ds, CropConfig(), 0, use_mini_mask=False, rng=np.random.default_rng(seed))
        assert image.shape == (64, 64, 3) and mask.shape[:2] == (64, 64)
        np.testing.assert_array_equal(bbox, _tight_boxes(mask))
        np.testing.assert_array_equal(parse_image_meta(meta)["window"], [0, 0, 64, 64])
        # The two rectangles are 110 px apart: a 64-px crop never holds both.
        assert class_ids.size <= 1
        seen.add(tuple(class_ids.tolist()))
    assert len(seen) > 1


def test_augmentation_must_keep_the_size(dataset, config):
    with pytest.raises(ValueError, match="size-preserving"):
        load_image_gt(dataset, config, 0, A.Resize(64, 64))
    with pytest.raises(TypeError, match="albumentations"):
        load_image_gt(dataset, config, 0, augmentation=lambda image: image)


def test_imgaug_style_augmenters_are_duck_typed(monkeypatch):
    """imgaug does not import under NumPy 2; a stand-in checks the plumbing."""
    calls = []

    class HooksImages:
        def __init__(self, activator):
            self.activator = activator

    class Fliplr:
        def to_deterministic(self):
            return self

        def augment_image(self, image, hooks=None):
            calls.append(hooks)
            if hooks is not None and not hooks.activator(None, self, [], True):
                return image
            return np.fliplr(image)

    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    mask = np.zeros((4, 6, 1), bool)
    mask[:, :2] = True
    monkeypatch.setitem(sys.modules, "imgaug", types.SimpleNamespace(HooksImages=HooksImages))
    new_image, new_mask = apply_augmentation(image, mask, Fliplr())
    np.testing.assert_array_equal(new_image, np.fliplr(image))
    np.testing.assert_array_equal(new_mask, np.fliplr(mask))
    assert calls[0] is None and isinstance(calls[1], HooksImages)

    monkeypatch.setitem(sys.modules, "imgaug", None)  # import fails, as under NumPy 2
    with pytest.raises(ImportError, match="albumentations"):
        apply_augmentation(image, mask, Fliplr())


def test_bad_masks_and_class_ids_are_reported(config):
    class Broken(RectDataset):
        def load_mask(self, image_id):
            masks, class_ids = super().load_mask(image_id)
            return masks, class_ids + 5

    with pytest.raises(ValueError, match=r"class ids \[6\]"):
        load_image_gt(Broken([(64, 64, [(1, 1, 9, 9, 1)])]), config, 0)


# ---------------------------------------------------------------- build_rpn_targets

class RpnConfig:
    RPN_TRAIN_ANCHORS_PER_IMAGE = 16
    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    CROWD_IOU = 0.001


HAND_ANCHORS = np.array([
    [0, 0, 10, 10],      # IoU 1 with gt0 -> positive
    [0, 0, 10, 12],      # IoU 100/120 = 0.83 with gt0 -> positive
    [0, 0, 10, 20],      # IoU 0.5 with gt0 -> neutral
    [50, 50, 60, 60],    # IoU 0 -> negative
    [30, 30, 40, 40],    # IoU 100/196 = 0.51 with gt1, its best anchor -> positive
    [100, 100, 110, 110],  # IoU 0 but inside the crowd box -> neutral
    [200, 200, 210, 210],  # IoU 0 -> negative
], dtype=np.float64)
HAND_CLASS_IDS = np.array([1, 2, -1, 0])  # the crowd and a padding row
HAND_BOXES = np.array([[0, 0, 10, 10], [30, 30, 44, 44], [100, 100, 120, 120], [0, 0, 0, 0]])


def test_rpn_targets_hand_built_case():
    rpn_match, rpn_bbox = build_rpn_targets(HAND_ANCHORS, HAND_CLASS_IDS, HAND_BOXES, RpnConfig)
    assert rpn_match.dtype == np.int32 and rpn_bbox.dtype == np.float32
    np.testing.assert_array_equal(rpn_match, [1, 1, 0, -1, 1, 0, -1])
    std = RpnConfig.RPN_BBOX_STD_DEV
    expected = np.zeros((16, 4))
    expected[0] = [0, 0, 0, 0]
    # Anchor 1: centre x 6 vs 5, width 12 vs 10.
    expected[1] = np.array([0, (5 - 6) / 12, 0, np.log(10 / 12)]) / std
    # Anchor 4: centre 35 vs 37, size 10 vs 14.
    expected[2] = np.array([0.2, 0.2, np.log(1.4), np.log(1.4)]) / std
    np.testing.assert_allclose(rpn_bbox, expected, atol=1e-5)


def test_rpn_targets_balance_counts():
    class Small(RpnConfig):
        RPN_TRAIN_ANCHORS_PER_IMAGE = 4

    full, _ = build_rpn_targets(HAND_ANCHORS, HAND_CLASS_IDS, HAND_BOXES, RpnConfig)
    for seed in range(5):
        rpn_match, rpn_bbox = build_rpn_targets(
            HAND_ANCHORS, HAND_CLASS_IDS, HAND_BOXES, Small, rng=np.random.default_rng(seed))
        # At most half positive; negatives fill the rest of the budget.
        assert (rpn_match == 1).sum() == 2 and (rpn_match == -1).sum() == 2
        # Sampling only turns labels neutral, never flips them.
        assert np.all((rpn_match == 0) | (rpn_match == full))
        assert rpn_bbox.shape == (4, 4) and not rpn_bbox[2:].any()


def test_rpn_targets_ties_for_best_anchor_are_all_positive():
    anchors = np.array([[0, 0, 4, 4], [0, 12, 4, 16], [40, 40, 50, 50]], dtype=float)
    gt = np.array([[0, 2, 4, 14]])  # overlaps anchors 0 and 1 equally (IoU 2/14)
    rpn_match, _ = build_rpn_targets(anchors, np.array([1]), gt, RpnConfig)
    np.testing.assert_array_equal(rpn_match, [1, 1, -1])


def test_rpn_targets_without_objects_are_all_negative():
    anchors = HAND_ANCHORS
    rpn_match, rpn_bbox = build_rpn_targets(anchors, np.zeros([0], int), np.zeros([0, 4]), RpnConfig)
    np.testing.assert_array_equal(rpn_match, -np.ones(len(anchors)))
    assert not rpn_bbox.any()


def _brute_force_labels(anchors, boxes):
    """Reference labelling with explicit loops (no subsampling, no crowds)."""
    def iou(a, b):
        h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = h * w
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union
    table = [[iou(a, b) for b in boxes] for a in anchors]
    labels = []
    for row in table:
        labels.append(1 if max(row) >= 0.7 else (-1 if max(row) < 0.3 else 0))
    for j in range(len(boxes)):
        best = max(table[i][j] for i in range(len(anchors)))
        for i in range(len(anchors)):
            if table[i][j] == best:
                labels[i] = 1
    return np.array(labels)


def test_rpn_targets_match_brute_force_on_random_boxes():
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 60, (120, 2))
    sizes = rng.integers(4, 30, (120, 2))
    anchors = np.concatenate([corners, corners + sizes], axis=1).astype(float)
    gt = np.array([[10, 10, 30, 40], [35, 5, 60, 25], [0, 40, 20, 70]], dtype=float)

    class Roomy(RpnConfig):
        RPN_TRAIN_ANCHORS_PER_IMAGE = 1000  # no subsampling

    rpn_match, rpn_bbox = build_rpn_targets(anchors, np.array([1, 2, 1]), gt, Roomy)
    np.testing.assert_array_equal(rpn_match, _brute_force_labels(anchors, gt))
    # Deltas of the positives, in anchor order, towards each anchor's best GT.
    positives = np.flatnonzero(rpn_match == 1)
    best_gt = gt[compute_overlaps(anchors, gt).argmax(axis=1)]
    for row, i in enumerate(positives):
        a, g = anchors[i], best_gt[i]
        ah, aw, gh, gw = a[2] - a[0], a[3] - a[1], g[2] - g[0], g[3] - g[1]
        expected = [((g[0] + gh / 2) - (a[0] + ah / 2)) / ah, ((g[1] + gw / 2) - (a[1] + aw / 2)) / aw,
                    np.log(gh / ah), np.log(gw / aw)]
        np.testing.assert_allclose(rpn_bbox[row], np.array(expected) / Roomy.RPN_BBOX_STD_DEV, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- DataGenerator

def test_generator_batch_shapes_and_dtypes(dataset, config):
    gen = DataGenerator(dataset, config, shuffle=False)
    assert len(gen) == 3  # ceil(5 / 2)
    batch = gen[0]
    n_anchors = len(gen.anchors)
    expected = {
        "input_image": ((2, 128, 128, 3), np.float32),
        "input_image_meta": ((2, 12 + 3), np.float32),
        "input_rpn_match": ((2, n_anchors, 1), np.int32),
        "input_rpn_bbox": ((2, config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4), np.float32),
        "input_gt_class_ids": ((2, 5), np.int32),
        "input_gt_boxes": ((2, 5, 4), np.float32),
        "input_gt_masks": ((2, 28, 28, 5), np.bool_),
    }
    assert set(batch) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert batch[key].shape == shape, key
        assert batch[key].dtype == dtype, key


def test_generator_batch_content_matches_load_image_gt(dataset, config):
    batch = DataGenerator(dataset, config, shuffle=False)[0]
    image, meta, class_ids, bbox, mask = load_image_gt(dataset, config, 1)
    np.testing.assert_allclose(batch["input_image"][1], image - config.MEAN_PIXEL, atol=1e-4)
    np.testing.assert_allclose(batch["input_image_meta"][1], meta)
    np.testing.assert_array_equal(batch["input_gt_class_ids"][1], [2, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch["input_gt_boxes"][1, :1], bbox)
    assert not batch["input_gt_boxes"][1, 1:].any()
    np.testing.assert_array_equal(batch["input_gt_masks"][1, :, :, :1], mask)
    assert (batch["input_rpn_match"][1] == 1).sum() >= 1


def test_generator_uses_idx_and_wraps_the_last_batch(dataset, config):
    gen = DataGenerator(dataset, config, shuffle=False)
    ids = [parse_image_meta(gen[i]["input_image_meta"])["image_id"].tolist() for i in range(len(gen))]
    assert ids == [[0, 1], [2, 3], [4, 0]]
    with pytest.raises(IndexError):
        gen[3]


def test_generator_epoch_is_steps_long_and_covers_images_evenly(dataset, config):
    # STEPS_PER_EPOCH longer than one pass (5 images, batch 2): 7 steps = 14 samples,
    # drawn from three chained permutations, so each image comes up 2 or 3 times.
    gen = DataGenerator(dataset, config, seed=3, steps=7)
    assert len(gen) == 7
    ids = sum((parse_image_meta(gen[i]["input_image_meta"])["image_id"].tolist()
               for i in range(len(gen))), [])
    counts = np.bincount(ids, minlength=5)
    assert counts.sum() == 14 and counts.min() >= 2 and counts.max() <= 3
    assert sorted(ids[:5]) == [0, 1, 2, 3, 4] and sorted(ids[5:10]) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="steps"):
        DataGenerator(dataset, config, steps=0)


def test_generator_shuffles_per_epoch_reproducibly(dataset, config):
    def epoch_ids(gen):
        ids = [parse_image_meta(gen[i]["input_image_meta"])["image_id"].tolist() for i in range(len(gen))]
        return sum(ids, [])

    gen, twin = DataGenerator(dataset, config, seed=7), DataGenerator(dataset, config, seed=7)
    first = epoch_ids(gen)
    assert sorted(first[:5]) == [0, 1, 2, 3, 4]
    assert first == epoch_ids(twin)
    orders = {tuple(first)}
    for _ in range(3):
        gen.on_epoch_end()
        orders.add(tuple(epoch_ids(gen)))
    assert len(orders) > 1


def test_generator_part_is_those_rows_of_the_whole_batch_in_any_process(dataset, config):
    # What a multi-worker run relies on: a worker that loads images 1..1 of batch 2
    # of epoch 1 gets exactly those rows of the batch another process loads whole,
    # random draws (flip, RPN anchor sampling) included.
    flip = A.HorizontalFlip(p=0.5)
    whole_loader = DataGenerator(dataset, config, seed=5, steps=4, augmentation=flip)
    whole_loader.on_epoch_end()
    whole = whole_loader[2]
    worker = DataGenerator(dataset, config, seed=5, steps=4, augmentation=flip)
    for start in range(config.BATCH_SIZE):
        part = worker.part(1, 2, start, 1)
        assert set(part) == set(whole)
        for name, rows in part.items():
            np.testing.assert_array_equal(rows, whole[name][start:start + 1], err_msg=name)
    assert not np.array_equal(worker.part(0, 2, 0, 2)["input_image_meta"], whole["input_image_meta"])
    with pytest.raises(IndexError, match="BATCH_SIZE"):
        worker.part(1, 2, 1, config.BATCH_SIZE)


def test_generator_skips_images_without_instances_and_counts_them(config, caplog):
    ds = RectDataset([(64, 64, [(1, 1, 20, 20, 1)]), (64, 64, []), (64, 64, [(30, 30, 60, 50, 2)])])
    gen = DataGenerator(ds, config, shuffle=False)
    with caplog.at_level(logging.WARNING, logger="mrcnn.data"):
        batch = gen[0]
    assert parse_image_meta(batch["input_image_meta"])["image_id"].tolist() == [0, 2]
    assert gen.skipped_count == 1 and gen.skipped_image_ids == {1}
    assert "rect image #1" in caplog.text

    keep = DataGenerator(ds, config, shuffle=False, skip_empty=False)[0]
    assert parse_image_meta(keep["input_image_meta"])["image_id"].tolist() == [0, 1]
    assert not keep["input_gt_class_ids"][1].any()
    assert (keep["input_rpn_match"][1] == 1).sum() == 0
    assert (keep["input_rpn_match"][1] == -1).sum() == config.RPN_TRAIN_ANCHORS_PER_IMAGE


def test_generator_fails_when_no_image_has_instances(config):
    gen = DataGenerator(RectDataset([(64, 64, []), (64, 64, [])]), config)
    with pytest.raises(ValueError, match="none of the 2 images"):
        gen[0]


def test_generator_subsamples_to_max_gt_instances(config):
    rects = [(2 + 10 * k, 2, 9 + 10 * k, 60, 1 + k % 2) for k in range(6)]
    ds = RectDataset([(64, 64, rects)] * 2)
    batch = DataGenerator(ds, config, shuffle=False, seed=0)[0]
    class_ids = batch["input_gt_class_ids"][0]
    boxes = batch["input_gt_boxes"][0]
    assert (class_ids > 0).sum() == config.MAX_GT_INSTANCES == 5
    _, _, all_ids, all_boxes, _ = load_image_gt(ds, config, 0)
    for cid, box in zip(class_ids, boxes):
        k = [i for i, b in enumerate(all_boxes) if np.array_equal(b, box)]
        assert len(k) == 1 and all_ids[k[0]] == cid


def test_generator_bad_image_raises_naming_it(config, caplog):
    class Missing(Dataset):
        def load_mask(self, image_id):
            return np.zeros((4, 4, 1), bool), np.array([1], np.int32)

    ds = Missing()
    for name in ("one", "two"):
        ds.add_class("m", len(ds.class_info), name)
    ds.add_image("m", image_id=0, path="/no/such/photo.jpg")
    ds.prepare()
    gen = DataGenerator(ds, config)
    with caplog.at_level(logging.ERROR, logger="mrcnn.data"), \
            pytest.raises(ImageLoadError, match="photo.jpg"):
        gen[0]
    assert "photo.jpg" in caplog.text


def test_generator_checks_class_count(dataset):
    class Other(TinyConfig):
        NUM_CLASSES = 5

    with pytest.raises(ValueError, match="NUM_CLASSES"):
        DataGenerator(dataset, Other())


class JpegRectDataset(RectDataset):
    """RectDataset whose images come from JPEG files, read by Dataset.load_image."""

    def __init__(self, images, folder):
        super().__init__(images)
        from PIL import Image
        for image_id, info in enumerate(self.image_info):
            info["path"] = str(folder / f"rect_{image_id}.jpg")
            Image.fromarray(RectDataset.load_image(self, image_id)).save(info["path"], quality=95)

    load_image = Dataset.load_image


def test_generator_skips_a_truncated_jpeg_counts_and_names_it(config, tmp_path, caplog):
    ds = JpegRectDataset(IMAGES[:4], tmp_path)
    truncated = ds.image_info[1]["path"]
    with open(truncated, "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:   # the header survives, the pixel data does not
        f.write(data[:len(data) // 3])
    gen = DataGenerator(ds, config, shuffle=False, steps=4)   # two passes over 4 images
    with caplog.at_level(logging.WARNING, logger="mrcnn.data"):
        batches = [gen[i] for i in range(len(gen))]
    assert len(batches) == 4     # the epoch keeps its length
    ids = [parse_image_meta(b["input_image_meta"])["image_id"].tolist() for b in batches]
    assert ids == [[0, 2], [2, 3], [0, 2], [2, 3]]   # image 1 replaced by the next one
    assert all(b["input_image"].shape == (2,) + tuple(config.IMAGE_SHAPE) for b in batches)
    assert gen.skipped_count == 2 and gen.skipped_image_ids == {1} == gen.unreadable_image_ids
    assert "rect image #1" in caplog.text and "rect_1.jpg" in caplog.text
    assert "unreadable" in caplog.text and caplog.text.count("skipping image 1") == 1
