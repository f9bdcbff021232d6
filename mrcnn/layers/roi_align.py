"""PyramidROIAlign: crop every box from the FPN level that fits its size."""
import keras
from keras import ops

from mrcnn import graph_ops
from mrcnn.layers import box_ops

__all__ = ["PyramidROIAlign", "roi_level"]

PYRAMID_LEVELS = (2, 3, 4, 5)


def roi_level(boxes, image_shape):
    """FPN level per box (Feature Pyramid Networks paper, eq. 1, Matterport's constants).

    ``level = clip(4 + round(log2(sqrt(h * w) / (224 / sqrt(H * W)))), 2, 5)``
    with ``h, w`` the normalized box size and ``H, W`` the molded image size, so a
    224-pixel box of the image lands on P4. ``round`` is half-to-even (``tf.round``).
    Zero-area boxes (padding) get level 2.

    Args:
        boxes: float ``[B, N, 4]`` normalized ``(y1, x1, y2, x2)``.
        image_shape: float ``[B, 3]`` (or ``[B, 2]``), molded ``(H, W, ...)`` per image.

    Returns:
        int32 ``[B, N]`` in ``{2, 3, 4, 5}``.
    """
    boxes = ops.cast(boxes, "float32")
    image_shape = ops.cast(image_shape, "float32")
    y1, x1, y2, x2 = box_ops.coordinates(boxes)
    h = y2 - y1
    w = x2 - x1
    image_area = ops.expand_dims(image_shape[:, 0] * image_shape[:, 1], -1)
    # max(., 0) keeps inverted boxes from producing NaN; log(0) = -inf clips to 2.
    size = ops.sqrt(ops.maximum(h * w, 0.0))
    level = ops.log(size / (224.0 / ops.sqrt(image_area))) / ops.log(2.0)
    level = ops.clip(4.0 + ops.round(level), PYRAMID_LEVELS[0], PYRAMID_LEVELS[-1])
    return ops.cast(level, "int32")


def _pair(value, what):
    if isinstance(value, int):
        value = (value, value)
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected an int or (height, width), got {value!r}") from None
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{what}: expected positive (height, width), got {value!r}")
    return pair


