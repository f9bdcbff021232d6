"""Tests of mrcnn.weight_stats: per-tensor statistics and their one set of flag rules,
shared by the text table and visualize.display_weight_stats."""

import keras
import numpy as np
import pytest
from keras import layers

from mrcnn import weight_stats as S


def test_weight_stats_match_numpy():
    image = keras.Input((8, 8, 3))
    x = layers.Conv2D(2, 3, name="conv1")(image)
    x = layers.BatchNormalization(name="bn_conv1")(x)
    model = keras.Model(image, layers.Dense(2, name="head")(x))
    kernel = np.random.default_rng(3).normal(size=(3, 3, 3, 2)).astype(np.float32)
    kernel[0, 0, 0, :] = 0.0
    model.get_layer("conv1").kernel.assign(kernel)
    model.get_layer("bn_conv1").gamma.assign(np.zeros(2, np.float32))  # dead: zero scale
    model.get_layer("head").kernel.assign(np.full((2, 2), 5000.0, np.float32))

    rows = {r.name: r for r in S.weight_stats(model)}
    assert list(rows)[:2] == ["conv1/kernel:0", "conv1/bias:0"]
    r = rows["conv1/kernel:0"]
    assert r.shape == (3, 3, 3, 2) and r.layer == "conv1"
    np.testing.assert_allclose([r.min, r.max, r.mean, r.std],
                               [kernel.min(), kernel.max(), kernel.mean(), kernel.std()],
                               rtol=1e-6)
    assert r.zero_share == pytest.approx(2 / kernel.size) and r.flags == ()
    assert rows["conv1/bias:0"].flags == ()  # zeros: an untouched initial bias
    assert rows["bn_conv1/moving_variance:0"].flags == ()
    assert rows["bn_conv1/gamma:0"].flags == ("dead?",)
    assert rows["head/kernel:0"].flags == ("dead?", "overflow?")
    assert "head/kernel:0" in S.format_weight_stats(list(rows.values()))


@pytest.mark.parametrize("short, values, flags", [
    ("kernel", np.full(6, 0.3), ("dead?",)),          # constant, not an initial value
    ("kernel", np.full(6, 0.0), ("dead?",)),          # an all-zero kernel is dead
    ("bias", np.zeros(6), ()),                        # untouched initial bias
    ("gamma", np.ones(6), ()),                        # untouched initial scale
    ("gamma", np.zeros(6), ("dead?",)),               # zero scale silences the channel
    ("kernel", np.full(6, 3000.0), ("dead?", "overflow?")),
    ("kernel", np.array([-2000.0, 1.0]), ("overflow?",)),
    ("kernel", np.array([0.5]), ()),                  # one element: never dead
    ("kernel", np.array([1e6, 1e6 * (1 + 1e-12)]), ("dead?", "overflow?")),  # rounding only
])
def test_flags_one_rule(short, values, flags):
    assert S.stats_flags(short, float(values.min()), float(values.max()), values.size) == flags
    row = S.tensor_stats("layer", f"layer/{short}:0", values)
    assert row.flags == flags
    # Precomputed rows (name, shape, min, max, std) get the same flags.
    assert S.summary_stats(f"layer/{short}:0", values.shape, values.min(), values.max(),
                           values.std()).flags == flags


def test_display_weight_stats_uses_the_same_flags(capsys):
    from mrcnn import visualize
    model_rows = [S.tensor_stats("conv", "conv/kernel:0", np.full((2, 2), 0.25)),
                  S.tensor_stats("conv", "conv/bias:0", np.zeros(2))]
    text = visualize.display_weight_stats(model_rows)
    lines = text.splitlines()
    assert lines[1].startswith("conv/kernel:0") and lines[1].endswith("dead?")
    assert lines[2].startswith("conv/bias:0") and "dead?" not in lines[2]


def test_leaf_layers_expand_nested_models_and_wrappers():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, layers.Dense(3, name="inner_dense")(inner_in), name="nested")
    image = keras.Input((2, 4))
    x = layers.TimeDistributed(layers.Dense(4, name="td_dense"), name="wrapper")(image)
    out = inner(layers.Flatten()(layers.Dense(2, name="plain")(x))[:, :4])
    model = keras.Model(image, out)
    leaves = list(S.leaf_layers(model))
    assert [type(leaf).__name__ for leaf in leaves] == ["Dense", "Dense", "Dense"]
    assert {leaf.name for leaf in leaves} == {"td_dense", "plain", "inner_dense"}
    assert list(S.leaf_layers(model, ("Conv2D",))) == []


def test_leaf_layers_by_type_take_subclasses():
    """mrcnn's convolutions (MatmulGradConv2D, WholeMapConv2D) are Conv2D layers."""
    from mrcnn.layers.conv_as_matmul import MatmulGradConv2D, WholeMapConv2D

    image = keras.Input((3, 3, 2))
    x = MatmulGradConv2D(4, 3, padding="same", name="fpn_p2")(image)
    x = WholeMapConv2D(5, 3, name="mrcnn_class_conv1")(x)
    model = keras.Model(image, layers.Dense(2, name="plain")(x))
    assert [leaf.name for leaf in S.leaf_layers(model, ("Conv2D",))] == ["fpn_p2", "mrcnn_class_conv1"]
