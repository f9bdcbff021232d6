"""The graph's ops that ``keras.ops`` lacks, and which implementation runs them.

Under the TensorFlow backend these are TensorFlow's own kernels (:mod:`mrcnn.tf_ops`:
``NonMaxSuppressionV4``, ``combined_non_max_suppression``, ``crop_and_resize``, the
``tf.distribute`` replica context); they stay the reference. Under any other
backend (JAX), and under TensorFlow inside :func:`portable` (TFLite's builtin ops),
they are :mod:`mrcnn.portable_ops`: ``keras.ops`` only, static shapes, the same
results. Layers call this module and never import either directly.
"""
import contextlib

import keras

from mrcnn import portable_ops

__all__ = [
    "uses_tensorflow_kernels",
    "leading_rows",
    "portable",
    "argmax_last_axis",
    "non_max_suppression_padded",
    "per_class_non_max_suppression",
    "crop_and_resize",
    "pyramid_crop_and_resize",
    "read_after",
    "momentum_step",
    "squared_norm",
    "squared_global_norm",
    "replicas_in_sync",
    "replica_id",
    "replica_sum",
    "replicas_span_workers",
    "make_deterministic",
    "tensorflow_on_cpu",
]

_portable_depth = 0


def uses_tensorflow_kernels():
    """True when the graph being built now uses TensorFlow's kernels (TensorFlow
    backend, outside :func:`portable`). Their outputs may have data-dependent
    shapes, so layers built on them cannot be compiled by XLA."""
    return keras.backend.backend() == "tensorflow" and _portable_depth == 0


def tensorflow_on_cpu():
    """True under the TensorFlow backend when no GPU is visible to it: its kernels
    are then oneDNN's on the CPU."""
    return keras.backend.backend() == "tensorflow" and not _tf_ops().sees_a_gpu()


def leading_rows(class_ids, static_rows):
    """How many leading rows a layer keeps of rows ordered with the objects first
    (``class_ids [B, N]`` > 0, zero after): the batch's largest object count (>= 1)
    where shapes may be dynamic (:func:`uses_tensorflow_kernels`), else
    ``static_rows`` (a python int)."""
    if not uses_tensorflow_kernels():
        return static_rows
    objects = keras.ops.sum(keras.ops.cast(class_ids > 0, "int32"), axis=1)
    return keras.ops.maximum(keras.ops.max(objects), 1)


@contextlib.contextmanager
def portable():
    """Build (trace) graphs with :mod:`mrcnn.portable_ops` even under TensorFlow,
    e.g. for a TFLite model that must use builtin ops only."""
    global _portable_depth
    _portable_depth += 1
    try:
        yield
    finally:
        _portable_depth -= 1


def _tf_ops():
    from mrcnn import tf_ops  # imports TensorFlow: only when its backend is in use
    return tf_ops


def _ops():
    return _tf_ops() if uses_tensorflow_kernels() else portable_ops


def argmax_last_axis(x):
    """int32 index of the largest value along the last axis, the first of ties
    (``tf_ops.argmax_last_axis``)."""
    return _ops().argmax_last_axis(x)


def non_max_suppression_padded(boxes, scores, max_output_size, iou_threshold):
    """Greedy NMS of one image, fixed-size result ``(indices [K], num_valid)``
    (``tf_ops.non_max_suppression_padded``)."""
    return _ops().non_max_suppression_padded(boxes, scores, max_output_size, iou_threshold)


def per_class_non_max_suppression(boxes, scores, class_ids, num_classes,
                                  max_output_size, iou_threshold, min_score):
    """Batched per-class NMS, then the best ``max_output_size``
    (``tf_ops.per_class_non_max_suppression``)."""
    return _ops().per_class_non_max_suppression(
        boxes, scores, class_ids, num_classes, max_output_size, iou_threshold, min_score)


def crop_and_resize(image, boxes, box_indices, crop_size, method="bilinear",
                    extrapolation_value=0.0):
    """``tf.image.crop_and_resize`` (``tf_ops.crop_and_resize``)."""
    return _ops().crop_and_resize(image, boxes, box_indices, crop_size, method=method,
                                  extrapolation_value=extrapolation_value)


