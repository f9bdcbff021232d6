"""Matterport's debugging and analysis plots: anchors and proposals (``draw_boxes``),
ROI training targets (``draw_rois``), precision/recall and overlap grids, tables,
and the weight table and histograms.

Each is also reachable as ``mrcnn.visualize.<name>``, as in Matterport's notebooks.
Headless behaviour, ``save_path`` and return values follow ``mrcnn.visualize``;
the statistics behind the weight table are ``mrcnn.weight_stats``'.
"""
import itertools

import numpy as np
import matplotlib
import matplotlib.pyplot as plt
from matplotlib import lines

from mrcnn import weight_stats as stats
from mrcnn.masks import unmold_mask
from mrcnn.visualize import (add_mask_outline, apply_mask, as_rgb_uint8, box_rectangle,
                             finish_figure, new_axes, random_colors)

# Layer types whose kernels plot_weight_histograms draws (Matterport's notebook).
_HISTOGRAM_LAYER_TYPES = ("Conv2D", "Dense", "Conv2DTranspose")


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

    fig, ax, owns = new_axes(ax, (12, 12))
    colors = random_colors(N)
    margin = image.shape[0] // 10
    ax.set_ylim(image.shape[0] + margin, -margin)
    ax.set_xlim(-margin, image.shape[1] + margin)
    ax.axis("off")
    ax.set_title(title)

    masked_image = as_rgb_uint8(image, "draw_boxes")
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
            ax.add_patch(box_rectangle(boxes[i], linewidth=2, alpha=alpha, linestyle=style,
                                        edgecolor=color, facecolor="none"))
            anchor = boxes[i][:2]
        if refined_boxes is not None and visibility > 0:
            ax.add_patch(box_rectangle(refined_boxes[i], linewidth=2, edgecolor=color,
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
            masked_image = apply_mask(masked_image, mask, matplotlib.colors.to_rgb(color))
            add_mask_outline(ax, mask, color)
    ax.imshow(masked_image)
    finish_figure(fig, save_path, owns)
    return ax


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

    masked_image = as_rgb_uint8(image, "draw_rois")
    for i in ids:
        color = tuple(rng.random(3))
        class_id = int(class_ids[i])
        y1, x1 = rois[i][:2]
        ax.add_patch(box_rectangle(rois[i], linewidth=2, linestyle="dashed", facecolor="none",
                                    edgecolor=color if class_id else "gray"))
        if class_id:
            ry1, rx1 = refined_rois[i][:2]
            ax.add_patch(box_rectangle(refined_rois[i], linewidth=2, edgecolor=color,
                                        facecolor="none"))
            ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))
            ax.text(rx1, ry1 + 8, class_names[class_id], color="w", size=11,
                    backgroundcolor="none")
            full_mask = unmold_mask(mask[i], rois[i], image.shape)
            masked_image = apply_mask(masked_image, full_mask, color)
    ax.imshow(masked_image)

    positives = int(np.sum(class_ids > 0))
    print("Positive ROIs: ", positives)
    print("Negative ROIs: ", int(np.sum(class_ids == 0)))
    if n:
        print("Positive Ratio: {:.2f}".format(positives / n))
    finish_figure(fig, save_path, owns_figure=True)
    return fig




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
    finish_figure(fig, save_path, owns_figure=True)
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
    finish_figure(fig, save_path, owns_figure=True)
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


def display_weight_stats(rows_or_model, save_path=None):
    """Table of weight name, shape, min, max, std and alerts ("dead?", "overflow?").

    Args:
        rows_or_model: a keras model / ``MaskRCNN`` wrapper (statistics from
            ``mrcnn.weight_stats.weight_stats``), its ``WeightStats`` rows, or
            precomputed rows: dicts with keys name, shape, min, max, std or
            5-sequences in that order. The alerts follow ``weight_stats``' rules.
        save_path: also render the table to an image there.

    Returns:
        The plain-text table (str).
    """
    if hasattr(rows_or_model, "layers") or hasattr(rows_or_model, "keras_model"):
        rows_or_model = stats.weight_stats(rows_or_model)
    rows = [r if isinstance(r, stats.WeightStats) else _stats_of_precomputed(r)
            for r in rows_or_model]
    table = [["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD", "ALERT"]]
    for r in rows:
        shape = r.shape if isinstance(r.shape, str) else str(tuple(r.shape))
        table.append([r.name, shape, "{:+9.4f}".format(r.min), "{:+10.4f}".format(r.max),
                      "{:+9.4f}".format(r.std), " ".join(r.flags)])
    return display_table(table, save_path=save_path)


_PRECOMPUTED_FIELDS = ("name", "shape", "min", "max", "std")


def _stats_of_precomputed(row):
    if not isinstance(row, dict):
        if len(row) < len(_PRECOMPUTED_FIELDS):
            raise ValueError(f"display_weight_stats: a row needs (name, shape, min, max, std), "
                             f"got {row!r}")
        row = dict(zip(_PRECOMPUTED_FIELDS, row))
    missing = set(_PRECOMPUTED_FIELDS) - set(row)
    if missing:
        raise ValueError(f"display_weight_stats: row {row!r} lacks {sorted(missing)}")
    return stats.summary_stats(*(row[k] for k in _PRECOMPUTED_FIELDS))


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
    layers = list(stats.leaf_layers(model, _HISTOGRAM_LAYER_TYPES))
    if max_layers is not None:
        layers = layers[:max_layers]
    if not layers:
        raise ValueError("plot_weight_histograms: the model has no Conv2D, Dense or "
                         "Conv2DTranspose layers")
    ncols = max(len(layer.weights) for layer in layers)
    fig, axes = plt.subplots(len(layers), ncols, figsize=(10, 3 * len(layers)),
                             gridspec_kw={"hspace": 1}, squeeze=False)
    for row, layer in enumerate(layers):
        for col in range(ncols):
            axes[row, col].axis("off")
        for col, var in enumerate(layer.weights):
            ax = axes[row, col]
            ax.axis("on")
            ax.set_title(getattr(var, "path", None) or var.name, fontsize=9)
            ax.hist(np.asarray(var.numpy()).ravel(), bins)
    finish_figure(fig, save_path, owns_figure=True)
    return fig
