"""Convolutions computed, in part, as matmuls (same weights).

Two shapes in Mask R-CNN's heads are slow as convolutions on some CPUs, under XLA
(the JAX backend) and under TensorFlow's oneDNN kernels alike; as matmuls they are
fast everywhere (WholeMapConv2D, PatchDeconv2D). The other stride-1 convolutions
keep their forward pass and take their gradients as a forward convolution and
matmuls (MatmulGradConv2D). All layers keep Keras' weight shapes and names, so
Matterport's Keras-2 HDF5 files load unchanged.

A frozen BatchNorm that follows one of these convolutions can be folded into it
(``fold_norm``): see FoldsFrozenNorm.
"""
import functools
import math

import keras
from keras import ops

from mrcnn import graph_ops

__all__ = ["FoldsFrozenNorm", "MatmulGradConv2D", "PatchDeconv2D", "WholeMapConv2D"]


def takes_gradients(training):
    """Whether a layer called with ``training`` may be in a graph that takes gradients:
    Keras passes training=False in predict, detect and export graphs, True or None
    (a plain call) elsewhere."""
    return training is not False


class _NormLink:
    """Holds a folded BatchNorm out of Keras' sight. As a layer attribute the BN would be
    tracked as a sublayer of the conv, and the .keras saver would store its weights under
    the conv's path instead of its own."""

    __slots__ = ("norm",)

    def __init__(self, norm):
        self.norm = norm


class FoldsFrozenNorm:
    """Mixin for a Conv2D followed by a frozen BatchNorm: ``fold_norm`` merges the two.

    A frozen BatchNorm is an affine map per channel, so conv then BN equals one conv
    with kernel ``k * s`` and bias ``(b - mean) * s + beta``, ``s = gamma /
    sqrt(var + eps)`` (``BatchNorm.fold``, computed from the variables at every call,
    so trained or loaded weights are used). After ``fold_norm(norm)`` this layer
    outputs what the BatchNorm used to, and the BatchNorm passes its input through.
    Both keep their weights and names. Why: the BatchNorm's pass over every
    activation costs more than the convolution under ``mixed_bfloat16`` on CPUs
    with AMX (Keras normalises in float32: a cast up, the affine, a cast down); on
    an Intel Xeon with AMX-BF16 the ResNet-50 + FPN stage of a 512-px image took
    0.074-0.079 s folded against 0.134-0.140 s (TF 2.21, 2 threads, 2026-12-04).
    The fold is set on the built graph, not serialised: a model rebuilt from its
    config runs the two layers unfolded, with the same result.
    """

    _norm_link = None

    def fold_norm(self, norm):
        """Fold the frozen BatchNorm ``norm`` (applied to this layer's output) into this layer."""
        if not getattr(norm, "frozen", False) or self.data_format != "channels_last":
            raise ValueError(f"{self.name}: only a frozen BatchNorm after a channels_last conv folds")
        if self.activation is not keras.activations.linear:
            raise ValueError(f"{self.name}: a conv with an activation cannot take a BatchNorm after it")
        norm.build((None, None, None, self.filters))
        norm.folded = True
        self._norm_link = _NormLink(norm)
        # Read the float32 variables themselves (not autocast copies) and cast once.
        self.autocast = False

    def folded_norm(self):
        """The BatchNorm folded into this layer, or None."""
        return None if self._norm_link is None else self._norm_link.norm

    def call(self, inputs, training=None):
        if self._norm_link is None:
            return super().call(inputs)
        norm = self._norm_link.norm
        bias = self.bias if self.use_bias else None
        dtype = self.compute_dtype
        inputs = ops.cast(inputs, dtype)
        if takes_gradients(training) and self.kernel_outsizes_output(inputs.shape):
            # A graph that takes gradients keeps the kernel it convolved with for the
            # backward pass; a folded kernel is a copy, alive from the forward pass to
            # the backward one. Where the kernel is the larger, scale the output instead
            # (mrcnn_class_conv1 and stage 5 at 512 px: 125 MiB less at the peak of a
            # ResNet-50 training step).
            scale, shift = norm.affine(bias)
            outputs = self._biased_output(inputs, ops.cast(self.kernel, dtype), None)
            return ops.add(ops.multiply(outputs, ops.cast(scale, dtype)), ops.cast(shift, dtype))
        kernel, bias = norm.fold(self.kernel, bias)
        return self._biased_output(inputs, ops.cast(kernel, dtype), ops.cast(bias, dtype))

    def kernel_outsizes_output(self, input_shape):
        """Whether the kernel has more elements than this layer's output for
        ``input_shape`` (an unknown batch counts as 1; unknown sizes: False)."""
        output_shape = self.compute_output_shape(tuple(input_shape))
        if any(size is None for size in output_shape[1:]):
            return False
        return math.prod(self.kernel.shape) > (output_shape[0] or 1) * math.prod(output_shape[1:])

    def _biased_output(self, inputs, kernel, bias):
        # ops.add, not "+": Keras' TensorFlow backend turns it into a BiasAdd, which
        # TensorFlow fuses with the convolution and a following residual add and ReLU.
        outputs = self.convolution_op(inputs, kernel)
        return outputs if bias is None else ops.add(outputs, bias)


