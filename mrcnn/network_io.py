"""Host-side (numpy) pre- and post-processing around the network, for a Config.

- ``resize_for_config``: Matterport's resize of one image with the config's
  settings (training and detection both call it).
- ``mold_inputs``: images -> molded batch, image metas and windows.
- ``anchors_for_shape``: the pyramid anchors of a config for one molded image shape.
- ``unmold_detections``: one image's raw detections -> boxes, class ids, scores and
  full-size masks in original-image pixels.
- ``pad_to_batch``: fill a short last batch by repeating its last item.

Reads Config attributes only; imports no Keras.
"""
import numpy as np

from mrcnn import anchors as anchor_utils
from mrcnn import boxes as box_utils
from mrcnn import images as image_utils
from mrcnn import masks as mask_utils
from mrcnn.layout import DETECTION_BOX, DETECTION_CLASS_ID, DETECTION_SCORE

__all__ = ["resize_for_config", "mold_inputs", "anchors_for_shape", "feature_shapes_for", "unmold_detections",
           "window_to_original", "pad_to_batch"]


def resize_for_config(image, config, rng=None):
    """``images.resize_image`` with the config's IMAGE_* settings.

    Returns (image, window, scale, padding, crop) as ``resize_image``.
    """
    return image_utils.resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE, rng=rng)


def mold_inputs(images, config):
    """Resize, mean-subtract and describe images for the network.

    Returns molded_images [N, H, W, C] float32 (a list of [H, W, C] arrays
    when "pad64"/"none" mode gives the images different shapes), image_metas
    [N, META] and windows [N, (y1, x1, y2, x2)]: the image area inside the padding.
    """
    molded, metas, windows = [], [], []
    for image in images:
        resized, window, scale, _, _ = resize_for_config(image, config)
        molded.append(image_utils.mold_image(resized, config.MEAN_PIXEL))
        metas.append(image_utils.compose_image_meta(
            0, image.shape, resized.shape, window, scale, np.zeros(config.NUM_CLASSES, np.int32)))
        windows.append(window)
    metas = np.stack(metas).astype("float32")
    windows = np.stack(windows)
    if len({m.shape for m in molded}) > 1:
        return [m.astype("float32") for m in molded], metas, windows
    return np.stack(molded).astype("float32"), metas, windows


def anchors_for_shape(config, image_shape):
    """Pixel pyramid anchors [A, (y1, x1, y2, x2)] float64 of a molded image shape.

    Feature-map sizes come from the config's COMPUTE_BACKBONE_SHAPE when set
    (Matterport's contract for a callable BACKBONE), else from BACKBONE_STRIDES
    (``anchors.compute_backbone_shapes``). Normalize with ``boxes.norm_boxes``.
    """
    return anchor_utils.generate_pyramid_anchors(
        config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, feature_shapes_for(config, image_shape),
        config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)


def feature_shapes_for(config, image_shape):
    """int [L, (rows, cols)] feature-map sizes of a molded image shape: the config's
    COMPUTE_BACKBONE_SHAPE when set, else ``anchors.compute_backbone_shapes``."""
    if config.COMPUTE_BACKBONE_SHAPE is not None:
        return np.asarray(config.COMPUTE_BACKBONE_SHAPE(tuple(image_shape)))
    shape = tuple(int(d) for d in image_shape[:2])
    return anchor_utils.compute_backbone_shapes(shape, config.BACKBONE_STRIDES)


def window_to_original(boxes, window, image_shape, original_image_shape):
    """Normalized boxes of the molded image -> pixel boxes of the original image.

    The window (pixels of the real image inside the padding) is normalized like the
    boxes, the boxes are expressed relative to it, then denormalized to the
    original size.
    """
    wy1, wx1, wy2, wx2 = box_utils.norm_boxes(np.asarray(window)[None], image_shape[:2])[0]
    shift = np.array([wy1, wx1, wy1, wx1])
    scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
    return box_utils.denorm_boxes(np.divide(boxes - shift, scale), original_image_shape[:2])


def unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape, window):
    """One image's network output -> boxes, class ids, scores and masks in
    original-image pixels (Matterport's contract).

    detections: [N, (y1, x1, y2, x2, class_id, score)] normalized, zero-padded.
    mrcnn_mask: [N, h, w, num_classes] mask probabilities.
    Returns boxes [n, (y1, x1, y2, x2)] int32, class_ids [n] int32, scores [n]
    float32, masks [H, W, n] bool.
    """
    zero_ix = np.where(detections[:, DETECTION_CLASS_ID] == 0)[0]
    n = zero_ix[0] if zero_ix.shape[0] > 0 else detections.shape[0]
    class_ids = detections[:n, DETECTION_CLASS_ID].astype(np.int32)
    scores = detections[:n, DETECTION_SCORE].astype(np.float32)
    masks = mrcnn_mask[np.arange(n), :, :, class_ids]
    boxes = window_to_original(detections[:n, DETECTION_BOX], window, image_shape, original_image_shape)

    keep = np.where((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0)[0]
    boxes, class_ids, scores, masks = boxes[keep], class_ids[keep], scores[keep], masks[keep]

    full_masks = mask_utils.unmold_masks(masks, boxes, original_image_shape)
    return boxes.astype(np.int32), class_ids, scores, full_masks


def pad_to_batch(items, batch_size):
    """`items` (a non-empty list) filled up to `batch_size` by repeating its last item.

    Why: a compiled predict function is reused only for the batch size it was
    traced with, and Matterport's detect() demanded exactly BATCH_SIZE images; the
    repeats' results are discarded by the caller.
    """
    return list(items) + [items[-1]] * (batch_size - len(items))
