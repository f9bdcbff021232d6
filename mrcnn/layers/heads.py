"""RPN, classifier and mask heads with Matterport's layer names.

Matterport wrapped the per-ROI layers of the classifier and mask heads in
``TimeDistributed``. Here the ROI axis is folded into the batch axis instead
(``[B, N, ...] -> [B*N, ...]``) and plain layers with the same names are applied;
the weights (names and shapes) are identical, so ``mask_rcnn_coco.h5`` loads by
layer name, and one big convolution is faster than a time-distributed loop.
"""
import keras
from keras import layers, ops

from mrcnn.layers.conv_as_matmul import MatmulGradConv2D, PatchDeconv2D, WholeMapConv2D
from mrcnn.layers.frozen_norm import BatchNorm, conv_norm, frozen_by

# The heads' output layers (logits, softmax, box deltas, mask sigmoid) compute in
# float32 under any mixed-precision policy: they are cheap, and scores, deltas and
# probabilities feed ranking, NMS, box decoding and the losses.
OUTPUT_DTYPE = "float32"


@keras.saving.register_keras_serializable(package="mrcnn")
class MergeRoiDim(layers.Layer):
    """``[B, N, ...] -> [B*N, ...]``: fold the ROI axis into the batch axis."""

    def call(self, inputs):
        return ops.reshape(inputs, (-1,) + tuple(inputs.shape[2:]))

    def compute_output_shape(self, input_shape):
        b, n = input_shape[:2]
        merged = None if b is None or n is None else b * n
        return (merged,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="mrcnn")
class SplitRoiDim(layers.Layer):
    """``[x [B*N, ...], reference [B, N, ...]] -> [B, N, ...]``.

    Undoes ``MergeRoiDim``; ``B`` and ``N`` are read from ``reference`` at run time,
    so both may be dynamic.
    """

    def call(self, inputs):
        x, reference = inputs
        leading = ops.shape(reference)[:2]
        return ops.reshape(x, tuple(leading) + tuple(x.shape[1:]))

    def compute_output_shape(self, input_shape):
        x_shape, ref_shape = input_shape
        return tuple(ref_shape[:2]) + tuple(x_shape[1:])


def build_rpn_model(anchor_stride, anchors_per_location, depth, conv_channels=512):
    """Region Proposal Network shared by all pyramid levels (Matterport's ``rpn_model``).

    Args:
        anchor_stride: stride of ``rpn_conv_shared`` (``RPN_ANCHOR_STRIDE``).
        anchors_per_location: anchors per feature-map cell ``A`` (number of ratios).
        depth: channels of the input feature map (``TOP_DOWN_PYRAMID_SIZE``).
        conv_channels: width of ``rpn_conv_shared`` (``RPN_CONV_CHANNELS``; 512 in
            Matterport and its weight files).

    Returns:
        ``keras.Model`` named ``"rpn_model"`` mapping ``[B, H, W, depth]`` to
        ``[rpn_class_logits [B, H*W*A, 2], rpn_probs [B, H*W*A, 2] (softmax; [:, :, 1]
        is foreground), rpn_bbox [B, H*W*A, 4] (dy, dx, log dh, log dw)]`` with
        anchors in row-major cell order, then ratio (for ``anchor_stride=1``).
    """
    for name, value in (("anchor_stride", anchor_stride),
                        ("anchors_per_location", anchors_per_location), ("depth", depth),
                        ("conv_channels", conv_channels)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"build_rpn_model: {name} must be a positive int, got {value!r}")
    feature_map = keras.Input(shape=(None, None, depth), name="input_rpn_feature_map")
    shared = MatmulGradConv2D(conv_channels, (3, 3), padding="same", activation="relu",
                              strides=anchor_stride, name="rpn_conv_shared")(feature_map)
    x = MatmulGradConv2D(2 * anchors_per_location, (1, 1), padding="valid",
                         name="rpn_class_raw", dtype=OUTPUT_DTYPE)(shared)
    rpn_class_logits = layers.Reshape((-1, 2), name="rpn_class_reshape", dtype=OUTPUT_DTYPE)(x)
    rpn_probs = layers.Activation("softmax", name="rpn_class_xxx",
                                  dtype=OUTPUT_DTYPE)(rpn_class_logits)
    x = MatmulGradConv2D(4 * anchors_per_location, (1, 1), padding="valid",
                         name="rpn_bbox_pred", dtype=OUTPUT_DTYPE)(shared)
    rpn_bbox = layers.Reshape((-1, 4), name="rpn_bbox_reshape", dtype=OUTPUT_DTYPE)(x)
    return keras.Model(feature_map, [rpn_class_logits, rpn_probs, rpn_bbox],
                       name="rpn_model")