@keras.saving.register_keras_serializable(package="mrcnn")
class PyramidROIAlign(keras.layers.Layer):
    """ROI Align on a feature pyramid (Matterport's ``PyramidROIAlign``).

    Each box is assigned a level with :func:`roi_level` (using the molded image
    shape) and sampled from that level with
    ``tf.image.crop_and_resize``: bilinear, one sample per output cell, sample
    ``i`` of ``ph`` at ``y1 + i * (y2 - y1) / (ph - 1)`` in the level's
    ``[0, H_level - 1]`` pixel-centre coordinates, zero outside the map. This
    default (``aligned=False``) has no half-pixel correction, exactly as in
    Matterport, so Matterport-trained heads see the features they were trained on.

    ``aligned=True`` samples the centre of each of the ``ph x pw`` bins instead
    (Detectron2's ``ROIAlign(aligned=True)`` with one sample per bin): the box
    covers image pixels ``[y1 * (H - 1), y2 * (H - 1) + 1)`` (the normalized
    convention of ``norm_boxes``), a level of stride ``s = H / H_level`` maps
    image coordinate ``u`` to feature index ``u / s - 0.5``, and bin ``i``
    samples ``(Y1 + (i + 0.5) * (Y2 - Y1) / ph) / s - 0.5``. Samples outside
    ``[0, H_level - 1]`` read 0 (Detectron2 clamps those within one cell).
    Only for heads trained that way.

    Call: ``[boxes [B, N, 4] normalized, image_shape [B, 3] (the molded image's
    ``[H, W, C]``, the meta's ``image_shape``), P2, P3, P4, P5]``
    (``P_k`` ``[B, H_k, W_k, C]``) -> ``[B, N, ph, pw, C]`` in the order of ``boxes``.
    Zero (padding) boxes are sampled like any other box (from P2).
    No gradient flows into ``boxes``.
    """

    def __init__(self, pool_shape, aligned=False, **kwargs):
        # Boxes and their level assignment need float32 under any mixed policy (a
        # bfloat16 box corner is off by up to 4 px at 1024 px); the pooled
        # features are cast to the next layer's precision by that layer.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        # TensorFlow's kernels group the boxes by level (a data-dependent shape);
        # the portable ops have static shapes and compile under XLA.
        self.supports_jit = not graph_ops.uses_tensorflow_kernels()
        self.pool_shape = _pair(pool_shape, "PyramidROIAlign.pool_shape")
        if not isinstance(aligned, bool):
            raise ValueError(f"PyramidROIAlign.aligned: expected a bool, got {aligned!r}")
        self.aligned = aligned

    def call(self, inputs):
        if len(inputs) != 2 + len(PYRAMID_LEVELS):
            raise ValueError(
                f"PyramidROIAlign: expected [boxes, image_shape, P2, P3, P4, P5], "
                f"got {len(inputs)} inputs")
        boxes, image_shape, *feature_maps = inputs
        boxes = ops.stop_gradient(ops.cast(boxes, "float32"))
        levels = ops.reshape(roi_level(boxes, image_shape) - PYRAMID_LEVELS[0], (-1,))
        num_boxes = boxes.shape[1] if boxes.shape[1] is not None else ops.shape(boxes)[1]
        batch = ops.shape(boxes)[0]
        flat_boxes = ops.reshape(boxes, (-1, 4))
        image_ix = ops.reshape(ops.repeat(ops.arange(batch, dtype="int32"), num_boxes), (-1,))
        if self.aligned:
            feature_hw = ops.stack([ops.shape(f)[1:3] for f in feature_maps])  # [levels, 2]
            flat_boxes = self._bin_centre_boxes(
                flat_boxes, ops.take(image_shape, image_ix, axis=0),
                ops.take(feature_hw, levels, axis=0))
        pooled = graph_ops.pyramid_crop_and_resize(
            feature_maps, flat_boxes, levels, image_ix, self.pool_shape)
        channels = feature_maps[0].shape[-1]
        if channels is None:
            channels = ops.shape(feature_maps[0])[-1]
        pooled = ops.reshape(pooled, (-1, num_boxes, *self.pool_shape, channels))
        return ops.cast(pooled, self.compute_dtype)

    def _bin_centre_boxes(self, boxes, image_shape, feature_shape):
        """crop_and_resize boxes whose first/last samples are the first/last bin centres.

        ``boxes [K, 4]`` normalized, ``image_shape [K, >=2]``, ``feature_shape
        int [K, 2]``: the ``(Hf, Wf)`` of the map each box is cropped from.
        """
        image_shape = ops.cast(image_shape, "float32")
        corners = []
        for axis in (0, 1):
            size = image_shape[:, axis]
            cells = ops.cast(feature_shape[:, axis], "float32")
            start = boxes[:, axis] * (size - 1.0)
            end = boxes[:, axis + 2] * (size - 1.0) + 1.0
            bins = self.pool_shape[axis]
            stride = size / cells
            first = (start + 0.5 * (end - start) / bins) / stride - 0.5
            last = (start + (bins - 0.5) * (end - start) / bins) / stride - 0.5
            # Hf == 1: crop_and_resize then samples the only row whatever the box.
            scale = ops.maximum(cells - 1.0, 1.0)
            corners.append((first / scale, last / scale))
        (y1, y2), (x1, x2) = corners
        return ops.stack([y1, x1, y2, x2], axis=-1)

    def compute_output_shape(self, input_shape):
        boxes_shape, feature_shape = input_shape[0], input_shape[2]
        return (boxes_shape[0], boxes_shape[1], *self.pool_shape, feature_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"pool_shape": list(self.pool_shape), "aligned": self.aligned})
        return config
