"""Tests for mrcnn.masks: COCO RLE helpers (vs pycocotools), resizing, mini masks, overlaps."""
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mrcnn.masks import (
    compute_overlaps_masks,
    expand_mask,
    mask_to_rle,
    minimize_mask,
    resize_mask,
    rle_to_mask,
    segmentation_to_mask,
    unmold_mask,
)

# pycocotools 2.0.x warns about numpy 2's __array__(copy=...) inside its decoder.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _random_masks(rng, shape, n, p=0.3):
    return rng.random(shape + (n,)) < p


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2


def _iou(a, b):
    union = np.logical_or(a, b).sum()
    return np.logical_and(a, b).sum() / union if union else 0.0


############################################################
#  RLE
############################################################

@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (32, 17), (64, 64)])
def test_rle_round_trip_random(shape):
    rng = np.random.default_rng(sum(shape))
    mask = rng.random(shape) < 0.4
    rle = mask_to_rle(mask)
    assert rle["size"] == list(shape)
    assert isinstance(rle["counts"], str)
    json.dumps(rle)  # must be JSON-serializable as is
    decoded = rle_to_mask(rle)
    assert decoded.dtype == bool and decoded.shape == shape
    np.testing.assert_array_equal(decoded, mask)


def test_mask_to_rle_matches_pycocotools_encode():
    rng = np.random.default_rng(0)
    mask = rng.random((23, 31)) < 0.5
    expected = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle = mask_to_rle(mask)
    assert rle["counts"] == expected["counts"].decode("ascii")
    assert rle["size"] == list(expected["size"])
    # And pycocotools decodes our output to the same mask.
    np.testing.assert_array_equal(
        mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}), mask)


def test_rle_to_mask_accepts_bytes_counts_from_pycocotools():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    np.testing.assert_array_equal(rle_to_mask(encoded), mask)


def test_mask_to_rle_nonbool_and_c_order_input():
    mask = np.zeros((6, 4), np.int64)
    mask[1:3, 2] = 7  # any non-zero is foreground
    np.testing.assert_array_equal(rle_to_mask(mask_to_rle(mask)), mask != 0)


def test_empty_and_full_masks_round_trip():
    empty = np.zeros((8, 9), bool)
    rle = mask_to_rle(empty)
    assert mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()}) == 0
    np.testing.assert_array_equal(rle_to_mask(rle), empty)
    full = np.ones((8, 9), bool)
    np.testing.assert_array_equal(rle_to_mask(mask_to_rle(full)), full)


def test_uncompressed_rle_hand_decoded():
    # Column-major runs: 2 background, 3 foreground, 4 background in a 3x3 image.
    rle = {"size": [3, 3], "counts": [2, 3, 4]}
    expected = np.zeros(9, bool)
    expected[2:5] = True
    expected = expected.reshape((3, 3), order="F")
    np.testing.assert_array_equal(rle_to_mask(rle), expected)
    np.testing.assert_array_equal(segmentation_to_mask(rle, 3, 3), expected)


def test_uncompressed_rle_bad_sum_raises():
    with pytest.raises(ValueError, match="counts sum"):
        rle_to_mask({"size": [3, 3], "counts": [2, 3]})


def test_rle_errors():
    with pytest.raises(ValueError, match="2-D"):
        mask_to_rle(np.zeros((2, 2, 1), bool))
    with pytest.raises(ValueError, match="'size' and 'counts'"):
        rle_to_mask({"counts": "0"})
    with pytest.raises(ValueError, match="does not match"):
        segmentation_to_mask(mask_to_rle(np.zeros((4, 5), bool)), 5, 4)
    with pytest.raises(ValueError, match="list of polygons or an RLE dict"):
        segmentation_to_mask("abc", 4, 4)


############################################################
#  Polygons
############################################################

def test_rectangle_polygon_matches_hand_drawn_area():
    # Corners (x=1, y=2) .. (x=6, y=7): COCO rasterizes pixels [2, 7) x [1, 6).
    polygon = [[1, 2, 6, 2, 6, 7, 1, 7]]
    mask = segmentation_to_mask(polygon, 10, 12)
    expected = np.zeros((10, 12), bool)
    expected[2:7, 1:6] = True
    assert mask.sum() == 5 * 5
    np.testing.assert_array_equal(mask, expected)


