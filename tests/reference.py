"""Slow, obvious numpy/python-loop references for the graph layers' tests.

Written from the published definitions (Matterport's numpy utils, the
``tf.image.crop_and_resize`` and ``tf.image.non_max_suppression`` docs), with
no import from ``mrcnn``. Boxes are ``(y1, x1, y2, x2)``.
"""
import json
import math
import os

import numpy as np

# Layer names and HDF5 layout of Matterport's published weight files (from
# ../shared/reference, read from the files' headers; no weights): kept in the
# repository so that the compatibility tests run on any clone.
MATTERPORT_FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def matterport_file_facts(name):
    """The parsed JSON `name` of tests/data: "matterport_coco_h5_layout.json" (the
    weighted layers of mask_rcnn_coco.h5 with weight names and shapes) or
    "matterport_h5_layer_names.json" (layer names of the three public files)."""
    with open(os.path.join(MATTERPORT_FILES, name)) as f:
        return json.load(f)


def mask_iou(a, b):
    """IoU of two boolean masks of one size; 1 when both are empty (they are equal)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def iou(a, b):
    """IoU of two boxes; 0 when the union is empty."""
    inter_h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_h * inter_w
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def iou_matrix(boxes1, boxes2):
    """``[N1, N2]`` IoU by a double loop."""
    out = np.zeros((len(boxes1), len(boxes2)))
    for i, a in enumerate(boxes1):
        for j, b in enumerate(boxes2):
            out[i, j] = iou(a, b)
    return out


def _nms_iou(a, b):
    """IoU as the TF NMS kernel sees it: 0 if either box has no area."""
    if (a[2] - a[0]) * (a[3] - a[1]) <= 0 or (b[2] - b[0]) * (b[3] - b[1]) <= 0:
        return 0.0
    return iou(a, b)


def greedy_nms(boxes, scores, max_output_size, iou_threshold):
    """Greedy NMS: visit by descending score (ties: lower index first), keep a box
    unless a kept box has IoU > threshold with it. Returns kept indices."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if len(keep) == max_output_size:
            break
        if all(_nms_iou(boxes[i], boxes[k]) <= iou_threshold for k in keep):
            keep.append(i)
    return keep


def apply_box_deltas(box, delta):
    """One box refined by ``(dy, dx, log dh, log dw)``."""
    h, w = box[2] - box[0], box[3] - box[1]
    cy, cx = box[0] + 0.5 * h + delta[0] * h, box[1] + 0.5 * w + delta[1] * w
    h, w = h * math.exp(delta[2]), w * math.exp(delta[3])
    return [cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w]


def box_refinement(box, gt):
    """Deltas that move ``box`` onto ``gt``."""
    h, w = box[2] - box[0], box[3] - box[1]
    gh, gw = gt[2] - gt[0], gt[3] - gt[1]
    return [((gt[0] + 0.5 * gh) - (box[0] + 0.5 * h)) / h,
            ((gt[1] + 0.5 * gw) - (box[1] + 0.5 * w)) / w,
            math.log(gh / h), math.log(gw / w)]


def clip_box(box, window):
    """Clamp y coordinates to ``[wy1, wy2]`` and x to ``[wx1, wx2]``."""
    lo = [window[0], window[1], window[0], window[1]]
    hi = [window[2], window[3], window[2], window[3]]
    return [min(max(v, l), h) for v, l, h in zip(box, lo, hi)]


def norm_box(box, height, width):
    """Pixel box (exclusive y2/x2) to normalized coordinates."""
    return [box[0] / (height - 1), box[1] / (width - 1),
            (box[2] - 1) / (height - 1), (box[3] - 1) / (width - 1)]


def bilinear_sample(image, y, x):
    """Value of ``image [H, W, C]`` at real position (y, x) by bilinear interpolation,
    or zeros outside ``[0, H-1] x [0, W-1]``."""
    H, W = image.shape[:2]
    if y < 0 or y > H - 1 or x < 0 or x > W - 1:
        return np.zeros(image.shape[2])
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    y1, x1 = int(math.ceil(y)), int(math.ceil(x))
    fy, fx = y - y0, x - x0
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def crop_and_resize(images, boxes, box_indices, crop_size):
    """``tf.image.crop_and_resize`` by loops: output pixel (i, j) of a box samples
    row ``y1*(H-1) + i*(y2-y1)*(H-1)/(ch-1)`` (the box centre if ch == 1)."""
    ch, cw = crop_size
    out = np.zeros((len(boxes), ch, cw, images.shape[3]))
    for k, (box, b) in enumerate(zip(boxes, box_indices)):
        image = images[b]
        H, W = image.shape[:2]
        for i in range(ch):
            y = (box[0] * (H - 1) + i * (box[2] - box[0]) * (H - 1) / (ch - 1)
                 if ch > 1 else 0.5 * (box[0] + box[2]) * (H - 1))
            for j in range(cw):
                x = (box[1] * (W - 1) + j * (box[3] - box[1]) * (W - 1) / (cw - 1)
                     if cw > 1 else 0.5 * (box[1] + box[3]) * (W - 1))
                out[k, i, j] = bilinear_sample(image, y, x)
    return out


