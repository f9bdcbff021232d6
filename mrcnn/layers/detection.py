"""DetectionLayer: refined, filtered, per-class NMS'd final detections."""
import keras
from keras import ops

from mrcnn import graph_ops
from mrcnn.layers import box_ops
from mrcnn.layout import DETECTION_ROW_SIZE

__all__ = ["DetectionLayer"]


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionLayer(keras.layers.Layer):
    """Turn classifier-head outputs into at most ``max_instances`` detections per image.

    Per image, as Matterport's ``refine_detections_graph``: take each ROI's
    argmax class and its score, refine the ROI with that class's deltas
    ``* bbox_std_dev``, clip it to the image window (normalized), drop background and ``score < min_confidence`` (no score filter
    when ``min_confidence`` is 0), NMS within each class at ``nms_threshold``,
    keep the ``max_instances`` highest scores.

    Call: ``[rois [B, N, 4] normalized, mrcnn_class [B, N, C] probabilities,
    mrcnn_bbox [B, N, C, 4] deltas, window [B, 4] normalized (the image inside the
    padding)]`` ->
    ``[B, max_instances, (y1, x1, y2, x2, class_id, score)]`` float32, boxes
    normalized, sorted by descending score, zero rows at the end.
    """

    def __init__(self, max_instances, min_confidence, nms_threshold,
                 bbox_std_dev, **kwargs):
        # Scores, delta decoding, NMS and image meta need float32 under any mixed policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        # TensorFlow's NMS/crop kernels are not XLA-compilable; the portable ops are.
        self.supports_jit = not graph_ops.uses_tensorflow_kernels()
        if int(max_instances) < 1:
            raise ValueError(f"DetectionLayer: max_instances must be >= 1, got {max_instances!r}")
        if not 0.0 <= float(min_confidence) <= 1.0:
            raise ValueError(f"DetectionLayer: min_confidence must be in [0, 1], "
                             f"got {min_confidence!r}")
        if not 0.0 <= float(nms_threshold) <= 1.0:
            raise ValueError(f"DetectionLayer: nms_threshold must be in [0, 1], "
                             f"got {nms_threshold!r}")
        self.max_instances = int(max_instances)
        self.min_confidence = float(min_confidence)
        self.nms_threshold = float(nms_threshold)
        self.bbox_std_dev = box_ops.as_std_dev(bbox_std_dev, "DetectionLayer.bbox_std_dev")

    def call(self, inputs):
        rois, mrcnn_class, mrcnn_bbox, window = inputs
        rois = ops.cast(rois, "float32")
        probs = ops.cast(mrcnn_class, "float32")

        class_ids = graph_ops.argmax_last_axis(probs)
        scores = ops.take_along_axis(probs, class_ids[..., None], axis=-1)[..., 0]
        deltas = ops.take_along_axis(
            ops.cast(mrcnn_bbox, "float32"), class_ids[..., None, None], axis=2)[:, :, 0]
        std = ops.convert_to_tensor(self.bbox_std_dev, "float32")
        boxes = box_ops.clip_boxes(box_ops.apply_box_deltas(rois, deltas * std), window)

        # Background rows get a negative score, below any min_confidence.
        scores = ops.where(class_ids > 0, scores, -1.0)
        num_classes = probs.shape[-1] if probs.shape[-1] is not None else ops.shape(probs)[-1]
        boxes, scores, class_ids, _ = graph_ops.per_class_non_max_suppression(
            boxes, scores, class_ids, num_classes, self.max_instances,
            self.nms_threshold, self.min_confidence)
        # The columns of mrcnn.layout's detection row, in order.
        return ops.concatenate(
            [boxes, ops.cast(class_ids, "float32")[..., None], scores[..., None]], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.max_instances, DETECTION_ROW_SIZE)

    def get_config(self):
        config = super().get_config()
        config.update({
            "max_instances": self.max_instances,
            "min_confidence": self.min_confidence,
            "nms_threshold": self.nms_threshold,
            "bbox_std_dev": list(self.bbox_std_dev),
        })
        return config