@keras.saving.register_keras_serializable(package="mrcnn")
class WholeMapConv2D(FoldsFrozenNorm, keras.layers.Conv2D):
    """``Conv2D(filters, (h, w), padding="valid")`` on ``h x w`` inputs: a dense layer.

    Matterport's classifier head applies a ``POOL_SIZE`` square conv to ``POOL_SIZE``
    square ROI features and then a 1x1 conv to the resulting 1x1 map ("conv as FC").
    Both run here as one matmul of the flattened features with the reshaped kernel,
    on every backend. Why: as convolutions their gradients are pathologically slow
    on some CPUs. On an AVX2 AMD EPYC (no AVX-512; TF 2.21, 2 threads, measured
    2026-12-03) the forward pass of 512 ROIs 7x7x256 -> 1024 took 0.082 s as a
    convolution and 0.084 s as a matmul, forward and backward 32.8 s against 0.34 s;
    the 1x1 layer's 1.77 s against 0.023 s. XLA's CPU convolution (JAX) took 2.7 s
    for the forward pass of 1000 ROIs, the matmul 0.39 s (2026-12-02). The matmul
    sums in another order than a convolution may: differences of ~1e-6 at most.
    """

    def _is_whole_map(self, inputs):
        return (self.padding == "valid"
                and self.data_format == "channels_last" and tuple(self.strides) == (1, 1)
                and tuple(self.dilation_rate) == (1, 1) and self.groups == 1
                and tuple(inputs.shape[1:3]) == tuple(self.kernel_size))

    def call(self, inputs, training=None):
        if self._norm_link is not None or not self._is_whole_map(inputs):
            return super().call(inputs, training=training)
        outputs = self._matmul_output(inputs, self.kernel, self.bias if self.use_bias else None)
        return self.activation(outputs) if self.activation is not None else outputs

    def _biased_output(self, inputs, kernel, bias):
        # The folded path (FoldsFrozenNorm.call) comes here with the folded kernel.
        if not self._is_whole_map(inputs):
            return super()._biased_output(inputs, kernel, bias)
        return self._matmul_output(inputs, kernel, bias)

    def _matmul_output(self, inputs, kernel, bias):
        kh, kw = self.kernel_size
        channels = inputs.shape[-1]
        flat = ops.reshape(inputs, (-1, kh * kw * channels))
        outputs = ops.matmul(flat, ops.cast(ops.reshape(kernel, (kh * kw * channels, self.filters)),
                                            flat.dtype))
        if bias is not None:
            outputs = outputs + ops.cast(bias, outputs.dtype)
        return ops.reshape(outputs, (-1, 1, 1, self.filters))


