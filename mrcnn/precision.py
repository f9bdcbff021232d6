"""Mixed precision for the model being built, and only for it.

`Config.PRECISION` names a Keras dtype policy: "float32", "mixed_bfloat16" (CPUs
with AVX-512-BF16/AMX, recent GPUs) or "mixed_float16" (GPUs). `policy_scope`
sets Keras' global policy while one `MaskRCNN` graph is built and restores the
previous one afterwards, so each layer built inside keeps the policy it was
built with and the next model built (any precision) is unaffected.

Under a mixed policy:

* variables stay float32, so weight files are float32 and load into any
  precision (a checkpoint trained in one precision loads into the others);
* the convolutions, dense layers and normalisations compute in the low
  precision (BatchNorm and GroupNorm normalise in float32 internally);
* everything that needs float32 is float32 whatever the policy (those layers
  default to dtype="float32"): the geometry layers (`ProposalLayer`,
  `DetectionLayer`, `DetectionTargetLayer`, `PyramidROIAlign`: anchors,
  box-delta decoding, NMS inputs, ROI level assignment), the glue that carries
  boxes and image meta between them (`mrcnn.layers.wiring`, `PositiveRows`, the
  RPN concatenations), the heads' output layers (logits, softmax, box deltas,
  mask sigmoid) and the losses (`mrcnn.losses` casts every input to float32);
* with "mixed_float16", `keras.Model.compile` wraps the optimizer
  (`training.SGDWithL2`) in `keras.optimizers.LossScaleOptimizer`: the training
  graph carries the policy, and Keras scales the loss and unscales the
  gradients, skipping a step whose gradients overflow.
"""

import contextlib

import keras

from mrcnn.config import PRECISIONS

__all__ = ["PRECISIONS", "policy_scope", "check_precision"]


def check_precision(precision):
    """`precision` if it is one of `PRECISIONS`, else ValueError naming the choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


@contextlib.contextmanager
def policy_scope(precision):
    """Build layers under Keras' dtype policy `precision`; restore the previous policy on exit.

    Keras keeps its global policy per thread; layers read it when constructed,
    so only the layers created inside this block get `precision`.
    """
    check_precision(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
