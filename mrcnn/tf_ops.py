"""TensorFlow's kernels for what ``keras.ops`` lacks: the graph's only ``tf.*`` calls.

Used through :mod:`mrcnn.graph_ops`, which picks these under the TensorFlow backend
(they are the reference that :mod:`mrcnn.portable_ops` is tested against) and
the portable versions elsewhere. Everything here works on the TensorFlow backend in eager mode, inside
``tf.function`` and inside a Keras Functional model with an unknown batch size.
Boxes are ``(y1, x1, y2, x2)``; the NMS kernels treat them as plain coordinates
(any consistent unit), ``crop_and_resize`` wants them normalized as
``tf.image.crop_and_resize`` defines it (0 and 1 are the centres of the first
and last pixel row/column).
"""
import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "argmax_last_axis",
    "non_max_suppression",
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
    "sees_a_gpu",
]


def argmax_last_axis(x):
    """int32 index of the largest value along the last axis (``tf.math.argmax``)."""
    return tf.math.argmax(x, axis=-1, output_type=tf.int32)


def non_max_suppression(boxes, scores, max_output_size, iou_threshold):
    """Greedy NMS of one image (``tf.image.non_max_suppression``, as Matterport).

    Args:
        boxes: float ``[N, 4]`` ``(y1, x1, y2, x2)``.
        scores: float ``[N]``.
        max_output_size: int, most boxes to keep.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring
            box is strictly greater than this.

    Returns:
        int32 ``[K]`` (``K <= max_output_size``, dynamic): kept indices into
        ``boxes``, by descending score.
    """
    return tf.image.non_max_suppression(
        tf.cast(boxes, tf.float32), tf.cast(scores, tf.float32),
        max_output_size, iou_threshold)


def non_max_suppression_padded(boxes, scores, max_output_size, iou_threshold):
    """Greedy NMS of one image with a fixed-size result (usable in ``keras.ops.map``).

    Same kernel and result as :func:`non_max_suppression` (``NonMaxSuppressionV4``;
    unlike ``tf.image.non_max_suppression_padded``, which switches to a tiled
    approximation of the IoU), only padded.

    Args:
        boxes: float ``[N, 4]`` ``(y1, x1, y2, x2)``.
        scores: float ``[N]``.
        max_output_size: python int, length of the result.
        iou_threshold: float, as in :func:`non_max_suppression`.

    Returns:
        ``(indices, num_valid)``: int32 ``[max_output_size]`` kept indices by
        descending score, the tail after ``num_valid`` filled with 0; int32 scalar.
    """
    indices, num_valid = tf.raw_ops.NonMaxSuppressionV4(
        boxes=tf.cast(boxes, tf.float32),
        scores=tf.cast(scores, tf.float32),
        max_output_size=max_output_size,
        iou_threshold=iou_threshold,
        score_threshold=float("-inf"),
        pad_to_max_output_size=True)
    return tf.ensure_shape(indices, [max_output_size]), num_valid


def per_class_non_max_suppression(boxes, scores, class_ids, num_classes,
                                  max_output_size, iou_threshold, min_score):
    """Batched greedy NMS run separately per class, then top ``max_output_size``.

    Equivalent to Matterport's ``refine_detections_graph`` tail: keep boxes with
    ``score >= min_score``, NMS within each class (boxes of different classes
    never suppress each other), then keep the ``max_output_size`` best overall.
    Built on ``tf.image.combined_non_max_suppression`` (its score filter is a
    strict ``>``, so ``min_score`` is moved one float32 step down).

    Args:
        boxes: float ``[B, N, 4]`` ``(y1, x1, y2, x2)``, one box per row.
        scores: float ``[B, N]``; rows to ignore may carry any value < ``min_score``.
        class_ids: int ``[B, N]`` in ``[0, num_classes)``.
        num_classes: int or scalar tensor.
        max_output_size: python int, per class and in total.
        iou_threshold: float, suppression when IoU > this.
        min_score: float >= 0, rows with ``score < min_score`` are dropped.

    Returns:
        ``(boxes [B, K, 4], scores [B, K], class_ids int32 [B, K], num_valid int32 [B])``
        with ``K = max_output_size``, by descending score, zero past ``num_valid``.
    """
    if min_score > 0:
        threshold = float(np.nextafter(np.float32(min_score), np.float32(-np.inf)))
    else:
        # Scores are probabilities (>= 0); anything negative marks a dropped row.
        threshold = -0.5
    scores = tf.cast(scores, tf.float32)
    one_hot = tf.equal(tf.cast(class_ids, tf.int32)[..., None], tf.range(num_classes))
    class_scores = tf.where(one_hot, scores[..., None], -1.0)
    out_boxes, out_scores, out_classes, num_valid = tf.image.combined_non_max_suppression(
        tf.cast(boxes, tf.float32)[:, :, None, :], class_scores,
        max_output_size_per_class=max_output_size,
        max_total_size=max_output_size,
        iou_threshold=iou_threshold,
        score_threshold=threshold,
        pad_per_class=False,
        clip_boxes=False)
    valid = tf.range(max_output_size)[None, :] < num_valid[:, None]
    out_boxes = tf.where(valid[..., None], out_boxes, 0.0)
    out_scores = tf.where(valid, out_scores, 0.0)
    out_classes = tf.where(valid, tf.cast(out_classes, tf.int32), 0)
    return out_boxes, out_scores, out_classes, num_valid


