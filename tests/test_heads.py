"""RPN, classifier and mask heads against per-ROI numpy re-implementations."""
import functools

import keras
import numpy as np
import pytest

from mrcnn.layers.frozen_norm import BatchNorm
from mrcnn.layers.heads import build_rpn_model, classifier_head, mask_head

from test_backbone import np_bn, np_conv2d, randomize_bn
from tests.backend import gradients, variable_gradients
from tests.serialization import assert_serialization_round_trip


def np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_deconv2x2(x, kernel, bias):
    """Conv2DTranspose 2x2/2: out[2i+a, 2j+b] = x[i, j] @ kernel[a, b].T (kernel [2,2,out,in])."""
    n, h, w, _ = x.shape
    out = np.zeros((n, 2 * h, 2 * w, kernel.shape[2]))
    for a in range(2):
        for b in range(2):
            out[:, a::2, b::2] = x @ kernel[a, b].T
    return out + bias


def randomize_weights(model, rng):
    """Random kernels scaled by 1/sqrt(fan-in) (keeps sigmoids unsaturated), random BN."""
    for layer in model.layers:
        if layer.weights and not isinstance(layer, BatchNorm):
            layer.set_weights([rng.normal(0, 1 / np.sqrt(np.prod(w.shape[:-1])), w.shape)
                               for w in layer.weights])
    randomize_bn(model, rng)


def test_rpn_model_matches_numpy():
    rng = np.random.default_rng(0)
    rpn = build_rpn_model(anchor_stride=1, anchors_per_location=3, depth=8)
    assert rpn.name == "rpn_model"
    assert [l.name for l in rpn.layers if l.weights] == [
        "rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"]
    randomize_weights(rpn, rng)
    fmap = rng.normal(size=(2, 4, 5, 8)).astype("float32")
    logits, probs, bbox = (np.asarray(t) for t in rpn(fmap))

    def conv(name, x, padding="valid"):
        kernel, bias = rpn.get_layer(name).get_weights()
        return np_conv2d(x, kernel, bias, padding=padding)
    shared = np.maximum(conv("rpn_conv_shared", fmap.astype(np.float64), "same"), 0)
    # Anchor order: row-major cell, then anchor within the cell.
    ref_logits = conv("rpn_class_raw", shared).reshape(2, 4 * 5 * 3, 2)
    ref_bbox = conv("rpn_bbox_pred", shared).reshape(2, 4 * 5 * 3, 4)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(probs, np_softmax(ref_logits), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bbox, ref_bbox, rtol=1e-4, atol=1e-4)


