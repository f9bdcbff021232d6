"""Per-image detection metrics (VOC-style AP), Matterport's semantics and signatures.

As in Matterport, matching uses **mask** IoU; boxes only serve to trim zero padding
(trailing all-zero rows) from fixed-size arrays. Boxes are ``[N, (y1, x1, y2, x2)]`` pixel
boxes and masks are ``[H, W, N]``.

Edge cases (Matterport crashes or returns NaN on these; here they are defined):
- no predictions, some ground truth: AP 0.0, recall 0.0;
- predictions but no ground truth: AP 0.0 (every prediction is a false positive);
- no predictions and no ground truth: AP 1.0 (nothing to find and nothing wrongly found;
  an image with nothing in it that the model leaves empty is a perfect result);
- ``compute_recall`` with no ground truth: recall 1.0 (nothing can be missed).
"""
import numpy as np

from mrcnn.boxes import compute_overlaps, trim_zeros
from mrcnn.masks import compute_overlaps_masks

__all__ = ["compute_matches", "compute_ap", "compute_ap_range", "compute_recall",
           "detections_reproduced"]


def compute_matches(gt_boxes, gt_class_ids, gt_masks,
                    pred_boxes, pred_class_ids, pred_scores, pred_masks,
                    iou_threshold=0.5, score_threshold=0.0):
    """Greedily matches predictions (highest score first) to ground-truth instances.

    gt_boxes: [G, 4] (zero rows at the end are padding), gt_class_ids: [G], gt_masks: [H, W, G].
    pred_boxes: [P, 4] (zero rows at the end are padding), pred_class_ids: [P],
    pred_scores: [P], pred_masks: [H, W, P].
    iou_threshold: minimum mask IoU for a match.
    score_threshold: kept for Matterport compatibility. Despite its name Matterport
        compares it with the *overlaps*, not the scores, so a match needs
        IoU >= max(iou_threshold, score_threshold); the default 0.0 has no effect.

    Each prediction takes the unmatched ground truth of the same class with the highest
    IoU at or above the threshold.

    Returns:
        gt_match: [G'] float, index of the matched prediction (in score order) or -1.
        pred_match: [P'] float, index of the matched ground truth or -1, predictions
            sorted by descending score.
        overlaps: [P', G'] mask IoU, predictions in score order.
    """
    gt_boxes = trim_zeros(_as_boxes(gt_boxes))
    n_gt = gt_boxes.shape[0]
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)[:n_gt]
    gt_masks = np.asarray(gt_masks)[..., :n_gt]
    pred_boxes = trim_zeros(_as_boxes(pred_boxes))
    n_pred = pred_boxes.shape[0]
    pred_class_ids = np.asarray(pred_class_ids).reshape(-1)[:n_pred]
    pred_scores = np.asarray(pred_scores).reshape(-1)[:n_pred]
    pred_masks = np.asarray(pred_masks)[..., :n_pred]
    _check_counts("ground truth", n_gt, gt_class_ids, gt_masks)
    _check_counts("predictions", n_pred, pred_class_ids, pred_masks, pred_scores)

    order = np.argsort(-pred_scores, kind="stable")
    pred_class_ids = pred_class_ids[order]
    overlaps = compute_overlaps_masks(pred_masks[..., order], gt_masks)

    min_iou = max(iou_threshold, score_threshold)
    gt_match = -1 * np.ones(n_gt)
    pred_match = -1 * np.ones(n_pred)
    for i in range(n_pred):
        for j in np.argsort(-overlaps[i], kind="stable"):
            if overlaps[i, j] < min_iou:
                break  # candidates are sorted, so no later one can match
            if gt_match[j] > -1:
                continue
            if pred_class_ids[i] == gt_class_ids[j]:
                gt_match[j] = i
                pred_match[i] = j
                break
    return gt_match, pred_match, overlaps


def _as_boxes(boxes):
    """Boxes as a 2-D [N, 4] array, so that an empty list or (0,) array is accepted."""
    boxes = np.asarray(boxes)
    return boxes.reshape(-1, 4) if boxes.size == 0 else boxes


def _check_counts(what, n, class_ids, masks, scores=None):
    """Raises ValueError when per-instance arrays are shorter than the box count."""
    lengths = {"class_ids": len(class_ids), "masks": masks.shape[-1]}
    if scores is not None:
        lengths["scores"] = len(scores)
    short = {k: v for k, v in lengths.items() if v != n}
    if short:
        raise ValueError(
            f"compute_matches: {what} has {n} non-padding boxes but {short}")


