"""Backbone + FPN: Matterport's weight layout, shapes, frozen BatchNorm, numpy references."""

import keras
import numpy as np
import pytest

from mrcnn.layers.backbone import fpn_graph, resnet_graph
from mrcnn.layers.frozen_norm import BatchNorm
from mrcnn.layers.heads import build_rpn_model, classifier_head, mask_head
from tests.reference import matterport_file_facts


# ---------------------------------------------------------------- numpy references
def np_conv2d(x, kernel, bias, stride=1, padding="valid"):
    """NHWC cross-correlation; 'same' pads like TF (extra row/col at the end)."""
    kh, kw = kernel.shape[:2]
    if padding == "same":
        x = _tf_same_pad(x, kh, kw, stride)
    n, h, w, _ = x.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((n, oh, ow, kernel.shape[3]), np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
            out += patch @ kernel[i, j]
    return out + bias


def _tf_same_pad(x, kh, kw, stride, value=0.0):
    def pads(size, k):
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        return total // 2, total - total // 2
    return np.pad(x, ((0, 0), pads(x.shape[1], kh), pads(x.shape[2], kw), (0, 0)),
                  constant_values=value)


def np_maxpool_same(x, k, stride):
    x = _tf_same_pad(x, k, k, stride, value=-np.inf)
    n, h, w, c = x.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.full((n, oh, ow, c), -np.inf)
    for i in range(k):
        for j in range(k):
            out = np.maximum(out, x[:, i:i + stride * (oh - 1) + 1:stride,
                                   j:j + stride * (ow - 1) + 1:stride])
    return out


def np_bn(x, layer):
    gamma, beta, mean, var = (np.asarray(w) for w in layer.get_weights())
    return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta


def np_conv_layer(x, layer, padding="valid"):
    kernel, bias = layer.get_weights()
    return np_conv2d(x, kernel, bias, stride=layer.strides[0], padding=padding)


def randomize_bn(model, rng):
    """Non-trivial BN statistics, so that a misplaced BN changes the outputs."""
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                               rng.normal(0, 0.1, c), rng.uniform(0.5, 2.0, c)])


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def coco_model():
    """ResNet-101 + FPN + rpn_model + heads for 81 classes (built once)."""
    image = keras.Input((None, None, 3), name="input_image")
    c = resnet_graph(image, "resnet101", stage5=True, train_bn=False)
    p = fpn_graph(*c[1:], pyramid_size=256)
    rpn = build_rpn_model(anchor_stride=1, anchors_per_location=3, depth=256)
    rpn_out = [rpn(level)[0] for level in p]
    pooled = keras.Input((2, 7, 7, 256), name="pooled")
    mask_pooled = keras.Input((2, 14, 14, 256), name="mask_pooled")
    class_out = classifier_head(pooled, 81, train_bn=False, fc_layers_size=1024)
    mask_out = mask_head(mask_pooled, 81, train_bn=False)
    return keras.Model([image, pooled, mask_pooled],
                       c[1:] + p + rpn_out + list(class_out) + [mask_out])


@pytest.fixture(scope="module")
def resnet50():
    image = keras.Input((None, None, 3))
    outputs = resnet_graph(image, "resnet50", stage5=True, train_bn=False)
    return keras.Model(image, outputs)


def _weight_list(layer):
    """[(layer_name/weight_name, shape)] in the layer's weight order, nested models flattened."""
    if isinstance(layer, keras.Model):
        return [pair for inner in layer.layers for pair in _weight_list(inner)]
    return [(f"{layer.name}/{w.name}", tuple(w.shape)) for w in layer.weights]


# ---------------------------------------------------------------- tests
def test_coco_layout_matches_model(coco_model):
    layout = matterport_file_facts("matterport_coco_h5_layout.json")["weighted_layers"]
    expected = {
        entry["layer"]: [(w["name"].removesuffix(":0"), tuple(w["shape"]))
                         for w in entry["weights"]]
        for entry in layout
    }
    actual = {layer.name: _weight_list(layer) for layer in coco_model.layers if layer.weights}
    assert sorted(actual) == sorted(expected)
    for name, weights in expected.items():
        assert actual[name] == weights, name


def test_coco_model_output_shapes(coco_model):
    rng = np.random.default_rng(0)
    outs = coco_model([rng.normal(size=(1, 64, 64, 3)).astype("float32"),
                       rng.normal(size=(1, 2, 7, 7, 256)).astype("float32"),
                       rng.normal(size=(1, 2, 14, 14, 256)).astype("float32")])
    shapes = [tuple(o.shape) for o in outs]
    assert shapes[:4] == [(1, 16, 16, 256), (1, 8, 8, 512), (1, 4, 4, 1024), (1, 2, 2, 2048)]
    assert shapes[4:9] == [(1, 16, 16, 256), (1, 8, 8, 256), (1, 4, 4, 256),
                           (1, 2, 2, 256), (1, 1, 1, 256)]
    assert shapes[9:14] == [(1, 16 * 16 * 3, 2), (1, 8 * 8 * 3, 2), (1, 4 * 4 * 3, 2),
                            (1, 2 * 2 * 3, 2), (1, 3, 2)]
    assert shapes[14:] == [(1, 2, 81), (1, 2, 81), (1, 2, 81, 4), (1, 2, 28, 28, 81)]


