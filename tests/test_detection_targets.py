"""DetectionTargetLayer on hand-built cases (IoUs worked out in the comments)."""
import keras
import numpy as np
import pytest

from mrcnn.layers.detection_targets import DetectionTargetLayer
from tests import reference as ref
from tests.serialization import assert_serialization_round_trip

STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)
MINI = 6        # mini-mask side
FULL = 32       # full-image mask side
MASK = (4, 4)   # mask target shape
CROWD_IOU = 0.001  # Config.CROWD_IOU

G0 = [0.1, 0.1, 0.5, 0.5]   # class 1
G1 = [0.6, 0.5, 0.9, 0.9]   # class 3
NORMAL_PROPOSALS = [
    [0.12, 0.1, 0.5, 0.48],   # IoU with G0 0.1444/0.16 = 0.90: positive
    [0.62, 0.55, 0.88, 0.9],  # IoU with G1 0.091/0.12 = 0.76: positive
    [0.0, 0.6, 0.2, 0.9],     # no overlap: negative
    [0.3, 0.3, 0.7, 0.7],     # IoU 0.14 with G0, 0.07 with G1: negative
    [0.7, 0.0, 0.9, 0.2],     # no overlap: negative
    [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0],  # padding
]


def _full_masks(boxes):
    """[FULL, FULL, G] masks that are 1 over every pixel a box's samples can touch."""
    masks = np.zeros((FULL, FULL, len(boxes)), bool)
    for g, box in enumerate(boxes):
        if any(box):
            y1, x1 = (int(np.floor(v * (FULL - 1))) for v in box[:2])
            y2, x2 = (int(np.ceil(v * (FULL - 1))) for v in box[2:])
            masks[y1:y2 + 1, x1:x2 + 1, g] = True
    return masks


def _mini_masks(boxes):
    """Mini masks of boxes that their instance fills completely: all ones."""
    return np.stack([np.full((MINI, MINI), any(box)) for box in boxes], -1)


def _inputs(proposals, gt_boxes, gt_class_ids, mini=True):
    gt_boxes = np.asarray(gt_boxes, np.float32)
    masks = _mini_masks(gt_boxes) if mini else _full_masks(gt_boxes)
    return [np.asarray(proposals, np.float32)[None], np.asarray(gt_class_ids, np.int32)[None],
            gt_boxes[None], masks[None]]


def _layer(T=10, ratio=0.33, mini=True, seed=0):
    return DetectionTargetLayer(T, ratio, MASK, mini, STD, CROWD_IOU, seed=seed)


def _rows(a):
    """Rows as a sorted list of tuples (order-free comparison of sampled ROIs)."""
    return sorted(tuple(np.round(r, 5)) for r in np.asarray(a))


def _check_normal_case(rois, class_ids, deltas, masks):
    props = np.asarray(NORMAL_PROPOSALS, np.float32)
    # P = 2 positives; negatives int(2 / 0.33) - 2 = 4 wanted, 3 available.
    assert _rows(rois[:2]) == _rows(props[:2])
    assert _rows(rois[2:5]) == _rows(props[2:5])
    assert not rois[5:].any()
    for row in range(2):
        k = int(np.argmin(np.abs(props[:2] - rois[row]).sum(1)))
        gt, cls = (G0, 1) if k == 0 else (G1, 3)
        assert class_ids[row] == cls
        np.testing.assert_allclose(deltas[row], np.array(ref.box_refinement(props[k], gt)) / STD,
                                   atol=1e-4)
    assert not class_ids[2:].any() and not deltas[2:].any()
    # The gt masks fill their boxes and each positive lies inside its box.
    np.testing.assert_array_equal(masks[:2], 1)
    assert not masks[2:].any()


@pytest.mark.parametrize("mini", [True, False])
def test_normal_case_by_hand(mini):
    gt_boxes = [G0, G1, [0, 0, 0, 0]]
    outs = _layer(mini=mini)(_inputs(NORMAL_PROPOSALS, gt_boxes, [1, 3, 0], mini))
    rois, class_ids, deltas, masks = (np.asarray(o)[0] for o in outs)
    assert rois.shape == (10, 4) and class_ids.shape == (10,) and masks.shape == (10, *MASK)
    assert class_ids.dtype == np.int32
    _check_normal_case(rois, class_ids, deltas, masks)


@pytest.mark.parametrize("mini", [True, False])
def test_mask_target_of_roi_sticking_out_of_its_gt_box(mini):
    gt = [0.2, 0.2, 0.6, 0.6]
    roi = [0.2, 0.1, 0.6, 0.6]  # IoU 0.16 / 0.2 = 0.8
    # Columns sample x = 0.1 + j * 0.5 / 3: only x = 0.1 lies left of the gt box.
    outs = _layer(mini=mini)(_inputs([roi], [gt], [2], mini))
    masks = np.asarray(outs[3])[0]
    want = np.ones(MASK)
    want[:, 0] = 0
    np.testing.assert_array_equal(masks[0], want)