def test_rpn_model_dynamic_size_and_stride():
    rpn = build_rpn_model(anchor_stride=2, anchors_per_location=3, depth=4)
    for h, w in ((4, 6), (5, 3)):
        outs = rpn(np.zeros((1, h, w, 4), "float32"))
        cells = -(-h // 2) * -(-w // 2)
        assert [tuple(o.shape) for o in outs] == [(1, cells * 3, 2), (1, cells * 3, 2),
                                                  (1, cells * 3, 4)]
    with pytest.raises(ValueError, match="anchors_per_location"):
        build_rpn_model(1, 0, 256)
    with pytest.raises(ValueError, match="conv_channels"):
        build_rpn_model(1, 3, 256, conv_channels=0)


def test_rpn_conv_width():
    """512 wide by default (Matterport's weight files); narrower on request."""
    assert tuple(build_rpn_model(1, 3, 8).get_layer("rpn_conv_shared").kernel.shape) == (3, 3, 8, 512)
    narrow = build_rpn_model(1, 3, 8, conv_channels=8)
    assert tuple(narrow.get_layer("rpn_conv_shared").kernel.shape) == (3, 3, 8, 8)
    assert tuple(narrow.get_layer("rpn_class_raw").kernel.shape) == (1, 1, 8, 6)
    assert tuple(narrow.get_layer("rpn_bbox_pred").kernel.shape) == (1, 1, 8, 12)


def _classifier_model(n_rois, ps=3, channels=4, num_classes=3, fc=8, train_bn=False):
    pooled = keras.Input((n_rois, ps, ps, channels))
    return keras.Model(pooled, list(classifier_head(pooled, num_classes, train_bn, fc)))


def test_classifier_head_matches_numpy_per_roi():
    rng = np.random.default_rng(1)
    model = _classifier_model(3)
    randomize_weights(model, rng)
    pooled = rng.normal(size=(2, 3, 3, 3, 4)).astype("float32")
    logits, probs, bbox = (np.asarray(t) for t in model(pooled))
    get = model.get_layer

    def fc(name, x):
        kernel, bias = get(name).get_weights()
        return x @ kernel.reshape(-1, kernel.shape[-1]) + bias
    for b in range(2):
        for n in range(3):
            x = pooled[b, n].astype(np.float64).reshape(-1)  # ps x ps valid conv == FC
            x = np.maximum(np_bn(fc("mrcnn_class_conv1", x), get("mrcnn_class_bn1")), 0)
            x = np.maximum(np_bn(fc("mrcnn_class_conv2", x), get("mrcnn_class_bn2")), 0)
            ref_logits = fc("mrcnn_class_logits", x)
            np.testing.assert_allclose(logits[b, n], ref_logits, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(probs[b, n], np_softmax(ref_logits), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(bbox[b, n], fc("mrcnn_bbox_fc", x).reshape(3, 4),
                                       rtol=1e-4, atol=1e-4)
    # Frozen BN: a training-mode call gives the inference outputs.
    np.testing.assert_allclose(np.asarray(model(pooled, training=True)[0]), logits,
                               rtol=1e-5, atol=1e-5)


def test_classifier_head_dynamic_rois_equal_static():
    rng = np.random.default_rng(2)
    static = _classifier_model(5)
    dynamic = _classifier_model(None)
    randomize_weights(static, rng)
    dynamic.set_weights(static.get_weights())
    pooled = rng.normal(size=(2, 5, 3, 3, 4)).astype("float32")
    for a, b in zip(static(pooled), dynamic(pooled)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    assert tuple(dynamic(pooled[:1, :2])[2].shape) == (1, 2, 3, 4)


def test_mask_head_matches_numpy_per_roi():
    rng = np.random.default_rng(3)
    pooled_in = keras.Input((2, 2, 2, 6))
    model = keras.Model(pooled_in, mask_head(pooled_in, num_classes=3, train_bn=False))
    randomize_weights(model, rng)
    pooled = rng.normal(size=(2, 2, 2, 2, 6)).astype("float32")
    masks = np.asarray(model(pooled))
    assert masks.shape == (2, 2, 4, 4, 3)
    get = model.get_layer
    x = pooled.reshape(4, 2, 2, 6).astype(np.float64)  # ROIs in (image, roi) order
    for i in range(1, 5):
        kernel, bias = get(f"mrcnn_mask_conv{i}").get_weights()
        x = np.maximum(np_bn(np_conv2d(x, kernel, bias, padding="same"),
                             get(f"mrcnn_mask_bn{i}")), 0)
    x = np.maximum(np_deconv2x2(x, *get("mrcnn_mask_deconv").get_weights()), 0)
    kernel, bias = get("mrcnn_mask").get_weights()
    ref = 1 / (1 + np.exp(-np_conv2d(x, kernel, bias)))
    np.testing.assert_allclose(masks, ref.reshape(2, 2, 4, 4, 3), rtol=1e-4, atol=1e-5)


def test_trainable_head_bn_updates_in_training():
    model = _classifier_model(2, train_bn=True)
    bn = model.get_layer("mrcnn_class_bn1")
    assert not bn.frozen
    model(np.random.default_rng(4).normal(3, 1, (2, 2, 3, 3, 4)).astype("float32"),
          training=True)
    assert not np.allclose(bn.moving_mean.numpy(), 0.0)


def test_bad_pooled_shape():
    with pytest.raises(ValueError, match="classifier_head"):
        classifier_head(keras.Input((7, 7, 256)), 81)
    with pytest.raises(ValueError, match="mask_head"):
        mask_head(keras.Input((4, None, None, 256)), 81)


def test_head_model_config_round_trip():
    model = _classifier_model(None)
    randomize_weights(model, np.random.default_rng(5))
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    assert clone.get_layer("mrcnn_class_bn1").frozen
    pooled = np.random.default_rng(6).normal(size=(1, 2, 3, 3, 4)).astype("float32")
    for a, b in zip(model(pooled), clone(pooled)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["MergeRoiDim", "SplitRoiDim"])
def test_roi_dim_layers_serialization_round_trip(name):
    from mrcnn.layers import heads
    from tests.serialization import assert_serialization_round_trip
    assert_serialization_round_trip(getattr(heads, name)(name="mrcnn_" + name.lower()))


def test_merge_then_split_roi_dim_round_trips_values():
    from mrcnn.layers.heads import MergeRoiDim, SplitRoiDim
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    merged = MergeRoiDim()(x)
    assert tuple(merged.shape) == (6, 4)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(SplitRoiDim()([merged, x])), x)


@pytest.mark.parametrize("activation", ["relu", "softmax", None])
def test_patch_deconv_equals_conv2d_transpose_with_the_same_weights(activation):
    """Both paths: the matmul (a call that may take gradients: outputs and gradients)
    and the fused 1x1 convolution of inference graphs (training=False)."""
    from mrcnn.layers.conv_as_matmul import PatchDeconv2D

    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 5, 4, 6)).astype("float32")
    for kernel in (2, 3):
        reference = keras.layers.Conv2DTranspose(7, kernel, strides=kernel, activation=activation)
        patch = PatchDeconv2D(7, kernel, strides=kernel, activation=activation)
        reference.build(x.shape)
        patch.build(x.shape)
        assert [w.shape for w in patch.weights] == [w.shape for w in reference.weights]
        patch.set_weights([rng.normal(size=w.shape) for w in reference.weights])
        reference.set_weights(patch.get_weights())
        expected = np.asarray(reference(x))
        for training in (None, True, False):
            np.testing.assert_allclose(np.asarray(patch(x, training=training)), expected,
                                       atol=1e-5, err_msg=f"kernel {kernel}, training={training}")
        # The gradients of the form training graphs take, weighted by a random cotangent.
        cotangent = rng.normal(size=expected.shape).astype("float32")

        def weight_gradients(layer):
            loss = lambda: keras.ops.sum(layer(x, training=True) * cotangent)  # noqa: E731
            return [np.asarray(g) for g in variable_gradients(loss, layer.trainable_weights)]

        def input_gradient(layer):
            return gradients(lambda inputs: layer(inputs, training=True) * cotangent, [x])[0]

        for ours, theirs in zip(weight_gradients(patch), weight_gradients(reference)):
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(input_gradient(patch), input_gradient(reference),
                                   rtol=1e-5, atol=1e-4)
    # Overlapping patches (stride < kernel) take Conv2DTranspose's own path.
    overlapping = PatchDeconv2D(2, 3, strides=2)
    assert not overlapping._is_patch() and tuple(overlapping(x).shape) == (3, 11, 9, 2)
    assert_serialization_round_trip(PatchDeconv2D(4, 2, strides=2, name="mrcnn_mask_deconv"))


@pytest.mark.parametrize("kernel, padding, batch", [(3, "same", 2), (1, "valid", 3), (5, "same", 1)])
def test_matmul_grad_conv_has_conv2d_outputs_and_gradients(kernel, padding, batch):
    """The forward pass is Keras' own; the input and kernel gradients, computed as a
    forward conv and matmuls, equal autodiff's through keras.layers.Conv2D (weighted
    by a random cotangent, so that every output pixel and channel counts)."""
    from mrcnn.layers.conv_as_matmul import MatmulGradConv2D

    rng = np.random.default_rng(13)
    x = rng.normal(size=(batch, 6, 5, 4)).astype("float32")
    cotangent = rng.normal(size=(batch, 6, 5, 3)).astype("float32")
    reference = keras.layers.Conv2D(3, kernel, padding=padding)
    conv = MatmulGradConv2D(3, kernel, padding=padding, matmul_gradient=True)
    reference.build(x.shape)
    conv.build(x.shape)
    conv.set_weights([rng.normal(size=w.shape) for w in reference.weights])
    reference.set_weights(conv.get_weights())
    assert conv._has_matmul_gradient(x)
    np.testing.assert_allclose(np.asarray(conv(x)), np.asarray(reference(x)), atol=1e-5)

    def input_gradient(layer):
        return gradients(lambda inputs: layer(inputs) * cotangent, [x])[0]

    def weight_gradients(layer):
        grads = variable_gradients(lambda: keras.ops.sum(layer(x) * cotangent), layer.trainable_weights)
        return [np.asarray(g) for g in grads]

    np.testing.assert_allclose(input_gradient(conv), input_gradient(reference), rtol=1e-5, atol=1e-4)
    for ours, theirs in zip(weight_gradients(conv), weight_gradients(reference)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)


def test_matmul_grad_conv_takes_its_gradient_only_in_training_graphs(monkeypatch):
    """A model's training step runs the matmul gradient; predict (training=False) runs
    Keras' plain convolution, with the same output."""
    from mrcnn.layers import conv_as_matmul

    calls = []
    original = conv_as_matmul._conv_with_matmul_gradients

    def counted(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(conv_as_matmul, "_conv_with_matmul_gradients", counted)
    inputs = keras.Input((6, 5, 4))
    model = keras.Model(inputs, conv_as_matmul.MatmulGradConv2D(3, 3, padding="same",
                                                                matmul_gradient=True)(inputs))
    model.compile(keras.optimizers.SGD(0.01), "mse")
    x = np.random.default_rng(3).normal(size=(2, 6, 5, 4)).astype("float32")
    calls.clear()
    predicted = model.predict(x, verbose=0)
    assert not calls
    np.testing.assert_allclose(predicted, np.asarray(model(x)), atol=1e-5)  # the matmul path
    assert len(calls) == 1
    model.train_on_batch(x, np.zeros((2, 6, 5, 3), "float32"))
    assert len(calls) == 2


def test_matmul_grad_conv_falls_back_where_its_gradient_does_not_apply():
    from mrcnn.layers.conv_as_matmul import MatmulGradConv2D

    x = np.zeros((1, 8, 8, 2), "float32")
    for layer in (MatmulGradConv2D(3, 3, strides=2, padding="same"),  # Matterport's conv1 and conv_block
                  MatmulGradConv2D(3, 3, padding="valid"),
                  MatmulGradConv2D(3, 2, padding="same"),  # even kernel: padding is not symmetric
                  MatmulGradConv2D(3, 3, padding="same", dilation_rate=2)):
        layer.matmul_gradient = True
        assert not layer._has_matmul_gradient(x)
        plain = {k: v for k, v in layer.get_config().items() if k != "matmul_gradient"}
        assert tuple(layer(x).shape) == tuple(keras.layers.Conv2D(**plain)(x).shape)
    assert_serialization_round_trip(MatmulGradConv2D(4, 3, padding="same", name="fpn_p2"))


def test_matmul_gradient_by_default_except_with_tensorflow_on_a_cpu_with_avx512(tmp_path):
    """The default follows the measurements (MatmulGradConv2D's docstring); True and
    False force it either way; the setting survives the layer's config."""
    from mrcnn import graph_ops
    from mrcnn.layers import conv_as_matmul

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    assert not conv_as_matmul.cpu_has_avx512(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw amx_bf16\n")
    assert conv_as_matmul.cpu_has_avx512(str(cpuinfo))
    assert not conv_as_matmul.cpu_has_avx512(str(tmp_path / "absent"))  # unknown: the matmul one
    expected = not (graph_ops.tensorflow_on_cpu() and conv_as_matmul.cpu_has_avx512())
    assert conv_as_matmul.matmul_gradient_by_default() == expected
    x = np.zeros((1, 6, 5, 4), "float32")
    assert conv_as_matmul.MatmulGradConv2D(3, 3, padding="same")._has_matmul_gradient(x) == expected
    for forced in (True, False):
        layer = conv_as_matmul.MatmulGradConv2D(3, 3, padding="same", matmul_gradient=forced)
        assert layer._has_matmul_gradient(x) == forced
        assert assert_serialization_round_trip(layer).matmul_gradient == forced
    with pytest.raises(ValueError, match="matmul_gradient"):
        conv_as_matmul.MatmulGradConv2D(3, 3, matmul_gradient="yes")


def test_whole_map_conv_equals_conv2d_with_the_same_weights():
    from mrcnn.layers.conv_as_matmul import WholeMapConv2D

    rng = np.random.default_rng(12)
    x = rng.normal(size=(6, 3, 4, 5)).astype("float32")
    reference = keras.layers.Conv2D(7, (3, 4), padding="valid", activation="relu")
    whole = WholeMapConv2D(7, (3, 4), padding="valid", activation="relu")
    reference.build(x.shape)
    whole.build(x.shape)
    assert [w.shape for w in whole.weights] == [w.shape for w in reference.weights]
    whole.set_weights([rng.normal(size=w.shape) for w in reference.weights])
    reference.set_weights(whole.get_weights())
    assert whole._is_whole_map(x)
    np.testing.assert_allclose(np.asarray(whole(x)), np.asarray(reference(x)), atol=1e-4)
    # A kernel smaller than the map is an ordinary convolution.
    assert not whole._is_whole_map(np.zeros((1, 5, 5, 5), "float32"))
    assert_serialization_round_trip(WholeMapConv2D(4, 7, name="mrcnn_class_conv1"))


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("conv_class, kernel, padding", [("MatmulGradConv2D", 3, "same"),
                                                         ("MatmulGradConv2D", 3, "valid"),
                                                         ("WholeMapConv2D", (6, 5), "valid")])
def test_folded_frozen_batch_norm_equals_conv_then_batch_norm(conv_class, kernel, padding, training,
                                                              tmp_path):
    """fold_norm: the conv outputs conv + frozen BN (numpy reference, float64) and the BN
    passes it through; gradients to the input, kernel, bias, gamma and beta equal those
    of the two Keras layers unfolded; a clone from the config runs unfolded, same output;
    a .keras file keeps each layer's weights under its own name. With training=True the
    two larger kernels scale the conv's output instead of folding (kernel_outsizes_output)."""
    from mrcnn.layers import conv_as_matmul
    from mrcnn.layers.frozen_norm import fold_if_frozen

    rng = np.random.default_rng(21)
    x = rng.normal(size=(2, 6, 5, 4)).astype("float32")
    options = {"matmul_gradient": True} if conv_class == "MatmulGradConv2D" else {}
    make_conv = functools.partial(getattr(conv_as_matmul, conv_class), **options)
    folded_conv, folded_bn = make_conv(3, kernel, padding=padding), BatchNorm(frozen=True)
    conv, bn = make_conv(3, kernel, padding=padding), BatchNorm(frozen=True)
    fold_if_frozen(folded_conv, folded_bn)
    assert folded_conv.folded_norm() is folded_bn and folded_bn.folded

    def folded(inputs):
        return folded_bn(folded_conv(inputs, training=training))
    out = folded(x)
    assert folded_conv.kernel_outsizes_output(x.shape) == (padding == "valid")
    unfolded_out = bn(conv(x))
    for a, b in ((conv, folded_conv), (bn, folded_bn)):
        a.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in a.weights])
        b.set_weights(a.get_weights())
    kernel_value, bias_value = conv.get_weights()
    gamma, beta, mean, variance = bn.get_weights()
    raw = np_conv2d(x.astype(np.float64), kernel_value, bias_value, padding=padding)
    reference = (raw - mean) / np.sqrt(variance + bn.epsilon) * gamma + beta
    out = np.asarray(folded(x))
    assert out.shape == unfolded_out.shape
    np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(bn(conv(x))), reference, rtol=1e-4, atol=1e-4)

    cotangent = rng.normal(size=out.shape).astype("float32")
    input_grads = [gradients(lambda inputs: f(inputs) * cotangent, [x])[0]
                   for f in (folded, lambda t: bn(conv(t)))]
    np.testing.assert_allclose(input_grads[0], input_grads[1], rtol=1e-4, atol=1e-3)
    weight_grads = [variable_gradients(lambda: keras.ops.sum(f(x) * cotangent), weights)
                    for f, weights in ((folded, folded_conv.trainable_weights + folded_bn.trainable_weights),
                                       (lambda t: bn(conv(t)), conv.trainable_weights + bn.trainable_weights))]
    assert len(weight_grads[0]) == 4  # kernel, bias, gamma, beta
    for ours, theirs in zip(*weight_grads):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-4, atol=1e-3)

    # The fold is not serialised: clones run unfolded and give the same output.
    conv_clone = type(folded_conv).from_config(folded_conv.get_config())
    bn_clone = BatchNorm.from_config(folded_bn.get_config())
    bn_clone(conv_clone(x))
    conv_clone.set_weights(folded_conv.get_weights())
    bn_clone.set_weights(folded_bn.get_weights())
    assert conv_clone.folded_norm() is None and not bn_clone.folded
    np.testing.assert_allclose(np.asarray(bn_clone(conv_clone(x))), out, rtol=1e-4, atol=1e-4)

    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, folded(inputs))
    model.save(tmp_path / "folded.keras")
    loaded = keras.saving.load_model(tmp_path / "folded.keras")
    np.testing.assert_allclose(np.asarray(loaded(x)), out, rtol=1e-4, atol=1e-4)


