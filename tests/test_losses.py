"""Losses against hand-computed numbers and loop-based numpy versions of Matterport's graphs."""
import math

import keras
import numpy as np
import pytest

from mrcnn import graph_ops, losses
from tests.backend import tensorflow_only, variable_gradients


def value(t):
    v = float(keras.ops.convert_to_numpy(t))
    assert np.isfinite(v)
    return v


# ---------------------------------------------------------------- numpy references
def np_smooth_l1(d):
    d = np.abs(d)
    return np.where(d < 1, 0.5 * d ** 2, d - 0.5)


def np_log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def np_rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox):
    """Matterport: gather positives in (image, anchor) order, batch_pack the targets."""
    preds, targets = [], []
    for b in range(rpn_match.shape[0]):
        pos = np.flatnonzero(rpn_match[b] == 1)
        preds.append(rpn_bbox[b, pos])
        targets.append(target_bbox[b, :len(pos)])
    d = np.concatenate(targets) - np.concatenate(preds)
    return np_smooth_l1(d).mean() if d.size else 0.0


def np_positive_rows(target_class_ids):
    return [(b, t, int(c)) for b, row in enumerate(target_class_ids)
            for t, c in enumerate(row) if c > 0]


# ---------------------------------------------------------------- RPN
def test_rpn_class_loss_hand_computed():
    # anchors: positive with logits (0, 0) -> ln 2; negative with (0, ln 3) ->
    # -log(1/4) = ln 4; neutral anchor ignored.
    match = np.array([[[1], [-1], [0]]], "int32")
    logits = np.array([[[0, 0], [0, math.log(3)], [50, -50]]], "float32")
    assert value(losses.rpn_class_loss(match, logits)) == pytest.approx(
        (math.log(2) + math.log(4)) / 2, rel=1e-6)
    # rpn_match may also come as [B, A].
    assert value(losses.rpn_class_loss(match[..., 0], logits)) == pytest.approx(
        (math.log(2) + math.log(4)) / 2, rel=1e-6)


def test_rpn_class_loss_random_against_numpy():
    rng = np.random.default_rng(0)
    match = rng.integers(-1, 2, size=(3, 50, 1))
    logits = rng.normal(size=(3, 50, 2)).astype("float32")
    labels = (match[..., 0] == 1).astype(int)
    ce = -np.take_along_axis(np_log_softmax(logits.astype(np.float64)),
                             labels[..., None], axis=-1)[..., 0]
    expected = ce[match[..., 0] != 0].mean()
    assert value(losses.rpn_class_loss(match, logits)) == pytest.approx(expected, rel=1e-5)


def test_rpn_class_loss_all_neutral_is_zero():
    loss = losses.rpn_class_loss(np.zeros((2, 6, 1), "int32"),
                                 np.full((2, 6, 2), 1e30, "float32"))
    assert value(loss) == 0.0


def test_rpn_bbox_loss_hand_computed():
    # Image 0: positive anchors 1 and 3 get target rows 0 and 1 (in anchor order).
    match = np.array([[0, 1, -1, 1]], "int32")
    pred = np.zeros((1, 4, 4), "float32")
    pred[0, 0] = 100.0  # not positive: must not count
    target = np.zeros((1, 3, 4), "float32")
    target[0, 0] = [0.5, 0, 0, 0]   # 0.125
    target[0, 1] = [0, 2.0, 0, 0]   # 1.5
    target[0, 2] = [9, 9, 9, 9]     # padding row beyond the 2 positives
    assert value(losses.rpn_bbox_loss(target, match, pred)) == pytest.approx(
        (0.125 + 1.5) / 8, rel=1e-6)


def test_rpn_bbox_loss_packs_per_image_like_matterport():
    rng = np.random.default_rng(1)
    match = rng.choice([-1, 0, 1], size=(3, 40), p=[0.3, 0.5, 0.2])
    match[2] = np.where(match[2] == 1, 0, match[2])  # an image without positives
    target = rng.normal(size=(3, 16, 4)).astype("float32")
    pred = (rng.normal(size=(3, 40, 4)) * 2).astype("float32")
    expected = np_rpn_bbox_loss(target, match, pred)
    got = value(losses.rpn_bbox_loss(target, match[..., None], pred))
    assert got == pytest.approx(expected, rel=1e-5)


