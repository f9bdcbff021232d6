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

This module draws instances. Matterport's debugging and analysis plots
(``draw_boxes``, ``draw_rois``, ``plot_precision_recall``, ``plot_overlaps``, ``display_table``,
``display_weight_stats``, ``plot_weight_histograms``) live in ``mrcnn.debug_plots``
and stay reachable as ``visualize.<name>`` (resolved on first use, because
``debug_plots`` itself builds on the helpers here).
"""
import colorsys
import importlib
import random

import numpy as np
import matplotlib
import matplotlib.pyplot as plt
from matplotlib import patches
from matplotlib.patches import Polygon
import skimage.measure

from mrcnn import metrics

# Backends that cannot show a window; plt.show() on them only emits a warning
# (or blocks nothing), so it is skipped.
_NON_INTERACTIVE_BACKENDS = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


############################################################
#  Figure plumbing
############################################################

def _backend_is_interactive():
    return matplotlib.get_backend().lower() not in _NON_INTERACTIVE_BACKENDS


def finish_figure(fig, save_path, owns_figure):
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


def new_axes(ax, figsize):
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


def as_rgb_uint8(image, name):
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


def add_mask_outline(ax, mask, color):
    """Draw the mask's outline as polygons on ``ax``."""
    # Pad so masks touching the image border still give closed contours.
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = mask
    for verts in skimage.measure.find_contours(padded, 0.5):
        # (row, col) -> (x, y), undoing the 1-pixel pad.
        verts = np.fliplr(verts) - 1
        ax.add_patch(Polygon(verts, facecolor="none", edgecolor=color))


def box_rectangle(box, **kwargs):
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
    finish_figure(fig, save_path, owns_figure=True)
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

    fig, ax, owns = new_axes(ax, figsize)
    colors = random_colors(N) if colors is None else colors
    height, width = np.shape(image)[:2]
    ax.set_ylim(height + 10, -10)
    ax.set_xlim(-10, width + 10)
    ax.axis("off")
    ax.set_title(title)

    masked_image = as_rgb_uint8(image, "display_instances")
    for i in range(N):
        if not np.any(boxes[i]):
            continue  # zero-padded row: nothing was detected here
        color = colors[i]
        y1, x1 = boxes[i][:2]
        if show_bbox:
            ax.add_patch(box_rectangle(boxes[i], linewidth=2, alpha=0.7, linestyle="dashed",
                                        edgecolor=color, facecolor="none"))
        ax.text(x1, y1 + 8, _caption(i, class_ids, class_names, scores, captions),
                color="w", size=11, backgroundcolor="none")
        mask = masks[:, :, i]
        if show_mask:
            masked_image = apply_mask(masked_image, mask, color)
        add_mask_outline(ax, mask, color)
    ax.imshow(masked_image)
    finish_figure(fig, save_path, owns)
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
    out = as_rgb_uint8(image, "draw_instances")
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
def display_differences(image, gt_box, gt_class_id, gt_mask,
                        pred_box, pred_class_id, pred_score, pred_mask,
                        class_names, title="", ax=None,
                        show_mask=True, show_box=True,
                        iou_threshold=0.5, score_threshold=0.5, save_path=None):
    """Ground truth (green) and predictions (red) on one image.

    Predictions are matched to ground truth by ``metrics.compute_matches`` (mask
    IoU, highest score first); each prediction's caption is ``score / IoU`` with
    the IoU of its match, or its best IoU with any ground truth if unmatched.
    Zero-padded rows (all-zero boxes at the end, as ``compute_matches`` trims
    them) are dropped first.

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
    gt = _check_instances("display_differences (ground truth)",
                          gt_box, gt_mask, gt_class_id, image)
    pred = _check_instances("display_differences (predictions)",
                            pred_box, pred_mask, pred_class_id, image)
    pred_score = np.asarray(pred_score, dtype=np.float64).reshape(-1)
    if pred_score.shape[0] != pred[0].shape[0]:
        raise ValueError(f"display_differences: {pred_score.shape[0]} pred_score "
                         f"for {pred[0].shape[0]} predictions")
    (gt_box, gt_mask, gt_class_id), (pred_box, pred_mask, pred_class_id, pred_score), \
        pred_match, overlaps = _matched_instances(gt, pred, pred_score, iou_threshold,
                                                  score_threshold)
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


def _matched_instances(gt, pred, pred_score, iou_threshold, score_threshold):
    """``metrics.compute_matches`` plus the instances in the order its results use.

    gt: (boxes, masks, class_ids); pred: the same for predictions, scores apart.
    Returns ((gt boxes, masks, class_ids), (pred boxes, masks, class_ids, scores),
    pred_match as int, overlaps [P, G]): padding trimmed, predictions by score.
    """
    (gt_box, gt_mask, gt_class_id), (pred_box, pred_mask, pred_class_id) = gt, pred
    gt_match, pred_match, overlaps = metrics.compute_matches(
        gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask,
        iou_threshold=iou_threshold, score_threshold=score_threshold)
    n_gt, n_pred = len(gt_match), len(pred_match)
    order = np.argsort(-pred_score[:n_pred], kind="stable")
    return ((gt_box[:n_gt], gt_mask[..., :n_gt], gt_class_id[:n_gt]),
            (pred_box[:n_pred][order], pred_mask[..., :n_pred][..., order],
             pred_class_id[:n_pred][order], pred_score[:n_pred][order]),
            pred_match.astype(np.int64), overlaps)


def _caption_iou(overlap_row, match):
    if match > -1:
        return overlap_row[match]
    return overlap_row.max() if overlap_row.size else 0.0


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


############################################################
#  Matterport's debugging plots, kept reachable here
############################################################

_DEBUG_PLOTS = ("draw_boxes", "draw_rois", "plot_precision_recall", "plot_overlaps", "display_table",
                "display_weight_stats", "plot_weight_histograms")


def __getattr__(name):
    # Resolved on first use: debug_plots imports this module for its drawing helpers.
    if name in _DEBUG_PLOTS:
        return getattr(importlib.import_module("mrcnn.debug_plots"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_DEBUG_PLOTS))
