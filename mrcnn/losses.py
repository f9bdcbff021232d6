"""Mask R-CNN losses (Matterport's ``*_loss_graph``) in keras.ops.

Matterport selected the contributing rows with ``tf.where`` + ``gather``; here every
loss keeps the full, statically shaped tensors and masks out the rows that do not
count, which gives the same values and gradients, works with XLA, and lets each
loss return exactly 0.0 (not NaN) when nothing contributes.

All functions take batched tensors and return a float32 scalar. Under a
``tf.distribute`` strategy each replica returns its share of the global batch's
mean (see ``_masked_mean``).
"""
from keras import ops

from mrcnn import graph_ops


def _safe_mean(total, count):
    """``total / count``, or 0.0 when ``count`` is 0 (``total`` is then 0 too)."""
    count = ops.cast(count, "float32")
    return ops.where(count > 0, total / ops.maximum(count, 1.0), 0.0)


def _masked_mean(values, mask):
    """Mean of ``values`` where ``mask`` (broadcast to ``values``) is true; 0.0 if none.

    ``ops.where`` rather than a product, so that a non-finite value in an excluded
    row cannot leak into the result.

    Under a ``tf.distribute`` strategy the count is summed over the replicas, so
    each replica returns its rows' sum over the global count: the replicas' values
    (and the gradients Keras sums over them) add up to the mean of the global
    batch, i.e. N replicas with k images each train as one device with N*k images.
    """
    mask = ops.broadcast_to(mask, ops.shape(values))
    total = ops.sum(ops.where(mask, values, ops.zeros_like(values)))
    return _safe_mean(total, graph_ops.replica_sum(ops.sum(ops.cast(mask, "float32"))))


def _float(x):
    return ops.cast(ops.convert_to_tensor(x), "float32")


def _binary_crossentropy(target, prob, epsilon=1e-7):
    """Elementwise BCE of probabilities clipped to ``[eps, 1 - eps]`` (as Keras 2 did).

    Written out because Keras 3's version also adds ``eps`` inside the logs.
    """
    prob = ops.clip(prob, epsilon, 1.0 - epsilon)
    return -(target * ops.log(prob) + (1.0 - target) * ops.log(1.0 - prob))


def smooth_l1(y_true, y_pred):
    """Elementwise smooth-L1 (Huber with delta 1): ``0.5 d^2`` if ``|d| < 1`` else ``|d| - 0.5``."""
    diff = ops.abs(_float(y_true) - _float(y_pred))
    return ops.where(diff < 1.0, 0.5 * ops.square(diff), diff - 0.5)


def _squeeze_match(rpn_match):
    """``rpn_match`` as ``[B, A]`` (accepts ``[B, A, 1]``)."""
    if len(rpn_match.shape) == 3:
        rpn_match = ops.squeeze(rpn_match, axis=-1)
    if len(rpn_match.shape) != 2:
        raise ValueError(
            f"losses: rpn_match must be [B, A] or [B, A, 1], got shape {rpn_match.shape}"
        )
    return rpn_match


def rpn_class_loss(rpn_match, rpn_class_logits):
    """RPN anchor classifier loss.

    Args:
        rpn_match: ``[B, A, 1]`` or ``[B, A]``; 1 positive, -1 negative, 0 neutral.
        rpn_class_logits: ``[B, A, 2]`` background/foreground logits.

    Returns:
        Mean softmax cross-entropy over the non-neutral anchors of the whole batch.
    """
    rpn_match = _squeeze_match(ops.convert_to_tensor(rpn_match))
    labels = ops.cast(ops.equal(rpn_match, 1), "int32")
    ce = ops.sparse_categorical_crossentropy(labels, _float(rpn_class_logits),
                                             from_logits=True)
    return _masked_mean(ce, ops.not_equal(rpn_match, 0))


def _packed_targets(target_bbox, positive):
    """Pair each positive anchor with its image's next unused row of ``target_bbox``.

    Matterport's ``batch_pack_graph``: image b's k-th positive anchor (in anchor
    order) gets ``target_bbox[b, k]``. Returns ``(targets [B, A, 4], valid [B, A])``;
    ``valid`` drops positives beyond the ``R`` target rows (never produced by
    ``build_rpn_targets``, whose positives are capped at half of R).
    """
    rank = ops.cumsum(ops.cast(positive, "int32"), axis=1) - 1
    num_rows = ops.shape(target_bbox)[1]
    index = ops.clip(rank, 0, num_rows - 1)
    targets = ops.take_along_axis(target_bbox, ops.expand_dims(index, -1), axis=1)
    return targets, ops.logical_and(positive, rank < num_rows)


def rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox):
    """RPN box regression loss.

    Args:
        target_bbox: ``[B, R, 4]`` deltas of image b's positive anchors, in anchor
            order, zero-padded (``RPN_TRAIN_ANCHORS_PER_IMAGE`` rows).
        rpn_match: ``[B, A, 1]`` or ``[B, A]``; 1 marks a positive anchor.
        rpn_bbox: ``[B, A, 4]`` predicted deltas.

    Returns:
        Mean smooth-L1 over the 4 coordinates of all positive anchors.
    """
    rpn_match = _squeeze_match(ops.convert_to_tensor(rpn_match))
    targets, valid = _packed_targets(_float(target_bbox),
                                     ops.equal(rpn_match, 1))
    return _masked_mean(smooth_l1(targets, rpn_bbox), ops.expand_dims(valid, -1))


def mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids):
    """Classifier head loss.

    As in Matterport, the loss of a ROI whose *predicted* class is not active in
    its image (a class its dataset does not label) is dropped; unlike Matterport,
    each ROI uses its own image's ``active_class_ids`` (Matterport used image 0's).

    Args:
        target_class_ids: ``[B, T]`` int, 0 for background and zero-padded ROIs.
        pred_class_logits: ``[B, T, C]``.
        active_class_ids: ``[B, C]``, 1 for the classes of the image's dataset, else 0.

    Returns:
        Mean softmax cross-entropy over the ROIs whose predicted class is active.
    """
    logits = _float(pred_class_logits)
    labels = ops.cast(target_class_ids, "int32")
    pred_ids = ops.argmax(logits, axis=-1)
    pred_active = ops.take_along_axis(_float(active_class_ids), pred_ids, axis=1)
    ce = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return _masked_mean(ce, pred_active > 0)


def _true_class_index(target_class_ids, rank):
    """``[B, T, 1, ...]`` int index (``rank`` dims) of each ROI's class, for take_along_axis."""
    index = ops.cast(target_class_ids, "int32")
    return ops.reshape(index, tuple(ops.shape(index)) + (1,) * (rank - 2))


def mrcnn_bbox_loss(target_bbox, target_class_ids, pred_bbox):
    """Box head loss on positive ROIs, for their true class only.

    Args:
        target_bbox: ``[B, T, 4]`` target deltas (divided by ``BBOX_STD_DEV``).
        target_class_ids: ``[B, T]``; > 0 marks a positive ROI.
        pred_bbox: ``[B, T, C, 4]`` per-class predicted deltas.

    Returns:
        Mean smooth-L1 over the 4 coordinates of all positive ROIs.
    """
    index = ops.expand_dims(_true_class_index(target_class_ids, 3), -1)  # [B, T, 1, 1]
    pred = ops.squeeze(ops.take_along_axis(_float(pred_bbox), index, axis=2), axis=2)
    positive = ops.expand_dims(ops.cast(target_class_ids, "int32") > 0, -1)
    return _masked_mean(smooth_l1(target_bbox, pred), positive)


def mrcnn_mask_loss(target_masks, target_class_ids, pred_masks):
    """Mask head loss on positive ROIs, for their true class only.

    Args:
        target_masks: ``[B, T, h, w]`` 0/1 mask targets.
        target_class_ids: ``[B, T]``; > 0 marks a positive ROI.
        pred_masks: ``[B, T, h, w, C]`` per-class sigmoid probabilities.

    Returns:
        Mean binary cross-entropy over all pixels of all positive ROIs.
    """
    index = _true_class_index(target_class_ids, 5)  # [B, T, 1, 1, 1]
    pred = ops.squeeze(ops.take_along_axis(_float(pred_masks), index, axis=4), axis=4)
    bce = _binary_crossentropy(_float(target_masks), pred)
    positive = ops.cast(target_class_ids, "int32") > 0
    return _masked_mean(bce, ops.reshape(positive, tuple(ops.shape(positive)) + (1, 1)))


def _is_bn_scale_or_offset(weight):
    """True for BatchNorm ``gamma``/``beta`` (Matterport skipped them in L2)."""
    name = getattr(weight, "path", None) or weight.name
    return name.split("/")[-1].split(":")[0] in ("gamma", "beta")


def l2_weight_decay(trainable_weights, weight_decay):
    """Matterport's L2 regulariser: ``sum_w weight_decay * sum(w^2) / size(w)``.

    Args:
        trainable_weights: iterable of variables (e.g. ``model.trainable_weights``).
        weight_decay: ``WEIGHT_DECAY``.

    Returns:
        Scalar; BatchNorm ``gamma`` and ``beta`` are skipped; 0.0 if nothing is left.
    """
    if weight_decay < 0:
        raise ValueError(f"l2_weight_decay: weight_decay must be >= 0, got {weight_decay}")
    # One multiply a weight and one sum over all of them: fewer ops for TensorFlow to
    # trace than a divide and an add a weight (~440 of a 9,600-op training step).
    # graph_ops.squared_norm: no square(w) temporaries, the factor in its one multiply.
    terms = [
        graph_ops.squared_norm(_float(w), weight_decay / float(_size(w)))
        for w in trainable_weights if not _is_bn_scale_or_offset(w)
    ]
    if not terms:
        return ops.zeros((), "float32")
    return ops.sum(ops.stack(terms))


def _size(weight):
    size = 1
    for dim in weight.shape:
        size *= int(dim)
    return size


def l2_weight_decay_factor(weight, weight_decay):
    """``c`` such that the gradient of ``l2_weight_decay`` w.r.t. ``weight`` is ``c * weight``
    (``2 * weight_decay / size(weight)``), or None for BatchNorm ``gamma``/``beta``
    (not regularised)."""
    if _is_bn_scale_or_offset(weight):
        return None
    return 2.0 * weight_decay / float(_size(weight))
