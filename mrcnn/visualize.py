"""Visualisation helpers in the style of Matterport's ``mrcnn/visualize.py``.

Every function works under a headless backend (``MPLBACKEND=Agg``):

* ``plt.show()`` is only called for figures this module created, when no
  ``save_path`` was given and the active backend is interactive (a GUI window or
  a notebook's inline backend).
* With ``save_path`` the figure is written as a PNG (or whatever the suffix says)
  and, if this module created it, closed so loops do not leak figures.
* Functions return the matplotlib ``Figure`` (or the ``Axes`` where they accept an
  ``ax``), so callers can keep drawing on them.

Conventions (see docs/DESIGN.md): images are ``[H, W, 3]`` RGB, boxes are pixel
``[N, (y1, x1, y2, x2)]`` with ``y2``/``x2`` exclusive, masks are bool
``[H, W, N]`` (instances last), class ids are int ``[N]`` with 0 = background.
Colors are RGB(A) tuples of floats in ``[0, 1]`` unless a function says otherwise.

``draw_instances`` needs no matplotlib at all: it burns masks and boxes into a
uint8 array, for command-line tools that save many pictures quickly.
"""
import colorsys
import itertools
import random

import numpy as np
import matplotlib
import matplotlib.pyplot as plt
from matplotlib import lines, patches
from matplotlib.patches import Polygon
import skimage.measure
import skimage.transform

# Backends that cannot show a window; plt.show() on them only emits a warning
# (or blocks nothing), so it is skipped.
_NON_INTERACTIVE_BACKENDS = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}

# |weight| above this is flagged as a likely overflow (Matterport's threshold).
_OVERFLOW_LIMIT = 1000.0

# Layer types whose kernels plot_weight_histograms draws (Matterport's notebook).
_HISTOGRAM_LAYER_TYPES = ("Conv2D", "Dense", "Conv2DTranspose")


############################################################
#  Figure plumbing
############################################################

def _backend_is_interactive():
    return matplotlib.get_backend().lower() not in _NON_INTERACTIVE_BACKENDS


def _finish(fig, save_path, owns_figure):
    """Save and/or show a finished figure.

    ``owns_figure`` is True when this module created the figure: only then is it
    closed after saving or shown on an interactive backend (a figure the caller
    passed in via ``ax`` stays theirs).
    """
    if save_path is not None:
        fig.savefig(save_path, bbox_inches="tight")
        if owns_figure:
            plt.close(fig)
    elif owns_figure and _backend_is_interactive():
        plt.show()


def _new_axes(ax, figsize):
    """Return (fig, ax, owns_figure) for a possibly caller-supplied axis."""
    if ax is not None:
        return ax.figure, ax, False
    fig, ax = plt.subplots(1, figsize=figsize)
    return fig, ax, True


############################################################
#  Colors and masks
############################################################

def random_colors(N, bright=True, seed=None):
    """Generate ``N`` visually distinct RGB colors, in random order.

    Colors are evenly spaced hues at full saturation (value 1.0 if ``bright``
    else 0.7), shuffled so neighbouring instances get dissimilar colors.

    Args:
        N: number of colors (>= 0).
        bright: full brightness if True, else 0.7.
        seed: int for a reproducible order; None uses Python's global RNG
            (Matterport's behaviour).

    Returns:
        list of ``N`` ``(r, g, b)`` float tuples in ``[0, 1]``.
    """
    if N < 0:
        raise ValueError(f"random_colors: N must be >= 0, got {N}")
    brightness = 1.0 if bright else 0.7
    colors = [colorsys.hsv_to_rgb(i / N, 1, brightness) for i in range(N)]
    rng = random.Random(seed) if seed is not None else random
    rng.shuffle(colors)
    return colors


def apply_mask(image, mask, color, alpha=0.5):
    """Blend ``color`` into ``image`` where ``mask`` is set.

    ``out = image * (1 - alpha) + alpha * color * 255`` inside the mask, ``image``
    elsewhere. Unlike Matterport, the input is not modified (Matterport's own
    callers always use the return value).

    Args:
        image: ``[H, W, 3]`` (or more channels; only the first 3 are blended),
            values in 0..255, any numeric dtype.
        mask: ``[H, W]`` bool or 0/1.
        color: RGB(A) floats in ``[0, 1]``; alpha channel ignored.
        alpha: blend weight of the color, in ``[0, 1]``.

    Returns:
        A new array, same shape and dtype as ``image``.
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"apply_mask: image must be [H, W, 3], got shape {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"apply_mask: mask shape {mask.shape} != image shape {image.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"apply_mask: alpha must be in [0, 1], got {alpha}")
    out = image.copy()
    inside = mask.astype(bool)
    rgb = np.asarray(color, dtype=np.float64)[:3] * 255.0
    blended = image[..., :3][inside].astype(np.float64) * (1.0 - alpha) + alpha * rgb
    if np.issubdtype(image.dtype, np.integer):
        # Round rather than truncate so alpha=1 gives exactly round(color*255).
        blended = np.rint(blended)
    out[..., :3][inside] = blended.astype(image.dtype)
    return out


def _first_three_or_grey(image):
    """What to show of an image with any channel count (IMAGE_CHANNEL_COUNT): its first
    three channels as RGB, or its first channel as grey [H, W] when it has fewer than 3."""
    image = np.asarray(image)
    if image.ndim != 3:
        return image
    return image[..., 0] if image.shape[2] < 3 else image[..., :3]


def _as_rgb_uint8(image, name):
    """Copy ``image`` ([H, W] or [H, W, C], any C) to uint8 RGB (`_first_three_or_grey`)."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"{name}: image must be [H, W] or [H, W, C], got shape {image.shape}")
    image = _first_three_or_grey(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image.copy()


def _color_to_rgb(color):
    """Any matplotlib color spec ('gray', RGB(A) tuple) -> RGB float tuple."""
    return matplotlib.colors.to_rgb(color)


def _add_mask_outline(ax, mask, color):
    """Draw the mask's outline as polygons on ``ax``."""
    # Pad so masks touching the image border still give closed contours.
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = mask
    for verts in skimage.measure.find_contours(padded, 0.5):
        # (row, col) -> (x, y), undoing the 1-pixel pad.
        verts = np.fliplr(verts) - 1
        ax.add_patch(Polygon(verts, facecolor="none", edgecolor=color))


def _box_rectangle(box, **kwargs):
    """A Rectangle enclosing the pixels of an exclusive-end pixel box."""
    y1, x1, y2, x2 = box
    # Pixel i covers [i - 0.5, i + 0.5] in imshow coordinates.
    return patches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, **kwargs)