@keras.saving.register_keras_serializable(package="mrcnn")
class PatchDeconv2D(keras.layers.Conv2DTranspose):
    """``Conv2DTranspose(filters, k, strides=k, padding="valid")``, computed as a matmul.

    With the kernel as large as the stride, the output patches do not overlap:
    output pixel ``(k*i + a, k*j + b)`` is ``x[i, j] @ kernel[a, b].T + bias``. One
    matmul to ``k*k*filters`` channels and a depth-to-space reshape give exactly
    that, with the same weights (shapes, names, Keras-2 HDF5 layout) as
    ``Conv2DTranspose``. Why: XLA's CPU gradient of the general transposed
    convolution (a dilated convolution) took 2.9 s for Mask R-CNN's mask head at
    20 ROIs, the matmul's a few ms (JAX, measured 2026-12-02); TensorFlow's
    kernels do not suffer from it but give the same result either way.
    Called with ``training=False`` (predict, detect, export), the matmul is a 1x1
    convolution to ``k*k*filters`` channels with the bias (repeated per patch position)
    and an elementwise activation applied before the depth-to-space: TensorFlow fuses
    the three into one oneDNN convolution. Why: as a matmul, the bias add and ReLU ran
    as two more passes over the mask head's ``[N, 28, 28, 256]`` map, and in bfloat16
    those are Eigen's slow kernels; fused they are free (TensorFlow's fused *matmul*
    takes a slower oneDNN kernel, so the matmul form cannot fuse them).
    Other settings fall back to ``Conv2DTranspose``.
    """

    def _is_patch(self):
        return (tuple(self.strides) == tuple(self.kernel_size) and self.padding == "valid"
                and tuple(self.dilation_rate) == (1, 1) and self.data_format == "channels_last"
                and self.output_padding is None)

    def call(self, inputs, training=None):
        if not self._is_patch():
            return super().call(inputs)
        kh, kw = self.kernel_size
        channels = ops.shape(inputs)[3]
        # kernel [kh, kw, filters, channels] -> [channels, kh * kw * filters]
        kernel = ops.cast(ops.reshape(ops.transpose(self.kernel, (3, 0, 1, 2)),
                                      (channels, kh * kw * self.filters)), inputs.dtype)
        bias = ops.cast(self.bias, inputs.dtype) if self.use_bias else None
        if takes_gradients(training):
            outputs = self._depth_to_space(ops.matmul(inputs, kernel))
            return self.activation(outputs if bias is None else outputs + bias)
        patches = ops.conv(inputs, ops.reshape(kernel, (1, 1, channels, kh * kw * self.filters)))
        if bias is not None:
            # ops.add: a BiasAdd under TensorFlow, which it fuses into the convolution.
            patches = ops.add(patches, ops.tile(bias, kh * kw))
        if self.activation in (keras.activations.softmax, keras.activations.log_softmax):
            # These span the channel axis: after the depth-to-space.
            return self.activation(self._depth_to_space(patches))
        return self._depth_to_space(self.activation(patches))

    def _depth_to_space(self, patches):
        """``[B, H, W, kh*kw*filters]`` patches -> ``[B, H*kh, W*kw, filters]``."""
        kh, kw = self.kernel_size
        batch, height, width = ops.shape(patches)[:3]
        patches = ops.reshape(patches, (batch, height, width, kh, kw, self.filters))
        return ops.reshape(ops.transpose(patches, (0, 1, 3, 2, 4, 5)),
                           (batch, height * kh, width * kw, self.filters))


