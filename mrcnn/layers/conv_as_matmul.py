"""Convolutions that are matmuls in disguise, computed as matmuls (same weights).

Two shapes in Mask R-CNN's heads are slow as convolutions on some CPUs, under XLA
(the JAX backend) and under TensorFlow's oneDNN kernels alike; as matmuls they are
fast everywhere. Both layers keep Keras' weight shapes and names, so Matterport's
Keras-2 HDF5 files load unchanged.
"""
import keras
from keras import ops

__all__ = ["PatchDeconv2D", "WholeMapConv2D"]


@keras.saving.register_keras_serializable(package="mrcnn")
class WholeMapConv2D(keras.layers.Conv2D):
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

    def call(self, inputs):
        if not self._is_whole_map(inputs):
            return super().call(inputs)
        kh, kw = self.kernel_size
        channels = inputs.shape[-1]
        flat = ops.reshape(inputs, (-1, kh * kw * channels))
        kernel = ops.reshape(self.kernel, (kh * kw * channels, self.filters))
        outputs = ops.matmul(flat, ops.cast(kernel, flat.dtype))
        if self.use_bias:
            outputs = outputs + ops.cast(self.bias, outputs.dtype)
        outputs = ops.reshape(outputs, (-1, 1, 1, self.filters))
        return self.activation(outputs) if self.activation is not None else outputs


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
    Other settings fall back to ``Conv2DTranspose``.
    """

    def _is_patch(self):
        return (tuple(self.strides) == tuple(self.kernel_size) and self.padding == "valid"
                and tuple(self.dilation_rate) == (1, 1) and self.data_format == "channels_last"
                and self.output_padding is None)

    def call(self, inputs):
        if not self._is_patch():
            return super().call(inputs)
        kh, kw = self.kernel_size
        batch, height, width, channels = ops.shape(inputs)
        # kernel [kh, kw, filters, channels] -> [channels, kh * kw * filters]
        kernel = ops.reshape(ops.transpose(self.kernel, (3, 0, 1, 2)),
                             (channels, kh * kw * self.filters))
        patches = ops.matmul(inputs, ops.cast(kernel, inputs.dtype))
        patches = ops.reshape(patches, (batch, height, width, kh, kw, self.filters))
        outputs = ops.reshape(ops.transpose(patches, (0, 1, 3, 2, 4, 5)),
                              (batch, height * kh, width * kw, self.filters))
        if self.use_bias:
            outputs = outputs + ops.cast(self.bias, outputs.dtype)
        return self.activation(outputs) if self.activation is not None else outputs