def test_polygon_flat_list_and_union_of_parts():
    a = [0, 0, 4, 0, 4, 3, 0, 3]  # 4 x 3 = 12 px
    b = [6, 6, 8, 6, 8, 8, 6, 8]  # 2 x 2 = 4 px, disjoint from a
    np.testing.assert_array_equal(
        segmentation_to_mask(a, 10, 10), segmentation_to_mask([a], 10, 10))
    both = segmentation_to_mask([a, b], 10, 10)
    assert both.sum() == 12 + 4
    reference = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([a, b], 10, 10)))
    np.testing.assert_array_equal(both, reference.astype(bool))


@pytest.mark.parametrize("segm", [[], [[]], [[1, 1, 3, 1]], [[1, 1]], [[2, 2, 5, 5]]])
def test_degenerate_polygons_give_empty_mask(segm):
    mask = segmentation_to_mask(segm, 6, 7)
    assert mask.shape == (6, 7) and mask.dtype == bool and not mask.any()


def test_degenerate_polygon_is_skipped_next_to_a_valid_one():
    valid = [0, 0, 4, 0, 4, 3, 0, 3]
    mask = segmentation_to_mask([[1, 1, 2, 2], valid], 10, 10)
    np.testing.assert_array_equal(mask, segmentation_to_mask([valid], 10, 10))


def test_odd_polygon_raises():
    with pytest.raises(ValueError, match="odd number"):
        segmentation_to_mask([[0, 0, 4, 0, 4, 3, 0]], 10, 10)


############################################################
#  Overlaps
############################################################

def test_compute_overlaps_masks_vs_pycocotools():
    rng = np.random.default_rng(1)
    m1 = _random_masks(rng, (20, 24), 5)
    m2 = _random_masks(rng, (20, 24), 3)
    m2[..., 2] = False  # an empty instance: IoU 0, not NaN
    m1[..., 4] = False
    ours = compute_overlaps_masks(m1, m2)
    rles1 = mask_utils.encode(np.asfortranarray(m1.astype(np.uint8)))
    rles2 = mask_utils.encode(np.asfortranarray(m2.astype(np.uint8)))
    reference = mask_utils.iou(rles1, rles2, [0] * 3)
    assert ours.shape == (5, 3)
    assert np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-7)


def test_compute_overlaps_masks_hand_computed_and_float_input():
    a = np.zeros((4, 4, 1), np.float32)
    b = np.zeros((4, 4, 1), np.float32)
    a[0:2, 0:2, 0] = 0.9  # 4 px
    b[1:3, 1:3, 0] = 0.7  # 4 px, 1 px shared
    b[3, 3, 0] = 0.4  # below 0.5: background
    np.testing.assert_allclose(compute_overlaps_masks(a, b), [[1 / 7]])


@pytest.mark.parametrize("n1,n2", [(0, 3), (2, 0), (0, 0)])
def test_compute_overlaps_masks_zero_instances(n1, n2):
    out = compute_overlaps_masks(np.zeros((5, 5, n1), bool), np.zeros((5, 5, n2), bool))
    assert out.shape == (n1, n2)


############################################################
#  Resize, mini masks, unmold
############################################################

def test_resize_mask_scale_and_pad():
    mask = np.zeros((4, 6, 2), bool)
    mask[1:3, 2:4, 0] = True
    mask[0, 0, 1] = True
    padding = [(1, 2), (0, 3), (0, 0)]
    out = resize_mask(mask, 2.0, padding)
    assert out.shape == (4 * 2 + 3, 6 * 2 + 3, 2) and out.dtype == bool
    # Nearest-neighbour doubling: each pixel becomes a 2x2 block, shifted by the padding.
    expected = np.pad(mask.repeat(2, axis=0).repeat(2, axis=1), padding)
    np.testing.assert_array_equal(out, expected)


