"""mrcnn.layers.box_ops against python-loop references and hand-computed numbers."""
import numpy as np
import pytest
from keras import ops

from mrcnn.layers import box_ops
from tests import reference as ref
from tests.backend import tensorflow_only


def _random_boxes(rng, n, lo=0.05, hi=0.5):
    yx = rng.uniform(0, 0.5, size=(n, 2))
    hw = rng.uniform(lo, hi, size=(n, 2))
    return np.concatenate([yx, yx + hw], axis=1).astype(np.float32)


def test_apply_box_deltas_matches_loop_on_batched_input():
    rng = np.random.default_rng(1)
    boxes = _random_boxes(rng, 6).reshape(2, 3, 4)
    deltas = rng.normal(scale=0.3, size=(2, 3, 4)).astype(np.float32)
    got = ops.convert_to_numpy(box_ops.apply_box_deltas(boxes, deltas))
    want = [[ref.apply_box_deltas(b, d) for b, d in zip(bb, dd)] for bb, dd in zip(boxes, deltas)]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_box_refinement_inverts_apply_box_deltas():
    rng = np.random.default_rng(2)
    boxes, gt = _random_boxes(rng, 8), _random_boxes(rng, 8)
    deltas = ops.convert_to_numpy(box_ops.box_refinement(boxes, gt))
    np.testing.assert_allclose(deltas, [ref.box_refinement(b, g) for b, g in zip(boxes, gt)],
                               atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(box_ops.apply_box_deltas(boxes, deltas)),
                               gt, atol=1e-5)


def test_clip_boxes_one_window_per_image():
    boxes = np.array([[[-0.2, 0.1, 0.5, 1.3], [0.3, -1.0, 0.9, 0.2]],
                      [[-0.2, 0.1, 0.5, 1.3], [0.3, -1.0, 0.9, 0.2]]], np.float32)
    windows = np.array([[0, 0, 1, 1], [0.25, 0.0, 0.75, 0.5]], np.float32)
    got = ops.convert_to_numpy(box_ops.clip_boxes(boxes, windows))
    want = [[ref.clip_box(b, w) for b in bb] for bb, w in zip(boxes, windows)]
    np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(got[1, 0], [0.25, 0.1, 0.5, 0.5])
    # A single [4] window broadcasts over everything.
    single = ops.convert_to_numpy(box_ops.clip_boxes(boxes[0], windows[1]))
    np.testing.assert_allclose(single, got[1])


def test_overlaps_matches_loop_and_handles_padding():
    rng = np.random.default_rng(3)
    b1 = _random_boxes(rng, 10).reshape(2, 5, 4)
    b2 = _random_boxes(rng, 6).reshape(2, 3, 4)
    b1[0, 4] = 0  # zero padding row vs zero padding row: IoU 0, not NaN
    b2[0, 2] = 0
    got = ops.convert_to_numpy(box_ops.overlaps(b1, b2))
    assert got.shape == (2, 5, 3)
    for i in range(2):
        np.testing.assert_allclose(got[i], ref.iou_matrix(b1[i], b2[i]), atol=1e-6)
    assert got[0, 4, 2] == 0
    hand = ops.convert_to_numpy(box_ops.overlaps(np.array([[0, 0, 2, 2]], np.float32),
                                                 np.array([[1, 1, 3, 3]], np.float32)))
    np.testing.assert_allclose(hand, [[1 / 7]], rtol=1e-6)


def test_norm_denorm_boxes_hand_values_and_round_trip():
    pixels = np.array([[0, 0, 128, 128], [10, 20, 30, 41]], np.int32)
    got = ops.convert_to_numpy(box_ops.norm_boxes(pixels, (128, 128)))
    np.testing.assert_allclose(got, [[0, 0, 1, 1], [10 / 127, 20 / 127, 29 / 127, 40 / 127]],
                               rtol=1e-6)
    np.testing.assert_allclose(got, [ref.norm_box(b, 128, 128) for b in pixels], rtol=1e-6)
    back = ops.convert_to_numpy(box_ops.denorm_boxes(got, (128, 128)))
    np.testing.assert_array_equal(back, pixels)
    # Per-image shapes broadcast as [B, 1, 2] against [B, N, 4].
    shapes = np.array([[[128, 128]], [[64, 32]]], np.float32)
    batched = ops.convert_to_numpy(box_ops.norm_boxes(np.stack([pixels, pixels]), shapes))
    np.testing.assert_allclose(batched[1, 1], ref.norm_box(pixels[1], 64, 32), rtol=1e-6)


def test_parse_image_meta_layout():
    meta = np.array([[7, 480, 640, 3, 128, 128, 3, 16, 0, 112, 128, 0.2, 1, 1, 0]], np.float32)
    m = {k: ops.convert_to_numpy(v) for k, v in box_ops.parse_image_meta(meta).items()}
    np.testing.assert_array_equal(m["image_id"], [7])
    np.testing.assert_array_equal(m["original_image_shape"], [[480, 640, 3]])
    np.testing.assert_array_equal(m["image_shape"], [[128, 128, 3]])
    np.testing.assert_array_equal(m["window"], [[16, 0, 112, 128]])
    np.testing.assert_allclose(m["scale"], [0.2])
    np.testing.assert_array_equal(m["active_class_ids"], [[1, 1, 0]])


@tensorflow_only
def test_box_ops_trace_in_graph_mode():
    import tensorflow as tf
    @tf.function(input_signature=[tf.TensorSpec([None, None, 4]), tf.TensorSpec([None, 4])])
    def refine_and_clip(boxes, window):
        return box_ops.clip_boxes(box_ops.apply_box_deltas(boxes, boxes * 0), window)

    boxes = np.array([[[-0.1, 0.2, 0.4, 1.2]]], np.float32)
    got = refine_and_clip(boxes, np.array([[0, 0, 1, 1]], np.float32)).numpy()
    np.testing.assert_allclose(got, [[[0, 0.2, 0.4, 1]]], atol=1e-6)


@pytest.mark.parametrize("bad", [(0.1, 0.1, 0.2), (0.1, 0.1, 0.2, 0), "abcd", None])
def test_as_std_dev_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="Layer.arg"):
        box_ops.as_std_dev(bad, "Layer.arg")


def test_agrees_with_host_side_mrcnn_boxes():
    boxes = pytest.importorskip("mrcnn.boxes")
    rng = np.random.default_rng(4)
    b1, b2 = _random_boxes(rng, 7), _random_boxes(rng, 7)
    deltas = rng.normal(scale=0.3, size=(7, 4)).astype(np.float32)
    np.testing.assert_allclose(ops.convert_to_numpy(box_ops.overlaps(b1, b2)),
                               boxes.compute_overlaps(b1, b2), atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(box_ops.box_refinement(b1, b2)),
                               boxes.box_refinement(b1, b2), atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(box_ops.apply_box_deltas(b1, deltas)),
                               boxes.apply_box_deltas(b1, deltas), atol=1e-6)
    pixels = np.array([[3, 5, 60, 127], [0, 0, 1, 1]], np.int32)
    np.testing.assert_allclose(ops.convert_to_numpy(box_ops.norm_boxes(pixels, (64, 128))),
                               boxes.norm_boxes(pixels, (64, 128)), rtol=1e-6)
    normalized = boxes.norm_boxes(pixels, (64, 128))
    np.testing.assert_array_equal(ops.convert_to_numpy(box_ops.denorm_boxes(normalized, (64, 128))),
                                  boxes.denorm_boxes(normalized, (64, 128)))
