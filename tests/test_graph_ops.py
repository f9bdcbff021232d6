"""The graph ops (TensorFlow's kernels in mrcnn.tf_ops and their keras.ops twins in
mrcnn.portable_ops) against loop references (tests/reference.py) and each other."""
import keras
import numpy as np
import pytest

from mrcnn import graph_ops, portable_ops
from tests import reference as ref
from tests.backend import gradients

ON_TENSORFLOW = keras.backend.backend() == "tensorflow"
if ON_TENSORFLOW:
    from mrcnn import tf_ops

# Every implementation the current backend can run; graph_ops dispatches to one of them.
IMPLEMENTATIONS = ([pytest.param("tf_ops", id="tf_ops")] if ON_TENSORFLOW else []) + [
    pytest.param("portable_ops", id="portable_ops")]


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request):
    return tf_ops if request.param == "tf_ops" else portable_ops


def _clustered_boxes(rng, n):
    """Boxes around a few centres so that NMS has real work; one zero-area box."""
    centres = rng.uniform(0.2, 0.8, size=(3, 2))[rng.integers(0, 3, n)]
    half = rng.uniform(0.05, 0.15, size=(n, 2))
    boxes = np.concatenate([centres - half, centres + half], axis=1).astype(np.float32)
    boxes[-1, 2] = boxes[-1, 0]
    return boxes


def test_argmax_last_axis_is_numpy_argmax_first_of_ties(impl):
    rng = np.random.default_rng(9)
    probs = rng.random((2, 7, 5)).astype(np.float32)
    probs[0, 0] = [0.1, 0.4, 0.4, 0.0, 0.4]  # ties: the first wins
    probs[1, 3] = 0.0
    probs[1, 4] = [0.0, -0.0, 0.0, 0.0, 0.0]
    got = np.asarray(impl.argmax_last_axis(probs))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, np.argmax(probs, axis=-1))


@pytest.mark.skipif(not ON_TENSORFLOW, reason="the unpadded NMS is TensorFlow's kernel")
def test_non_max_suppression_matches_greedy_reference():
    rng = np.random.default_rng(0)
    boxes = _clustered_boxes(rng, 40)
    scores = rng.random(40).astype(np.float32)
    for threshold in (0.3, 0.7):
        got = np.asarray(tf_ops.non_max_suppression(boxes, scores, 30, threshold))
        assert list(got) == ref.greedy_nms(boxes, scores, 30, threshold)
    got = np.asarray(tf_ops.non_max_suppression(boxes, scores, 3, 0.3))
    assert list(got) == ref.greedy_nms(boxes, scores, 40, 0.3)[:3]


def test_non_max_suppression_padded_is_zero_padded_greedy(impl):
    rng = np.random.default_rng(1)
    boxes = _clustered_boxes(rng, 25)
    scores = rng.random(25).astype(np.float32)
    want = ref.greedy_nms(boxes, scores, 50, 0.5)
    indices, num_valid = impl.non_max_suppression_padded(boxes, scores, 50, 0.5)
    indices = np.asarray(indices)
    assert indices.shape == (50,) and int(num_valid) == len(want) < 50
    assert list(indices[:len(want)]) == want
    assert not indices[len(want):].any()