def aligned_roi_align(feature_map, box, image_height, image_width, pool_shape):
    """Bin-centre ROI Align of one normalized box on ``feature_map [Hf, Wf, C]``.

    The box covers image pixels [y1 (H-1), y2 (H-1) + 1); a cell of stride
    H / Hf has its centre at index k, image coordinate (k + 0.5) * stride."""
    Hf, Wf = feature_map.shape[:2]
    top, left = box[0] * (image_height - 1), box[1] * (image_width - 1)
    bottom, right = box[2] * (image_height - 1) + 1, box[3] * (image_width - 1) + 1
    ph, pw = pool_shape
    out = np.zeros((ph, pw, feature_map.shape[2]))
    for i in range(ph):
        y = (top + (i + 0.5) * (bottom - top) / ph) / (image_height / Hf) - 0.5
        for j in range(pw):
            x = (left + (j + 0.5) * (right - left) / pw) / (image_width / Wf) - 0.5
            out[i, j] = bilinear_sample(feature_map, y, x)
    return out


def fpn_level(box, image_height, image_width):
    """FPN level of a normalized box: 4 + round(log2(sqrt(hw) / (224 / sqrt(HW)))),
    clamped to [2, 5]; round half to even like numpy/TF."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    if area <= 0:
        return 2
    k = math.log2(math.sqrt(area) / (224.0 / math.sqrt(image_height * image_width)))
    return int(min(5, max(2, 4 + np.round(k))))


def proposals(rpn_probs, rpn_bbox, anchors, proposal_count, nms_threshold,
              pre_nms_limit, std_dev):
    """One image's ProposalLayer: ``[proposal_count, 4]``."""
    scores = rpn_probs[:, 1]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[:pre_nms_limit]
    boxes = [clip_box(apply_box_deltas(anchors[i], rpn_bbox[i] * std_dev), [0, 0, 1, 1])
             for i in order]
    keep = greedy_nms(boxes, [scores[i] for i in order], proposal_count, nms_threshold)
    out = np.zeros((proposal_count, 4))
    for row, k in enumerate(keep):
        out[row] = boxes[k]
    return out


def detections(rois, probs, bbox, window, max_instances, min_confidence,
               nms_threshold, std_dev):
    """One image's DetectionLayer (``window`` normalized): ``[max_instances, 6]``."""
    candidates = []
    for i in range(len(rois)):
        c = int(np.argmax(probs[i]))
        score = probs[i, c]
        if c == 0 or (min_confidence and score < min_confidence):
            continue
        box = clip_box(apply_box_deltas(rois[i], bbox[i, c] * std_dev), window)
        candidates.append((box, c, score))
    kept = []
    for c in sorted({cand[1] for cand in candidates}):
        same = [cand for cand in candidates if cand[1] == c]
        keep = greedy_nms([s[0] for s in same], [s[2] for s in same], max_instances,
                          nms_threshold)
        kept += [same[k] for k in keep]
    kept.sort(key=lambda cand: -cand[2])
    out = np.zeros((max_instances, 6))
    for row, (box, c, score) in enumerate(kept[:max_instances]):
        out[row] = [*box, c, score]
    return out


def functional_predict(layer, arrays, dynamic_axes=()):
    """Run ``layer`` inside a Keras Functional model whose batch size is unknown
    (``None``), via ``model.predict`` (a compiled ``tf.function``).

    ``dynamic_axes`` lists ``(input_index, axis)`` pairs also declared ``None``.
    """
    import keras

    inputs = []
    for n, array in enumerate(arrays):
        shape = [None if (n, axis) in dynamic_axes else size
                 for axis, size in enumerate(array.shape[1:], start=1)]
        inputs.append(keras.Input(shape=tuple(shape), dtype=str(array.dtype)))
    outputs = layer(inputs)
    model = keras.Model(inputs, outputs)
    assert all(t.shape[0] is None for t in keras.tree.flatten(outputs))
    return model.predict(list(arrays), batch_size=len(arrays[0]), verbose=0)
