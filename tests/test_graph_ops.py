"""mrcnn.graph_ops against loop references (tests/reference.py)."""
import numpy as np
import pytest

from mrcnn import graph_ops
from tests import reference as ref


def _clustered_boxes(rng, n):
    """Boxes around a few centres so that NMS has real work; one zero-area box."""
    centres = rng.uniform(0.2, 0.8, size=(3, 2))[rng.integers(0, 3, n)]
    half = rng.uniform(0.05, 0.15, size=(n, 2))
    boxes = np.concatenate([centres - half, centres + half], axis=1).astype(np.float32)
    boxes[-1, 2] = boxes[-1, 0]
    return boxes


def test_non_max_suppression_matches_greedy_reference():
    rng = np.random.default_rng(0)
    boxes = _clustered_boxes(rng, 40)
    scores = rng.random(40).astype(np.float32)
    for threshold in (0.3, 0.7):
        got = np.asarray(graph_ops.non_max_suppression(boxes, scores, 30, threshold))
        assert list(got) == ref.greedy_nms(boxes, scores, 30, threshold)
    got = np.asarray(graph_ops.non_max_suppression(boxes, scores, 3, 0.3))
    assert list(got) == ref.greedy_nms(boxes, scores, 40, 0.3)[:3]


def test_non_max_suppression_padded_is_zero_padded_greedy():
    rng = np.random.default_rng(1)
    boxes = _clustered_boxes(rng, 25)
    scores = rng.random(25).astype(np.float32)
    want = ref.greedy_nms(boxes, scores, 50, 0.5)
    indices, num_valid = graph_ops.non_max_suppression_padded(boxes, scores, 50, 0.5)
    indices = np.asarray(indices)
    assert indices.shape == (50,) and int(num_valid) == len(want) < 50
    assert list(indices[:len(want)]) == want
    assert not indices[len(want):].any()


def test_per_class_non_max_suppression_matches_loops():
    rng = np.random.default_rng(2)
    B, N, C, K = 2, 30, 4, 8
    boxes = np.stack([_clustered_boxes(rng, N) for _ in range(B)])
    scores = rng.random((B, N)).astype(np.float32)
    class_ids = rng.integers(0, C, size=(B, N)).astype(np.int32)
    out_boxes, out_scores, out_classes, num_valid = graph_ops.per_class_non_max_suppression(
        boxes, scores, class_ids, C, K, 0.4, 0.5)
    for b in range(B):
        kept = []
        for c in range(C):
            ix = [i for i in range(N) if class_ids[b, i] == c and scores[b, i] >= 0.5]
            kept += [ix[k] for k in ref.greedy_nms(boxes[b, ix], scores[b, ix], K, 0.4)]
        kept = sorted(kept, key=lambda i: -scores[b, i])[:K]
        n = len(kept)
        assert int(num_valid[b]) == n
        np.testing.assert_allclose(np.asarray(out_boxes[b, :n]), boxes[b, kept])
        np.testing.assert_allclose(np.asarray(out_scores[b, :n]), scores[b, kept])
        np.testing.assert_array_equal(np.asarray(out_classes[b, :n]), class_ids[b, kept])
        assert not np.asarray(out_boxes[b, n:]).any() and not np.asarray(out_scores[b, n:]).any()


def test_per_class_non_max_suppression_min_score_is_inclusive():
    boxes = np.array([[[0, 0, 0.2, 0.2], [0.5, 0.5, 0.7, 0.7], [0.8, 0.8, 1, 1]]], np.float32)
    below = np.nextafter(np.float32(0.5), np.float32(0))
    scores = np.array([[0.5, below, 0.9]], np.float32)
    _, out_scores, _, num_valid = graph_ops.per_class_non_max_suppression(
        boxes, scores, np.array([[1, 1, 2]]), 3, 4, 0.5, 0.5)
    assert int(num_valid[0]) == 2
    np.testing.assert_array_equal(np.asarray(out_scores[0]), np.float32([0.9, 0.5, 0, 0]))
    # min_score 0: zero scores stay, negative ones (dropped rows) go.
    scores = np.array([[0.0, -1.0, 0.3]], np.float32)
    _, out_scores, out_classes, num_valid = graph_ops.per_class_non_max_suppression(
        boxes, scores, np.array([[1, 1, 2]]), 3, 4, 0.5, 0.0)
    assert int(num_valid[0]) == 2
    np.testing.assert_array_equal(np.asarray(out_classes[0, :2]), [2, 1])


def test_crop_and_resize_matches_naive_bilinear():
    rng = np.random.default_rng(3)
    images = rng.normal(size=(2, 9, 7, 3)).astype(np.float32)
    boxes = np.array([[0.1, 0.2, 0.8, 0.9],
                      [0.0, 0.0, 1.0, 1.0],
                      [-0.2, 0.5, 0.4, 1.3],   # partly outside: zeros there
                      [0.6, 0.1, 0.3, 0.4]],   # flipped box: sampled upside down
                     np.float32)
    box_indices = np.array([0, 1, 1, 0])
    for crop in ((4, 5), (1, 3)):
        got = np.asarray(graph_ops.crop_and_resize(images, boxes, box_indices, crop))
        np.testing.assert_allclose(got, ref.crop_and_resize(images, boxes, box_indices, crop),
                                   atol=1e-5)


def test_crop_and_resize_rejects_unknown_method():
    with pytest.raises(ValueError, match="method"):
        graph_ops.crop_and_resize(np.zeros((1, 2, 2, 1)), np.zeros((1, 4)), [0], (2, 2),
                                  method="bicubic")