def crop_and_resize(image, boxes, box_indices, crop_size, method="bilinear",
                    extrapolation_value=0.0):
    """``tf.image.crop_and_resize``: one bilinear sample per output pixel.

    Args:
        image: float ``[B, H, W, C]``.
        boxes: float ``[K, 4]`` normalized ``(y1, x1, y2, x2)``: ``y`` maps to
            pixel row ``y * (H - 1)``; values outside ``[0, 1]`` sample
            ``extrapolation_value``.
        box_indices: int ``[K]`` in ``[0, B)``, the image each box crops.
        crop_size: ``(crop_height, crop_width)``.
        method: ``"bilinear"`` or ``"nearest"``.

    Returns:
        float32 ``[K, crop_height, crop_width, C]``.
    """
    if method not in ("bilinear", "nearest"):
        raise ValueError(f"mrcnn.graph_ops.crop_and_resize: method must be "
                         f"'bilinear' or 'nearest', got {method!r}")
    return tf.image.crop_and_resize(
        tf.cast(image, tf.float32), tf.cast(boxes, tf.float32),
        tf.cast(box_indices, tf.int32), [int(s) for s in crop_size],
        method=method, extrapolation_value=extrapolation_value)


def pyramid_crop_and_resize(feature_maps, boxes, levels, box_indices, crop_size):
    """Bilinear crops ``[K, ch, cw, C]``, box ``k`` from ``feature_maps[levels[k]]``
    (arguments as ``portable_ops.pyramid_crop_and_resize``).

    Groups the boxes by level (a data-dependent split), runs one
    ``crop_and_resize`` per level and stitches the crops back into the boxes'
    order. Why ``dynamic_stitch``: its gradient is one gather per level from the
    upstream gradient. Concatenating the levels and un-permuting with a gather
    instead wrote the crops twice, and its gradient went through sparse slices
    and dense copies of them, all alive at the training step's memory peak.
    """
    levels = tf.cast(levels, tf.int32)
    pooled, positions = [], []
    for level, feature_map in enumerate(feature_maps):
        ix = tf.where(tf.equal(levels, level))[:, 0]
        pooled.append(crop_and_resize(feature_map, tf.gather(boxes, ix),
                                      tf.gather(box_indices, ix), crop_size))
        positions.append(tf.cast(ix, tf.int32))
    return tf.dynamic_stitch(positions, pooled)


def read_after(variable, dependency):
    """The value of ``variable``, read only once ``dependency`` has been computed.

    Graph executors run an op as soon as its inputs exist; a product of a weight
    alone would run at the very start of a training step and its result would wait
    there, taking memory, until the weight's gradient is done. Reading the weight
    after the gradient keeps such products short-lived (see ``SGDWithL2``).
    """
    with tf.control_dependencies([dependency]):
        return tf.identity(variable)