def test_kernel_outsizes_output_counts_elements():
    from mrcnn.layers.conv_as_matmul import MatmulGradConv2D, WholeMapConv2D

    conv = MatmulGradConv2D(2048, 1, name="res5a_branch2c")
    conv.build((None, 16, 16, 512))
    # kernel 512 * 2048 = 1,048,576 against 16 * 16 * 2048 = 524,288 a 512-px image
    assert conv.kernel_outsizes_output((None, 16, 16, 512))
    assert conv.kernel_outsizes_output((1, 16, 16, 512))
    assert not conv.kernel_outsizes_output((2, 32, 16, 512))  # 2 * 32 * 16 * 2048 = 2,097,152
    assert not conv.kernel_outsizes_output((None, None, 16, 512))  # unknown size
    head = WholeMapConv2D(1024, 7, name="mrcnn_class_conv1")
    head.build((None, 7, 7, 256))
    assert head.kernel_outsizes_output((None, 7, 7, 256))  # 12,845,056 against 1024 a ROI
    assert not head.kernel_outsizes_output((12545, 7, 7, 256))


def test_fold_norm_refuses_what_does_not_fold():
    from mrcnn.layers.frozen_norm import fold_if_frozen
    from mrcnn.layers.conv_as_matmul import MatmulGradConv2D

    # A trainable BN normalises with batch statistics: it stays a layer of its own.
    conv, bn = MatmulGradConv2D(3, 1), BatchNorm(frozen=False)
    fold_if_frozen(conv, bn)
    assert conv.folded_norm() is None and not bn.folded
    with pytest.raises(ValueError, match="frozen BatchNorm"):
        MatmulGradConv2D(3, 1).fold_norm(keras.layers.BatchNormalization())
    with pytest.raises(ValueError, match="activation"):
        MatmulGradConv2D(3, 1, activation="relu").fold_norm(BatchNorm(frozen=True))