def compute_ap(gt_boxes, gt_class_ids, gt_masks,
               pred_boxes, pred_class_ids, pred_scores, pred_masks,
               iou_threshold=0.5):
    """Average precision of one image at one mask-IoU threshold (VOC all-point).

    Arguments as in ``compute_matches``.

    Returns:
        mAP: float, area under the interpolated precision/recall curve (see the module
            docstring for images without predictions or ground truth).
        precisions: [P' + 2] interpolated (monotone non-increasing) precisions, padded
            with a leading and trailing value.
        recalls: [P' + 2] recalls, padded with 0 in front and 1 at the end.
        overlaps: [P', G'] mask IoU.
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_class_ids, gt_masks,
        pred_boxes, pred_class_ids, pred_scores, pred_masks, iou_threshold)
    n_gt, n_pred = len(gt_match), len(pred_match)
    if n_gt == 0 and n_pred == 0:
        return 1.0, np.array([1.0, 1.0]), np.array([0.0, 1.0]), overlaps

    true_positives = np.cumsum(pred_match > -1)
    precisions = true_positives / (np.arange(n_pred) + 1)
    if n_gt:
        recalls = true_positives.astype(np.float64) / n_gt
    else:
        recalls = np.zeros(n_pred)
    precisions = np.concatenate([[0.0], precisions, [0.0]])
    recalls = np.concatenate([[0.0], recalls, [1.0]])
    # Interpolate: each precision becomes the best precision at any higher recall.
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]
    steps = np.flatnonzero(recalls[:-1] != recalls[1:]) + 1
    m_ap = np.sum((recalls[steps] - recalls[steps - 1]) * precisions[steps])
    return float(m_ap), precisions, recalls, overlaps


def compute_ap_range(gt_box, gt_class_id, gt_mask,
                     pred_box, pred_class_id, pred_score, pred_mask,
                     iou_thresholds=None, verbose=1):
    """Mean AP over several mask-IoU thresholds (COCO's 0.5:0.95 by default).

    iou_thresholds: iterable of thresholds; default ``np.arange(0.5, 1.0, 0.05)``.
    verbose: when truthy, prints the AP at each threshold and the mean.

    Returns: float, the mean AP.
    """
    if iou_thresholds is None:
        iou_thresholds = np.arange(0.5, 1.0, 0.05)
    iou_thresholds = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    if iou_thresholds.size == 0:
        raise ValueError("compute_ap_range: iou_thresholds is empty")
    aps = []
    for threshold in iou_thresholds:
        ap = compute_ap(gt_box, gt_class_id, gt_mask,
                        pred_box, pred_class_id, pred_score, pred_mask,
                        iou_threshold=threshold)[0]
        if verbose:
            print(f"AP @{threshold:.2f}:\t {ap:.3f}")
        aps.append(ap)
    mean_ap = float(np.mean(aps))
    if verbose:
        print(f"AP @{iou_thresholds[0]:.2f}-{iou_thresholds[-1]:.2f}:\t {mean_ap:.3f}")
    return mean_ap


def compute_recall(pred_boxes, gt_boxes, iou):
    """Box recall: the fraction of ground-truth boxes that some prediction covers.

    pred_boxes: [P, (y1, x1, y2, x2)], gt_boxes: [G, (y1, x1, y2, x2)].
    iou: minimum box IoU for a prediction to count as positive.

    Each prediction is assigned to its best-overlapping ground truth; a ground truth is
    recalled when at least one positive prediction is assigned to it.

    Returns:
        recall: float in [0, 1] (1.0 when there is no ground truth).
        positive_ids: int indices of the predictions with best IoU >= ``iou``.
    """
    pred_boxes = _as_boxes(pred_boxes)
    gt_boxes = _as_boxes(gt_boxes)
    if gt_boxes.shape[0] == 0:
        return 1.0, np.zeros(0, dtype=np.int64)
    if pred_boxes.shape[0] == 0:
        return 0.0, np.zeros(0, dtype=np.int64)
    overlaps = compute_overlaps(pred_boxes, gt_boxes)
    iou_max = overlaps.max(axis=1)
    positive_ids = np.flatnonzero(iou_max >= iou)
    matched_gt = np.unique(overlaps.argmax(axis=1)[positive_ids])
    return len(matched_gt) / gt_boxes.shape[0], positive_ids


def detections_reproduced(reference, other, iou_threshold=0.9):
    """Which detections of `reference` `other` finds again: a detection of the same
    class whose box has IoU >= `iou_threshold` with it (e.g. the same weights run in
    float32 and in mixed_bfloat16, issue 13).

    reference, other: one image's ``detect`` results, dicts with "rois" [N, (y1, x1,
        y2, x2)] and "class_ids" [N].

    Returns: bool [N of reference]. Any detection of `other` may reproduce several of
    `reference` (after per-class NMS two boxes of one class rarely overlap that much).
    """
    boxes = _as_boxes(reference["rois"]).astype(np.float64)
    other_boxes = _as_boxes(other["rois"]).astype(np.float64)
    if not len(boxes) or not len(other_boxes):
        return np.zeros(len(boxes), dtype=bool)
    same_class = (np.asarray(reference["class_ids"]).reshape(-1)[:, None]
                  == np.asarray(other["class_ids"]).reshape(-1)[None, :])
    return np.any(same_class & (compute_overlaps(boxes, other_boxes) >= iou_threshold), axis=1)
