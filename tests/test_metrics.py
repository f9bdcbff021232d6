"""Tests for mrcnn.metrics: hand-computed AP cases, a brute-force matcher and edge cases."""
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mrcnn.boxes import extract_bboxes
from mrcnn.metrics import (compute_ap, compute_ap_range, compute_matches, compute_recall,
                           detections_reproduced)

SHAPE = (32, 32)


def _rect_masks(rects, shape=SHAPE):
    masks = np.zeros(shape + (len(rects),), bool)
    for i, (y1, x1, y2, x2) in enumerate(rects):
        masks[y1:y2, x1:x2, i] = True
    return masks


def _instances(rects):
    masks = _rect_masks(rects)
    return extract_bboxes(masks), masks


# Three disjoint ground-truth rectangles, two classes.
GT_RECTS = [(0, 0, 8, 8), (10, 10, 20, 20), (22, 0, 30, 12)]
GT_CLASSES = np.array([1, 2, 1], np.int32)


def test_perfect_predictions_give_ap_one():
    boxes, masks = _instances(GT_RECTS)
    scores = np.array([0.9, 0.8, 0.95])
    ap, precisions, recalls, overlaps = compute_ap(
        boxes, GT_CLASSES, masks, boxes, GT_CLASSES, scores, masks)
    assert ap == pytest.approx(1.0)
    assert recalls[-2] == pytest.approx(1.0) and precisions[1] == pytest.approx(1.0)
    # overlaps rows follow score order: predictions 2, 0, 1.
    np.testing.assert_allclose(overlaps, np.eye(3)[[2, 0, 1]])
    assert compute_ap_range(boxes, GT_CLASSES, masks, boxes, GT_CLASSES, scores, masks,
                            verbose=0) == pytest.approx(1.0)


def test_empty_predictions_give_ap_zero():
    boxes, masks = _instances(GT_RECTS)
    ap, precisions, recalls, overlaps = compute_ap(
        boxes, GT_CLASSES, masks,
        np.zeros((0, 4)), np.zeros(0, np.int32), np.zeros(0), np.zeros(SHAPE + (0,), bool))
    assert ap == 0.0
    assert overlaps.shape == (0, 3)
    assert np.all(np.isfinite(precisions)) and np.all(np.isfinite(recalls))


def test_all_zero_padding_counts_as_no_predictions():
    boxes, masks = _instances(GT_RECTS)
    ap = compute_ap(boxes, GT_CLASSES, masks,
                    np.zeros((5, 4)), np.zeros(5, np.int32), np.zeros(5),
                    np.zeros(SHAPE + (5,), bool))[0]
    assert ap == 0.0


def test_no_ground_truth_cases():
    no_gt = (np.zeros((0, 4)), np.zeros(0, np.int32), np.zeros(SHAPE + (0,), bool))
    ap, precisions, recalls, _ = compute_ap(*no_gt, *no_gt[:2], np.zeros(0), no_gt[2])
    assert ap == 1.0  # nothing to find, nothing wrongly found
    np.testing.assert_array_equal(recalls, [0, 1])
    boxes, masks = _instances(GT_RECTS[:2])
    ap, precisions, recalls, _ = compute_ap(
        *no_gt, boxes, GT_CLASSES[:2], np.array([0.9, 0.5]), masks)
    assert ap == 0.0  # every prediction is a false positive
    assert np.all(np.isfinite(recalls))