@keras.saving.register_keras_serializable(package="mrcnn")
class MatmulGradConv2D(FoldsFrozenNorm, keras.layers.Conv2D):
    """``Conv2D`` whose backward pass runs as a forward convolution and matmuls.

    For stride 1, dilation 1 and an odd kernel with "same" padding (or a 1x1 kernel
    with any padding), the input gradient is the forward convolution of the output
    gradient with the kernel flipped in space and its channel axes swapped, and the
    kernel gradient is one ``[C_in, N*H*W] @ [N*H*W, C_out]`` matmul per kernel tap
    (the output gradient shifted by that tap). The forward pass and the weights are
    Keras' own. Why: oneDNN's backward convolution kernels run at about half the
    rate of its forward ones on an AVX2 AMD EPYC (TF 2.21, 2 threads, 2026-12-03:
    3x3 256->256 at 128x128, forward 149 GFLOP/s, input gradient 113-127, kernel
    gradient 81; as a forward conv 153, as matmuls 123), and one 512-px training
    step of ResNet-50 FPN took 11-16 % less time this way, at the same peak RSS
    (benchmarks/RESULTS.md). XLA's CPU gradients (JAX) gain more: a 256-px step
    took 3.2 s against 5.2 s with Keras' own (Intel Xeon, 2026-12-04). Where
    TensorFlow's oneDNN has AVX-512 kernels it is the other way round: on that
    Intel Xeon (AVX-512, AMX) Keras' own gradient took 1.67 s a float32 step against
    1.82 s, the same in bfloat16, and its smaller graph cut the first step's trace
    and optimisation by 2.4 s.
    The output gradient is shifted, not the input: shifted copies of forward
    activations could be made as soon as the forward pass ends and all be alive at
    once. Other settings fall back to Keras' own gradient, and a call with
    ``training=False`` (an inference graph) is Keras' convolution throughout.

    Args:
        matmul_gradient: True or False to take this gradient or Keras' own; None
            (the default) takes Keras' own only where that was measured faster,
            TensorFlow on a CPU with AVX-512 (``matmul_gradient_by_default``), and
            this one elsewhere (GPUs not measured).
        **kwargs: passed to ``keras.layers.Conv2D``.
    """

    # False while this layer is called with training=False (set in ``call``).
    _gradient_wanted = True

    def __init__(self, *args, matmul_gradient=None, **kwargs):
        super().__init__(*args, **kwargs)
        if matmul_gradient not in (None, True, False):
            raise ValueError(f"{self.name}: matmul_gradient must be None, True or False, "
                             f"got {matmul_gradient!r}")
        self.matmul_gradient = matmul_gradient

    def get_config(self):
        return {**super().get_config(), "matmul_gradient": self.matmul_gradient}

    def call(self, inputs, training=None):
        # Only a graph that takes gradients needs the custom one: called with
        # training=False (predict, detect, export) this is Keras' plain convolution,
        # ~3 fewer ops a layer for TensorFlow to trace before the first detect().
        self._gradient_wanted = takes_gradients(training)
        return super().call(inputs, training=training)

    def _has_matmul_gradient(self, inputs):
        kh, kw = self.kernel_size
        same_size = self.padding == "same" or (kh, kw) == (1, 1)
        wanted = (matmul_gradient_by_default() if self.matmul_gradient is None
                  else self.matmul_gradient)
        return (wanted and self._gradient_wanted and same_size and kh % 2 == 1 and kw % 2 == 1
                and tuple(self.strides) == (1, 1) and tuple(self.dilation_rate) == (1, 1)
                and self.groups == 1 and self.data_format == "channels_last"
                and inputs.shape[1] is not None and inputs.shape[2] is not None)

    def convolution_op(self, inputs, kernel):
        if not self._has_matmul_gradient(inputs):
            return super().convolution_op(inputs, kernel)
        # A tensor, not the variable: a custom gradient must not read variables itself.
        return _conv_with_matmul_gradients(inputs, ops.copy(kernel))


@functools.cache
def matmul_gradient_by_default():
    """Whether MatmulGradConv2D takes its own gradient by default: everywhere but
    under TensorFlow on a CPU with AVX-512, where oneDNN's own backward kernels
    were measured faster."""
    return not (graph_ops.tensorflow_on_cpu() and cpu_has_avx512())


def cpu_has_avx512(cpuinfo="/proc/cpuinfo"):
    """True when the CPU flags in ``cpuinfo`` (Linux) include AVX-512 (``avx512f``);
    False where they cannot be read."""
    try:
        with open(cpuinfo) as f:
            flags = next((line for line in f if line.startswith("flags")), None)
    except OSError:
        return False
    return flags is not None and "avx512f" in flags.split()


def _conv_with_matmul_gradients(inputs, kernel):
    """Stride-1 "same" convolution; see MatmulGradConv2D for its gradient."""
    kh, kw, in_channels, out_channels = kernel.shape
    height, width = inputs.shape[1], inputs.shape[2]
    pad_h, pad_w = kh // 2, kw // 2

    @ops.custom_gradient
    def conv(x, w):
        def grad(*args, upstream=None):
            dy = args[0] if upstream is None else upstream
            flipped = ops.transpose(ops.flip(ops.flip(w, 0), 1), (0, 1, 3, 2))
            dx = ops.conv(dy, flipped, strides=1, padding="same")
            # dw[i, j] = sum over pixels p of x[p + (i, j) - pad] (x) dy[p]
            #          = sum over pixels q of x[q] (x) dy[q - (i, j) + pad]
            dy_padded = ops.pad(dy, ((0, 0), (pad_h, pad_h), (pad_w, pad_w), (0, 0)))
            x_t = ops.transpose(ops.reshape(x, (-1, in_channels)))
            taps = []
            for i in range(kh):
                for j in range(kw):
                    top, left = 2 * pad_h - i, 2 * pad_w - j
                    shifted = dy_padded[:, top:top + height, left:left + width, :]
                    taps.append(ops.matmul(x_t, ops.reshape(shifted, (-1, out_channels))))
            dw = ops.reshape(ops.stack(taps), (kh, kw, in_channels, out_channels))
            return dx, dw

        return ops.conv(x, w, strides=1, padding="same"), grad

    return conv(inputs, kernel)
