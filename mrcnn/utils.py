"""Matterport-compatible ``mrcnn.utils``: re-exports only, no logic of its own.

Code written for Matterport (``from mrcnn import utils``; ``utils.Dataset``,
``utils.extract_bboxes``, ``utils.compute_ap``, ...) keeps working. New code should
import from the real modules (``mrcnn.dataset``, ``mrcnn.boxes``, ``mrcnn.masks``,
``mrcnn.anchors``, ``mrcnn.metrics``, ``mrcnn.images``). Nothing inside ``mrcnn``
imports this module.

``download_trained_weights(path)`` copies Matterport's COCO weights from the
weights cache (downloading them there first if needed). Not carried over:
``batch_slice`` (graph code lives in ``mrcnn.layers``).
"""
from mrcnn.anchors import compute_backbone_shapes, generate_anchors, generate_pyramid_anchors
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
from mrcnn.dataset import Dataset
from mrcnn.images import (
    compose_image_meta,
    mold_image,
    parse_image_meta,
    resize_image,
    to_channels,
    to_rgb,
    unmold_image,
)
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
from mrcnn.metrics import compute_ap, compute_ap_range, compute_matches, compute_recall
from mrcnn.model_compat import download_trained_weights

__all__ = [
    "Dataset",
    # boxes
    "extract_bboxes", "compute_iou", "compute_overlaps", "box_refinement", "apply_box_deltas",
    "non_max_suppression", "norm_boxes", "denorm_boxes", "trim_zeros",
    # masks
    "resize_mask", "minimize_mask", "expand_mask", "unmold_mask", "compute_overlaps_masks",
    "mask_to_rle", "rle_to_mask", "segmentation_to_mask",
    # anchors
    "generate_anchors", "generate_pyramid_anchors", "compute_backbone_shapes",
    # metrics
    "compute_matches", "compute_ap", "compute_ap_range", "compute_recall",
    # images
    "resize_image", "mold_image", "unmold_image", "compose_image_meta", "parse_image_meta", "to_rgb",
    "to_channels",
    # weights
    "download_trained_weights",
]
