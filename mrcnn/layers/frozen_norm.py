"""Matterport's BatchNorm, frozen or not, and folding a frozen one into the conv before it.

Shared by the backbone and the heads (``layers/backbone.py``, ``layers/heads.py``);
the fold itself is the conv's side (``conv_as_matmul.FoldsFrozenNorm``).
"""
import keras
from keras import layers, ops

__all__ = ["BatchNorm", "conv_norm", "fold_if_frozen", "frozen_by"]


@keras.saving.register_keras_serializable(package="mrcnn")
class BatchNorm(layers.BatchNormalization):
    """BatchNormalization that can be frozen (Matterport's ``TRAIN_BN=False``).

    Matterport froze BN by calling it with ``training=False`` inside the graph. In
    Keras 3 that is not enough: a functional model called with ``training=True``
    overrides the ``training`` argument recorded on each node. A frozen layer
    therefore ignores ``training`` and always normalises with its moving
    statistics, which it never updates. ``gamma``/``beta`` stay trainable, as in
    Matterport (``set_trainable`` decides about them).

    Args:
        frozen: True to always run in inference mode.
        **kwargs: passed to ``keras.layers.BatchNormalization`` (defaults equal
            Keras 2's: momentum 0.99, epsilon 1e-3, as in the released weights).
    """

    def __init__(self, frozen=False, **kwargs):
        super().__init__(**kwargs)
        self.frozen = bool(frozen)
        # Set by the conv before it (FoldsFrozenNorm.fold_norm), which then applies
        # this layer's affine map itself; not serialised.
        self.folded = False

    def call(self, inputs, training=None, mask=None):
        if self.folded:
            return inputs
        if self.frozen:
            training = False
        return super().call(inputs, training=training, mask=mask)

    def affine(self, bias=None):
        """A frozen BN after a conv with ``bias``, as ``(s, t)``: BN(conv + bias) = conv * s + t,
        ``s = gamma / sqrt(moving_variance + epsilon)``, ``t = (bias - mean) * s + beta``,
        per channel; ``bias`` None is a conv without bias."""
        scale = ops.rsqrt(self.moving_variance + self.epsilon)
        if self.scale:
            scale = scale * self.gamma
        shift = -self.moving_mean if bias is None else bias - self.moving_mean
        shift = shift * scale
        if self.center:
            shift = shift + self.beta
        return scale, shift

    def fold(self, kernel, bias=None):
        """A frozen BN after a conv, as that conv's kernel and bias: ``(k * s, t)`` (``affine``);
        ``s`` scales the last axis of ``kernel``, its output channels."""
        scale, shift = self.affine(bias)
        return kernel * scale, shift

    def get_config(self):
        config = super().get_config()
        config["frozen"] = self.frozen
        return config


def fold_if_frozen(conv, norm):
    """``conv`` then ``norm`` as a callable; a frozen BatchNorm is folded into the conv.

    See ``FoldsFrozenNorm``: both layers stay in the graph with their names and
    weights; the conv's output is then the normalised one.
    """
    if isinstance(norm, BatchNorm) and norm.frozen:
        conv.fold_norm(norm)
    return lambda x: norm(conv(x))


def conv_norm(x, conv, norm, relu=True):
    """``x`` through ``conv``, ``norm`` and, if ``relu``, a ReLU: the conv blocks of the
    backbone and the heads. A frozen BatchNorm is folded into the conv (``fold_if_frozen``)."""
    x = fold_if_frozen(conv, norm)(x)
    return layers.Activation("relu")(x) if relu else x


def frozen_by(train_bn):
    """Matterport's TRAIN_BN as BatchNorm's ``frozen``: False freezes BN; True and None let
    it follow the call's training flag."""
    if train_bn not in (True, False, None):
        raise ValueError(f"train_bn must be True, False or None, got {train_bn!r}")
    return train_bn is False
