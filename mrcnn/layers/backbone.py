"""ResNet backbone and Feature Pyramid Network, with Matterport's layer names.

Every weighted layer is named exactly as in Matterport's ``model.py`` (``conv1``,
``bn_conv1``, ``res4b_branch2a``, ``bn4b_branch2a``, ``fpn_c5p5``, ...), so that
``mask_rcnn_coco.h5`` and the ImageNet ResNet-50 file load by name.

Tensors are NHWC; the batch and spatial dimensions may be dynamic.
"""
import keras
from keras import layers, ops

from mrcnn.layers.conv_as_matmul import MatmulGradConv2D
from mrcnn.layers.frozen_norm import BatchNorm, conv_norm, frozen_by

_ARCHITECTURES = {"resnet50": 5, "resnet101": 22}  # identity blocks in stage 4


def _conv_bn(x, filters, kernel_size, conv_name, bn_name, norm, strides=1,
             padding="valid", relu=True):
    """Conv2D (with bias, as Matterport) -> BatchNorm -> optional ReLU."""
    conv = MatmulGradConv2D(filters, kernel_size, strides=strides, padding=padding,
                            use_bias=True, name=conv_name)
    return conv_norm(x, conv, norm(bn_name), relu)


def _bottleneck(x, kernel_size, filters, stage, block, norm, strides=None):
    """Matterport's ``conv_block`` (when ``strides`` is given) or ``identity_block``.

    The stride sits on the first 1x1 conv (Caffe-style ResNet) and on the shortcut
    conv ``res{stage}{block}_branch1``; an identity block adds its input unchanged.
    """
    f1, f2, f3 = filters
    conv = f"res{stage}{block}_branch"
    bn = f"bn{stage}{block}_branch"
    y = _conv_bn(x, f1, 1, conv + "2a", bn + "2a", norm, strides=strides or 1)
    y = _conv_bn(y, f2, kernel_size, conv + "2b", bn + "2b", norm, padding="same")
    y = _conv_bn(y, f3, 1, conv + "2c", bn + "2c", norm, relu=False)
    if strides is None:
        shortcut = x
    else:
        shortcut = _conv_bn(x, f3, 1, conv + "1", bn + "1", norm, strides=strides,
                            relu=False)
    y = layers.Add()([y, shortcut])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(y)


def _stage(x, stage, filters, identity_blocks, norm, strides):
    """One conv block ``a`` followed by identity blocks ``b``, ``c``, ..."""
    x = _bottleneck(x, 3, filters, stage, "a", norm, strides=strides)
    for i in range(identity_blocks):
        x = _bottleneck(x, 3, filters, stage, chr(98 + i), norm)
    return x


def _norm_layer(train_bn, norm, groups):
    """A factory ``name -> normalisation layer`` for the backbone (see ``resnet_graph``)."""
    if norm == "batch":
        frozen = frozen_by(train_bn)
        return lambda name: BatchNorm(frozen=frozen, name=name)
    if norm == "group":
        if not isinstance(groups, int) or groups < 1 or 64 % groups:
            raise ValueError(f"backbone: groups must divide 64 (the narrowest layer), got {groups!r}")
        return lambda name: layers.GroupNormalization(groups=groups, epsilon=1e-3, name=name)
    raise ValueError(f'backbone: norm must be "batch" or "group", got {norm!r}')