def test_resnet50_imagenet_names(resnet50):
    files = matterport_file_facts("matterport_h5_layer_names.json")["files"]
    names = files["resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"]["layer_names"]
    wanted = [n for n in names if n.startswith(("conv1", "bn_conv1", "res", "bn"))]
    assert len(wanted) == 106
    ours = {layer.name: layer for layer in resnet50.layers}
    for name in wanted:
        assert name in ours and ours[name].weights, name
    stage4 = sorted(n for n in ours if n.startswith("res4") and n.endswith("_out"))
    assert stage4 == [f"res4{b}_out" for b in "abcdef"]


def test_resnet50_shapes_and_stage5(resnet50):
    outs = resnet50(np.zeros((2, 64, 128, 3), "float32"))
    assert [tuple(o.shape) for o in outs] == [
        (2, 16, 32, 64), (2, 16, 32, 256), (2, 8, 16, 512), (2, 4, 8, 1024), (2, 2, 4, 2048)]
    image = keras.Input((64, 64, 3))
    c = resnet_graph(image, "resnet50", stage5=False)
    assert c[4] is None and tuple(c[3].shape) == (None, 4, 4, 1024)


def test_stem_and_first_block_match_numpy(resnet50):
    rng = np.random.default_rng(1)
    randomize_bn(resnet50, rng)
    x = rng.normal(size=(1, 32, 32, 3)).astype("float32")
    probe = keras.Model(resnet50.inputs,
                        [resnet50.outputs[0], resnet50.get_layer("res2a_out").output])
    c1, res2a = (np.asarray(t) for t in probe([x]))
    get = resnet50.get_layer

    # Stem: ZeroPadding(3) + 7x7/2 valid conv + BN + relu + 3x3/2 'same' max-pool.
    padded = np.pad(x.astype(np.float64), ((0, 0), (3, 3), (3, 3), (0, 0)))
    ref = np.maximum(np_bn(np_conv_layer(padded, get("conv1")), get("bn_conv1")), 0)
    ref_c1 = np_maxpool_same(ref, 3, 2)
    np.testing.assert_allclose(c1, ref_c1, rtol=1e-4, atol=1e-4)

    # res2a: bottleneck branch + projection shortcut, relu after the sum.
    def branch(name, inp, padding="valid", relu=True):
        y = np_bn(np_conv_layer(inp, get("res2a_" + name), padding), get("bn2a_" + name))
        return np.maximum(y, 0) if relu else y
    y = branch("branch2a", ref_c1)
    y = branch("branch2b", y, padding="same")
    y = branch("branch2c", y, relu=False)
    ref_res2a = np.maximum(y + branch("branch1", ref_c1, relu=False), 0)
    np.testing.assert_allclose(res2a, ref_res2a, rtol=1e-4, atol=1e-3)


def _bn_layers(model):
    return [layer for layer in model.layers if isinstance(layer, BatchNorm)]


def test_frozen_bn_never_updates(resnet50):
    bns = _bn_layers(resnet50)
    assert len(bns) == 53 and all(bn.frozen for bn in bns)
    randomize_bn(resnet50, np.random.default_rng(2))
    before = [bn.moving_mean.numpy().copy() for bn in bns]
    x = np.random.default_rng(3).normal(size=(2, 64, 64, 3)).astype("float32")
    out_train = resnet50(x, training=True)[-1]
    out_infer = resnet50(x, training=False)[-1]
    for bn, mean in zip(bns, before):
        np.testing.assert_array_equal(bn.moving_mean.numpy(), mean)
    np.testing.assert_allclose(np.asarray(out_train), np.asarray(out_infer), rtol=1e-5, atol=1e-5)
    # gamma/beta stay trainable as in Matterport; only the statistics are frozen.
    trainable = {w.path for w in resnet50.trainable_weights}
    assert "bn_conv1/gamma" in trainable and "bn_conv1/beta" in trainable


def test_trainable_bn_updates_only_in_training():
    image = keras.Input((None, None, 3))
    c1 = resnet_graph(image, "resnet50", stage5=False, train_bn=True)[0]
    model = keras.Model(image, c1)
    bn = model.get_layer("bn_conv1")
    assert not bn.frozen
    x = np.random.default_rng(4).normal(5.0, 1.0, size=(2, 32, 32, 3)).astype("float32")
    start = bn.moving_mean.numpy().copy()
    model(x, training=False)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), start)
    model(x, training=True)
    assert not np.allclose(bn.moving_mean.numpy(), start)


