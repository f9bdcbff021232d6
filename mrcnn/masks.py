"""Host-side (numpy) instance-mask helpers: resizing, mini masks, overlaps and COCO RLE.

Conventions (see docs/DESIGN.md):
- Instance masks are bool ``[H, W, N]`` (instances last); a single mask is ``[H, W]``.
- Boxes are pixel boxes ``(y1, x1, y2, x2)`` with y2/x2 exclusive.
- RLE dicts are COCO's: ``{"size": [h, w], "counts": str}`` (compressed) or
  ``{"size": [h, w], "counts": [int, ...]}`` (uncompressed). All encoding and decoding
  goes through ``pycocotools.mask``; there is no hand-written codec here.
"""
import warnings
from numbers import Number

import numpy as np
import scipy.ndimage
from pycocotools import mask as mask_utils

from mrcnn.resize import bilinear_resize

__all__ = [
    "mask_to_rle",
    "rle_to_mask",
    "segmentation_to_mask",
    "resize_mask",
    "minimize_mask",
    "expand_mask",
    "unmold_mask",
    "unmold_masks",
    "compute_overlaps_masks",
]

# A polygon needs at least 3 (x, y) points to enclose any area.
_MIN_POLYGON_COORDS = 6


############################################################
#  COCO run-length encoding
############################################################

def mask_to_rle(mask):
    """Encodes one binary mask as a compressed COCO RLE.

    mask: [H, W] bool (or 0/1 numeric; any non-zero value counts as foreground).

    Returns: {"size": [H, W], "counts": str}. ``counts`` is a str (not bytes) so the
    result can be written with ``json.dump`` directly.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(
            f"mask_to_rle: mask must be 2-D [H, W], got shape {mask.shape}")
    # pycocotools reads the buffer column-major and only accepts uint8.
    rle = mask_utils.encode(np.asfortranarray(mask != 0, dtype=np.uint8))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle):
    """Decodes a COCO RLE dict to a bool mask.

    rle: {"size": [H, W], "counts": ...} where counts is a compressed str/bytes or an
        uncompressed list of run lengths (starting with a background run).

    Returns: [H, W] bool.
    """
    size = _rle_size(rle, "rle_to_mask")
    counts = rle["counts"]
    if isinstance(counts, (list, tuple, np.ndarray)):
        total = int(np.sum(counts)) if len(counts) else 0
        if total != size[0] * size[1]:
            raise ValueError(
                f"rle_to_mask: uncompressed counts sum to {total}, expected "
                f"size {size[0]}x{size[1]} = {size[0] * size[1]}")
        compressed = mask_utils.frPyObjects(
            {"size": list(size), "counts": [int(c) for c in counts]}, size[0], size[1])
    elif isinstance(counts, (str, bytes)):
        if isinstance(counts, str):
            counts = counts.encode("ascii")
        compressed = {"size": list(size), "counts": counts}
    else:
        raise ValueError(
            f"rle_to_mask: 'counts' must be str, bytes or a list of ints, "
            f"got {type(counts).__name__}")
    return _decode(compressed)


def segmentation_to_mask(segm, height, width):
    """Rasterizes a COCO ``segmentation`` field to a bool mask.

    segm: one of
        - a list of polygons, each a flat list ``[x0, y0, x1, y1, ...]`` (COCO's format);
          a single flat list of numbers is accepted as one polygon. Polygons with fewer
          than 3 points (6 coordinates) cannot enclose area and are skipped, so a
          segmentation made only of such polygons (or an empty list) gives an empty mask.
        - a compressed RLE dict (counts str/bytes) or an uncompressed RLE dict
          (counts list, as used for COCO crowd annotations).
    height, width: size of the image the segmentation belongs to.

    Returns: [height, width] bool.
    """
    height, width = int(height), int(width)
    if isinstance(segm, dict):
        size = _rle_size(segm, "segmentation_to_mask")
        if size != (height, width):
            raise ValueError(
                f"segmentation_to_mask: RLE size {list(size)} does not match the image "
                f"size [{height}, {width}]")
        return rle_to_mask(segm)
    if not isinstance(segm, (list, tuple, np.ndarray)):
        raise ValueError(
            "segmentation_to_mask: expected a list of polygons or an RLE dict, "
            f"got {type(segm).__name__}")
    polygons = _valid_polygons(segm)
    if not polygons:
        return np.zeros((height, width), dtype=bool)
    rles = mask_utils.frPyObjects(polygons, height, width)
    return _decode(mask_utils.merge(rles))


def _decode(rle):
    """pycocotools decode of one compressed RLE to [H, W] bool.

    pycocotools 2.0.x emits a numpy-2 DeprecationWarning about ``__array__(copy=...)``
    from inside its decoder on every call; it is not actionable here, so it is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="__array__ implementation", category=DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def _rle_size(rle, caller):
    """Validates an RLE dict's keys and returns its size as an (h, w) int tuple."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"{caller}: RLE must be a dict with 'size' and 'counts' keys")
    size = tuple(int(s) for s in rle["size"])
    if len(size) != 2 or min(size) < 0:
        raise ValueError(f"{caller}: RLE 'size' must be [height, width], got {rle['size']}")
    return size


def _valid_polygons(segm):
    """Returns the polygons of ``segm`` that enclose area, as lists of floats."""
    if len(segm) and isinstance(segm[0], Number):
        segm = [segm]
    polygons = []
    for i, poly in enumerate(segm):
        poly = np.asarray(poly, dtype=np.float64).ravel()
        if poly.size % 2:
            raise ValueError(
                f"segmentation_to_mask: polygon {i} has an odd number of coordinates "
                f"({poly.size}); expected [x0, y0, x1, y1, ...]")
        # Shorter polygons are degenerate. Length 4 must also be dropped because
        # frPyObjects would misread it as an [x, y, w, h] box.
        if poly.size >= _MIN_POLYGON_COORDS:
            polygons.append(poly.tolist())
    return polygons


############################################################
#  Resizing and mini masks
############################################################

def resize_mask(mask, scale, padding, crop=None):
    """Resizes masks with the scale/padding/crop that ``resize_image`` returned.

    mask: [H, W, N] masks.
    scale: float zoom factor applied to height and width.
    padding: [(top, bottom), (left, right), (0, 0)] zero padding added after scaling.
    crop: optional (y, x, h, w); when given, the scaled mask is cropped instead of padded.

    Returns: the resized [H', W', N] mask, same dtype as the input.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"resize_mask: mask must be [H, W, N], got shape {mask.shape}")
    # Nearest-neighbour keeps the masks binary. scipy warns about output-shape rounding
    # in some versions; the rounding is what resize_image does too, so it is harmless.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mask = scipy.ndimage.zoom(mask, zoom=[scale, scale, 1], order=0)
    if crop is not None:
        y, x, h, w = crop
        return mask[y:y + h, x:x + w]
    return np.pad(mask, padding, mode="constant", constant_values=0)


