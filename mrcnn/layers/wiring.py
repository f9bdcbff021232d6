"""Small graph layers that carry values between the big ones: a batch of constant
anchors (``PyramidAnchors`` builds them from a few numbers), pixel -> normalized ground-truth boxes, the parsed image meta, its
normalized window, the box columns of the detections and the rows padded back after
the mask head.

They replace ``keras.layers.Lambda`` (which does not serialise without unsafe
deserialisation) by registered layers with ``get_config``. They carry boxes, anchors
and image meta, so they compute in float32 under any mixed-precision policy.
"""
import keras
import numpy as np
from keras import ops

from mrcnn import anchors as anchor_utils
from mrcnn import boxes as box_utils
from mrcnn import graph_ops
from mrcnn.layers import box_ops
from mrcnn.layout import DETECTION_BOX, DETECTION_CLASS_ID

__all__ = ["BatchConstant", "PyramidAnchors", "NormalizeBoxes", "ParseImageMeta", "NormalizeWindow",
           "DetectionBoxes", "PadRows"]


class _Float32Layer(keras.layers.Layer):
    """A layer whose dtype defaults to float32 whatever Keras' global policy is."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)


@keras.saving.register_keras_serializable(package="mrcnn")
class BatchConstant(_Float32Layer):
    """Repeats a constant array along a batch dimension taken from `reference`.

    Holds the training anchors: they depend only on IMAGE_SHAPE, so they are a
    constant of the graph rather than an input (and not a weight, so they stay
    out of weight files).

    Call: ``reference [B, ...]`` -> ``float32 [B, *value.shape]``.
    """

    def __init__(self, value, **kwargs):
        super().__init__(**kwargs)
        self.value = np.asarray(value, dtype="float32")

    def call(self, reference):
        batch = ops.shape(reference)[0]
        value = ops.convert_to_tensor(self.value)
        return ops.broadcast_to(value[None], (batch,) + self.value.shape)

    def compute_output_shape(self, reference_shape):
        return (reference_shape[0],) + self.value.shape

    def get_config(self):
        return {**super().get_config(), "value": self.value.tolist()}


@keras.saving.register_keras_serializable(package="mrcnn")
class PyramidAnchors(BatchConstant):
    """The training graph's anchors: the normalized pyramid anchors of a fixed
    image size, repeated per batch item (as ``BatchConstant``).

    Its config holds the few numbers the anchors come from (feature_shapes:
    [L, (rows, cols)] of the levels), not the [A, 4] array, so a saved training
    model stays small and reloads without unsafe deserialisation; the array is rebuilt with the host code (``anchors``,
    ``boxes.norm_boxes``), so it equals ``MaskRCNN.get_anchors(image_shape)``.

    Call: ``reference [B, ...]`` -> ``float32 [B, A, 4]``.
    """

    def __init__(self, image_shape, scales, ratios, feature_shapes, feature_strides, anchor_stride,
                 **kwargs):
        self.anchor_args = {"image_shape": [int(d) for d in image_shape[:2]],
                            "scales": [float(v) for v in scales],
                            "ratios": [float(v) for v in ratios],
                            "feature_shapes": [[int(d) for d in hw] for hw in feature_shapes],
                            "feature_strides": [int(v) for v in feature_strides],
                            "anchor_stride": int(anchor_stride)}
        pixel = anchor_utils.generate_pyramid_anchors(
            scales, ratios, np.asarray(self.anchor_args["feature_shapes"]), feature_strides,
            anchor_stride)
        super().__init__(box_utils.norm_boxes(pixel, self.anchor_args["image_shape"]), **kwargs)

    def get_config(self):
        config = keras.layers.Layer.get_config(self)
        return {**config, **self.anchor_args}


@keras.saving.register_keras_serializable(package="mrcnn")
class NormalizeBoxes(_Float32Layer):
    """Pixel boxes -> normalized boxes of the image they belong to.

    Call: ``(boxes [B, N, 4] pixels, image [B, H, W, C])`` -> ``float32 [B, N, 4]``.
    """

    def call(self, boxes, image):
        shape = ops.shape(image)[1:3]
        return box_ops.norm_boxes(boxes, shape)

    def compute_output_shape(self, boxes_shape, image_shape):
        return tuple(boxes_shape)


@keras.saving.register_keras_serializable(package="mrcnn")
class ParseImageMeta(_Float32Layer):
    """Image meta ``[B, M]`` -> dict of its parts (``box_ops.parse_image_meta``).

    The graph parses the meta once, here, and hands the parts to the layers that
    need them.
    """

    def call(self, image_meta):
        return box_ops.parse_image_meta(ops.cast(image_meta, "float32"))

    def compute_output_spec(self, image_meta):
        parts = box_ops.parse_image_meta(
            keras.KerasTensor((1, image_meta.shape[1]), "float32"))
        return {name: keras.KerasTensor((image_meta.shape[0],) + tuple(part.shape[1:]), "float32")
                for name, part in parts.items()}


@keras.saving.register_keras_serializable(package="mrcnn")
class NormalizeWindow(_Float32Layer):
    """The meta's pixel window, normalized in the molded image: what
    ``DetectionLayer`` clips boxes to.

    Call: ``(window [B, 4] pixels, image_shape [B, 3])`` -> ``float32 [B, 4]``.
    """

    def call(self, window, image_shape):
        return box_ops.norm_boxes(window, image_shape[:, :2])

    def compute_output_shape(self, window_shape, image_shape_shape):
        return tuple(window_shape)


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionBoxes(_Float32Layer):
    """The box columns of ``DetectionLayer``'s output, ``[B, N, 6]`` -> ``[B, n, 4]``:
    the first n rows, n = the most detections of any image in the batch (>= 1), where
    shapes may be dynamic (TensorFlow's kernels); all N rows where they must be static
    (JAX, TFLite exports). An image's detections come first, zero rows after.

    Why: the mask head runs on these boxes, ~1 GFLOP each (4 convolutions at 14x14),
    most of an inference call's work when it runs on all ``DETECTION_MAX_INSTANCES``
    rows. A trained model at a 0.7 score floor finds a few objects per image, so
    running it on the detections alone saves most of that; ``PadRows`` restores the
    N rows afterwards (zero masks past the detections).
    """

    def call(self, detections):
        boxes = detections[..., DETECTION_BOX]
        return boxes[:, :graph_ops.leading_rows(detections[..., DETECTION_CLASS_ID], boxes.shape[1])]

    def compute_output_shape(self, detections_shape):
        return (detections_shape[0], None, 4)


@keras.saving.register_keras_serializable(package="mrcnn")
class PadRows(_Float32Layer):
    """``[B, n, ...]`` -> ``[B, num_rows, ...]`` with zero rows appended (n <= num_rows):
    gives the inference graph's mask output its fixed ``DETECTION_MAX_INSTANCES`` rows
    after ``DetectionBoxes`` cut them."""

    def __init__(self, num_rows, **kwargs):
        super().__init__(**kwargs)
        if int(num_rows) < 1:
            raise ValueError(f"PadRows: num_rows must be >= 1, got {num_rows!r}")
        self.num_rows = int(num_rows)

    def call(self, rows):
        missing = self.num_rows - ops.shape(rows)[1]
        return ops.pad(rows, [[0, 0], [0, missing]] + [[0, 0]] * (len(rows.shape) - 2))

    def compute_output_shape(self, rows_shape):
        return (rows_shape[0], self.num_rows) + tuple(rows_shape[2:])

    def get_config(self):
        return {**super().get_config(), "num_rows": self.num_rows}