def np_group_norm(x, gamma, beta, groups, epsilon):
    n, h, w, c = x.shape
    g = x.reshape(n, h, w, groups, c // groups).astype(np.float64)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    var = g.var(axis=(1, 2, 4), keepdims=True)
    return ((g - mean) / np.sqrt(var + epsilon)).reshape(x.shape) * gamma + beta


def test_group_norm_backbone_matches_numpy_and_ignores_the_batch():
    image = keras.Input((None, None, 3))
    model = keras.Model(image, resnet_graph(image, "resnet50", stage5=False, norm="group")[1])
    conv1, norm1 = model.get_layer("conv1"), model.get_layer("bn_conv1")
    # Same layer names as the BatchNorm backbone; only scale and offset, no statistics.
    assert isinstance(norm1, keras.layers.GroupNormalization)
    assert [w.name for w in norm1.weights] == ["gamma", "beta"]
    assert not any(isinstance(layer, BatchNorm) for layer in model.layers)
    rng = np.random.default_rng(6)
    norm1.set_weights([rng.normal(size=64), rng.normal(size=64)])
    probe = keras.Model(model.input, [conv1.output, norm1.output, model.output])
    x = rng.normal(size=(2, 32, 32, 3)).astype("float32")
    conv_out, norm_out, c2 = (np.asarray(t) for t in probe(x, training=True))
    ref = np_group_norm(conv_out, *norm1.get_weights(), groups=32, epsilon=norm1.epsilon)
    np.testing.assert_allclose(norm_out, ref, rtol=1e-4, atol=1e-4)
    # Each image is normalised on its own: training and inference agree, and an
    # image's features do not depend on the other images of the batch.
    alone = np.asarray(probe(x[:1], training=True)[2])
    np.testing.assert_allclose(alone[0], c2[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(probe(x, training=False)[2]), c2, rtol=1e-4, atol=1e-4)


def test_fpn_matches_numpy():
    rng = np.random.default_rng(5)
    channels, sizes = (3, 4, 5, 6), (8, 4, 2, 1)
    inputs = [keras.Input((s, s, c)) for s, c in zip(sizes, channels)]
    model = keras.Model(inputs, fpn_graph(*inputs, pyramid_size=4))
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([rng.normal(size=w.shape) for w in layer.weights])
    c = [rng.normal(size=(2, s, s, ch)).astype("float32") for s, ch in zip(sizes, channels)]
    outs = [np.asarray(o) for o in model(c)]

    def up(t):
        return t.repeat(2, axis=1).repeat(2, axis=2)
    lat = {lvl: np_conv_layer(c[lvl - 2].astype(np.float64), model.get_layer(f"fpn_c{lvl}p{lvl}"))
           for lvl in (2, 3, 4, 5)}
    top = {5: lat[5]}
    for lvl in (4, 3, 2):
        top[lvl] = up(top[lvl + 1]) + lat[lvl]
    for i, lvl in enumerate((2, 3, 4, 5)):
        ref = np_conv_layer(top[lvl], model.get_layer(f"fpn_p{lvl}"), padding="same")
        np.testing.assert_allclose(outs[i], ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(outs[4], outs[3][:, ::2, ::2])
    assert [model.get_layer(f"fpn_p{lvl}upsampled") for lvl in (3, 4, 5)]
    assert [model.get_layer(f"fpn_p{lvl}add") for lvl in (2, 3, 4)]


def test_bad_arguments():
    image = keras.Input((64, 64, 3))
    with pytest.raises(ValueError, match="architecture"):
        resnet_graph(image, "resnet152")
    with pytest.raises(ValueError, match="train_bn"):
        resnet_graph(image, "resnet50", train_bn="yes")
    with pytest.raises(ValueError, match="norm"):
        resnet_graph(image, "resnet50", norm="layer")
    with pytest.raises(ValueError, match="groups"):
        resnet_graph(image, "resnet50", norm="group", groups=5)
    with pytest.raises(ValueError, match="C5"):
        fpn_graph(image, image, image, None)


def test_batch_norm_serialization_round_trip():
    from tests.serialization import assert_serialization_round_trip
    clone = assert_serialization_round_trip(BatchNorm(frozen=True, name="bn_conv1"))
    assert clone.frozen is True


def test_nearest_upsampling_repeats_each_pixel_on_dynamic_shapes():
    """NearestUpsampling2D (the FPN's fpn_p*upsampled) against numpy's repeat, on a model
    with dynamic batch and spatial sizes, called on two sizes."""
    from mrcnn.layers.backbone import NearestUpsampling2D
    from tests.serialization import assert_serialization_round_trip

    rng = np.random.default_rng(8)
    inputs = keras.Input((None, None, 2))
    model = keras.Model(inputs, NearestUpsampling2D(3)(inputs))
    for shape in ((2, 4, 5, 2), (1, 1, 3, 2)):
        x = rng.normal(size=shape).astype("float32")
        np.testing.assert_array_equal(np.asarray(model.predict(x, verbose=0)),
                                      x.repeat(3, axis=1).repeat(3, axis=2))
    assert NearestUpsampling2D(2).compute_output_shape((None, 4, None, 6)) == (None, 8, None, 6)
    assert assert_serialization_round_trip(NearestUpsampling2D(2, name="fpn_p5upsampled")).factor == 2
