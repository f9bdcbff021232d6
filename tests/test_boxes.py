"""Tests for mrcnn.boxes against hand-computed values and brute-force references."""
import numpy as np
import pytest

from mrcnn.boxes import (
    apply_box_deltas,
    box_refinement,
    compute_iou,
    compute_overlaps,
    denorm_boxes,
    extract_bboxes,
    non_max_suppression,
    norm_boxes,
    trim_zeros,
)


def _random_boxes(rng, n, size=100, min_side=1):
    """Integer pixel boxes with positive sides inside a size x size image."""
    y1 = rng.integers(0, size - min_side, n)
    x1 = rng.integers(0, size - min_side, n)
    h = rng.integers(min_side, size // 2, n)
    w = rng.integers(min_side, size // 2, n)
    return np.stack([y1, x1, y1 + h, x1 + w], axis=1)


def _iou_pair(a, b):
    """Reference IoU of two boxes written out directly."""
    ih = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


############################################################
#  extract_bboxes
############################################################

def test_extract_bboxes_exclusive_corners_and_empty_mask():
    mask = np.zeros((10, 12, 3), bool)
    mask[3, 4, 0] = True  # a single pixel
    mask[2:7, 1:3, 1] = True
    mask[8, 11, 1] = True  # the box must cover scattered pixels too
    boxes = extract_bboxes(mask)
    assert boxes.dtype == np.int32
    np.testing.assert_array_equal(boxes, [[3, 4, 4, 5], [2, 1, 9, 12], [0, 0, 0, 0]])


def test_extract_bboxes_no_instances():
    assert extract_bboxes(np.zeros((5, 5, 0), bool)).shape == (0, 4)


def test_extract_bboxes_rejects_2d():
    with pytest.raises(ValueError, match=r"\[H, W, N\]"):
        extract_bboxes(np.zeros((5, 5), bool))


############################################################
#  IoU
############################################################

def test_compute_iou_hand_computed():
    box = np.array([0, 0, 10, 10])
    boxes = np.array([
        [0, 0, 10, 10],    # identical -> 1
        [5, 5, 15, 15],    # 25 / (100 + 100 - 25) = 1/7
        [0, 5, 10, 15],    # 50 / 150 = 1/3
        [10, 10, 20, 20],  # touching corner -> 0
        [2, 2, 4, 4],      # inside: 4 / 100
        [20, 20, 30, 30],  # disjoint -> 0
    ])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = compute_iou(box, boxes, 100, areas)
    np.testing.assert_allclose(iou, [1, 1 / 7, 1 / 3, 0, 0.04, 0])


def test_zero_area_boxes_give_zero_iou_not_nan():
    zero = np.array([[5, 5, 5, 5], [0, 0, 0, 0], [3, 3, 3, 8]])
    normal = np.array([[0, 0, 10, 10]])
    overlaps = compute_overlaps(zero, np.concatenate([zero, normal]))
    assert np.all(np.isfinite(overlaps))
    np.testing.assert_array_equal(overlaps, 0)
    iou = compute_iou(zero[0], zero, 0, np.zeros(3))
    assert np.all(np.isfinite(iou)) and np.all(iou == 0)


def test_compute_overlaps_vs_brute_force():
    rng = np.random.default_rng(0)
    b1 = _random_boxes(rng, 30)
    b2 = _random_boxes(rng, 20)
    b2[3] = [40, 40, 40, 60]  # include a zero-area box
    ours = compute_overlaps(b1, b2)
    reference = np.array([[_iou_pair(a, b) for b in b2] for a in b1])
    assert ours.shape == (30, 20)
    np.testing.assert_allclose(ours, reference, rtol=1e-12)
    # Float boxes too, and symmetry.
    f1 = b1 + rng.random(b1.shape)
    f2 = b2 + rng.random(b2.shape)
    np.testing.assert_allclose(
        compute_overlaps(f1, f2), [[_iou_pair(a, b) for b in f2] for a in f1], rtol=1e-12)
    np.testing.assert_allclose(compute_overlaps(f1, f2), compute_overlaps(f2, f1).T)


def test_compute_overlaps_empty_sets():
    assert compute_overlaps(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)
    assert compute_overlaps(np.ones((2, 4)), np.zeros((0, 4))).shape == (2, 0)


############################################################
#  Deltas
############################################################

def test_box_refinement_hand_computed():
    box = np.array([[0, 0, 10, 20]])
    gt = np.array([[5, 0, 15, 40]])  # shifted down by half a height, twice as wide
    deltas = box_refinement(box, gt)
    assert deltas.dtype == np.float32
    # centers: (5, 10) -> (10, 20); sizes: (10, 20) -> (10, 40)
    np.testing.assert_allclose(deltas, [[0.5, 0.5, 0.0, np.log(2)]], rtol=1e-6)


def test_apply_box_deltas_hand_computed():
    out = apply_box_deltas(np.array([[0, 0, 10, 20]]), np.array([[0.5, 0.5, 0.0, np.log(2)]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[5, 0, 15, 40]], atol=1e-5)


def test_apply_box_deltas_inverts_box_refinement_on_random_boxes():
    rng = np.random.default_rng(42)
    anchors = _random_boxes(rng, 200).astype(np.float32) + rng.random((200, 4)).astype(np.float32)
    targets = _random_boxes(rng, 200).astype(np.float32)
    deltas = box_refinement(anchors, targets)
    np.testing.assert_allclose(apply_box_deltas(anchors, deltas), targets, atol=1e-3)
    # Zero deltas leave boxes unchanged.
    np.testing.assert_allclose(apply_box_deltas(anchors, np.zeros_like(deltas)), anchors, atol=1e-4)


############################################################
#  NMS
############################################################

def _nms_reference(boxes, scores, threshold):
    """Textbook greedy NMS with explicit loops and the pairwise IoU above."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    suppressed = [False] * len(scores)
    keep = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[pos + 1:]:
            if not suppressed[j] and _iou_pair(boxes[i], boxes[j]) > threshold:
                suppressed[j] = True
    return keep


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7])
def test_nms_vs_brute_force(threshold):
    rng = np.random.default_rng(int(threshold * 10))
    boxes = _random_boxes(rng, 60, size=60)
    scores = rng.random(60)
    keep = non_max_suppression(boxes, scores, threshold)
    assert keep.dtype == np.int32
    assert keep.tolist() == _nms_reference(boxes, scores, threshold)
    # Sorted by score, and no two kept boxes overlap more than the threshold.
    assert np.all(np.diff(scores[keep]) <= 0)
    kept = compute_overlaps(boxes[keep], boxes[keep])
    np.fill_diagonal(kept, 0)
    assert np.all(kept <= threshold)


def test_nms_hand_case():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # Box 3 wins; box 0 has IoU 0.9 with it and box 1 IoU 72/(100+90-72) ~ 0.61 -> both go.
    np.testing.assert_array_equal(non_max_suppression(boxes, scores, 0.5), [3, 2])
    # With a threshold above 0.9, nothing overlaps enough to be dropped.
    np.testing.assert_array_equal(non_max_suppression(boxes, scores, 0.95), [3, 0, 1, 2])


def test_nms_empty_and_mismatch():
    out = non_max_suppression(np.zeros((0, 4)), np.zeros(0), 0.5)
    assert out.dtype == np.int32 and out.shape == (0,)
    with pytest.raises(ValueError, match="3 boxes but 2 scores"):
        non_max_suppression(np.ones((3, 4)), np.ones(2), 0.5)


############################################################
#  Normalization and padding
############################################################

def test_norm_denorm_hand_computed_and_round_trip():
    shape = (101, 201)
    boxes = np.array([[0, 0, 101, 201], [10, 20, 11, 21], [50, 100, 60, 150]])
    normed = norm_boxes(boxes, shape)
    assert normed.dtype == np.float32
    np.testing.assert_allclose(normed[0], [0, 0, 1, 1])
    np.testing.assert_allclose(normed[1], [0.1, 0.1, 0.1, 0.1], rtol=1e-6)
    back = denorm_boxes(normed, shape)
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, boxes)


def test_trim_zeros():
    x = np.array([[1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 0, 5], [0, 0, 0, 0]])
    np.testing.assert_array_equal(trim_zeros(x), [[1, 2, 3, 4], [0, 0, 0, 5]])
    assert trim_zeros(np.zeros((3, 4))).shape == (0, 4)
    with pytest.raises(ValueError, match="2-D"):
        trim_zeros(np.zeros(4))
