"""Greedy NMS and bilinear crop-and-resize in ``keras.ops`` only, with static shapes.

The backend-neutral twins of the TensorFlow kernels in :mod:`mrcnn.tf_ops`
(``NonMaxSuppressionV4``, ``combined_non_max_suppression``, ``crop_and_resize``),
written to give the same results: the same IoU formula, a box suppressed when its
IoU with a kept, higher-scoring box is strictly greater than the threshold, the
same sample positions and bilinear weights. Every output has a shape known when
the graph is traced, so ``jax.jit`` (and TFLite's builtin ops) can compile them.
:mod:`mrcnn.graph_ops` chooses between the two.

Boxes are ``(y1, x1, y2, x2)``.
"""
from keras import ops

__all__ = [
    "argmax_last_axis",
    "non_max_suppression_padded",
    "per_class_non_max_suppression",
    "crop_and_resize",
    "pyramid_crop_and_resize",
]


# Pixels; see _crop_from_table.
BORDER_SLACK = 1e-3
# Rows of a tile in the tiled greedy NMS (see _tiled_greedy_keep).
NMS_TILE = 256


def argmax_last_axis(x):
    """int32 index of the largest value along the last axis (the first of equal
    ones), from max, equal and min. Keras' TensorFlow ``ops.argmax`` tests floats
    for -0.0 with a bitcast and a bitwise and, which TFLite has no builtin for."""
    size = x.shape[-1] if x.shape[-1] is not None else ops.shape(x)[-1]
    positions = ops.arange(size, dtype="int32")
    is_best = ops.equal(x, ops.max(x, axis=-1, keepdims=True))
    return ops.min(ops.where(is_best, positions, size), axis=-1)


def _corners_and_areas(boxes):
    """``((y1, x1, y2, x2), area)`` of ``boxes [N, 4]``, corners in order whichever way
    they came, as TensorFlow's NMS kernels read them."""
    y1 = ops.minimum(boxes[:, 0], boxes[:, 2])
    x1 = ops.minimum(boxes[:, 1], boxes[:, 3])
    y2 = ops.maximum(boxes[:, 0], boxes[:, 2])
    x2 = ops.maximum(boxes[:, 1], boxes[:, 3])
    return (y1, x1, y2, x2), (y2 - y1) * (x2 - x1)


def _iou(first, second):
    """IoU of the boxes ``first`` with the boxes ``second`` (each ``(corners, areas)`` of
    ``_corners_and_areas``, shapes broadcasting against each other), as TensorFlow's NMS
    kernels compute it: an empty box has IoU 0."""
    (ay1, ax1, ay2, ax2), a_area = first
    (by1, bx1, by2, bx2), b_area = second
    inter = (ops.maximum(ops.minimum(ay2, by2) - ops.maximum(ay1, by1), 0.0)
             * ops.maximum(ops.minimum(ax2, bx2) - ops.maximum(ax1, bx1), 0.0))
    union = a_area + b_area - inter
    iou = inter / ops.where(union > 0, union, 1.0)
    return ops.where((a_area > 0) & (b_area > 0), iou, 0.0)


def _rows(corners, areas, index):
    """``(corners, areas)`` of the rows at ``index``."""
    return tuple(ops.take(c, index, axis=0) for c in corners), ops.take(areas, index, axis=0)


def _iou_matrix(first, second):
    """``[len(first), len(second)]`` IoU of two sets of ``(corners, areas)``."""
    (corners_a, areas_a), (corners_b, areas_b) = first, second
    return _iou((tuple(c[:, None] for c in corners_a), areas_a[:, None]),
                (tuple(c[None, :] for c in corners_b), areas_b[None, :]))


