"""PyramidROIAlign against a naive bilinear crop on the hand-derived FPN level."""
import keras
import numpy as np
import pytest
from keras import ops

from mrcnn.layers.roi_align import PyramidROIAlign, roi_level
from tests import reference as ref
from tests.backend import gradients
from tests.serialization import assert_serialization_round_trip

IMAGE = 1024  # molded image side; sets the level scale 224 / 1024


def _square(y, x, side):
    return [y, x, y + side, x + side]


# side s -> log2(s * 1024 / 224) -> 4 + round(.), clipped to [2, 5]
LEVEL_CASES = [
    (_square(0.1, 0.1, 0.01), 2),    # log2 0.046 = -4.45 -> -4 -> 0 -> 2
    (_square(0.1, 0.1, 0.05), 2),    # -2.13 -> -2 -> 2
    (_square(0.3, 0.2, 0.11), 3),    # -0.99 -> -1 -> 3
    (_square(0.2, 0.5, 0.22), 4),    # 0.008 -> 0 -> 4
    ([0.1, 0.1, 0.2, 0.5], 4),       # sqrt(0.1 * 0.4) = 0.2: -0.13 -> 4
    (_square(0.1, 0.3, 0.45), 5),    # 1.04 -> 1 -> 5
    (_square(0.05, 0.05, 0.9), 5),   # 2.04 -> 2 -> 6 -> 5
    ([0, 0, 0, 0], 2),               # padding
]


def _image_shape(batch, image=IMAGE):
    """The molded image shape [B, 3] of every image of the batch."""
    return np.array([[image, image, 3]] * batch, np.float32)