def test_rpn_bbox_loss_positives_beyond_target_rows_are_dropped():
    match = np.array([[1, 1, 1]])
    target = np.ones((1, 2, 4), "float32")
    pred = np.zeros((1, 3, 4), "float32")
    pred[0, 2] = 50.0
    assert value(losses.rpn_bbox_loss(target, match, pred)) == pytest.approx(0.5, rel=1e-6)


def test_rpn_bbox_loss_no_positive_is_zero():
    match = np.array([[0, -1, 0], [-1, -1, 0]])
    assert value(losses.rpn_bbox_loss(np.ones((2, 4, 4), "float32"), match,
                                      np.full((2, 3, 4), np.inf, "float32"))) == 0.0


def test_rpn_match_bad_rank():
    with pytest.raises(ValueError, match="rpn_match"):
        losses.rpn_class_loss(np.zeros((1, 2, 3, 1)), np.zeros((1, 2, 2), "float32"))


# ---------------------------------------------------------------- classifier
def test_mrcnn_class_loss_uses_each_images_active_classes():
    # Two images, two ROIs each, 3 classes. Image 1 does not label class 2.
    logits = np.array([[[0, 0, 5], [3, 0, 0]],
                       [[0, 0, 5], [0, 2, 0]]], "float32")
    target = np.array([[2, 0], [1, 1]])
    active = np.array([[1, 1, 1], [1, 1, 0]], "float32")
    log_p = np_log_softmax(logits.astype(np.float64))
    ce = -np.take_along_axis(log_p, target[..., None], axis=-1)[..., 0]
    # Image 1's ROI 0 predicts class 2, inactive in image 1: dropped.
    expected = (ce[0, 0] + ce[0, 1] + ce[1, 1]) / 3
    got = value(losses.mrcnn_class_loss(target, logits, active))
    assert got == pytest.approx(expected, rel=1e-6)
    # Matterport's image-0-only masking would have kept it: the fix matters here.
    assert not np.isclose(got, ce.mean())


def test_mrcnn_class_loss_nothing_active_is_zero():
    logits = np.zeros((1, 3, 4), "float32")
    assert value(losses.mrcnn_class_loss(np.zeros((1, 3)), logits, np.zeros((1, 4)))) == 0.0


def test_mrcnn_bbox_loss_against_numpy():
    rng = np.random.default_rng(2)
    target_ids = np.array([[3, 0, 1, 0, 2], [0, 0, 4, 0, 0]])
    target = rng.normal(size=(2, 5, 4)).astype("float32")
    pred = (rng.normal(size=(2, 5, 5, 4)) * 2).astype("float32")
    pred[target_ids == 0] = 1e6  # negative / padding ROIs must not count
    d = [target[b, t] - pred[b, t, c] for b, t, c in np_positive_rows(target_ids)]
    expected = np_smooth_l1(np.array(d)).mean()
    got = value(losses.mrcnn_bbox_loss(target, target_ids, pred))
    assert got == pytest.approx(expected, rel=1e-5)


def test_mrcnn_bbox_loss_hand_computed():
    target_ids = np.array([[1, 0]])
    target = np.array([[[1.0, 0, 0, 0], [0, 0, 0, 0]]], "float32")
    pred = np.zeros((1, 2, 2, 4), "float32")
    pred[0, 0, 0] = 7.0  # class 0 column of the positive ROI: ignored
    pred[0, 0, 1] = [0.0, 3.0, 0, 0]  # |d| = 1 -> 0.5, |d| = 3 -> 2.5
    assert value(losses.mrcnn_bbox_loss(target, target_ids, pred)) == pytest.approx(3.0 / 4)