############################################################
#  Image grids
############################################################

def display_images(images, titles=None, cols=4, cmap=None, norm=None,
                   interpolation=None, save_path=None):
    """Show a grid of images, ``cols`` per row.

    Args:
        images: list of ``[H, W]`` or ``[H, W, 3]`` arrays. RGB arrays that are not
            floats in ``[0, 1]`` are shown as uint8 (Matterport's cast); 2-D arrays
            are shown as they are, colored by ``cmap``/``norm``.
        titles: optional list of strings, one per image.
        cols: images per row.
        cmap, norm, interpolation: passed to ``imshow``.
        save_path: write the figure there and close it.

    Returns:
        The ``Figure``.
    """
    images = list(images)
    if not images:
        raise ValueError("display_images: images is empty")
    titles = list(titles) if titles is not None else [""] * len(images)
    if len(titles) != len(images):
        raise ValueError(f"display_images: {len(titles)} titles for {len(images)} images")
    if cols < 1:
        raise ValueError(f"display_images: cols must be >= 1, got {cols}")
    rows = (len(images) + cols - 1) // cols
    fig = plt.figure(figsize=(14, max(14 * rows // cols, 2)))
    for i, (image, title) in enumerate(zip(images, titles), start=1):
        ax = fig.add_subplot(rows, cols, i)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        ax.imshow(_displayable(image), cmap=cmap, norm=norm, interpolation=interpolation)
    _finish(fig, save_path, owns_figure=True)
    return fig


def _displayable(image):
    image = _first_three_or_grey(image)
    if image.ndim == 3:
        is_unit_float = np.issubdtype(image.dtype, np.floating) and image.size and image.max() <= 1.0
        if image.dtype != np.uint8 and not is_unit_float:
            return np.clip(image, 0, 255).astype(np.uint8)
    return image


############################################################
#  Instances
############################################################

def _check_instances(fn, boxes, masks, class_ids, image=None):
    """Validate instance arrays and return them as numpy arrays."""
    boxes = np.asarray(boxes).reshape(-1, 4) if np.size(boxes) == 0 else np.asarray(boxes)
    masks = np.asarray(masks)
    class_ids = np.asarray(class_ids).reshape(-1)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{fn}: boxes must be [N, 4] (y1, x1, y2, x2), got shape {boxes.shape}")
    if masks.ndim != 3:
        raise ValueError(f"{fn}: masks must be [H, W, N], got shape {masks.shape}")
    if not boxes.shape[0] == masks.shape[-1] == class_ids.shape[0]:
        raise ValueError(f"{fn}: instance counts disagree: boxes {boxes.shape[0]}, "
                         f"masks {masks.shape[-1]} (last axis), class_ids {class_ids.shape[0]}")
    if image is not None and masks.shape[:2] != np.shape(image)[:2]:
        raise ValueError(f"{fn}: masks are {masks.shape[:2]} but image is {np.shape(image)[:2]}")
    return boxes, masks, class_ids


def _caption(i, class_ids, class_names, scores, captions):
    if captions is not None:
        return captions[i]
    label = class_names[int(class_ids[i])]
    if scores is None:
        return label
    return f"{label} {float(scores[i]):.3f}"


def display_instances(image, boxes, masks, class_ids, class_names,
                      scores=None, title="", figsize=(16, 16), ax=None,
                      show_mask=True, show_bbox=True, colors=None, captions=None,
                      save_path=None):
    """Draw instances (masks, outlines, boxes, captions) over an image.

    Args:
        image: ``[H, W, 3]`` RGB, 0..255.
        boxes: ``[N, (y1, x1, y2, x2)]`` pixel boxes; all-zero rows (padding) are skipped.
        masks: ``[H, W, N]`` bool.
        class_ids: ``[N]`` int, indexes ``class_names``.
        class_names: list of class names (index 0 = "BG").
        scores: optional ``[N]`` confidences shown after the class name.
        title: axis title.
        figsize: size of a figure created here (ignored when ``ax`` is given).
        ax: draw on this axis instead of a new figure.
        show_mask, show_bbox: draw the mask fill / the dashed box.
        colors: optional list of ``N`` colors; default ``random_colors(N)``.
        captions: optional list of ``N`` strings replacing "class score".
        save_path: write the figure there (closed if created here).

    Returns:
        The ``Axes`` drawn on. ``N == 0`` prints a message and shows the bare image.
    """
    boxes, masks, class_ids = _check_instances("display_instances", boxes, masks, class_ids, image)
    N = boxes.shape[0]
    if scores is not None and len(scores) != N:
        raise ValueError(f"display_instances: {len(scores)} scores for {N} instances")
    if captions is not None and len(captions) != N:
        raise ValueError(f"display_instances: {len(captions)} captions for {N} instances")
    if colors is not None and len(colors) < N:
        raise ValueError(f"display_instances: {len(colors)} colors for {N} instances")
    if N == 0:
        print("\n*** No instances to display *** \n")

    fig, ax, owns = _new_axes(ax, figsize)
    colors = random_colors(N) if colors is None else colors
    height, width = np.shape(image)[:2]
    ax.set_ylim(height + 10, -10)
    ax.set_xlim(-10, width + 10)
    ax.axis("off")
    ax.set_title(title)

    masked_image = _as_rgb_uint8(image, "display_instances")
    for i in range(N):
        if not np.any(boxes[i]):
            continue  # zero-padded row: nothing was detected here
        color = colors[i]
        y1, x1 = boxes[i][:2]
        if show_bbox:
            ax.add_patch(_box_rectangle(boxes[i], linewidth=2, alpha=0.7, linestyle="dashed",
                                        edgecolor=color, facecolor="none"))
        ax.text(x1, y1 + 8, _caption(i, class_ids, class_names, scores, captions),
                color="w", size=11, backgroundcolor="none")
        mask = masks[:, :, i]
        if show_mask:
            masked_image = apply_mask(masked_image, mask, color)
        _add_mask_outline(ax, mask, color)
    ax.imshow(masked_image)
    _finish(fig, save_path, owns)
    return ax


def draw_instances(image, boxes, masks, class_ids, class_names, scores=None,
                   alpha=0.5, thickness=2, seed=0):
    """Burn masks and box outlines into a copy of ``image`` (no matplotlib).

    For command-line tools that save many pictures: write the result with
    ``skimage.io.imsave``. Class names and scores are not rendered (no text
    without a font renderer); they are accepted so calls mirror
    ``display_instances``.

    Args:
        image: ``[H, W]``, ``[H, W, 3]`` or ``[H, W, 4]``, 0..255.
        boxes: ``[N, (y1, x1, y2, x2)]`` pixel boxes, ends exclusive; all-zero rows skipped.
        masks: ``[H, W, N]`` bool.
        class_ids: ``[N]`` int.
        class_names: list of names (validated against ``class_ids``).
        scores: optional ``[N]``.
        alpha: mask blend weight.
        thickness: box outline width in pixels, drawn inside the box.
        seed: color order seed, so repeated runs give the same colors.

    Returns:
        uint8 ``[H, W, 3]`` RGB array.
    """
    boxes, masks, class_ids = _check_instances("draw_instances", boxes, masks, class_ids, image)
    N = boxes.shape[0]
    if scores is not None and len(scores) != N:
        raise ValueError(f"draw_instances: {len(scores)} scores for {N} instances")
    if N and (class_ids.min() < 0 or class_ids.max() >= len(class_names)):
        raise ValueError(f"draw_instances: class_ids {class_ids.tolist()} out of range "
                         f"for {len(class_names)} class_names")
    out = _as_rgb_uint8(image, "draw_instances")
    colors = random_colors(N, seed=seed)
    for i in range(N):
        out = apply_mask(out, masks[:, :, i], colors[i], alpha=alpha)
    for i in range(N):
        if np.any(boxes[i]):
            rgb = np.rint(np.asarray(colors[i]) * 255).astype(np.uint8)
            _burn_box_outline(out, boxes[i], rgb, thickness)
    return out


def _burn_box_outline(image, box, value, thickness):
    """Write ``value`` on the ``thickness``-pixel inner border of an exclusive-end box, in place."""
    h, w = image.shape[:2]
    y1, x1, y2, x2 = (int(round(v)) for v in box)
    for t in range(thickness):
        top, left, bottom, right = y1 + t, x1 + t, y2 - 1 - t, x2 - 1 - t
        if top > bottom or left > right:
            break  # box thinner than the outline: it is already filled
        rr, cc = _inner_perimeter(top, left, bottom, right, h, w)
        image[rr, cc] = value
    return image


def _inner_perimeter(top, left, bottom, right, h, w):
    """Row/col indices of the pixels on the rectangle's own border, clipped to the image."""
    rows, cols = [], []
    xs = np.arange(left, right + 1)
    ys = np.arange(top, bottom + 1)
    for r in (top, bottom):
        rows.append(np.full_like(xs, r))
        cols.append(xs)
    for c in (left, right):
        rows.append(ys)
        cols.append(np.full_like(ys, c))
    rr, cc = np.concatenate(rows), np.concatenate(cols)
    keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    return rr[keep], cc[keep]


############################################################
#  Ground truth vs predictions
############################################################

def _trim_zero_rows(x):
    """Keep the rows of a [N, 4] box array that are not all zero (padding)."""
    x = np.asarray(x).reshape(-1, 4)
    return np.any(x != 0, axis=1)


def _mask_overlaps(masks1, masks2):
    """Mask IoU between every pair: ``[H,W,N1]``, ``[H,W,N2]`` -> ``[N1, N2]``.

    Pairs whose union is empty get IoU 0.
    """
    if masks1.shape[-1] == 0 or masks2.shape[-1] == 0:
        return np.zeros((masks1.shape[-1], masks2.shape[-1]))
    m1 = np.reshape(masks1 > 0.5, (-1, masks1.shape[-1])).astype(np.float64)
    m2 = np.reshape(masks2 > 0.5, (-1, masks2.shape[-1])).astype(np.float64)
    intersections = m1.T @ m2
    union = m1.sum(axis=0)[:, None] + m2.sum(axis=0)[None, :] - intersections
    return np.divide(intersections, union, out=np.zeros_like(intersections), where=union > 0)


def _match_predictions(gt_class_ids, pred_class_ids, overlaps, iou_threshold, score_threshold):
    """Greedy matching, predictions in the given order (caller sorts by score).

    Each prediction takes the highest-IoU unmatched ground truth of the same
    class with IoU >= ``max(iou_threshold, score_threshold)``. Matterport's
    ``compute_matches`` applies ``score_threshold`` to the IoU row, not to the
    scores; this keeps that behaviour so the picture agrees with
    ``mrcnn.metrics.compute_matches`` (kept local so this module does not
    depend on it).

    Returns:
        gt_match ``[G]`` and pred_match ``[P]``: index of the matched partner, -1 if none.
    """
    min_iou = max(iou_threshold, score_threshold)
    gt_match = -np.ones(len(gt_class_ids), dtype=np.int64)
    pred_match = -np.ones(len(pred_class_ids), dtype=np.int64)
    for i in range(len(pred_class_ids)):
        for j in np.argsort(-overlaps[i], kind="stable"):
            if overlaps[i, j] < min_iou:
                break
            if gt_match[j] > -1 or pred_class_ids[i] != gt_class_ids[j]:
                continue
            gt_match[j], pred_match[i] = i, j
            break
    return gt_match, pred_match


def display_differences(image, gt_box, gt_class_id, gt_mask,
                        pred_box, pred_class_id, pred_score, pred_mask,
                        class_names, title="", ax=None,
                        show_mask=True, show_box=True,
                        iou_threshold=0.5, score_threshold=0.5, save_path=None):
    """Ground truth (green) and predictions (red) on one image.

    Predictions are matched to ground truth by mask IoU (see
    ``_match_predictions``); each prediction's caption is ``score / IoU`` with
    the IoU of its match, or its best IoU with any ground truth if unmatched.
    Zero-padded rows (all-zero boxes) are dropped first.

    Args:
        image: ``[H, W, 3]``.
        gt_box ``[G, 4]``, gt_class_id ``[G]``, gt_mask ``[H, W, G]``.
        pred_box ``[P, 4]``, pred_class_id ``[P]``, pred_score ``[P]``, pred_mask ``[H, W, P]``.
        class_names: list of names.
        iou_threshold: minimum mask IoU for a match.
        score_threshold: as in Matterport, a second minimum IoU (not a score cut).
        Others as in ``display_instances``.

    Returns:
        The ``Axes`` drawn on.
    """
    gt_box, gt_mask, gt_class_id = _check_instances("display_differences (ground truth)",
                                                    gt_box, gt_mask, gt_class_id, image)
    pred_box, pred_mask, pred_class_id = _check_instances("display_differences (predictions)",
                                                          pred_box, pred_mask, pred_class_id, image)
    pred_score = np.asarray(pred_score, dtype=np.float64).reshape(-1)
    if pred_score.shape[0] != pred_box.shape[0]:
        raise ValueError(f"display_differences: {pred_score.shape[0]} pred_score "
                         f"for {pred_box.shape[0]} predictions")
    keep = _trim_zero_rows(gt_box)
    gt_box, gt_mask, gt_class_id = gt_box[keep], gt_mask[..., keep], gt_class_id[keep]
    keep = _trim_zero_rows(pred_box)
    order = np.argsort(-pred_score[keep], kind="stable")
    pred_box = pred_box[keep][order]
    pred_mask = pred_mask[..., keep][..., order]
    pred_class_id = pred_class_id[keep][order]
    pred_score = pred_score[keep][order]

    overlaps = _mask_overlaps(pred_mask, gt_mask)
    gt_match, pred_match = _match_predictions(gt_class_id, pred_class_id, overlaps,
                                              iou_threshold, score_threshold)
    G, P = len(gt_class_id), len(pred_class_id)
    colors = [(0, 1, 0, .8)] * G + [(1, 0, 0, 1)] * P
    captions = [""] * G + [
        "{:.2f} / {:.2f}".format(pred_score[i], _caption_iou(overlaps[i], pred_match[i]))
        for i in range(P)]
    title = title or "Ground Truth and Detections\n GT=green, pred=red, captions: score/IoU"
    return display_instances(
        image,
        np.concatenate([gt_box, pred_box]).reshape(-1, 4),
        np.concatenate([gt_mask, pred_mask], axis=-1),
        np.concatenate([gt_class_id, pred_class_id]).astype(np.int64),
        class_names, np.concatenate([np.zeros(G), pred_score]),
        title=title, ax=ax, show_bbox=show_box, show_mask=show_mask,
        colors=colors, captions=captions, save_path=save_path)


def _caption_iou(overlap_row, match):
    if match > -1:
        return overlap_row[match]
    return overlap_row.max() if overlap_row.size else 0.0


############################################################
#  ROIs, anchors and proposals
############################################################

def _paste_roi_mask(mask, box, image_shape):
    """ROI-sized float mask ``[mh, mw]`` -> bool ``[H, W]`` placed at ``box`` (threshold 0.5)."""
    y1, x1, y2, x2 = (int(round(v)) for v in box)
    full = np.zeros(image_shape[:2], dtype=bool)
    if y2 <= y1 or x2 <= x1:
        return full
    resized = skimage.transform.resize(np.asarray(mask, dtype=np.float64), (y2 - y1, x2 - x1),
                                       order=1, mode="constant", anti_aliasing=False) >= 0.5
    # Clip boxes that run off the image.
    cy1, cx1 = max(y1, 0), max(x1, 0)
    cy2, cx2 = min(y2, image_shape[0]), min(x2, image_shape[1])
    if cy2 > cy1 and cx2 > cx1:
        full[cy1:cy2, cx1:cx2] = resized[cy1 - y1:cy2 - y1, cx1 - x1:cx2 - x1]
    return full


def draw_rois(image, rois, refined_rois, mask, class_ids, class_names, limit=10,
              save_path=None, seed=None):
    """Draw (a random subset of) ROIs with their refinements and masks.

    Positive ROIs (class id > 0) get a dashed ROI box, a solid refined box, a
    line joining their top-left corners, a label and their mask; negative ROIs
    only a gray dashed box. Prints the positive/negative counts.

    Args:
        image: ``[H, W, 3]``.
        rois: ``[N, (y1, x1, y2, x2)]`` pixel ROIs.
        refined_rois: ``[N, 4]`` pixel ROIs after applying the target deltas.
        mask: ``[N, mh, mw]`` per-ROI mask targets (floats/bools, ROI coordinates).
        class_ids: ``[N]`` int target class per ROI.
        class_names: list of names.
        limit: at most this many ROIs are drawn (chosen at random).
        save_path: write the figure there and close it.
        seed: seed for the subset and the colors.

    Returns:
        The ``Figure``.
    """
    rois = np.asarray(rois).reshape(-1, 4)
    refined_rois = np.asarray(refined_rois).reshape(-1, 4)
    mask = np.asarray(mask)
    class_ids = np.asarray(class_ids).reshape(-1)
    n = rois.shape[0]
    if not refined_rois.shape[0] == mask.shape[0] == class_ids.shape[0] == n or mask.ndim != 3:
        raise ValueError(f"draw_rois: expected rois [N,4], refined_rois [N,4], mask [N,mh,mw], "
                         f"class_ids [N]; got {rois.shape}, {refined_rois.shape}, {mask.shape}, "
                         f"{class_ids.shape}")
    rng = np.random.default_rng(seed)
    ids = np.arange(n)
    if n > limit:
        ids = rng.choice(ids, limit, replace=False)

    fig, ax = plt.subplots(1, figsize=(12, 12))
    if n > limit:
        ax.set_title(f"Showing {len(ids)} random ROIs out of {n}")
    else:
        ax.set_title(f"{len(ids)} ROIs")
    ax.set_ylim(image.shape[0] + 20, -20)
    ax.set_xlim(-50, image.shape[1] + 20)
    ax.axis("off")

    masked_image = _as_rgb_uint8(image, "draw_rois")
    for i in ids:
        color = tuple(rng.random(3))
        class_id = int(class_ids[i])
        y1, x1 = rois[i][:2]
        ax.add_patch(_box_rectangle(rois[i], linewidth=2, linestyle="dashed", facecolor="none",
                                    edgecolor=color if class_id else "gray"))
        if class_id:
            ry1, rx1 = refined_rois[i][:2]
            ax.add_patch(_box_rectangle(refined_rois[i], linewidth=2, edgecolor=color,
                                        facecolor="none"))
            ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))
            ax.text(rx1, ry1 + 8, class_names[class_id], color="w", size=11,
                    backgroundcolor="none")
            full_mask = _paste_roi_mask(mask[i], rois[i], image.shape)
            masked_image = apply_mask(masked_image, full_mask, color)
    ax.imshow(masked_image)

    positives = int(np.sum(class_ids > 0))
    print("Positive ROIs: ", positives)
    print("Negative ROIs: ", int(np.sum(class_ids == 0)))
    if n:
        print("Positive Ratio: {:.2f}".format(positives / n))
    _finish(fig, save_path, owns_figure=True)
    return fig


def draw_box(image, box, color):
    """Draw a 2-pixel box outline into ``image`` **in place** (as Matterport) and return it.

    Args:
        image: ``[H, W, 3]`` array.
        box: ``(y1, x1, y2, x2)`` pixel box, ends exclusive; the outline is drawn
            on the box's own border pixels and clipped to the image.
        color: value(s) written to the pixels, in the image's units (e.g. 0..255 RGB).

    Returns:
        ``image``.
    """
    if not isinstance(image, np.ndarray) or image.ndim < 2:
        raise ValueError(f"draw_box: image must be a numpy [H, W, C] array, got {type(image)}")
    return _burn_box_outline(image, box, color, thickness=2)


def display_top_masks(image, mask, class_ids, class_names, limit=4, save_path=None):
    """Show the image next to the union masks of the ``limit`` largest classes.

    Classes are ranked by total mask area; each panel numbers its instances
    1..k so they get distinct shades of the ``Blues_r`` map.

    Args:
        image: ``[H, W, 3]``.
        mask: ``[H, W, N]`` bool.
        class_ids: ``[N]`` int.
        class_names: list of names.
        limit: number of class panels.
        save_path: write the figure there and close it.

    Returns:
        The ``Figure``.
    """
    mask = np.asarray(mask)
    class_ids = np.asarray(class_ids).reshape(-1)
    if mask.ndim != 3 or mask.shape[-1] != class_ids.shape[0]:
        raise ValueError(f"display_top_masks: mask [H, W, N] and class_ids [N] disagree: "
                         f"{mask.shape} vs {class_ids.shape}")
    to_display = [image]
    titles = ["H x W={}x{}".format(image.shape[0], image.shape[1])]
    unique_class_ids = np.unique(class_ids)
    mask_area = [np.sum(mask[:, :, class_ids == c]) for c in unique_class_ids]
    ranked = sorted(zip(unique_class_ids, mask_area), key=lambda r: r[1], reverse=True)
    top_ids = [c for c, area in ranked if area > 0]
    for i in range(limit):
        class_id = top_ids[i] if i < len(top_ids) else -1
        m = mask[:, :, class_ids == class_id].astype(np.int64)
        to_display.append(np.sum(m * np.arange(1, m.shape[-1] + 1), axis=-1))
        titles.append(class_names[class_id] if class_id != -1 else "-")
    return display_images(to_display, titles=titles, cols=limit + 1, cmap="Blues_r",
                          save_path=save_path)


def draw_boxes(image, boxes=None, refined_boxes=None, masks=None, captions=None,
               visibilities=None, title="", ax=None, save_path=None):
    """Draw boxes (anchors, proposals) and/or their refinements.

    Args:
        image: ``[H, W, 3]``.
        boxes: optional ``[N, (y1, x1, y2, x2)]`` pixel boxes, drawn dotted; all-zero rows skipped.
        refined_boxes: optional ``[N, 4]`` drawn solid, joined to ``boxes`` by a line.
        masks: optional ``[H, W, N]`` bool.
        captions: optional list of ``N`` strings.
        visibilities: optional ``[N]`` in {0, 1, 2}: 0 gray dotted (refinement
            hidden), 1 colored dotted, 2 colored solid. Default 1.
        title: axis title.
        ax: draw on this axis instead of a new figure.
        save_path: write the figure there (closed if created here).

    Returns:
        The ``Axes``.
    """
    if boxes is None and refined_boxes is None:
        raise ValueError("draw_boxes: give boxes, refined_boxes or both")
    boxes = None if boxes is None else np.asarray(boxes).reshape(-1, 4)
    refined_boxes = None if refined_boxes is None else np.asarray(refined_boxes).reshape(-1, 4)
    N = boxes.shape[0] if boxes is not None else refined_boxes.shape[0]
    for name, arr in (("refined_boxes", refined_boxes), ("captions", captions),
                      ("visibilities", visibilities)):
        if arr is not None and len(arr) != N:
            raise ValueError(f"draw_boxes: {name} has {len(arr)} entries for {N} boxes")
    if masks is not None and np.shape(masks)[-1] != N:
        raise ValueError(f"draw_boxes: masks has {np.shape(masks)[-1]} instances for {N} boxes")

    fig, ax, owns = _new_axes(ax, (12, 12))
    colors = random_colors(N)
    margin = image.shape[0] // 10
    ax.set_ylim(image.shape[0] + margin, -margin)
    ax.set_xlim(-margin, image.shape[1] + margin)
    ax.axis("off")
    ax.set_title(title)

    masked_image = _as_rgb_uint8(image, "draw_boxes")
    for i in range(N):
        visibility = visibilities[i] if visibilities is not None else 1
        if visibility == 0:
            color, style, alpha = "gray", "dotted", 0.5
        elif visibility == 1:
            color, style, alpha = colors[i], "dotted", 1.0
        else:
            color, style, alpha = colors[i], "solid", 1.0
        anchor = None
        if boxes is not None:
            if not np.any(boxes[i]):
                continue
            ax.add_patch(_box_rectangle(boxes[i], linewidth=2, alpha=alpha, linestyle=style,
                                        edgecolor=color, facecolor="none"))
            anchor = boxes[i][:2]
        if refined_boxes is not None and visibility > 0:
            ax.add_patch(_box_rectangle(refined_boxes[i], linewidth=2, edgecolor=color,
                                        facecolor="none"))
            if anchor is not None:
                ax.add_line(lines.Line2D([anchor[1], refined_boxes[i][1]],
                                         [anchor[0], refined_boxes[i][0]], color=color))
            anchor = refined_boxes[i][:2]
        if captions is not None and anchor is not None:
            ax.text(anchor[1], anchor[0], captions[i], size=11, verticalalignment="top",
                    color="w", backgroundcolor="none",
                    bbox={"facecolor": color, "alpha": 0.5, "pad": 2, "edgecolor": "none"})
        if masks is not None:
            mask = np.asarray(masks)[:, :, i]
            masked_image = apply_mask(masked_image, mask, _color_to_rgb(color))
            _add_mask_outline(ax, mask, color)
    ax.imshow(masked_image)
    _finish(fig, save_path, owns)
    return ax


############################################################
#  Evaluation plots
############################################################

def plot_precision_recall(AP, precisions, recalls, save_path=None):
    """Plot a precision-recall curve titled with its AP@50.

    Args:
        AP: average precision (float).
        precisions, recalls: ``[K]`` arrays (as from ``metrics.compute_ap``).
        save_path: write the figure there and close it.

    Returns:
        The ``Figure``.
    """
    if len(precisions) != len(recalls):
        raise ValueError(f"plot_precision_recall: {len(precisions)} precisions "
                         f"vs {len(recalls)} recalls")
    fig, ax = plt.subplots(1)
    ax.set_title("Precision-Recall Curve. AP@50 = {:.3f}".format(AP))
    ax.set_ylim(0, 1.1)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.plot(recalls, precisions)
    _finish(fig, save_path, owns_figure=True)
    return fig


def plot_overlaps(gt_class_ids, pred_class_ids, pred_scores, overlaps, class_names,
                  threshold=0.5, save_path=None):
    """Grid of IoU between predictions (rows) and ground truth (columns).

    Cells above ``threshold`` are labelled "match" (same class) or "wrong".
    Background ids (0, i.e. padding) are dropped; ``overlaps`` may be given
    either for all ids or only for the non-zero ones.

    Args:
        gt_class_ids: ``[G]`` int.
        pred_class_ids: ``[P]`` int.
        pred_scores: ``[P]`` float.
        overlaps: ``[P, G]`` IoU.
        class_names: list of names.
        threshold: IoU above which a cell is labelled.
        save_path: write the figure there and close it.

    Returns:
        The ``Figure``.
    """
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    pred_class_ids = np.asarray(pred_class_ids).reshape(-1)
    pred_scores = np.asarray(pred_scores).reshape(-1)
    overlaps = np.asarray(overlaps, dtype=np.float64)
    if pred_scores.shape != pred_class_ids.shape:
        raise ValueError(f"plot_overlaps: {pred_scores.shape[0]} pred_scores "
                         f"for {pred_class_ids.shape[0]} pred_class_ids")
    gt_keep, pred_keep = gt_class_ids != 0, pred_class_ids != 0
    if overlaps.shape == (pred_class_ids.size, gt_class_ids.size):
        overlaps = overlaps[pred_keep][:, gt_keep]
    elif overlaps.shape != (pred_keep.sum(), gt_keep.sum()):
        raise ValueError(f"plot_overlaps: overlaps shape {overlaps.shape} does not fit "
                         f"{pred_class_ids.size} predictions x {gt_class_ids.size} ground truth")
    gt_class_ids, pred_class_ids = gt_class_ids[gt_keep], pred_class_ids[pred_keep]
    pred_scores = pred_scores[pred_keep]

    fig, ax = plt.subplots(1, figsize=(12, 10))
    ax.imshow(overlaps.reshape(len(pred_class_ids), len(gt_class_ids)),
              interpolation="nearest", cmap=plt.cm.Blues, vmin=0, vmax=1)
    ax.set_yticks(np.arange(len(pred_class_ids)),
                  ["{} ({:.2f})".format(class_names[int(c)], s)
                   for c, s in zip(pred_class_ids, pred_scores)])
    ax.set_xticks(np.arange(len(gt_class_ids)),
                  [class_names[int(c)] for c in gt_class_ids], rotation=90)
    half = overlaps.max() / 2.0 if overlaps.size else 0.0
    for i, j in itertools.product(range(overlaps.shape[0]), range(overlaps.shape[1])):
        label = ""
        if overlaps[i, j] > threshold:
            label = "match" if gt_class_ids[j] == pred_class_ids[i] else "wrong"
        color = "white" if overlaps[i, j] > half else "black" if overlaps[i, j] > 0 else "grey"
        ax.text(j, i, "{:.3f}\n{}".format(overlaps[i, j], label), horizontalalignment="center",
                verticalalignment="center", fontsize=9, color=color)
    ax.set_xlabel("Ground Truth")
    ax.set_ylabel("Predictions")
    fig.tight_layout()
    _finish(fig, save_path, owns_figure=True)
    return fig


############################################################
#  Tables and weights
############################################################

def _table_text(table):
    rows = [[str(c) for c in row] for row in table]
    if not rows:
        return ""
    widths = [max(len(r[k]) for r in rows if k < len(r)) for k in range(max(map(len, rows)))]
    return "\n".join("  ".join(c.ljust(widths[k]) for k, c in enumerate(r)).rstrip() for r in rows)


def _in_notebook():
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def display_table(table, save_path=None):
    """Display a table (list of rows, first row the header).

    In a Jupyter kernel the table is shown as HTML; otherwise it is printed as
    aligned plain text. With ``save_path`` it is also rendered to an image.

    Args:
        table: list of rows, each a list of cells (converted with ``str``).
        save_path: also render the table with matplotlib and write it there.

    Returns:
        The plain-text rendering (str).
    """
    table = [list(row) for row in table]
    text = _table_text(table)
    if _in_notebook():
        import IPython.display
        body = "".join("<tr>" + "".join("<td>{:40}</td>".format(str(c)) for c in row) + "</tr>"
                       for row in table)
        IPython.display.display(IPython.display.HTML("<table>" + body + "</table>"))
    else:
        print(text)
    if save_path is not None and table:
        _render_table(table, save_path)
    return text


def _render_table(table, save_path):
    ncols = max(len(r) for r in table)
    cells = [[str(c) for c in r] + [""] * (ncols - len(r)) for r in table]
    fig, ax = plt.subplots(1, figsize=(min(2.5 * ncols, 20), 0.3 * len(cells) + 0.5))
    ax.axis("off")
    tab = ax.table(cellText=cells[1:] or None, colLabels=cells[0], loc="center", cellLoc="left")
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    tab.auto_set_column_width(list(range(ncols)))
    fig.savefig(save_path, bbox_inches="tight")
    plt.close(fig)


def _unwrap(layer):
    """TimeDistributed & co. keep the real layer in ``.layer``."""
    inner = getattr(layer, "layer", None)
    return inner if inner is not None and hasattr(inner, "weights") else layer


def _weighted_layers(model):
    """Leaf layers that own weights, descending into nested models (e.g. the RPN)."""
    if hasattr(model, "keras_model"):  # the MaskRCNN wrapper
        model = model.keras_model
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _weighted_layers(layer)
        elif layer.weights:
            yield layer


def _row_from_precomputed(row):
    if isinstance(row, dict):
        d = dict(row)
    else:
        if len(row) < 5:
            raise ValueError(f"display_weight_stats: a row needs (name, shape, min, max, std), "
                             f"got {row!r}")
        d = dict(zip(("name", "shape", "min", "max", "std"), row[:5]))
    missing = {"name", "shape", "min", "max", "std"} - set(d)
    if missing:
        raise ValueError(f"display_weight_stats: row {row!r} lacks {sorted(missing)}")
    d.setdefault("dead", float(d["min"]) == float(d["max"]))
    d.setdefault("overflow", max(abs(float(d["min"])), abs(float(d["max"]))) > _OVERFLOW_LIMIT)
    return d


def display_weight_stats(rows_or_model, save_path=None):
    """Table of weight name, shape, min, max, std and alerts ("dead?", "overflow?").

    Args:
        rows_or_model: a keras model / ``MaskRCNN`` wrapper (statistics from
            ``mrcnn.weights.weight_stats``), its ``WeightStats`` rows, or
            precomputed rows: dicts with keys name, shape, min, max, std
            (optionally dead, overflow) or 5-sequences in that order.
        save_path: also render the table to an image there.

    Returns:
        The plain-text table (str).
    """
    from mrcnn import weights as weights_io

    if hasattr(rows_or_model, "keras_model"):  # the MaskRCNN wrapper
        rows_or_model = rows_or_model.keras_model
    if hasattr(rows_or_model, "layers"):
        rows_or_model = weights_io.weight_stats(rows_or_model)
    rows = [_row_from_stats(r) if isinstance(r, weights_io.WeightStats) else _row_from_precomputed(r)
            for r in rows_or_model]
    table = [["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD", "ALERT"]]
    for r in rows:
        alerts = [flag for flag, on in (("dead?", r["dead"]), ("overflow?", r["overflow"])) if on]
        table.append([r["name"], str(tuple(r["shape"]) if not isinstance(r["shape"], str)
                                     else r["shape"]),
                      "{:+9.4f}".format(float(r["min"])), "{:+10.4f}".format(float(r["max"])),
                      "{:+9.4f}".format(float(r["std"])), " ".join(alerts)])
    return display_table(table, save_path=save_path)


def _row_from_stats(stats):
    return {"name": stats.name, "shape": stats.shape, "min": stats.min, "max": stats.max,
            "std": stats.std, "dead": "dead?" in stats.flags, "overflow": "overflow?" in stats.flags}


def plot_weight_histograms(model, save_path=None, bins=50, max_layers=None):
    """Histograms of the weights of Conv2D, Dense and Conv2DTranspose layers.

    One row per layer (TimeDistributed wrappers are looked through), one column
    per weight (kernel, bias).

    Args:
        model: keras model or ``MaskRCNN`` wrapper.
        save_path: write the figure there and close it.
        bins: histogram bins.
        max_layers: draw at most this many layers (a full ResNet-101 model has >100).

    Returns:
        The ``Figure``.
    """
    layers = [l for l in _weighted_layers(model)
              if type(_unwrap(l)).__name__ in _HISTOGRAM_LAYER_TYPES]
    if max_layers is not None:
        layers = layers[:max_layers]
    if not layers:
        raise ValueError("plot_weight_histograms: the model has no Conv2D, Dense or "
                         "Conv2DTranspose layers")
    ncols = max(len(l.weights) for l in layers)
    fig, axes = plt.subplots(len(layers), ncols, figsize=(10, 3 * len(layers)),
                             gridspec_kw={"hspace": 1}, squeeze=False)
    for row, layer in enumerate(layers):
        for col in range(ncols):
            axes[row, col].axis("off")
        for col, (var, value) in enumerate(zip(layer.weights, layer.get_weights())):
            ax = axes[row, col]
            ax.axis("on")
            ax.set_title(getattr(var, "path", None) or var.name, fontsize=9)
            ax.hist(np.asarray(value).ravel(), bins)
    _finish(fig, save_path, owns_figure=True)
    return fig
