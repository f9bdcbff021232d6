"""PatchDeconv2D: a transposed convolution whose kernel equals its stride, as one matmul."""
import keras
from keras import ops

__all__ = ["PatchDeconv2D"]


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