def _check_background_only(rois, class_ids, deltas, masks, negatives):
    """Rows of an image without ground truth: `negatives` background ROIs, then padding."""
    for out in (rois, class_ids, deltas, masks):
        assert not np.isnan(np.asarray(out).astype(float)).any()
    props = np.asarray(NORMAL_PROPOSALS, np.float32)
    assert set(_rows(rois[:negatives])) <= set(_rows(props[:5]))  # real proposals only
    assert len(set(_rows(rois[:negatives]))) == negatives  # distinct proposals
    assert not rois[negatives:].any()
    assert not class_ids.any() and not deltas.any() and not masks.any()


def test_no_ground_truth_samples_background_rois():
    # T = 10, ratio 0.33: cap int(3.3) = 3, quota int(3 / 0.33) - 3 = 6 negatives;
    # the 5 real proposals are all negatives, so all 5 are used.
    outs = _layer()(_inputs(NORMAL_PROPOSALS, np.zeros((3, 4)), [0, 0, 0]))
    _check_background_only(*(np.asarray(o)[0] for o in outs), negatives=5)
    # T = 4: cap 1, quota int(1 / 0.33) - 1 = 2 of the 5.
    outs = _layer(T=4)(_inputs(NORMAL_PROPOSALS, np.zeros((3, 4)), [0, 0, 0]))
    _check_background_only(*(np.asarray(o)[0] for o in outs), negatives=2)


def test_crowd_only_image_samples_background_away_from_the_crowd():
    crowd = [0.5, 0.5, 0.9, 0.9]
    props = [[0.55, 0.55, 0.85, 0.85], [0.0, 0.0, 0.2, 0.2]]  # inside the crowd; far from it
    rois, class_ids, _, _ = (np.asarray(o)[0] for o in _layer()(_inputs(props, [crowd], [-1])))
    assert _rows(rois[:1]) == _rows(np.asarray(props[1:], np.float32))
    assert not rois[1:].any() and not class_ids.any()


def test_all_negative_proposals_give_all_zero_targets():
    # Matterport samples negatives in proportion to positives: none without positives.
    props = [[0.0, 0.6, 0.2, 0.9], [0.3, 0.3, 0.7, 0.7]]
    outs = _layer()(_inputs(props, [G0, G1], [1, 3]))
    for out in outs:
        out = np.asarray(out)
        assert not np.isnan(out.astype(float)).any() and not out.any()


def test_crowd_boxes_block_negatives_but_not_positives():
    crowd = [0.5, 0.5, 0.9, 0.9]
    props = np.array([
        [0.12, 0.1, 0.5, 0.48],    # positive for G0
        [0.1, 0.1, 0.52, 0.52],    # positive for G0 (0.907) though crowd IoU 0.0012
        [0.55, 0.55, 0.85, 0.85],  # inside the crowd: neither
        [0.45, 0.45, 0.6, 0.6],    # crowd IoU 0.058: not a negative
        [0.0, 0.6, 0.3, 0.9],      # far from all: negative
    ], np.float32)
    outs = _layer(seed=3)(_inputs(props, [crowd, G0], [-1, 1]))
    rois, class_ids, deltas, masks = (np.asarray(o)[0] for o in outs)
    assert _rows(rois[:2]) == _rows(props[:2])
    assert _rows(rois[2:3]) == _rows(props[4:5])
    assert not rois[3:].any()
    np.testing.assert_array_equal(class_ids[:3], [1, 1, 0])
    for row in range(2):  # deltas point at G0, never at the crowd box
        np.testing.assert_allclose(deltas[row], np.array(ref.box_refinement(rois[row], G0)) / STD,
                                   atol=1e-4)


def test_positive_cap_and_ratio():
    rng = np.random.default_rng(0)
    inside = np.array([[0.1, 0.1, 0.5, 0.5]]) + rng.uniform(-0.02, 0.02, size=(8, 4))
    far = [[0.0, 0.6, 0.2, 0.9], [0.7, 0.0, 0.9, 0.2], [0.6, 0.6, 0.8, 0.8], [0.0, 0.7, 0.1, 0.8]]
    props = np.concatenate([inside, far]).astype(np.float32)
    chosen = set()
    for seed in range(4):
        # T = 6: cap int(6 * 0.33) = 1 positive, then int(1 / 0.33) - 1 = 2 negatives.
        rois, class_ids, _, _ = (np.asarray(o)[0] for o in
                                 _layer(T=6, seed=seed)(_inputs(props, [G0], [1])))
        np.testing.assert_array_equal(class_ids, [1, 0, 0, 0, 0, 0])
        assert _rows(rois[:1])[0] in _rows(props[:8])
        assert set(_rows(rois[1:3])) <= set(_rows(props[8:]))
        assert not rois[3:].any()
        chosen.add(_rows(rois[:1])[0])
    assert len(chosen) > 1  # the positive is drawn at random
    # ratio 0.5, T = 8: 4 positives and int(4 / 0.5) - 4 = 4 negatives.
    _, class_ids, _, _ = _layer(T=8, ratio=0.5)(_inputs(props, [G0], [1]))
    np.testing.assert_array_equal(np.asarray(class_ids)[0], [1] * 4 + [0] * 4)