def test_hand_computed_partial_case():
    gt_boxes, gt_masks = _instances(GT_RECTS)
    # By score: TP on GT 0, FP (background), TP on GT 1, FP (duplicate of GT 0). GT 2 missed.
    pred_rects = [(10, 10, 20, 20), (0, 0, 8, 8), (0, 0, 8, 8), (24, 24, 30, 30)]
    pred_scores = np.array([0.7, 0.9, 0.6, 0.8])
    pred_classes = np.array([2, 1, 1, 1], np.int32)
    pred_boxes, pred_masks = _instances(pred_rects)
    ap, precisions, recalls, overlaps = compute_ap(
        gt_boxes, GT_CLASSES, gt_masks, pred_boxes, pred_classes, pred_scores, pred_masks)
    # Raw precision 1, 1/2, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3; interpolated AP is
    # 1/3 * 1 + 1/3 * 2/3 + 1/3 * 0 = 5/9.
    assert ap == pytest.approx(5 / 9)
    np.testing.assert_allclose(recalls, [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(precisions, [1, 1, 2 / 3, 2 / 3, 1 / 2, 0])

    gt_match, pred_match, _ = compute_matches(
        gt_boxes, GT_CLASSES, gt_masks, pred_boxes, pred_classes, pred_scores, pred_masks)
    np.testing.assert_array_equal(pred_match, [0, -1, 1, -1])
    np.testing.assert_array_equal(gt_match, [0, 2, -1])


def test_wrong_class_is_not_a_match():
    boxes, masks = _instances(GT_RECTS[:1])
    gt_match, pred_match, overlaps = compute_matches(
        boxes, [1], masks, boxes, [2], [0.9], masks)
    np.testing.assert_array_equal(pred_match, [-1])
    np.testing.assert_allclose(overlaps, [[1.0]])
    assert compute_ap(boxes, [1], masks, boxes, [2], [0.9], masks)[0] == 0.0


def test_prediction_takes_next_best_same_class_gt():
    # Prediction overlaps GT 0 (other class) most and GT 1 (its class) a bit less.
    gt_boxes, gt_masks = _instances([(0, 0, 10, 10), (0, 2, 10, 12)])
    pred_boxes, pred_masks = _instances([(0, 0, 10, 11)])
    _, pred_match, overlaps = compute_matches(
        gt_boxes, [1, 2], gt_masks, pred_boxes, [2], [0.9], pred_masks)
    assert overlaps[0, 0] > overlaps[0, 1] >= 0.5
    np.testing.assert_array_equal(pred_match, [1])


def _pad(a, n):
    """Appends n zero rows (the padding of fixed-size arrays)."""
    return np.concatenate([a, np.zeros((n,) + a.shape[1:], a.dtype)])


def _pad_masks(m, n):
    return np.concatenate([m, np.zeros(m.shape[:2] + (n,), bool)], axis=-1)


def test_padding_rows_are_trimmed():
    gt_boxes, gt_masks = _instances(GT_RECTS)
    pred_boxes, pred_masks = _instances(GT_RECTS[:2])
    scores = np.array([0.9, 0.8])
    plain = compute_ap(gt_boxes, GT_CLASSES, gt_masks,
                       pred_boxes, GT_CLASSES[:2], scores, pred_masks)
    padded = compute_ap(_pad(gt_boxes, 4), _pad(GT_CLASSES, 4), _pad_masks(gt_masks, 4),
                        _pad(pred_boxes, 3), _pad(GT_CLASSES[:2], 3), _pad(scores, 3),
                        _pad_masks(pred_masks, 3))
    assert plain[0] == pytest.approx(2 / 3)
    assert padded[0] == pytest.approx(plain[0])
    assert padded[3].shape == (2, 3)


def test_compute_ap_range_hand_computed(capsys):
    # A 10x12 GT and a 10x10 prediction inside it: mask IoU 100/120 = 0.833, so the match
    # holds at thresholds 0.50 ... 0.80 (7 of the 10) and fails at 0.85, 0.90, 0.95.
    gt_boxes, gt_masks = _instances([(5, 5, 15, 17)])
    pred_boxes, pred_masks = _instances([(5, 5, 15, 15)])
    mean_ap = compute_ap_range(gt_boxes, [1], gt_masks, pred_boxes, [1], [0.9], pred_masks,
                               verbose=1)
    assert mean_ap == pytest.approx(0.7)
    out = capsys.readouterr().out
    assert "AP @0.50-0.95" in out and "AP @0.85:\t 0.000" in out
    assert compute_ap_range(gt_boxes, [1], gt_masks, pred_boxes, [1], [0.9], pred_masks,
                            iou_thresholds=[0.5, 0.9], verbose=0) == pytest.approx(0.5)
    assert capsys.readouterr().out == ""


def _reference_matches(overlaps, gt_classes, pred_classes, threshold):
    """Each prediction, in score order, takes the best unmatched same-class GT >= threshold."""
    gt_match = [-1] * overlaps.shape[1]
    pred_match = [-1] * overlaps.shape[0]
    for i in range(overlaps.shape[0]):
        best, best_iou = -1, -1.0
        for j in range(overlaps.shape[1]):
            ok = gt_match[j] == -1 and gt_classes[j] == pred_classes[i]
            if ok and overlaps[i, j] >= threshold and overlaps[i, j] > best_iou:
                best, best_iou = j, overlaps[i, j]
        if best >= 0:
            gt_match[best], pred_match[i] = i, best
    return gt_match, pred_match


def _reference_ap(pred_match, n_gt):
    """All-point AP: each TP adds 1/n_gt recall at the best precision at or after its rank."""
    hits = np.asarray(pred_match) > -1
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return sum(precision[k:].max() for k in np.flatnonzero(hits)) / n_gt


@pytest.mark.parametrize("seed", range(5))
def test_random_cases_vs_brute_force(seed):
    rng = np.random.default_rng(seed)

    def random_rects(n):
        y1, x1 = rng.integers(0, 24, n), rng.integers(0, 24, n)
        return [(a, b, a + rng.integers(3, 9), b + rng.integers(3, 9)) for a, b in zip(y1, x1)]

    gt_boxes, gt_masks = _instances(random_rects(6))
    # Predictions: jittered copies of GT (some) plus random ones.
    jitter = [(max(0, y1 + d), x1, y2, x2 + d)
              for (y1, x1, y2, x2), d in zip(gt_boxes.tolist(), rng.integers(-1, 2, 6))]
    pred_boxes, pred_masks = _instances(jitter + random_rects(4))
    gt_classes = rng.integers(1, 3, 6)
    pred_classes = rng.integers(1, 3, 10)
    # Most jittered copies keep their GT's class, so there are matches and misses.
    keep_class = rng.random(6) < 0.8
    pred_classes[:6][keep_class] = gt_classes[keep_class]
    scores = rng.random(10)
    threshold = 0.5

    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_classes, gt_masks, pred_boxes, pred_classes, scores, pred_masks,
        iou_threshold=threshold)
    order = np.argsort(-scores, kind="stable")
    rles_pred = mask_utils.encode(np.asfortranarray(pred_masks[..., order].astype(np.uint8)))
    rles_gt = mask_utils.encode(np.asfortranarray(gt_masks.astype(np.uint8)))
    ref_overlaps = mask_utils.iou(rles_pred, rles_gt, [0] * 6)
    np.testing.assert_allclose(overlaps, ref_overlaps, rtol=1e-6)
    ref_gt, ref_pred = _reference_matches(ref_overlaps, gt_classes, pred_classes[order], threshold)
    np.testing.assert_array_equal(gt_match, ref_gt)
    np.testing.assert_array_equal(pred_match, ref_pred)
    ap = compute_ap(gt_boxes, gt_classes, gt_masks, pred_boxes, pred_classes, scores,
                    pred_masks, iou_threshold=threshold)[0]
    assert ap == pytest.approx(_reference_ap(ref_pred, 6))


def test_compute_matches_length_mismatch_raises():
    boxes, masks = _instances(GT_RECTS)
    with pytest.raises(ValueError, match="class_ids"):
        compute_matches(boxes, GT_CLASSES[:2], masks, boxes, GT_CLASSES, [1, 1, 1], masks)
    with pytest.raises(ValueError, match="scores"):
        compute_matches(boxes, GT_CLASSES, masks, boxes, GT_CLASSES, [1, 1], masks)


def test_compute_recall_hand_computed():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    pred = np.array([
        [0, 0, 10, 8],     # IoU 0.8 with GT 0
        [0, 0, 10, 16],    # IoU 100/160 = 0.625 with GT 0
        [50, 50, 60, 60],  # nothing
    ])
    recall, positive_ids = compute_recall(pred, gt, 0.5)
    assert recall == pytest.approx(0.5)
    np.testing.assert_array_equal(positive_ids, [0, 1])
    recall, positive_ids = compute_recall(pred, gt, 0.7)
    assert recall == pytest.approx(0.5)
    np.testing.assert_array_equal(positive_ids, [0])
    recall, positive_ids = compute_recall(np.vstack([pred, gt[1:]]), gt, 0.7)
    assert recall == pytest.approx(1.0)
    np.testing.assert_array_equal(positive_ids, [0, 3])


def test_compute_recall_empty_inputs():
    gt = np.array([[0, 0, 10, 10]])
    assert compute_recall(np.zeros((0, 4)), gt, 0.5)[0] == 0.0
    recall, ids = compute_recall(gt, np.zeros((0, 4)), 0.5)
    assert recall == 1.0 and ids.size == 0


def test_detections_reproduced_hand_computed():
    # Reference boxes 10x10; the other set: IoU 90/100 = 0.9 (same class), IoU 0.8
    # (same class), an exact copy of another class, nothing near the fourth.
    reference = {"rois": np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50],
                                   [60, 60, 70, 70]]),
                 "class_ids": np.array([1, 1, 2, 3])}
    other = {"rois": np.array([[0, 0, 10, 9], [20, 20, 30, 28], [40, 40, 50, 50]]),
             "class_ids": np.array([1, 1, 3])}
    np.testing.assert_array_equal(detections_reproduced(reference, other),
                                  [True, False, False, False])
    np.testing.assert_array_equal(detections_reproduced(reference, other, iou_threshold=0.8),
                                  [True, True, False, False])
    empty = {"rois": np.zeros((0, 4)), "class_ids": np.zeros(0, int)}
    assert detections_reproduced(reference, empty).tolist() == [False] * 4
    assert detections_reproduced(empty, other).shape == (0,)