def resnet_graph(input_image, architecture, stage5=True, train_bn=False, norm="batch",
                 groups=32):
    """Matterport's ResNet-50/101 graph.

    Args:
        input_image: symbolic tensor ``[B, H, W, C]`` (molded image).
        architecture: ``"resnet50"`` or ``"resnet101"``.
        stage5: build stage 5 (otherwise ``C5`` is None).
        train_bn: False freezes every BatchNorm (inference mode, moving statistics
            never updated); True or None let BN follow the model call's
            ``training`` flag. Ignored for GroupNorm.
        norm: ``"batch"`` (Matterport's BatchNorm, as in the published weights) or
            ``"group"`` (GroupNorm, same layer names, scale and offset only: no
            statistics that depend on the other images of the batch).
        groups: GroupNorm's group count (divides 64).

    Returns:
        ``[C1, C2, C3, C4, C5]`` with strides 4, 4, 8, 16, 32 and 64, 256, 512,
        1024, 2048 channels (C1 is the stem after max-pooling).
    """
    if architecture not in _ARCHITECTURES:
        raise ValueError(
            f"resnet_graph: architecture must be one of {sorted(_ARCHITECTURES)}, "
            f"got {architecture!r}"
        )
    norm = _norm_layer(train_bn, norm, groups)
    x = layers.ZeroPadding2D((3, 3))(input_image)
    x = _conv_bn(x, 64, 7, "conv1", "bn_conv1", norm, strides=2)
    c1 = x = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="same")(x)
    c2 = x = _stage(x, 2, [64, 64, 256], 2, norm, strides=1)
    c3 = x = _stage(x, 3, [128, 128, 512], 3, norm, strides=2)
    c4 = x = _stage(x, 4, [256, 256, 1024], _ARCHITECTURES[architecture], norm,
                    strides=2)
    c5 = _stage(x, 5, [512, 512, 2048], 2, norm, strides=2) if stage5 else None
    return [c1, c2, c3, c4, c5]


@keras.saving.register_keras_serializable(package="mrcnn")
class NearestUpsampling2D(layers.Layer):
    """Each pixel repeated into a ``factor x factor`` block: ``UpSampling2D(factor)``
    with "nearest" interpolation, NHWC.

    Written as one broadcast and one reshape. Why: Keras' UpSampling2D repeats each
    axis in turn: 62 TensorFlow ops a layer to trace in ``detect()``, 9 here (tracing
    is most of the first call; benchmarks/RESULTS.md).
    """

    def __init__(self, factor=2, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, inputs):
        batch, height, width, channels = ops.shape(inputs)
        f = self.factor
        blocks = ops.broadcast_to(inputs[:, :, None, :, None, :],
                                  (batch, height, f, width, f, channels))
        return ops.reshape(blocks, (batch, height * f, width * f, channels))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        scaled = [None if d is None else d * self.factor for d in (height, width)]
        return (batch, *scaled, channels)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def _top_down(upper, lateral, level, pyramid_size):
    """``fpn_p{level}add`` = 2x-upsampled ``upper`` + 1x1 lateral conv of C{level}."""
    upsampled = NearestUpsampling2D(2, name=f"fpn_p{level + 1}upsampled")(upper)
    lateral = MatmulGradConv2D(pyramid_size, (1, 1), name=f"fpn_c{level}p{level}")(lateral)
    return layers.Add(name=f"fpn_p{level}add")([upsampled, lateral])


def fpn_graph(C2, C3, C4, C5, pyramid_size=256):
    """Matterport's Feature Pyramid Network.

    Args:
        C2..C5: backbone maps ``[B, H/s, W/s, C]`` for strides 4, 8, 16, 32 (each
            spatial size exactly twice the next one's, i.e. the image side is a
            multiple of 64).
        pyramid_size: channels of every pyramid level (``TOP_DOWN_PYRAMID_SIZE``).

    Returns:
        ``[P2, P3, P4, P5, P6]``, each ``[B, h, w, pyramid_size]``; P6 is P5
        subsampled with stride 2 (used by the RPN only).
    """
    if C5 is None:
        raise ValueError("fpn_graph: C5 is None; build the backbone with stage5=True")
    p5 = MatmulGradConv2D(pyramid_size, (1, 1), name="fpn_c5p5")(C5)
    p4 = _top_down(p5, C4, 4, pyramid_size)
    p3 = _top_down(p4, C3, 3, pyramid_size)
    p2 = _top_down(p3, C2, 2, pyramid_size)
    outs = [
        MatmulGradConv2D(pyramid_size, (3, 3), padding="same", name=f"fpn_p{level}")(p)
        for level, p in ((2, p2), (3, p3), (4, p4), (5, p5))
    ]
    p6 = layers.MaxPooling2D(pool_size=(1, 1), strides=2, name="fpn_p6")(outs[-1])
    return outs + [p6]