def momentum_step(variable, momentum, gradient, learning_rate, momentum_rate):
    """``m <- momentum_rate * m - learning_rate * gradient``, then ``w <- w + m``, in
    place, as one kernel (``ResourceApplyKerasMomentum``, Keras 2's SGD update).
    ``variable`` and ``momentum`` are variables (under ``tf.distribute``, inside the
    strategy's ``update``, each device's own copy); ``gradient`` has their dtype.
    The kernel reads ``m`` and ``w`` when it runs, after ``gradient`` exists.
    """
    dtype = gradient.dtype
    return tf.raw_ops.ResourceApplyKerasMomentum(
        var=variable.handle, accum=momentum.handle, lr=tf.cast(learning_rate, dtype),
        grad=gradient, momentum=tf.cast(momentum_rate, dtype), use_locking=False,
        use_nesterov=False)


def squared_norm(x, scale=1.0):
    """``scale * sum(x ** 2)`` without a temporary the size of ``x`` (``tf.nn.l2_loss``
    is ``sum(x ** 2) / 2``)."""
    return tf.nn.l2_loss(x) * (2.0 * scale)


def squared_global_norm(tensors):
    """``sum(t ** 2)`` over all of the ``tensors``: one ``L2Loss`` a tensor, then one sum.
    ``Sum``, not ``AddN``: with ``AddN`` the two replicas of a MirroredStrategy step
    clipped with norms a bit apart, and their copies of the weights differed in the last
    bits after one step (tests/distribute_mirrored_check.py), so would drift apart."""
    return 2.0 * tf.reduce_sum(tf.stack([tf.nn.l2_loss(t) for t in tensors]))


def make_deterministic(seed):
    """Seeds Python's, NumPy's and TensorFlow's global generators (what Keras draws
    unseeded initialisers and random ops from) and switches TensorFlow to
    deterministic kernels, so that a run repeats exactly on the same machine.

    Why both: seeds fix the random numbers, but multi-threaded CPU reductions (and GPU
    atomics) add in a varying order, which changes the last bits of sums and, over many
    steps, the losses. Op determinism is process-wide and stays on; it makes some
    kernels slower (and on GPU some ops raise instead of running nondeterministically).

    Grappler's remapper (op fusion) is switched off too, also process-wide: with
    oneDNN (TensorFlow's default CPU kernels), the fused convolution + bias of the
    mask head's last layer (a 1x1 conv on a varying number of ROIs) made the
    gradients of a seeded training step differ between processes, though never
    between calls in one process, so two seeded runs drifted apart (measured on an
    AVX-512 AMD EPYC; benchmarks/RESULTS.md, "Seeded runs repeat again"). Unfused,
    a 512-px training step took up to 5 % longer there. That made this graph repeat
    but is not the whole cause: other graphs with the same math (other gathers, other
    class counts) split again from the first mask-loss step; check a changed graph with
    benchmarks/seeded_repeat.py (RESULTS.md, "Gathers without integer transposes").
    """
    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()
    tf.config.optimizer.set_experimental_options({"remapping": False})


# --- tf.distribute replica context (see mrcnn.distribute for the strategies) ---

def _replica_context():
    """The replica context of a step run by ``strategy.run`` (the default
    strategy's outside any strategy); None in a cross-replica context."""
    return tf.distribute.get_replica_context()


def replicas_in_sync():
    """How many replicas compute the current step together (a python int, 1
    outside any ``tf.distribute`` strategy)."""
    context = _replica_context()
    return int(context.num_replicas_in_sync) if context is not None else 1


def replica_id():
    """int32 scalar: this replica's index in ``[0, replicas_in_sync())``, 0 outside
    a strategy. Under ``MultiWorkerMirroredStrategy`` the index runs over all
    workers' replicas (worker-major), as the global batch is split."""
    context = _replica_context()
    if context is None:
        return tf.constant(0, tf.int32)
    return tf.cast(context.replica_id_in_sync_group, tf.int32)


def replica_sum(values):
    """Sum of ``values`` (a tensor or a list of tensors) over the replicas in
    sync, every replica getting the result; ``values`` itself with one replica."""
    context = _replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.SUM, values)


def replicas_span_workers(strategy=None):
    """True when the replicas of `strategy` (default: the current one) live in
    several processes (``MultiWorkerMirroredStrategy`` with more than one worker)."""
    strategy = strategy or tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync == 1:
        return False  # the default strategy has no worker_devices
    return strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)


def sees_a_gpu():
    """True when TensorFlow sees a GPU (it then places the graph's kernels there)."""
    return bool(tf.config.list_physical_devices("GPU"))