def test_functional_model_batch_two_mixed_images():
    normal = _inputs(NORMAL_PROPOSALS, [G0, G1, [0, 0, 0, 0]], [1, 3, 0])
    empty = _inputs(NORMAL_PROPOSALS, np.zeros((3, 4)), [0, 0, 0])
    batch = [np.concatenate([a, b]) for a, b in zip(normal, empty)]
    # Matterport's gt inputs have an unknown instance count G: [None], [None, 4], [h, w, None].
    rois, class_ids, deltas, masks = ref.functional_predict(
        _layer(), batch, dynamic_axes={(1, 1), (2, 1), (3, 3)})
    assert class_ids.dtype == np.int32 and masks.shape == (2, 10, *MASK)
    _check_normal_case(rois[0], class_ids[0], deltas[0], masks[0])
    _check_background_only(rois[1], class_ids[1], deltas[1], masks[1], negatives=5)


def test_config_round_trip():
    layer = DetectionTargetLayer(200, 0.33, [28, 28], True, [0.1, 0.1, 0.2, 0.2], CROWD_IOU, seed=7,
                                 name="proposal_targets")
    clone = DetectionTargetLayer.from_config(layer.get_config())
    assert_serialization_round_trip(layer)
    assert clone.get_config() == layer.get_config()
    assert (clone.train_rois_per_image, clone.roi_positive_ratio, clone.mask_shape,
            clone.use_mini_mask, clone.seed, clone.name) == (200, 0.33, (28, 28), True, 7,
                                                             "proposal_targets")
    assert clone.supports_jit == (keras.backend.backend() != "tensorflow")
    assert not clone.weights  # nothing for h5 files to match


@pytest.mark.parametrize("args", [
    (0, 0.33, (28, 28), True, STD, CROWD_IOU), (200, 0.0, (28, 28), True, STD, CROWD_IOU),
    (200, 0.33, (28,), True, STD, CROWD_IOU), (200, 0.33, (28, 28), True, (0.1, 0.1), CROWD_IOU),
    (200, 0.33, (28, 28), True, STD, 1.5),
])
def test_bad_arguments_raise(args):
    with pytest.raises(ValueError, match="DetectionTargetLayer"):
        DetectionTargetLayer(*args)


@pytest.mark.parametrize("use_mini_mask", [True, False])
def test_mask_targets_of_ragged_masks_match_numpy_crop(use_mini_mask):
    """Irregular masks, so a mask taken from the wrong instance or cropped in the
    wrong frame (mini masks live in their gt box's frame) shows up."""
    from mrcnn.boxes import extract_bboxes, norm_boxes
    from mrcnn.masks import minimize_mask

    rng = np.random.default_rng(0)
    side, count, rois_per_image, shape = 64, 3, 12, (7, 7)
    batch = []
    for _ in range(2):
        masks = np.zeros((side, side, count), bool)
        for g in range(count):
            y, x = rng.integers(2, 40, 2)
            h, w = rng.integers(10, 22, 2)
            masks[y:y + h, x:x + w, g] = rng.random((h, w)) > 0.3
        boxes_px = extract_bboxes(masks)
        gt = norm_boxes(boxes_px, (side, side)).astype(np.float32)
        proposals = np.concatenate([gt + rng.normal(0, 0.02, gt.shape), rng.uniform(0, 1, (5, 4))])
        proposals = np.concatenate([np.minimum(proposals[:, :2], proposals[:, 2:]),
                                    np.maximum(proposals[:, :2], proposals[:, 2:])], 1)
        gt_masks = minimize_mask(boxes_px, masks, (14, 14)) if use_mini_mask else masks
        batch.append((proposals.astype(np.float32), np.array([1, 2, 1], np.int32), gt, gt_masks))
    layer = DetectionTargetLayer(rois_per_image, 0.5, shape, use_mini_mask, STD, CROWD_IOU, seed=1)
    rois, class_ids, _, target_masks = (np.asarray(o) for o in layer(
        [np.stack([item[i] for item in batch]) for i in range(4)]))
    checked = 0
    for b, (_, gt_class_ids, gt, gt_masks) in enumerate(batch):
        for row in np.nonzero(class_ids[b] > 0)[0]:
            roi = rois[b, row]
            g = int(np.argmax([ref.iou(roi, box) for box in gt]))
            if use_mini_mask:
                gy1, gx1, gy2, gx2 = gt[g]
                h, w = gy2 - gy1, gx2 - gx1
                box = [(roi[0] - gy1) / h, (roi[1] - gx1) / w, (roi[2] - gy1) / h, (roi[3] - gx1) / w]
            else:
                box = roi
            image = gt_masks[None, :, :, g:g + 1].astype(np.float32)
            expected = np.round(ref.crop_and_resize(image, np.array([box]), [0], shape))[0, :, :, 0]
            assert class_ids[b, row] == gt_class_ids[g]
            # Rounding at exactly 0.5 may go either way between implementations.
            assert np.abs(expected - target_masks[b, row]).sum() <= 1
            checked += 1
    assert checked >= 6