def test_mrcnn_mask_loss_against_numpy():
    rng = np.random.default_rng(3)
    target_ids = np.array([[2, 0, 1], [0, 3, 0]])
    target = (rng.random((2, 3, 6, 6)) > 0.5).astype("float32")
    pred = rng.random((2, 3, 6, 6, 4)).astype("float32")
    pred[0, 0, 0, 0, 2] = 1.0  # exactly 0/1 probabilities are clipped, never inf
    pred[0, 0, 0, 1, 2] = 0.0
    eps = 1e-7
    terms = []
    for b, t, c in np_positive_rows(target_ids):
        # Clip in float32 (the network's dtype), then evaluate exactly.
        p = np.clip(pred[b, t, :, :, c], np.float32(eps), np.float32(1 - eps)).astype(np.float64)
        y = target[b, t]
        terms.append(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    expected = np.mean(terms)
    got = value(losses.mrcnn_mask_loss(target, target_ids, pred))
    assert got == pytest.approx(expected, rel=1e-4)


def test_mrcnn_mask_loss_hand_computed():
    target_ids = np.array([[1]])
    target = np.array([[[[1.0, 0.0]]]], "float32")          # [1, 1, 1, 2]
    pred = np.array([[[[[0.9, 0.5], [0.9, 0.25]]]]], "float32")  # [1, 1, 1, 2, 2]
    expected = -(math.log(0.5) + math.log(0.75)) / 2
    assert value(losses.mrcnn_mask_loss(target, target_ids, pred)) == pytest.approx(
        expected, rel=1e-5)


@tensorflow_only
def test_head_losses_without_positives_are_zero_with_finite_gradients():
    import tensorflow as tf
    target_ids = tf.zeros((2, 3), "int32")
    pred_bbox = tf.constant(np.full((2, 3, 4, 4), 1e3, "float32"))
    pred_masks = tf.constant(np.zeros((2, 3, 4, 4, 4), "float32"))  # log(0) if unclipped
    with tf.GradientTape() as tape:
        tape.watch([pred_bbox, pred_masks])
        bbox = losses.mrcnn_bbox_loss(tf.zeros((2, 3, 4)), target_ids, pred_bbox)
        mask = losses.mrcnn_mask_loss(tf.ones((2, 3, 4, 4)), target_ids, pred_masks)
    assert value(bbox) == 0.0 and value(mask) == 0.0
    for grad in tape.gradient([bbox, mask], [pred_bbox, pred_masks]):
        assert grad is None or np.all(np.asarray(grad) == 0)


@tensorflow_only
def test_losses_inside_a_compiled_function():
    import tensorflow as tf
    # Static-shape code paths: the losses must also trace inside tf.function.
    rng = np.random.default_rng(4)
    match = rng.choice([-1, 0, 1], size=(2, 30, 1), p=[0.4, 0.5, 0.1]).astype("int32")
    target = rng.normal(size=(2, 12, 4)).astype("float32")
    pred = rng.normal(size=(2, 30, 4)).astype("float32")
    compiled = tf.function(losses.rpn_bbox_loss, jit_compile=False)
    assert value(compiled(target, match, pred)) == pytest.approx(
        np_rpn_bbox_loss(target, match[..., 0], pred), rel=1e-5)


# ---------------------------------------------------------------- weight decay
def test_l2_weight_decay_skips_gamma_beta():
    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, name="fc")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    rng = np.random.default_rng(5)
    model.set_weights([rng.normal(size=w.shape) for w in model.weights])
    kept = [model.get_layer(n).weights[i].numpy() for n in ("fc", "out") for i in (0, 1)]
    expected = sum(1e-3 * np.sum(np.square(w)) / w.size for w in kept)
    got = value(losses.l2_weight_decay(model.trainable_weights, 1e-3))
    assert got == pytest.approx(expected, rel=1e-5)
    assert value(losses.l2_weight_decay([], 1e-3)) == 0.0
    with pytest.raises(ValueError, match="weight_decay"):
        losses.l2_weight_decay(model.trainable_weights, -1.0)


def test_l2_weight_decay_gradient():
    layer = keras.layers.Dense(3, name="fc")
    layer.build((None, 2))
    grad = variable_gradients(lambda: losses.l2_weight_decay(layer.trainable_weights, 0.5),
                              [layer.kernel])[0]
    np.testing.assert_allclose(np.asarray(grad), 2 * 0.5 * layer.kernel.numpy() / 6, rtol=1e-6)