def test_resize_mask_crop():
    mask = np.zeros((8, 8, 1), bool)
    mask[2:6, 3:5, 0] = True
    out = resize_mask(mask, 1.0, None, crop=(1, 2, 4, 5))
    np.testing.assert_array_equal(out, mask[1:5, 2:7])


def test_resize_mask_rejects_2d():
    with pytest.raises(ValueError, match=r"\[H, W, N\]"):
        resize_mask(np.zeros((4, 4), bool), 1.0, [(0, 0), (0, 0)])


def _convex_shapes(shape):
    """Discs and rectangles of several sizes, one per instance."""
    masks = [
        _disc(shape, 20, 30, 4),
        _disc(shape, 60, 60, 25),
        _disc(shape, 100, 40, 12),
    ]
    for y1, x1, y2, x2 in [(5, 5, 13, 9), (30, 70, 90, 120), (100, 2, 110, 126)]:
        rect = np.zeros(shape, bool)
        rect[y1:y2, x1:x2] = True
        masks.append(rect)
    return np.stack(masks, axis=-1)


@pytest.mark.parametrize("mini_shape", [(28, 28), (56, 56)])
def test_minimize_expand_round_trip_on_convex_shapes(mini_shape):
    from mrcnn.boxes import extract_bboxes

    mask = _convex_shapes((128, 128))
    bbox = extract_bboxes(mask)
    mini = minimize_mask(bbox, mask, mini_shape)
    assert mini.shape == mini_shape + (mask.shape[-1],) and mini.dtype == bool
    restored = expand_mask(bbox, mini, (128, 128, 3))
    assert restored.shape == mask.shape and restored.dtype == bool
    for i in range(mask.shape[-1]):
        assert _iou(mask[..., i], restored[..., i]) >= 0.9, i
        # Nothing leaks outside the instance's box.
        y1, x1, y2, x2 = bbox[i]
        outside = restored[..., i].copy()
        outside[y1:y2, x1:x2] = False
        assert not outside.any()


def test_rectangle_mini_mask_is_full():
    mask = np.zeros((40, 40, 1), bool)
    mask[5:25, 10:17, 0] = True
    mini = minimize_mask(np.array([[5, 10, 25, 17]]), mask, (14, 14))
    assert mini.all()


def test_minimize_mask_zero_area_box_raises():
    mask = np.zeros((10, 10, 1), bool)
    with pytest.raises(ValueError, match="zero area"):
        minimize_mask(np.array([[0, 0, 0, 0]]), mask, (7, 7))


def test_expand_mask_zero_area_box_gives_empty_mask():
    out = expand_mask(np.array([[3, 3, 3, 8]]), np.ones((7, 7, 1), bool), (10, 10))
    assert out.shape == (10, 10, 1) and not out.any()


def test_unmold_mask_thresholds_and_pastes():
    # A 2x2 prediction, upscaled to a 4x4 box: the left column is confident, the right not.
    pred = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    full = unmold_mask(pred, (2, 3, 6, 7), (8, 10, 3))
    assert full.shape == (8, 10) and full.dtype == bool
    expected = np.zeros((8, 10), bool)
    # Bilinear 2 -> 4 with zeros outside (skimage mode="constant", as Matterport): the
    # columns get 0.75, 0.75, 0.25, 0 (0.5625 in the edge rows), so >= 0.5 keeps two.
    expected[2:6, 3:5] = True
    np.testing.assert_array_equal(full, expected)


def test_unmold_mask_uniform_values_and_clipping():
    high = np.full((28, 28), 0.6, np.float32)
    low = np.full((28, 28), 0.4, np.float32)
    full = unmold_mask(high, (5, 5, 15, 25), (20, 20))
    expected = np.zeros((20, 20), bool)
    expected[5:15, 5:20] = True  # the part of the box beyond x=20 is dropped
    np.testing.assert_array_equal(full, expected)
    assert not unmold_mask(low, (5, 5, 15, 15), (20, 20)).any()
    assert not unmold_mask(high, (5, 5, 5, 15), (20, 20)).any()