def test_roi_level_hand_picked_sizes():
    boxes = np.array([[box for box, _ in LEVEL_CASES]], np.float32)
    got = ops.convert_to_numpy(roi_level(boxes, _image_shape(1)))
    expected = [level for _, level in LEVEL_CASES]
    np.testing.assert_array_equal(got[0], expected)
    assert expected == [ref.fpn_level(b, IMAGE, IMAGE) for b, _ in LEVEL_CASES]
    # Same boxes on a 4x smaller image: two levels down before clipping.
    small = ops.convert_to_numpy(roi_level(boxes, _image_shape(1, IMAGE // 4)))
    np.testing.assert_array_equal(small[0], [2, 2, 2, 2, 2, 3, 4, 2])


def _pyramid(rng, batch, channels=3, p2=16):
    return [rng.normal(size=(batch, p2 >> k, p2 >> k, channels)).astype(np.float32)
            for k in range(4)]


def _naive_pyramid_align(boxes, image_shape, pyramid, pool_shape):
    B, N = boxes.shape[:2]
    out = np.zeros((B, N, *pool_shape, pyramid[0].shape[-1]))
    for b in range(B):
        for n in range(N):
            level = ref.fpn_level(boxes[b, n], image_shape[b, 0], image_shape[b, 1])
            out[b, n] = ref.crop_and_resize(pyramid[level - 2][b:b + 1], boxes[b, n:n + 1],
                                            [0], pool_shape)[0]
    return out


def _level_boxes():
    boxes = np.array([box for box, _ in LEVEL_CASES], np.float32)
    # Interleave levels differently per image so order restoration is tested.
    return np.stack([boxes, boxes[::-1].copy()])


def test_matches_naive_crop_on_assigned_level_in_box_order():
    rng = np.random.default_rng(0)
    boxes, image_shape, pyramid = _level_boxes(), _image_shape(2), _pyramid(rng, 2)
    layer = PyramidROIAlign((3, 4))
    got = np.asarray(layer([boxes, image_shape, *pyramid]))
    assert got.shape == (2, len(LEVEL_CASES), 3, 4, 3)
    np.testing.assert_allclose(got, _naive_pyramid_align(boxes, image_shape, pyramid, (3, 4)),
                               atol=1e-5)
    # The second image's row 0 is the first image's last row (reversed order).
    np.testing.assert_allclose(got[1, 0], _naive_pyramid_align(
        boxes[:1, -1:], image_shape[:1], [p[1:] for p in pyramid], (3, 4))[0, 0], atol=1e-5)


def test_aligned_samples_bin_centres():
    rng = np.random.default_rng(3)
    pyramid = _pyramid(rng, 2)
    image_shape = _image_shape(2)
    # Image pixels [64, 128) x [64, 128): level 2 (side 64 -> log2(0.29) = -1.8 -> -2),
    # whose 16 cells have stride 64, so the box is exactly cell (1, 1).
    cell = np.array([64 / 1023, 64 / 1023, 127 / 1023, 127 / 1023], np.float32)
    boxes = np.stack([np.array([box for box, _ in LEVEL_CASES], np.float32)] * 2)
    boxes[1, 0] = cell
    layer = PyramidROIAlign((3, 2), aligned=True)
    got = np.asarray(layer([boxes, image_shape, *pyramid]))
    for b in range(2):
        for n in range(len(boxes[b])):
            level = ref.fpn_level(boxes[b, n], IMAGE, IMAGE)
            want = ref.aligned_roi_align(pyramid[level - 2][b], boxes[b, n], IMAGE, IMAGE, (3, 2))
            np.testing.assert_allclose(got[b, n], want, atol=1e-5)
    one_bin = np.asarray(PyramidROIAlign(1, aligned=True)([boxes, image_shape, *pyramid]))
    np.testing.assert_allclose(one_bin[1, 0, 0, 0], pyramid[0][1, 1, 1], atol=1e-6)


def test_functional_model_batch_two():
    rng = np.random.default_rng(1)
    boxes, image_shape, pyramid = _level_boxes(), _image_shape(2), _pyramid(rng, 2, channels=2)
    got = ref.functional_predict(PyramidROIAlign(2), [boxes, image_shape, *pyramid],
                                 dynamic_axes={(0, 1)})  # unknown box count too
    np.testing.assert_allclose(got, _naive_pyramid_align(boxes, image_shape, pyramid, (2, 2)),
                               atol=1e-5)
    eager = np.asarray(PyramidROIAlign(2, aligned=True)([boxes, image_shape, *pyramid]))
    graph = ref.functional_predict(PyramidROIAlign(2, aligned=True), [boxes, image_shape, *pyramid])
    np.testing.assert_allclose(graph, eager, atol=1e-6)


def test_gradient_reaches_every_used_level_only():
    rng = np.random.default_rng(4)
    boxes = np.array([[LEVEL_CASES[2][0], LEVEL_CASES[3][0]]], np.float32)  # levels 3, 4
    grads = gradients(lambda *pyramid: PyramidROIAlign(2)([boxes, _image_shape(1), *pyramid]),
                      _pyramid(rng, 1))
    used = [g is not None and bool(np.abs(np.asarray(g)).sum() > 0) for g in grads]
    assert used == [False, True, True, False]


def test_config_round_trip_and_output_shape():
    layer = PyramidROIAlign([7, 5], aligned=True, name="roi_align_classifier")
    clone = PyramidROIAlign.from_config(layer.get_config())
    assert_serialization_round_trip(layer)
    assert clone.get_config() == layer.get_config()
    assert clone.supports_jit == (keras.backend.backend() != "tensorflow")
    assert clone.pool_shape == (7, 5) and clone.aligned and clone.name == "roi_align_classifier"
    assert clone.compute_output_shape(
        [(None, 10, 4), (None, 15), (None, 32, 32, 8)] + [None] * 3) == (None, 10, 7, 5, 8)


@pytest.mark.parametrize("pool_shape", [0, (7,), "x", (3, -1)])
def test_bad_pool_shape_raises(pool_shape):
    with pytest.raises(ValueError, match="pool_shape"):
        PyramidROIAlign(pool_shape)


def test_bad_aligned_raises():
    with pytest.raises(ValueError, match="aligned"):
        PyramidROIAlign(7, aligned="yes")


def test_wrong_number_of_inputs_raises():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="P2, P3, P4, P5"):
        PyramidROIAlign(2)([_level_boxes(), _image_shape(2), *_pyramid(rng, 2)[:3]])