@pytest.mark.parametrize("graph", [False, pytest.param(True, marks=tensorflow_only)])
def test_sgd_with_l2_equals_differentiating_the_regulariser(graph):
    """SGDWithL2's updates == SGD with momentum on (loss + l2_weight_decay), clipping
    included, over two steps (the second one uses the momentum of the first)."""
    from mrcnn.training import SGDWithL2

    def build():
        keras.utils.set_random_seed(7)
        inputs = keras.Input((3,))
        x = keras.layers.Dense(4, name="fc")(inputs)
        x = keras.layers.BatchNormalization(name="bn")(x)
        return keras.Model(inputs, keras.layers.Dense(2, name="out")(x))

    rng = np.random.default_rng(8)
    x = rng.normal(size=(5, 3)).astype("float32")
    decay, lr, momentum, clip = 0.05, 0.1, 0.9, 0.5

    def data_loss(model):
        return keras.ops.sum(keras.ops.square(model(x, training=False)))

    # Reference: gradient of the full loss, global-norm clipping and the momentum step
    # (m <- momentum * m - lr * g, w <- w + m) in numpy.
    ref = build()
    velocities = [np.zeros(w.shape, "float32") for w in ref.trainable_weights]
    expected = []
    for _ in range(2):
        grads = [np.asarray(g) for g in variable_gradients(
            lambda: data_loss(ref) + losses.l2_weight_decay(ref.trainable_weights, decay),
            ref.trainable_weights)]
        norm = np.sqrt(sum(np.sum(g * g) for g in grads))
        assert norm > clip  # the clip is active
        velocities = [momentum * v - lr * g * clip / norm for v, g in zip(velocities, grads)]
        expected = [w.numpy() + v for w, v in zip(ref.trainable_weights, velocities)]
        for w, e in zip(ref.trainable_weights, expected):
            w.assign(e)

    model = build()
    optimizer = SGDWithL2(l2=decay, learning_rate=lr, momentum=momentum, global_clipnorm=clip)

    def step():
        grads = variable_gradients(lambda: data_loss(model), model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights))
    if graph:
        import tensorflow as tf
        step = tf.function(step)
    step()
    step()
    for w, e in zip(model.trainable_weights, expected):
        np.testing.assert_allclose(w.numpy(), e, rtol=1e-5, atol=1e-6, err_msg=w.path)
    assert SGDWithL2.from_config(optimizer.get_config()).l2 == decay
    with pytest.raises(ValueError, match="l2"):
        SGDWithL2(l2=-1.0)


def test_sgd_with_l2_clips_as_keras_does():
    """SGDWithL2's global-norm clipping (its own squared norms) == Keras' clip_by_global_norm:
    scaled when over the norm, unchanged under it, NaN for a non-finite norm; None kept."""
    from keras.src.optimizers.base_optimizer import clip_by_global_norm

    from mrcnn.training import SGDWithL2

    rng = np.random.default_rng(3)
    grads = [rng.normal(size=(7, 5)).astype("float32"), None, rng.normal(size=(4,)).astype("float32")]
    for clip in (0.5, 100.0):
        optimizer = SGDWithL2(learning_rate=0.1, global_clipnorm=clip)
        got = optimizer._clip_gradients([None if g is None else keras.ops.convert_to_tensor(g)
                                         for g in grads])
        want = clip_by_global_norm([None if g is None else keras.ops.convert_to_tensor(g)
                                    for g in grads], clip)
        assert got[1] is None
        for g, w in ((got[0], want[0]), (got[2], want[2])):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6)
    inf = [np.full((3,), np.inf, "float32")]
    assert np.isnan(np.asarray(SGDWithL2(global_clipnorm=1.0)._clip_gradients(inf)[0])).all()


def test_squared_norm_equals_numpy():
    x = np.random.default_rng(4).normal(size=(3, 50, 7)).astype("float32")
    expected = float(np.sum(x.astype("float64") ** 2))
    assert float(graph_ops.squared_norm(keras.ops.convert_to_tensor(x))) == pytest.approx(
        expected, rel=1e-5)
    assert float(graph_ops.squared_norm(keras.ops.convert_to_tensor(x), 0.25)) == pytest.approx(
        0.25 * expected, rel=1e-5)


def test_squared_global_norm_equals_numpy():
    rng = np.random.default_rng(5)
    tensors = [rng.normal(size=shape).astype("float32") for shape in [(4, 3), (7,), (2, 2, 5)]]
    expected = sum(float(np.sum(t.astype("float64") ** 2)) for t in tensors)
    got = graph_ops.squared_global_norm([keras.ops.convert_to_tensor(t) for t in tensors])
    assert float(got) == pytest.approx(expected, rel=1e-5)
