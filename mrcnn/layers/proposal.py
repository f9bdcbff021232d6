"""ProposalLayer: RPN anchors + deltas -> NMS'd region proposals (Matterport semantics)."""
import keras
from keras import ops

from mrcnn import graph_ops
from mrcnn.layers import box_ops

__all__ = ["ProposalLayer"]


@keras.saving.register_keras_serializable(package="mrcnn")
class ProposalLayer(keras.layers.Layer):
    """Pick the RPN's best anchors, refine them and keep ``proposal_count`` after NMS.

    Per image (Matterport's ``ProposalLayer``): take the ``pre_nms_limit`` anchors
    with the highest foreground score, apply ``rpn_bbox * rpn_bbox_std_dev``,
    clip to ``[0, 1]``, greedy NMS at ``nms_threshold`` keeping at most
    ``proposal_count`` boxes, zero-pad to ``proposal_count``.

    Call: ``[rpn_probs [B, A, 2], rpn_bbox [B, A, 4], anchors [B, A, 4] normalized]``
    -> ``rois [B, proposal_count, 4]`` normalized ``(y1, x1, y2, x2)``, by
    descending score, zero rows at the end.
    """

    def __init__(self, proposal_count, nms_threshold, pre_nms_limit,
                 rpn_bbox_std_dev, **kwargs):
        # Anchors, delta decoding and NMS need float32 under any mixed policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        # TensorFlow's NMS/crop kernels are not XLA-compilable; the portable ops are.
        self.supports_jit = not graph_ops.uses_tensorflow_kernels()
        if int(proposal_count) < 1:
            raise ValueError(f"ProposalLayer: proposal_count must be >= 1, got {proposal_count!r}")
        if int(pre_nms_limit) < 1:
            raise ValueError(f"ProposalLayer: pre_nms_limit must be >= 1, got {pre_nms_limit!r}")
        if not 0.0 <= float(nms_threshold) <= 1.0:
            raise ValueError(
                f"ProposalLayer: nms_threshold must be in [0, 1], got {nms_threshold!r}")
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_limit = int(pre_nms_limit)
        self.rpn_bbox_std_dev = box_ops.as_std_dev(
            rpn_bbox_std_dev, "ProposalLayer.rpn_bbox_std_dev")

    def call(self, inputs):
        rpn_probs, rpn_bbox, anchors = inputs
        scores = ops.cast(rpn_probs[:, :, 1], "float32")
        deltas = ops.cast(rpn_bbox, "float32") * ops.convert_to_tensor(
            self.rpn_bbox_std_dev, "float32")
        anchors = ops.cast(anchors, "float32")

        # Static anchor counts give a static k; otherwise top_k takes a tensor.
        num_anchors = anchors.shape[1]
        if num_anchors is not None:
            k = min(self.pre_nms_limit, num_anchors)
        else:
            k = ops.minimum(self.pre_nms_limit, ops.shape(anchors)[1])
        scores, ix = ops.top_k(scores, k, sorted=True)
        deltas = ops.take_along_axis(deltas, ix[..., None], axis=1)
        pre_nms_anchors = ops.take_along_axis(anchors, ix[..., None], axis=1)

        boxes = box_ops.apply_box_deltas(pre_nms_anchors, deltas)
        boxes = box_ops.clip_boxes(boxes, ops.convert_to_tensor([0.0, 0.0, 1.0, 1.0]))

        def nms(args):
            image_boxes, image_scores = args
            return graph_ops.non_max_suppression_padded(
                image_boxes, image_scores, self.proposal_count, self.nms_threshold)

        keep, num_valid = ops.map(nms, (boxes, scores))
        proposals = ops.take_along_axis(boxes, keep[..., None], axis=1)
        valid = ops.arange(self.proposal_count)[None, :] < num_valid[:, None]
        return ops.where(valid[..., None], proposals, ops.zeros_like(proposals))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.proposal_count, 4)

    def get_config(self):
        config = super().get_config()
        config.update({
            "proposal_count": self.proposal_count,
            "nms_threshold": self.nms_threshold,
            "pre_nms_limit": self.pre_nms_limit,
            "rpn_bbox_std_dev": list(self.rpn_bbox_std_dev),
        })
        return config
