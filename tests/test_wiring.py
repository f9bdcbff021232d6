"""The small graph layers of mrcnn/layers/wiring.py and PositiveRows, each alone."""
import keras
import numpy as np
import pytest

from mrcnn import graph_ops
from mrcnn.images import compose_image_meta, parse_image_meta
from mrcnn.layers.detection_targets import PositiveRows
from mrcnn.layers.wiring import (BatchConstant, DetectionBoxes, NormalizeBoxes, NormalizeWindow,
                                 PadRows, ParseImageMeta, PyramidAnchors)
from tests.serialization import assert_serialization_round_trip


def test_batch_constant_repeats_the_value_per_batch_item_and_round_trips():
    value = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    layer = BatchConstant(value, name="anchors")
    out = keras.ops.convert_to_numpy(layer(np.zeros((5, 8, 8, 3), np.float32)))
    assert out.shape == (5, 3, 4) and out.dtype == np.float32
    for item in out:
        np.testing.assert_array_equal(item, value)
    clone = assert_serialization_round_trip(layer)
    np.testing.assert_array_equal(clone.value, value)
    # A symbolic batch keeps its dynamic batch size.
    symbolic = layer(keras.Input((None, None, 3)))
    assert tuple(symbolic.shape) == (None, 3, 4)


def test_pyramid_anchors_equal_the_host_anchors_and_keep_only_their_recipe_in_the_config():
    from mrcnn import anchors as anchor_utils
    from mrcnn.boxes import norm_boxes

    shapes = [(-(-128 // s), -(-192 // s)) for s in (4, 8, 16, 32, 64)]
    layer = PyramidAnchors((128, 192, 3), (8, 16, 32, 64, 128), (0.5, 1, 2), shapes,
                           (4, 8, 16, 32, 64), 1, name="anchors")
    out = keras.ops.convert_to_numpy(layer(np.zeros((2, 128, 192, 3), np.float32)))
    # Level by level, from generate_anchors (not the pyramid helper the layer calls).
    expected = np.concatenate([anchor_utils.generate_anchors(scale, (0.5, 1, 2), shape, stride, 1)
                               for scale, shape, stride in zip((8, 16, 32, 64, 128), shapes,
                                                               (4, 8, 16, 32, 64))])
    expected = norm_boxes(expected, (128, 192)).astype(np.float32)
    assert out.shape == (2,) + expected.shape
    np.testing.assert_array_equal(out[1], expected)
    clone = assert_serialization_round_trip(layer)
    np.testing.assert_array_equal(clone.value, expected)
    assert "value" not in layer.get_config()
    assert len(str(layer.get_config())) < 400  # the recipe, not the [A, 4] array


def test_normalize_boxes_uses_the_images_own_size():
    boxes = np.array([[[0, 0, 10, 20], [5, 5, 6, 6]]], np.float32)
    image = np.zeros((1, 11, 21, 3), np.float32)
    out = keras.ops.convert_to_numpy(NormalizeBoxes()(boxes, image))
    # (b - [0, 0, 1, 1]) / ([h, w, h, w] - 1), written out.
    expected = (boxes - np.array([0, 0, 1, 1])) / np.array([10, 20, 10, 20])
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert_serialization_round_trip(NormalizeBoxes(name="normalize_gt_boxes"))


def test_parse_image_meta_layer_matches_the_host_parser():
    active = np.array([1, 0, 1, 1])
    metas = np.stack([
        compose_image_meta(3, (480, 640, 3), (512, 512, 3), (64, 0, 448, 512), 0.8, active),
        compose_image_meta(9, (100, 50, 3), (512, 512, 3), (0, 128, 512, 384), 5.12, 1 - active),
    ]).astype(np.float32)
    parts = ParseImageMeta()(metas)
    host = parse_image_meta(metas)
    assert set(parts) == set(host)
    for name, value in host.items():
        np.testing.assert_allclose(keras.ops.convert_to_numpy(parts[name]), value, rtol=1e-6)
    symbolic = ParseImageMeta()(keras.Input((12 + 4,)))
    assert tuple(symbolic["window"].shape) == (None, 4)
    assert tuple(symbolic["active_class_ids"].shape) == (None, 4)
    assert_serialization_round_trip(ParseImageMeta(name="parse_image_meta"))


@pytest.mark.parametrize("found", [[3, 1], [0, 0], [5, 2]])
def test_detection_boxes_takes_the_box_columns_of_the_detected_rows(found):
    """TensorFlow cuts to the most detections of an image (>= 1); static-shape
    backends (JAX) keep every row."""
    detections = np.random.default_rng(0).random((2, 5, 6)).astype(np.float32)
    for image, count in enumerate(found):  # DetectionLayer's order: detections first
        detections[image, :count, 4] = 1 + image
        detections[image, count:] = 0
    out = keras.ops.convert_to_numpy(DetectionBoxes()(detections))
    n = max(max(found), 1) if graph_ops.uses_tensorflow_kernels() else 5
    np.testing.assert_array_equal(out, detections[:, :n, :4])
    assert_serialization_round_trip(DetectionBoxes(name="detection_boxes"))


def test_pad_rows_appends_zero_rows():
    rows = np.random.default_rng(1).random((2, 3, 4, 4, 2)).astype(np.float32)
    out = keras.ops.convert_to_numpy(PadRows(7)(rows))
    assert out.shape == (2, 7, 4, 4, 2)
    np.testing.assert_array_equal(out[:, :3], rows)
    assert not out[:, 3:].any()
    assert PadRows(7).compute_output_shape((None, None, 4, 4, 2)) == (None, 7, 4, 4, 2)
    with pytest.raises(ValueError, match="num_rows"):
        PadRows(0)
    assert_serialization_round_trip(PadRows(7, name="mrcnn_mask_rows"))


@pytest.mark.parametrize("positives", [[3, 1], [0, 0], [4, 4]])
def test_positive_rows_keeps_every_positive(positives):
    """TensorFlow cuts to the largest positive count (>= 1); static-shape backends
    (JAX) keep the first max_rows rows, the most positives an image can have."""
    T, max_rows = 5, 4
    class_ids = np.zeros((2, T), np.int32)
    for b, n in enumerate(positives):  # DetectionTargetLayer's order: positives first
        class_ids[b, :n] = b + 1
    rois = np.random.default_rng(1).random((2, T, 4)).astype(np.float32)
    masks = np.random.default_rng(2).random((2, T, 3, 3)).astype(np.float32)
    out_rois, out_ids, out_masks = [keras.ops.convert_to_numpy(t) for t in
                                    PositiveRows(max_rows)([class_ids, rois, masks])]
    n = max(max(positives), 1) if graph_ops.uses_tensorflow_kernels() else max_rows
    np.testing.assert_array_equal(out_rois, rois[:, :n])
    np.testing.assert_array_equal(out_ids, class_ids[:, :n])
    np.testing.assert_array_equal(out_masks, masks[:, :n])
    assert_serialization_round_trip(PositiveRows(max_rows, name="mask_rows"))
    assert PositiveRows.from_config(PositiveRows(max_rows).get_config()).max_rows == max_rows


def test_normalize_window_matches_norm_boxes_of_the_molded_shape():
    window = np.array([[64, 0, 448, 512], [0, 0, 128, 256]], np.float32)
    image_shape = np.array([[512, 512, 3], [128, 256, 3]], np.float32)
    out = keras.ops.convert_to_numpy(NormalizeWindow()(window, image_shape))
    h, w = image_shape[:, :1], image_shape[:, 1:2]
    expected = (window - [0, 0, 1, 1]) / (np.concatenate([h, w, h, w], 1) - 1)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert_serialization_round_trip(NormalizeWindow(name="normalized_window"))
