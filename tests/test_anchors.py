"""Tests for mrcnn.anchors: counts, Matterport's order and hand-computed coordinates."""
import math

import numpy as np
import pytest

from mrcnn.anchors import compute_backbone_shapes, generate_anchors, generate_pyramid_anchors

RATIOS = [0.5, 1, 2]
STRIDES = [4, 8, 16, 32, 64]
SCALES = (32, 64, 128, 256, 512)


def _reference_anchors(scales, ratios, feature_shapes, feature_strides, anchor_stride):
    """Explicit loops in the documented order: level -> row -> column -> ratio -> scale."""
    out = []
    for level_scales, shape, stride in zip(scales, feature_shapes, feature_strides):
        for row in range(0, shape[0], anchor_stride):
            for col in range(0, shape[1], anchor_stride):
                cy, cx = row * stride, col * stride
                for ratio in ratios:
                    for scale in np.atleast_1d(level_scales):
                        h = scale / math.sqrt(ratio)
                        w = scale * math.sqrt(ratio)
                        out.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    return np.array(out).reshape(-1, 4)


def test_first_anchors_hand_computed():
    anchors = generate_anchors(32, RATIOS, (4, 4), 4, 1)
    assert anchors.shape == (4 * 4 * 3, 4)
    half_long = 16 * math.sqrt(2)  # half of 32 / sqrt(0.5)
    half_short = 16 / math.sqrt(2)  # half of 32 * sqrt(0.5)
    expected = np.array([
        # cell (0, 0), center (0, 0): ratio 0.5 is tall, 1 square, 2 wide
        [-half_long, -half_short, half_long, half_short],
        [-16, -16, 16, 16],
        [-half_short, -half_long, half_short, half_long],
        # cell (0, 1): center x moves by one stride
        [-half_long, 4 - half_short, half_long, 4 + half_short],
    ])
    np.testing.assert_allclose(anchors[:4], expected, rtol=1e-12)
    # The last anchor is the wide one at cell (3, 3), center (12, 12).
    np.testing.assert_allclose(
        anchors[-1], [12 - half_short, 12 - half_long, 12 + half_short, 12 + half_long])


def test_anchor_sizes_and_centers():
    anchors = generate_anchors(64, RATIOS, (3, 5), 8, 1)
    heights = anchors[:, 2] - anchors[:, 0]
    widths = anchors[:, 3] - anchors[:, 1]
    np.testing.assert_allclose(heights * widths, 64 ** 2)  # area is scale**2 for every ratio
    np.testing.assert_allclose(widths / heights, np.tile(RATIOS, 15))  # ratio is width/height
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    rows, cols = np.divmod(np.arange(15), 5)  # row-major cells
    np.testing.assert_allclose(centers[::3], np.stack([rows * 8, cols * 8], axis=1), atol=1e-9)


@pytest.mark.parametrize("anchor_stride", [1, 2])
def test_pyramid_anchors_match_reference_order(anchor_stride):
    shapes = compute_backbone_shapes((64, 96), STRIDES)
    ours = generate_pyramid_anchors(SCALES, RATIOS, shapes, STRIDES, anchor_stride)
    reference = _reference_anchors(SCALES, RATIOS, shapes, STRIDES, anchor_stride)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-12)


def test_multiple_scales_per_level_order():
    ours = generate_anchors([16, 32], [0.5, 2], (2, 3), 4, 1)
    reference = _reference_anchors([[16, 32]], [0.5, 2], [(2, 3)], [4], 1)
    np.testing.assert_allclose(ours, reference, rtol=1e-12)


def test_anchor_stride_skips_cells():
    anchors = generate_anchors(32, [1], (5, 5), 16, 2)
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    assert anchors.shape == (9, 4)
    np.testing.assert_allclose(np.unique(centers[:, 0]), [0, 32, 64])


def test_coco_anchor_count_1024():
    shapes = compute_backbone_shapes((1024, 1024, 3), STRIDES)
    anchors = generate_pyramid_anchors(SCALES, RATIOS, shapes, STRIDES, 1)
    assert anchors.shape == (261888, 4)  # Matterport's documented count for 1024x1024
    # Level boundaries: the first anchor of each level is centred at (0, 0) with that level's scale.
    counts = shapes[:, 0] * shapes[:, 1] * len(RATIOS)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    squares = [[-s / 2, -s / 2, s / 2, s / 2] for s in SCALES]  # ratio 1 is second
    np.testing.assert_allclose(anchors[starts + 1], squares)


def test_compute_backbone_shapes_ceil():
    shapes = compute_backbone_shapes((100, 130, 3), STRIDES)
    assert np.issubdtype(shapes.dtype, np.integer)
    np.testing.assert_array_equal(shapes, [[25, 33], [13, 17], [7, 9], [4, 5], [2, 3]])
    np.testing.assert_array_equal(
        compute_backbone_shapes((128, 128), STRIDES), [[32, 32], [16, 16], [8, 8], [4, 4], [2, 2]])


def test_pyramid_length_mismatch_raises():
    with pytest.raises(ValueError, match="one of each per level"):
        generate_pyramid_anchors(SCALES[:2], RATIOS, [(4, 4)] * 3, STRIDES[:3], 1)
