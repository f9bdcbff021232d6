"""Anchor generation (numpy, pixel coordinates).

Order is Matterport's: pyramid level -> feature-map cell in row-major order -> ratio.
Anchor boxes are ``(y1, x1, y2, x2)`` centered on ``cell_index * feature_stride`` (the
top-left corner of the cell's receptive-field step, as in Matterport; no half-stride
offset).
"""
import math

import numpy as np

__all__ = ["generate_anchors", "generate_pyramid_anchors", "compute_backbone_shapes"]


def generate_anchors(scales, ratios, shape, feature_stride, anchor_stride):
    """Anchors for one feature map.

    scales: 1-D array of anchor sizes in pixels (sqrt of the area), e.g. 32 or [32, 64].
    ratios: 1-D array of width/height ratios, e.g. [0.5, 1, 2].
    shape: (rows, cols) of the feature map.
    feature_stride: pixels in the image per feature-map cell.
    anchor_stride: anchors are placed on every ``anchor_stride``-th cell.

    Returns: float64 [rows' * cols' * len(scales) * len(ratios), (y1, x1, y2, x2)], cells in
    row-major order; within a cell, ratio varies slowest and scale fastest (with the
    usual single scale per level that is simply the ratio order).
    """
    # "xy" indexing makes ratio the slow axis and scale the fast one, as in Matterport.
    scales, ratios = np.meshgrid(np.atleast_1d(scales), np.atleast_1d(ratios))
    scales = scales.ravel().astype(np.float64)
    ratios = ratios.ravel().astype(np.float64)
    heights = scales / np.sqrt(ratios)
    widths = scales * np.sqrt(ratios)

    centers_y = np.arange(0, shape[0], anchor_stride) * feature_stride
    centers_x = np.arange(0, shape[1], anchor_stride) * feature_stride
    centers_x, centers_y = np.meshgrid(centers_x, centers_y)
    # One row per (cell, size) pair: cells repeat for each size, sizes tile over cells.
    n_sizes = heights.size
    centers = np.repeat(np.stack([centers_y.ravel(), centers_x.ravel()], axis=1), n_sizes, axis=0)
    sizes = np.tile(np.stack([heights, widths], axis=1), (centers_y.size, 1))
    return np.concatenate([centers - 0.5 * sizes, centers + 0.5 * sizes], axis=1)


def generate_pyramid_anchors(scales, ratios, feature_shapes, feature_strides, anchor_stride):
    """Anchors for every pyramid level, concatenated level by level.

    scales: one anchor size per level, e.g. (32, 64, 128, 256, 512).
    ratios: width/height ratios used at every level.
    feature_shapes: [L, (rows, cols)] feature-map sizes (``compute_backbone_shapes``).
    feature_strides: [L] strides of the levels, e.g. [4, 8, 16, 32, 64].
    anchor_stride: cell step, shared by all levels.

    Returns: [A, (y1, x1, y2, x2)] pixel anchors ordered level -> cell -> ratio.
    """
    if not len(scales) == len(feature_shapes) == len(feature_strides):
        raise ValueError(
            f"generate_pyramid_anchors: {len(scales)} scales, {len(feature_shapes)} "
            f"feature shapes and {len(feature_strides)} strides; need one of each per level")
    anchors = [
        generate_anchors(scale, ratios, shape, stride, anchor_stride)
        for scale, shape, stride in zip(scales, feature_shapes, feature_strides)
    ]
    return np.concatenate(anchors, axis=0)


def compute_backbone_shapes(image_shape, strides):
    """Feature-map size of each backbone level.

    image_shape: (H, W[, C]) of the molded image.
    strides: [L] strides, e.g. Config.BACKBONE_STRIDES.

    Returns: int64 [L, (ceil(H / stride), ceil(W / stride))].
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    return np.array(
        [[math.ceil(height / s), math.ceil(width / s)] for s in strides], dtype=np.int64
    ).reshape(-1, 2)