def _pooled_shape(pooled, caller):
    """Static ``(ph, pw, channels)`` of a pooled ROI tensor ``[B, N, ph, pw, C]``."""
    shape = tuple(pooled.shape)
    if len(shape) != 5 or any(d is None for d in shape[2:]):
        raise ValueError(
            f"{caller}: pooled must be [B, N, ph, pw, C] with static ph, pw, C; "
            f"got shape {shape}"
        )
    return shape[2:]


def classifier_head(pooled, num_classes, train_bn=False, fc_layers_size=1024):
    """Matterport's ``fpn_classifier_graph`` after ROIAlign.

    Args:
        pooled: ``[B, N, ps, ps, C]`` ROI features (``POOL_SIZE``; C = 256 for COCO).
        num_classes: classes including background.
        train_bn: False freezes the head's BatchNorms (see ``resnet_graph``).
        fc_layers_size: width of the two conv-as-FC layers.

    Returns:
        ``(mrcnn_class_logits [B, N, C], mrcnn_probs [B, N, C],
        mrcnn_bbox [B, N, C, 4])``; bbox rows are per-class deltas
        ``(dy, dx, log dh, log dw)`` still divided by ``BBOX_STD_DEV``.
    """
    ph, pw, _ = _pooled_shape(pooled, "classifier_head")
    frozen = frozen_by(train_bn)
    x = MergeRoiDim(name="mrcnn_class_merge_rois")(pooled)
    # A ph x pw valid conv on a ph x pw map, and then a 1x1 conv on the 1x1 result, are
    # fully connected layers (computed as such: see WholeMapConv2D).
    x = conv_norm(x, WholeMapConv2D(fc_layers_size, (ph, pw), name="mrcnn_class_conv1"),
                  BatchNorm(frozen=frozen, name="mrcnn_class_bn1"))
    x = conv_norm(x, WholeMapConv2D(fc_layers_size, (1, 1), name="mrcnn_class_conv2"),
                  BatchNorm(frozen=frozen, name="mrcnn_class_bn2"))
    x = layers.Reshape((fc_layers_size,), name="pool_squeeze")(x)
    shared = SplitRoiDim(name="mrcnn_class_split_rois")([x, pooled])
    logits = layers.Dense(num_classes, name="mrcnn_class_logits", dtype=OUTPUT_DTYPE)(shared)
    probs = layers.Activation("softmax", name="mrcnn_class", dtype=OUTPUT_DTYPE)(logits)
    x = layers.Dense(num_classes * 4, name="mrcnn_bbox_fc", dtype=OUTPUT_DTYPE)(shared)
    bbox = layers.Reshape((-1, num_classes, 4), name="mrcnn_bbox", dtype=OUTPUT_DTYPE)(x)
    return logits, probs, bbox


def mask_head(pooled, num_classes, train_bn=False):
    """Matterport's ``build_fpn_mask_graph`` after ROIAlign.

    Args:
        pooled: ``[B, N, mps, mps, C]`` ROI features (``MASK_POOL_SIZE``).
        num_classes: classes including background.
        train_bn: False freezes the head's BatchNorms.

    Returns:
        ``[B, N, 2*mps, 2*mps, num_classes]`` per-class mask probabilities (sigmoid).
    """
    _pooled_shape(pooled, "mask_head")
    frozen = frozen_by(train_bn)
    x = MergeRoiDim(name="mrcnn_mask_merge_rois")(pooled)
    for i in range(1, 5):
        x = conv_norm(x, MatmulGradConv2D(256, (3, 3), padding="same", name=f"mrcnn_mask_conv{i}"),
                      BatchNorm(frozen=frozen, name=f"mrcnn_mask_bn{i}"))
    x = PatchDeconv2D(256, (2, 2), strides=2, activation="relu", name="mrcnn_mask_deconv")(x)
    x = MatmulGradConv2D(num_classes, (1, 1), activation="sigmoid", name="mrcnn_mask",
                         dtype=OUTPUT_DTYPE)(x)
    return SplitRoiDim(name="mrcnn_mask_split_rois", dtype=OUTPUT_DTYPE)([x, pooled])