def pyramid_crop_and_resize(feature_maps, boxes, levels, box_indices, crop_size):
    """Bilinear crops ``[K, ch, cw, C]``, box ``k`` from ``feature_maps[levels[k]]``
    (``portable_ops.pyramid_crop_and_resize``)."""
    return _ops().pyramid_crop_and_resize(feature_maps, boxes, levels, box_indices, crop_size)


def read_after(variable, dependency):
    """``variable``'s value, read once ``dependency`` exists (``tf_ops.read_after``).
    Other backends compile the whole step and schedule reads themselves."""
    if keras.backend.backend() == "tensorflow":
        return _tf_ops().read_after(variable, dependency)
    return keras.ops.convert_to_tensor(variable)


def momentum_step(variable, momentum, gradient, learning_rate, momentum_rate):
    """Keras' SGD step with momentum: ``m <- momentum_rate * m - learning_rate *
    gradient``, then ``w <- w + m``. Under TensorFlow one in-place kernel per weight
    (``tf_ops.momentum_step``): written with ops, the update took 7 more graph nodes a
    weight (reads, products, assigns: 1,036 of a ResNet-50 training graph's 9,081)
    for TensorFlow to trace and optimise before the first step, and each product is a
    temporary as large as the weight."""
    if keras.backend.backend() == "tensorflow":
        return _tf_ops().momentum_step(variable, momentum, gradient, learning_rate,
                                       momentum_rate)
    ops = keras.ops
    dtype = variable.dtype
    momentum.assign(ops.subtract(ops.multiply(momentum, ops.cast(momentum_rate, dtype)),
                                 ops.multiply(gradient, ops.cast(learning_rate, dtype))))
    variable.assign_add(momentum)
    return None


def squared_norm(x, scale=1.0):
    """``scale * sum(x ** 2)`` over all of ``x`` (``scale`` a python float). Under
    TensorFlow one kernel and one multiply (``tf_ops.squared_norm``): ``sum(square(x))``
    would first write ``square(x)``, as large as ``x``. XLA (JAX) fuses the two itself."""
    if keras.backend.backend() == "tensorflow":
        return _tf_ops().squared_norm(x, scale)
    total = keras.ops.sum(keras.ops.square(x))
    return total if scale == 1.0 else total * scale


def squared_global_norm(tensors):
    """``sum(t ** 2)`` over all of the ``tensors`` (gradient clipping's squared global
    norm); under TensorFlow one kernel a tensor and one sum (``tf_ops.squared_global_norm``)."""
    if keras.backend.backend() == "tensorflow":
        return _tf_ops().squared_global_norm(tensors)
    return keras.ops.sum(keras.ops.stack([squared_norm(t) for t in tensors]))


def make_deterministic(seed):
    """Seed the global generators; under TensorFlow also switch to deterministic
    kernels (``tf_ops.make_deterministic``)."""
    if keras.backend.backend() == "tensorflow":
        return _tf_ops().make_deterministic(seed)
    keras.utils.set_random_seed(int(seed))
    return None


# --- replicas: tf.distribute under TensorFlow; one replica elsewhere ---

def replicas_in_sync():
    """How many replicas compute the current step together (python int)."""
    if keras.backend.backend() == "tensorflow":
        return _tf_ops().replicas_in_sync()
    return 1


def replica_id():
    """int32 scalar: this replica's index, 0 with one replica."""
    if keras.backend.backend() == "tensorflow":
        return _tf_ops().replica_id()
    return keras.ops.convert_to_tensor(0, "int32")


def replica_sum(values):
    """``values`` summed over the replicas in sync (unchanged with one replica)."""
    if keras.backend.backend() == "tensorflow":
        return _tf_ops().replica_sum(values)
    return values


def replicas_span_workers(strategy=None):
    """True when the replicas live in several processes (multi-worker TensorFlow)."""
    if keras.backend.backend() == "tensorflow":
        return _tf_ops().replicas_span_workers(strategy)
    return False