def test_tiled_nms_is_greedy_across_tiles_and_along_chains():
    """portable_ops' tiled NMS with 8-row tiles against the greedy loop: many tiles,
    stops mid-tile once K rows are kept, ties, empty boxes, and chains where a row
    suppressed by its neighbour no longer suppresses the next (several settling steps)."""
    rng = np.random.default_rng(11)
    # A chain: box i overlaps only boxes i - 1 and i + 1 (IoU 0.6), scores falling.
    chain = np.array([[0, 2 * i, 10, 2 * i + 8] for i in range(20)], np.float32) / 50
    cases = [(chain, np.linspace(1, 0.5, 20).astype(np.float32), 20, 0.5)]
    for n, k in [(75, 300), (75, 9), (64, 64), (5, 3), (200, 31)]:
        boxes = _clustered_boxes(rng, n)
        scores = rng.random(n).astype(np.float32)
        scores[: n // 4] = scores[0]  # ties: lower index first
        cases += [(boxes, scores, k, 0.3), (boxes, scores, k, 0.7)]
    for boxes, scores, k, threshold in cases:
        want = ref.greedy_nms(boxes, scores, k, threshold)
        order = np.array(sorted(range(len(scores)), key=lambda i: (-scores[i], i)))
        keep, count = portable_ops._tiled_greedy_keep(boxes[order], k, threshold, tile=8)
        keep = np.asarray(keep)
        assert int(count) == len(want), (len(boxes), k, threshold)
        assert list(order[keep[:len(want)]]) == want and not keep[len(want):].any()
    assert ref.greedy_nms(*cases[0][:2], 20, 0.5) == list(range(0, 20, 2))  # the chain alternates


def _per_class_greedy(boxes, scores, candidate, groups, k, threshold):
    """Reference: greedy NMS of each group's candidates, then the k best by (score, index)."""
    kept = []
    for g in np.unique(groups):
        ix = [i for i in range(len(boxes)) if groups[i] == g and candidate[i]]
        kept += [ix[j] for j in ref.greedy_nms(boxes[ix], scores[ix], k, threshold)]
    return sorted(kept, key=lambda i: (-scores[i], i))[:k]


def test_tiled_nms_with_groups_and_candidates_is_per_class_greedy():
    """The tiled NMS as per-class NMS (8-row tiles): a row suppresses only its own
    group, non-candidates are neither kept nor suppress, and the loop may stop at the
    last candidate (a prefix, as a score floor gives) or anywhere."""
    rng = np.random.default_rng(12)
    for n, k, num_groups, threshold in [(75, 300, 3, 0.3), (75, 9, 4, 0.5), (64, 64, 1, 0.3),
                                        (200, 31, 6, 0.4), (5, 3, 2, 0.3), (40, 10, 5, 0.7)]:
        boxes = _clustered_boxes(rng, n)
        scores = rng.random(n).astype(np.float32)
        scores[: n // 5] = scores[0]  # ties: lower index first
        groups = rng.integers(0, num_groups, n).astype(np.int32)
        order = np.array(sorted(range(n), key=lambda i: (-scores[i], i)))
        for candidate in (scores >= np.quantile(scores, 0.6),   # a prefix in score order
                          rng.random(n) < 0.7,                   # scattered
                          np.zeros(n, bool)):
            want = _per_class_greedy(boxes, scores, candidate, groups, k, threshold)
            keep, count = portable_ops._tiled_greedy_keep(
                boxes[order], k, threshold, candidate=candidate[order], groups=groups[order],
                tile=8)
            keep = np.asarray(keep)
            assert int(count) == len(want), (n, k, num_groups, threshold)
            assert list(order[keep[:len(want)]]) == want and not keep[len(want):].any()
    # One group, every row a candidate: the plain greedy NMS.
    boxes = _clustered_boxes(rng, 50)
    scores = rng.random(50).astype(np.float32)
    assert (_per_class_greedy(boxes, scores, np.ones(50, bool), np.zeros(50), 50, 0.3)
            == ref.greedy_nms(boxes, scores, 50, 0.3))


def test_per_class_non_max_suppression_matches_loops(impl):
    rng = np.random.default_rng(2)
    B, N, C, K = 2, 30, 4, 8
    boxes = np.stack([_clustered_boxes(rng, N) for _ in range(B)])
    scores = rng.random((B, N)).astype(np.float32)
    class_ids = rng.integers(0, C, size=(B, N)).astype(np.int32)
    out_boxes, out_scores, out_classes, num_valid = impl.per_class_non_max_suppression(
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


def test_per_class_non_max_suppression_min_score_is_inclusive(impl):
    boxes = np.array([[[0, 0, 0.2, 0.2], [0.5, 0.5, 0.7, 0.7], [0.8, 0.8, 1, 1]]], np.float32)
    below = np.nextafter(np.float32(0.5), np.float32(0))
    scores = np.array([[0.5, below, 0.9]], np.float32)
    _, out_scores, _, num_valid = impl.per_class_non_max_suppression(
        boxes, scores, np.array([[1, 1, 2]]), 3, 4, 0.5, 0.5)
    assert int(num_valid[0]) == 2
    np.testing.assert_array_equal(np.asarray(out_scores[0]), np.float32([0.9, 0.5, 0, 0]))
    # min_score 0: zero scores stay, negative ones (dropped rows) go.
    scores = np.array([[0.0, -1.0, 0.3]], np.float32)
    _, out_scores, out_classes, num_valid = impl.per_class_non_max_suppression(
        boxes, scores, np.array([[1, 1, 2]]), 3, 4, 0.5, 0.0)
    assert int(num_valid[0]) == 2
    np.testing.assert_array_equal(np.asarray(out_classes[0, :2]), [2, 1])


def test_crop_and_resize_matches_naive_bilinear(impl):
    rng = np.random.default_rng(3)
    images = rng.normal(size=(2, 9, 7, 3)).astype(np.float32)
    boxes = np.array([[0.1, 0.2, 0.8, 0.9],
                      [0.0, 0.0, 1.0, 1.0],
                      [-0.2, 0.5, 0.4, 1.3],   # partly outside: zeros there
                      [0.6, 0.1, 0.3, 0.4]],   # flipped box: sampled upside down
                     np.float32)
    box_indices = np.array([0, 1, 1, 0])
    for crop in ((4, 5), (1, 3)):
        got = np.asarray(impl.crop_and_resize(images, boxes, box_indices, crop))
        np.testing.assert_allclose(got, ref.crop_and_resize(images, boxes, box_indices, crop),
                                   atol=1e-5)



def test_pyramid_crop_and_resize_gradient_is_the_adjoint_of_the_reference_crops(impl):
    # The crops are linear in the maps, so the gradient G of sum(w * crops(maps)) obeys
    # <G, v> = sum(w * crops(v)) for every set of maps v; checked with the numpy crops.
    # One image per box: TensorFlow's CPU CropAndResizeGradImage adds boxes into the
    # same image from several threads without synchronisation (benchmarks/RESULTS.md).
    rng = np.random.default_rng(5)
    count = 30
    maps = [rng.normal(size=(count, s, s + 3, 4)).astype(np.float32) for s in (16, 8, 4, 2)]
    boxes = rng.uniform(-0.1, 1.1, size=(count, 4)).astype(np.float32)
    levels = rng.integers(0, 4, count).astype(np.int32)
    levels[:4] = 2
    box_indices = rng.permutation(count).astype(np.int32)
    weights = rng.normal(size=(count, 5, 3, 4)).astype(np.float32)

    def weighted(*feature_maps):
        crops = impl.pyramid_crop_and_resize(list(feature_maps), boxes, levels, box_indices, (5, 3))
        return crops * weights

    grads = [np.zeros_like(m) if g is None else g
             for g, m in zip(gradients(weighted, maps), maps)]
    for _ in range(3):
        directions = [rng.normal(size=m.shape).astype(np.float32) for m in maps]
        want = sum(float(np.sum(weights[k] * ref.crop_and_resize(
            directions[levels[k]], boxes[k:k + 1], box_indices[k:k + 1], (5, 3))[0]))
            for k in range(count))
        got = sum(float(np.sum(g * d)) for g, d in zip(grads, directions))
        np.testing.assert_allclose(got, want, rtol=1e-4)


def test_crop_and_resize_rejects_unknown_method(impl):
    with pytest.raises(ValueError, match="method"):
        impl.crop_and_resize(np.zeros((1, 2, 2, 1)), np.zeros((1, 4)), [0], (2, 2),
                                  method="bicubic")


def test_pyramid_crop_and_resize_equals_crop_of_each_box_from_its_level(impl):
    rng = np.random.default_rng(4)
    maps = [rng.normal(size=(2, s, s + 3, 4)).astype(np.float32) for s in (16, 8, 4, 2)]
    boxes = rng.uniform(-0.1, 1.1, size=(30, 4)).astype(np.float32)
    levels = rng.integers(0, 4, 30).astype(np.int32)
    levels[:4] = 2  # several boxes on one level, none on none
    box_indices = rng.integers(0, 2, 30).astype(np.int32)
    got = np.asarray(impl.pyramid_crop_and_resize(maps, boxes, levels, box_indices, (5, 3)))
    assert got.shape == (30, 5, 3, 4)
    for k in range(30):
        want = ref.crop_and_resize(maps[levels[k]], boxes[k:k + 1], box_indices[k:k + 1], (5, 3))
        np.testing.assert_allclose(got[k], want[0], atol=1e-5)


@pytest.mark.skipif(not ON_TENSORFLOW, reason="compares with TensorFlow's kernels")
def test_portable_ops_reproduce_tensorflow_kernels_on_many_boxes():
    """The portable twins give TensorFlow's results, not only the references'."""
    rng = np.random.default_rng(5)
    boxes = _clustered_boxes(rng, 600)
    scores = rng.random(600).astype(np.float32)
    scores[10:20] = scores[0]  # ties: lower index first in both
    for threshold in (0.3, 0.7):
        want = tf_ops.non_max_suppression_padded(boxes, scores, 200, threshold)
        got = portable_ops.non_max_suppression_padded(boxes, scores, 200, threshold)
        np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
        assert int(got[1]) == int(want[1])
    batch_boxes = np.stack([_clustered_boxes(rng, 300) for _ in range(2)])
    batch_scores = rng.random((2, 300)).astype(np.float32)
    class_ids = rng.integers(0, 5, (2, 300)).astype(np.int32)
    want = tf_ops.per_class_non_max_suppression(batch_boxes, batch_scores, class_ids, 5, 40, 0.3, 0.2)
    got = portable_ops.per_class_non_max_suppression(batch_boxes, batch_scores, class_ids, 5, 40, 0.3, 0.2)
    for w, g in zip(want, got):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    image = rng.normal(size=(2, 33, 21, 8)).astype(np.float32)
    crop_boxes = rng.uniform(-0.3, 1.3, size=(50, 4)).astype(np.float32)
    box_indices = rng.integers(0, 2, 50)
    for method in ("bilinear", "nearest"):
        want = tf_ops.crop_and_resize(image, crop_boxes, box_indices, (7, 7), method=method)
        got = portable_ops.crop_and_resize(image, crop_boxes, box_indices, (7, 7), method=method)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


def test_graph_ops_dispatch_follows_backend_and_portable_scope():
    assert graph_ops.uses_tensorflow_kernels() == ON_TENSORFLOW
    with graph_ops.portable():
        assert not graph_ops.uses_tensorflow_kernels()
    assert graph_ops.uses_tensorflow_kernels() == ON_TENSORFLOW
