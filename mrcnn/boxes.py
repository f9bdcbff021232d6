"""Host-side (numpy) bounding-box helpers.

Boxes are ``[N, (y1, x1, y2, x2)]``. Pixel boxes have y2/x2 *exclusive* (a 1-pixel box at
row 3 is y1=3, y2=4); normalized boxes are ``norm_boxes`` of pixel boxes (docs/DESIGN.md).
"""
import numpy as np

__all__ = [
    "extract_bboxes",
    "compute_iou",
    "compute_overlaps",
    "box_refinement",
    "apply_box_deltas",
    "non_max_suppression",
    "norm_boxes",
    "denorm_boxes",
    "trim_zeros",
]


def extract_bboxes(mask):
    """Tight pixel boxes around each instance mask.

    mask: [H, W, N] bool (or 0/1).

    Returns: int32 [N, (y1, x1, y2, x2)], y2/x2 exclusive. An empty mask gets the all-zero
    box (which ``trim_zeros`` treats as padding).
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"extract_bboxes: mask must be [H, W, N], got shape {mask.shape}")
    boxes = np.zeros((mask.shape[-1], 4), dtype=np.int32)
    for i in range(mask.shape[-1]):
        rows = np.flatnonzero(np.any(mask[:, :, i], axis=1))
        cols = np.flatnonzero(np.any(mask[:, :, i], axis=0))
        if rows.size:
            boxes[i] = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    return boxes


def _box_areas(boxes):
    """Areas of ``[N, (y1, x1, y2, x2)]`` boxes (negative extents count as zero)."""
    boxes = np.asarray(boxes)
    heights = np.maximum(boxes[:, 2] - boxes[:, 0], 0)
    widths = np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    return heights * widths


def compute_iou(box, boxes, box_area, boxes_area):
    """IoU of one box with each of a set of boxes.

    box: (y1, x1, y2, x2).
    boxes: [N, (y1, x1, y2, x2)].
    box_area: float, area of ``box``; boxes_area: [N] areas of ``boxes``. They are passed
        in so callers comparing many pairs compute them once.

    Returns: [N] float IoU. Where the union is zero (two zero-area boxes) the IoU is 0,
    never NaN.
    """
    boxes = np.asarray(boxes)
    y1 = np.maximum(box[0], boxes[:, 0])
    y2 = np.minimum(box[2], boxes[:, 2])
    x1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[3], boxes[:, 3])
    intersection = (np.maximum(y2 - y1, 0) * np.maximum(x2 - x1, 0)).astype(np.float64)
    union = box_area + np.asarray(boxes_area, dtype=np.float64) - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def compute_overlaps(boxes1, boxes2):
    """IoU between every pair of boxes of two sets.

    boxes1: [N1, (y1, x1, y2, x2)], boxes2: [N2, (y1, x1, y2, x2)].

    Returns: [N1, N2] float64 IoU (0 where the union is empty).
    """
    boxes1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    boxes2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    area1 = _box_areas(boxes1)
    area2 = _box_areas(boxes2)
    # Broadcast [N1, 1] against [1, N2] instead of Matterport's column loop.
    y1 = np.maximum(boxes1[:, None, 0], boxes2[None, :, 0])
    x1 = np.maximum(boxes1[:, None, 1], boxes2[None, :, 1])
    y2 = np.minimum(boxes1[:, None, 2], boxes2[None, :, 2])
    x2 = np.minimum(boxes1[:, None, 3], boxes2[None, :, 3])
    intersection = np.maximum(y2 - y1, 0) * np.maximum(x2 - x1, 0)
    union = area1[:, None] + area2[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def box_refinement(box, gt_box):
    """Deltas that turn each ``box`` into the matching ``gt_box``.

    box, gt_box: [N, (y1, x1, y2, x2)] with positive height and width.

    Returns: float32 [N, (dy, dx, log(dh), log(dw))]: the center shift in units of the
    box's size and the log of the size ratio (not divided by any std-dev).
    """
    box = np.asarray(box, dtype=np.float32)
    gt_box = np.asarray(gt_box, dtype=np.float32)
    height, width, center_y, center_x = _center_size(box)
    gt_height, gt_width, gt_center_y, gt_center_x = _center_size(gt_box)
    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = np.log(gt_height / height)
    dw = np.log(gt_width / width)
    return np.stack([dy, dx, dh, dw], axis=1).astype(np.float32)


def apply_box_deltas(boxes, deltas):
    """Inverse of ``box_refinement``: applies deltas to boxes.

    boxes: [N, (y1, x1, y2, x2)].
    deltas: [N, (dy, dx, log(dh), log(dw))].

    Returns: float32 [N, (y1, x1, y2, x2)] refined boxes (not clipped, not rounded).
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    deltas = np.asarray(deltas, dtype=np.float32)
    height, width, center_y, center_x = _center_size(boxes)
    center_y = center_y + deltas[:, 0] * height
    center_x = center_x + deltas[:, 1] * width
    height = height * np.exp(deltas[:, 2])
    width = width * np.exp(deltas[:, 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return np.stack([y1, x1, y1 + height, x1 + width], axis=1).astype(np.float32)


def _center_size(boxes):
    """(height, width, center_y, center_x) of [N, (y1, x1, y2, x2)] boxes."""
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    return height, width, boxes[:, 0] + 0.5 * height, boxes[:, 1] + 0.5 * width


def non_max_suppression(boxes, scores, threshold):
    """Greedy non-maximum suppression.

    boxes: [N, (y1, x1, y2, x2)].
    scores: [N] box scores.
    threshold: float; a box is dropped when its IoU with an already kept, higher-scoring
        box is strictly greater than this.

    Returns: int32 indices of the kept boxes, highest score first. Equal scores keep their
    input order (stable sort). An empty input gives an empty array.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores).reshape(-1)
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"non_max_suppression: {boxes.shape[0]} boxes but {scores.shape[0]} scores")
    areas = _box_areas(boxes)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        iou = compute_iou(boxes[best], boxes[rest], areas[best], areas[rest])
        order = rest[iou <= threshold]
    return np.array(keep, dtype=np.int32)


def norm_boxes(boxes, shape):
    """Pixel boxes -> normalized coordinates.

    boxes: [..., (y1, x1, y2, x2)] pixel boxes (y2/x2 exclusive).
    shape: (height, width) of the image, in pixels.

    Returns: float32 boxes ``(b - [0, 0, 1, 1]) / ([h, w, h, w] - 1)``, so y2/x2 become
    inclusive and the image spans [0, 1].
    """
    scale, shift = _norm_scale_shift(shape)
    return ((np.asarray(boxes) - shift) / scale).astype(np.float32)


def denorm_boxes(boxes, shape):
    """Normalized boxes -> pixel boxes; inverse of ``norm_boxes``.

    boxes: [..., (y1, x1, y2, x2)] normalized.
    shape: (height, width) in pixels.

    Returns: int32 pixel boxes ``round(b * ([h, w, h, w] - 1) + [0, 0, 1, 1])``.
    """
    scale, shift = _norm_scale_shift(shape)
    return np.around(np.asarray(boxes) * scale + shift).astype(np.int32)


def _norm_scale_shift(shape):
    height, width = shape[:2]
    scale = np.array([height - 1, width - 1, height - 1, width - 1], dtype=np.float64)
    shift = np.array([0, 0, 1, 1], dtype=np.float64)
    return scale, shift


def trim_zeros(x):
    """Drops all-zero rows (padding) from a 2-D array such as zero-padded boxes.

    x: [N, C].

    Returns: [M, C] with M <= N, the rows that are not entirely zero, in order.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"trim_zeros: expected a 2-D array, got shape {x.shape}")
    return x[~np.all(x == 0, axis=1)]