def _tiled_greedy_keep(boxes, max_output_size, iou_threshold, candidate=None, groups=None,
                       tile=NMS_TILE):
    """Greedy NMS over rows already sorted by descending score, ``tile`` rows at a time.

    Args:
        boxes: float32 ``[N, 4]``, N static.
        max_output_size: python int ``K``.
        iou_threshold: python float; a row is suppressed by a kept, earlier row whose
            IoU with it is strictly greater.
        candidate: optional bool ``[N]``, the rows that may be kept at all (others are
            neither kept nor suppress); default every row.
        groups: optional int ``[N]``; a kept row suppresses only rows of its own group
            (per-class NMS). Default: one group.
        tile: rows per loop step.

    Returns:
        ``(keep int32 [K], count int32)``: kept row positions in order, 0 past ``count``.
        These are the rows a loop over single rows keeps, in a few loop steps instead
        of one per row. On a GPU each step of such a loop is a handful of tiny kernels
        plus a read of the loop condition by the host (~35 us on an H200: ~2,000 steps
        for 6,000 proposals -> 1,000, most of the model's time there); in a TensorFlow
        graph or TFLite each step runs op by op (~65 us a row on a 2-core CPU).

    Per tile, in score order: drop its rows that a row kept from an earlier tile
    overlaps (one ``[K, tile]`` IoU matrix), then settle the tile itself: row j is kept
    if no kept row i < j of the tile overlaps it. That recurrence is solved by iterating
    ``alive[j] = first[j] and not any(alive[i] and overlap[i, j], i < j)`` from
    ``alive = first`` until nothing changes; row j is final after at most j steps and
    the fixed point is the greedy answer. Stops after the tile in which K rows are
    kept, or after the tile holding the last candidate.
    """
    num_rows = boxes.shape[0]
    num_tiles = -(-num_rows // tile)
    padding = num_tiles * tile - num_rows
    boxes = ops.pad(boxes, [[0, padding], [0, 0]])
    corners, areas = _corners_and_areas(boxes)
    positions = ops.arange(num_tiles * tile, dtype="int32")
    real = positions < num_rows
    if candidate is not None:
        real = real & ops.pad(ops.convert_to_tensor(candidate, "bool"), [[0, padding]])
    # Rows after the last candidate can be neither kept nor suppress: stop there.
    end = ops.max(ops.where(real, positions + 1, 0))
    if groups is not None:
        groups = ops.pad(ops.cast(groups, "int32"), [[0, padding]])
    slots = ops.arange(max_output_size, dtype="int32")
    offsets = ops.arange(tile, dtype="int32")
    earlier = offsets[:, None] < offsets[None, :]      # [i, j]: i comes before j

    def suppresses(first_rows, second_rows):
        """[len(first), len(second)]: a row of ``first`` would suppress one of ``second``."""
        overlap = _iou_matrix(_rows(corners, areas, first_rows),
                              _rows(corners, areas, second_rows)) > iou_threshold
        if groups is None:
            return overlap
        return overlap & (ops.take(groups, first_rows, axis=0)[:, None]
                          == ops.take(groups, second_rows, axis=0)[None, :])

    def tile_step(t, keep, count):
        rows = t * tile + offsets
        # [K, tile]: a kept row (valid slot) suppressing a row of this tile.
        by_kept = suppresses(keep, rows) & (slots < count)[:, None]
        first = ops.take(real, rows, axis=0) & ops.logical_not(ops.any(by_kept, axis=0))
        within = earlier & suppresses(rows, rows)

        def settle(alive, changed):
            suppressed = ops.any(within & alive[:, None], axis=0)
            new = first & ops.logical_not(suppressed)
            return new, ops.any(ops.not_equal(new, alive))

        alive, _ = ops.while_loop(lambda alive, changed: changed, settle,
                                  (first, ops.convert_to_tensor(True)))
        # Append the tile's kept rows in order: slot count + (rank among them).
        rank = count + ops.cumsum(ops.cast(alive, "int32")) - 1
        lands = alive[:, None] & (rank[:, None] == slots[None, :])      # [tile, K]
        keep = ops.where(ops.any(lands, axis=0),
                         ops.sum(ops.where(lands, rows[:, None], 0), axis=0), keep)
        count = ops.minimum(count + ops.sum(ops.cast(alive, "int32")), max_output_size)
        return t + 1, keep, count

    def more(t, keep, count):
        return (t * tile < end) & (count < max_output_size)

    state = (ops.convert_to_tensor(0, "int32"), ops.zeros((max_output_size,), "int32"),
             ops.convert_to_tensor(0, "int32"))
    _, keep, count = ops.while_loop(more, tile_step, state)
    return keep, count


def _descending_order(scores):
    """Stable descending order (ties: lower index first, as TensorFlow's NMS)."""
    return ops.cast(ops.argsort(-scores), "int32")


def non_max_suppression_padded(boxes, scores, max_output_size, iou_threshold):
    """Greedy NMS of one image with a fixed-size result (``tf_ops.non_max_suppression_padded``).

    Args:
        boxes: float ``[N, 4]``, N static.
        scores: float ``[N]``.
        max_output_size: python int, length of the result.
        iou_threshold: float; a box is dropped when its IoU with a kept,
            higher-scoring box is strictly greater than this.

    Returns:
        ``(indices, num_valid)``: int32 ``[max_output_size]`` kept indices into
        ``boxes`` by descending score, 0 after ``num_valid``; int32 scalar.
    """
    boxes = ops.stop_gradient(ops.cast(boxes, "float32"))
    scores = ops.stop_gradient(ops.cast(scores, "float32"))
    order = _descending_order(scores)
    sorted_boxes = ops.take(boxes, order, axis=0)
    keep, count = _tiled_greedy_keep(sorted_boxes, int(max_output_size), float(iou_threshold))
    valid = ops.arange(int(max_output_size), dtype="int32") < count
    return ops.where(valid, ops.take(order, keep, axis=0), 0), count


def per_class_non_max_suppression(boxes, scores, class_ids, num_classes,
                                  max_output_size, iou_threshold, min_score):
    """Greedy NMS within each class, then the ``max_output_size`` best overall
    (``tf_ops.per_class_non_max_suppression``; ``num_classes`` is not needed here).

    Per-class greedy NMS followed by a top-K by score equals one greedy pass in
    score order in which a box only suppresses boxes of its own class.

    Args:
        boxes: float ``[B, N, 4]``.
        scores: float ``[B, N]``; rows with ``score < min_score`` are dropped.
        class_ids: int ``[B, N]``.
        num_classes: unused (the TensorFlow kernel needs it).
        max_output_size: python int ``K``.
        iou_threshold: float, suppression when IoU > this.
        min_score: float >= 0 (0 keeps every row with a non-negative score).

    Returns:
        ``(boxes [B, K, 4], scores [B, K], class_ids int32 [B, K], num_valid int32 [B])``
        by descending score, zero past ``num_valid``.
    """
    del num_classes
    max_output_size = int(max_output_size)
    boxes = ops.stop_gradient(ops.cast(boxes, "float32"))
    scores = ops.stop_gradient(ops.cast(scores, "float32"))
    class_ids = ops.cast(class_ids, "int32")
    # Scores are probabilities (>= 0); a negative one marks a dropped row.
    floor = max(float(min_score), 0.0)

    def one_image(args):
        image_boxes, image_scores, image_classes = args
        order = _descending_order(image_scores)
        sorted_boxes = ops.take(image_boxes, order, axis=0)
        sorted_scores = ops.take(image_scores, order, axis=0)
        sorted_classes = ops.take(image_classes, order, axis=0)
        keep, count = _tiled_greedy_keep(
            sorted_boxes, max_output_size, float(iou_threshold),
            candidate=sorted_scores >= floor, groups=sorted_classes)
        valid = ops.arange(max_output_size, dtype="int32") < count
        out_boxes = ops.where(valid[:, None], ops.take(sorted_boxes, keep, axis=0), 0.0)
        out_scores = ops.where(valid, ops.take(sorted_scores, keep, axis=0), 0.0)
        out_classes = ops.where(valid, ops.take(sorted_classes, keep, axis=0), 0)
        return out_boxes, out_scores, out_classes, count

    return ops.map(one_image, (boxes, scores, class_ids))


def _sample_positions(start, end, size, samples):
    """Sample coordinates ``[K, samples]`` along one axis, in TensorFlow's
    ``crop_and_resize`` arithmetic: ``start * (size - 1) + i * scale`` with
    ``scale = (end - start) * (size - 1) / (samples - 1)``; one sample takes the
    centre. ``start, end, size``: float32 ``[K]``."""
    if samples > 1:
        scale = (end - start) * (size - 1.0) / float(samples - 1)
        steps = ops.arange(samples, dtype="float32")
        return start[:, None] * (size - 1.0)[:, None] + steps[None, :] * scale[:, None]
    return (0.5 * (start + end) * (size - 1.0))[:, None]


def _crop_from_table(table, base, height, width, boxes, crop_size, method,
                     extrapolation_value):
    """Bilinear (or nearest) samples of boxes from maps flattened into one table.

    Args:
        table: float ``[R, C]``, the rows of every feature map, row-major.
        base: int32 ``[K]``, the table row of pixel (0, 0) of each box's map.
        height, width: int32 ``[K]``, the size of each box's map.
        boxes: float32 ``[K, 4]`` normalized to each box's map.
        crop_size: ``(ch, cw)`` python ints.

    Returns:
        float32 ``[K, ch, cw, C]``.
    """
    crop_h, crop_w = crop_size
    h = ops.cast(height, "float32")
    w = ops.cast(width, "float32")
    ys = _sample_positions(boxes[:, 0], boxes[:, 2], h, crop_h)  # [K, ch]
    xs = _sample_positions(boxes[:, 1], boxes[:, 3], w, crop_w)  # [K, cw]
    # A sample on the last row/column may land a rounding error past it when the
    # compiler fuses multiply-adds (TensorFlow's kernel does not); such samples
    # still read the border, within BORDER_SLACK pixels.
    inside = (((ys >= -BORDER_SLACK) & (ys <= (h - 1.0)[:, None] + BORDER_SLACK))[:, :, None]
              & ((xs >= -BORDER_SLACK) & (xs <= (w - 1.0)[:, None] + BORDER_SLACK))[:, None, :])

    def rows(y, x):
        # Clipped so outside samples still index a real row; they are masked below.
        y = ops.clip(ops.cast(y, "int32"), 0, height[:, None] - 1)
        x = ops.clip(ops.cast(x, "int32"), 0, width[:, None] - 1)
        return (base[:, None, None] + y[:, :, None] * width[:, None, None] + x[:, None, :])

    def gather(y, x):
        return ops.take(table, rows(y, x), axis=0)  # [K, ch, cw, C]

    if method == "nearest":
        # TensorFlow rounds half away from zero; inside samples are >= 0.
        out = gather(ops.floor(ys + 0.5), ops.floor(xs + 0.5))
    else:
        top, left = ops.floor(ys), ops.floor(xs)
        bottom, right = ops.ceil(ys), ops.ceil(xs)
        y_lerp = (ys - top)[:, :, None, None]
        x_lerp = (xs - left)[:, None, :, None]
        top_left, top_right = gather(top, left), gather(top, right)
        bottom_left, bottom_right = gather(bottom, left), gather(bottom, right)
        upper = top_left + (top_right - top_left) * x_lerp
        lower = bottom_left + (bottom_right - bottom_left) * x_lerp
        out = upper + (lower - upper) * y_lerp
    return ops.where(inside[..., None], out, ops.cast(extrapolation_value, out.dtype))


def _check_method(method):
    if method not in ("bilinear", "nearest"):
        raise ValueError(f"mrcnn.portable_ops: method must be 'bilinear' or 'nearest', "
                         f"got {method!r}")


def crop_and_resize(image, boxes, box_indices, crop_size, method="bilinear",
                    extrapolation_value=0.0):
    """``tf.image.crop_and_resize`` with the same arguments and result
    (see ``tf_ops.crop_and_resize``): float32 ``[K, ch, cw, C]``."""
    _check_method(method)
    image = ops.cast(image, "float32")
    _, height, width, channels = ops.shape(image)
    table = ops.reshape(image, (-1, channels))
    box_indices = ops.cast(box_indices, "int32")
    size = ops.zeros_like(box_indices)
    return _crop_from_table(
        table, box_indices * (height * width), size + height, size + width,
        ops.cast(boxes, "float32"), tuple(int(s) for s in crop_size), method,
        extrapolation_value)


def pyramid_crop_and_resize(feature_maps, boxes, levels, box_indices, crop_size):
    """Bilinear crops of each box from the feature map of its level, in one gather.

    Equals ``crop_and_resize(feature_maps[levels[k]], ...)`` box by box, without
    grouping the boxes by level (a data-dependent shape): every map is
    flattened into one table and each box samples the rows of its own map.

    Args:
        feature_maps: list of float ``[B, H_l, W_l, C]``.
        boxes: float ``[K, 4]`` normalized.
        levels: int ``[K]`` in ``[0, len(feature_maps))``.
        box_indices: int ``[K]`` in ``[0, B)``.
        crop_size: ``(ch, cw)``.

    Returns:
        float32 ``[K, ch, cw, C]``.
    """
    channels = ops.shape(feature_maps[0])[-1]
    tables, heights, widths, bases, offset = [], [], [], [], 0
    for feature_map in feature_maps:
        _, height, width, _ = ops.shape(feature_map)
        tables.append(ops.reshape(ops.cast(feature_map, "float32"), (-1, channels)))
        heights.append(height)
        widths.append(width)
        bases.append(offset)
        offset = offset + ops.shape(tables[-1])[0]
    levels = ops.cast(levels, "int32")
    box_indices = ops.cast(box_indices, "int32")

    def per_box(values):
        return ops.take(ops.cast(ops.stack(values), "int32"), levels, axis=0)

    height, width = per_box(heights), per_box(widths)
    base = per_box(bases) + box_indices * height * width
    return _crop_from_table(ops.concatenate(tables, axis=0), base, height, width,
                            ops.cast(boxes, "float32"), tuple(int(s) for s in crop_size),
                            "bilinear", 0.0)