def minimize_mask(bbox, mask, mini_shape):
    """Crops each mask to its box and resizes it to ``mini_shape`` (memory saving).

    bbox: [N, (y1, x1, y2, x2)] pixel boxes (e.g. from ``extract_bboxes``).
    mask: [H, W, N] masks.
    mini_shape: (h, w) of the mini masks, e.g. (56, 56).

    Returns: [h, w, N] bool mini masks. Raises ValueError for a box of zero area
    (an instance whose mask is empty has nothing to minimize).
    """
    mini_shape = tuple(int(s) for s in mini_shape)
    mini_mask = np.zeros(mini_shape + (mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = (int(v) for v in bbox[i][:4])
        m = mask[y1:y2, x1:x2, i]
        if m.size == 0:
            raise ValueError(
                f"minimize_mask: box {i} {[y1, x1, y2, x2]} has zero area inside the "
                f"mask of shape {mask.shape[:2]}")
        mini_mask[:, :, i] = _resize_binary(m, mini_shape)
    return mini_mask


def expand_mask(bbox, mini_mask, image_shape):
    """Inverse of ``minimize_mask``: pastes each mini mask back into its box.

    bbox: [N, (y1, x1, y2, x2)] pixel boxes.
    mini_mask: [h, w, N] mini masks.
    image_shape: (H, W[, C]) of the full image.

    Returns: [H, W, N] bool masks. A zero-area box yields an empty mask.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    mask = np.zeros((height, width, mini_mask.shape[-1]), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = (int(v) for v in bbox[i][:4])
        if y2 <= y1 or x2 <= x1:
            continue
        mask[y1:y2, x1:x2, i] = _resize_binary(mini_mask[:, :, i], (y2 - y1, x2 - x1))
    return mask


def unmold_mask(mask, bbox, image_shape):
    """Turns a network mask (e.g. 28x28 sigmoid output) into a full-image binary mask.

    mask: [h, w] float in [0, 1], the mask predicted for the box.
    bbox: (y1, x1, y2, x2) pixel box in the full image.
    image_shape: (H, W[, C]) of the full image.

    Returns: [H, W] bool, True where the bilinearly resized mask is >= 0.5. Parts of the
    box outside the image are dropped; a zero-area box gives an empty mask.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    full_mask = np.zeros((height, width), dtype=bool)
    pasted = _box_part(mask, bbox, height, width)
    if pasted is not None:
        full_mask[pasted[0]] = pasted[1]
    return full_mask


def unmold_masks(masks, boxes, image_shape):
    """``unmold_mask`` of each of `masks` [n, h, w] in its box of `boxes` [n, 4]:
    [H, W, n] bool. Each box is written straight into the result (stacking n full-image
    masks instead cost ~80 ms for 100 detections on a 500x375 image)."""
    height, width = int(image_shape[0]), int(image_shape[1])
    full_masks = np.zeros((height, width, len(masks)), dtype=bool)
    for i, (mask, bbox) in enumerate(zip(masks, boxes)):
        pasted = _box_part(mask, bbox, height, width)
        if pasted is not None:
            full_masks[pasted[0] + (i,)] = pasted[1]
    return full_masks


def _box_part(mask, bbox, height, width):
    """`mask` resized to `bbox` and thresholded at 0.5, cut to the image: ((row slice,
    column slice) in the image, bool part), or None where nothing of it lies inside."""
    y1, x1, y2, x2 = (int(round(v)) for v in bbox[:4])
    if y2 <= y1 or x2 <= x1:
        return None
    top, left = max(y1, 0), max(x1, 0)
    bottom, right = min(y2, height), min(x2, width)
    if bottom <= top or right <= left:
        return None
    box_mask = bilinear_resize(np.asarray(mask, dtype=np.float32), (y2 - y1, x2 - x1)) >= 0.5
    return (slice(top, bottom), slice(left, right)), box_mask[top - y1:bottom - y1, left - x1:right - x1]


def _resize_binary(mask, output_shape):
    """Bilinear resize of a binary mask, then rounding back to bool.

    skimage refuses to interpolate bool arrays, so the mask goes through float32.
    ``> 0.5`` equals Matterport's ``np.around`` (which rounds 0.5 down to 0).
    """
    return bilinear_resize(mask.astype(np.float32), output_shape) > 0.5


############################################################
#  Overlaps
############################################################

def compute_overlaps_masks(masks1, masks2):
    """IoU between every pair of masks of two sets.

    masks1: [H, W, N1], masks2: [H, W, N2]; bool, or float thresholded at 0.5.

    Returns: [N1, N2] float IoU. A pair whose union is empty (both masks empty) has IoU 0,
    as in pycocotools. Either set may have zero instances.
    """
    masks1 = np.asarray(masks1)
    masks2 = np.asarray(masks2)
    n1, n2 = masks1.shape[-1], masks2.shape[-1]
    if n1 == 0 or n2 == 0:
        return np.zeros((n1, n2))
    if masks1.shape[:-1] != masks2.shape[:-1]:
        raise ValueError(
            f"compute_overlaps_masks: mask sizes differ: {masks1.shape[:-1]} vs "
            f"{masks2.shape[:-1]}")
    flat1 = np.reshape(masks1 > 0.5, (-1, n1)).astype(np.float32)
    flat2 = np.reshape(masks2 > 0.5, (-1, n2)).astype(np.float32)
    area1 = flat1.sum(axis=0)
    area2 = flat2.sum(axis=0)
    intersections = flat1.T @ flat2
    union = area1[:, None] + area2[None, :] - intersections
    return np.divide(intersections, union, out=np.zeros_like(union), where=union > 0)
