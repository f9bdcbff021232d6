"""Tests of mrcnn.weights: Keras-2 HDF5 weights I/O (issue 5).

Files are written here with h5py in the exact Keras-2 layout of Matterport's
mask_rcnn_coco.h5 (weight names from tests/data), independently of the
writer under test; Keras 3's own legacy h5 reader is a second, independent check
of what `save_weights` writes.
"""

import ast
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import keras
import numpy as np
import pytest
from keras import layers

from mrcnn import weights as W
from mrcnn.errors import WeightsError
from tests.reference import matterport_file_facts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def coco_layout():
    """{layer: [(weight_name, shape)]} of mask_rcnn_coco.h5, in file order."""
    ref = matterport_file_facts("matterport_coco_h5_layout.json")
    return {entry["layer"]: [(w["name"], tuple(w["shape"])) for w in entry["weights"]]
            for entry in ref["weighted_layers"]}


@pytest.fixture(scope="module")
def coco_layer_names():
    ref = matterport_file_facts("matterport_h5_layer_names.json")
    return ref["files"]["mask_rcnn_coco.h5"]["layer_names"]


# --- A small model with Matterport's layer names --------------------------------------

def build_small_model(num_classes=3):
    """Matterport-named layers: plain conv/BN, a nested 'rpn_model', TimeDistributed heads."""
    image = keras.Input((16, 16, 3), name="input_image")
    x = layers.ZeroPadding2D(1, name="zero_padding2d_1")(image)
    x = layers.Conv2D(4, 3, strides=2, name="conv1")(x)
    x = layers.BatchNormalization(name="bn_conv1")(x)
    x = layers.Activation("relu", name="activation_1")(x)
    x = layers.Conv2D(6, 1, name="res2a_branch2a")(x)
    x = layers.BatchNormalization(name="bn2a_branch2a")(x)
    p2 = layers.Conv2D(5, 1, name="fpn_c2p2")(x)

    feature_map = keras.Input((None, None, 5), name="input_rpn_feature_map")
    shared = layers.Conv2D(7, 3, padding="same", name="rpn_conv_shared")(feature_map)
    rpn_class = layers.Conv2D(6, 1, name="rpn_class_raw")(shared)
    rpn_bbox = layers.Conv2D(12, 1, name="rpn_bbox_pred")(shared)
    rpn = keras.Model(feature_map, [rpn_class, rpn_bbox], name="rpn_model")
    rpn_class_out, rpn_bbox_out = rpn(p2)

    rois = layers.Reshape((1, 8, 8, 5), name="roi_reshape")(p2)
    m = layers.TimeDistributed(layers.Conv2D(4, 3, padding="same"), name="mrcnn_mask_conv1")(rois)
    m = layers.TimeDistributed(layers.BatchNormalization(), name="mrcnn_mask_bn1")(m)
    flat = layers.Reshape((1, 8 * 8 * 5), name="pool_squeeze")(rois)
    logits = layers.TimeDistributed(layers.Dense(num_classes), name="mrcnn_class_logits")(flat)
    bbox = layers.TimeDistributed(layers.Dense(num_classes * 4), name="mrcnn_bbox_fc")(flat)
    return keras.Model(image, [rpn_class_out, rpn_bbox_out, m, logits, bbox])


def expected_keras2_name(layer, var):
    """The Keras-2 name of a variable, derived from Keras 3's own paths."""
    if isinstance(layer, keras.Model):
        return f"{var.path}:0"  # 'rpn_conv_shared/kernel' inside the nested model
    return f"{layer.name}/{var.name}:0"


def model_values(model):
    """{keras-2 weight name: value} of every variable."""
    return {expected_keras2_name(layer, v): np.array(v.numpy())
            for layer in model.layers for v in layer.weights}


def distinct_values(model, offset=0.0):
    """{keras-2 weight name: array} with values unique across all weights."""
    values = {}
    for k, (name, value) in enumerate(sorted(model_values(model).items())):
        ramp = np.arange(value.size, dtype=np.float32).reshape(value.shape) / (2 * value.size)
        values[name] = (offset + k + 1 + ramp).astype(np.float32)
    return values


def write_keras2_file(path, model, values, weight_order=None, layer_rename=None,
                      drop=(), under_model_weights=False, root_attrs=None):
    """Write `values` in the Keras-2 layout with plain h5py (independent of mrcnn.weights).

    Weight names per layer come from `weight_order` (default: the model's Keras-2
    names in model order); `values` is keyed by those names.
    """
    rename = layer_rename or {}
    attrs = {"backend": b"tensorflow", "keras_version": b"2.0.8"} if root_attrs is None \
        else root_attrs
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if under_model_weights else f
        names = [rename.get(layer.name, layer.name) for layer in model.layers]
        root.attrs["layer_names"] = np.array([n.encode("utf8") for n in names])
        for key, value in attrs.items():
            root.attrs[key] = value
        for layer, file_name in zip(model.layers, names):
            group = root.create_group(file_name)
            weight_names = [expected_keras2_name(layer, v) for v in layer.weights]
            if weight_order is not None and layer.name in weight_order:
                weight_names = list(weight_order[layer.name])
            weight_names = [n for n in weight_names if n not in drop]
            group.attrs["weight_names"] = np.array([n.encode("utf8") for n in weight_names]) \
                if weight_names else np.zeros((0,), np.float64)
            for name in weight_names:
                group.create_dataset(name, data=values[name])


@pytest.fixture(scope="module")
def small_model():
    return build_small_model()


def weighted_layer_names(model):
    return [layer.name for layer in model.layers if layer.weights]


# --- Reading ----------------------------------------------------------------------------

def test_small_model_uses_matterport_names(small_model, coco_layout, coco_layer_names):
    for name in weighted_layer_names(small_model):
        assert name in coco_layout and name in coco_layer_names
    # The reference weight names are what Keras 3 paths give in Keras-2 form.
    for layer in small_model.layers:
        if layer.weights:
            ref_names = {n for n, _ in coco_layout[layer.name]}
            ours = {expected_keras2_name(layer, v) for v in layer.weights}
            assert ours == ref_names, layer.name


@pytest.mark.parametrize("order", ["reference", "reversed"])
def test_load_by_name_puts_every_value_in_its_variable(tmp_path, small_model, coco_layout, order):
    values = distinct_values(small_model)
    weight_order = {name: [n for n, _ in entries] for name, entries in coco_layout.items()}
    if order == "reversed":  # a positional loader would scramble these
        weight_order = {k: v[::-1] for k, v in weight_order.items()}
    path = tmp_path / "coco_like.h5"
    write_keras2_file(path, small_model, values, weight_order=weight_order)

    model = build_small_model()
    report = W.load_weights(model, path)

    loaded = model_values(model)
    assert set(loaded) == set(values)
    for name, value in values.items():
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)
    assert report.loaded == weighted_layer_names(model)
    assert report.skipped == report.missing_in_model == report.missing_in_file == []
    assert report.filepath == str(path)


def test_load_from_whole_model_file(tmp_path, small_model):
    values = distinct_values(small_model, offset=50)
    path = tmp_path / "whole_model.h5"
    write_keras2_file(path, small_model, values, under_model_weights=True)
    model = build_small_model()
    W.load_weights(model, path)
    loaded = model_values(model)
    for name, value in values.items():
        np.testing.assert_array_equal(loaded[name], value)


def test_exclude_keeps_values_and_reports(tmp_path):
    file_model = build_small_model(num_classes=81)  # COCO heads
    values = distinct_values(file_model)
    path = tmp_path / "coco81.h5"
    write_keras2_file(path, file_model, values)

    model = build_small_model(num_classes=3)
    before = model_values(model)
    report = W.load_weights(model, path, exclude=["mrcnn_class_logits", "mrcnn_bbox_fc"])
    after = model_values(model)
    for name in after:
        if name.startswith(("mrcnn_class_logits/", "mrcnn_bbox_fc/")):
            np.testing.assert_array_equal(after[name], before[name])
        else:
            np.testing.assert_array_equal(after[name], values[name])
    assert report.skipped == ["mrcnn_class_logits", "mrcnn_bbox_fc"]
    assert "mrcnn_bbox_fc" not in report.loaded and "rpn_model" in report.loaded

    # Regular expressions match whole model layer names.
    model2 = build_small_model(num_classes=3)
    report2 = W.load_weights(model2, path, by_name=False, exclude=[r"mrcnn_(class_logits|bbox_fc)"])
    assert report2.skipped == report.skipped


def test_shape_mismatch_is_a_clear_error_and_loads_nothing(tmp_path):
    file_model = build_small_model(num_classes=81)
    path = tmp_path / "coco81.h5"
    write_keras2_file(path, file_model, distinct_values(file_model))
    model = build_small_model(num_classes=3)
    before = model_values(model)
    with pytest.raises(WeightsError) as info:
        W.load_weights(model, path)
    message = str(info.value)
    assert str(path) in message
    assert "4 weight(s) in 2 layer(s) do not fit" in message
    assert "exclude=['mrcnn_class_logits', 'mrcnn_bbox_fc']" in message
    assert "'mrcnn_bbox_fc'" in message and "'kernel'" in message
    assert "(320, 324)" in message and "(320, 12)" in message  # file and model shapes
    assert "exclude" in message
    for name, value in model_values(model).items():  # nothing assigned
        np.testing.assert_array_equal(value, before[name])


def test_missing_weight_is_a_clear_error(tmp_path, small_model):
    path = tmp_path / "no_variance.h5"
    write_keras2_file(path, small_model, distinct_values(small_model),
                      drop={"bn_conv1/moving_variance:0"})
    with pytest.raises(ValueError) as info:
        W.load_weights(build_small_model(), path)
    message = str(info.value)
    assert str(path) in message and "'bn_conv1'" in message and "'moving_variance'" in message
    assert "model shape (4,)" in message and "file shape absent" in message


def test_batchnorm_file_does_not_load_into_group_norm(tmp_path):
    """A BACKBONE_NORM="group" model has no moving statistics to put BN files in."""
    from mrcnn.layers.backbone import resnet_graph

    def stem(norm):
        image = keras.Input((None, None, 3), name="input_image")
        return keras.Model(image, resnet_graph(image, "resnet50", stage5=False, norm=norm)[0])

    bn_model = stem("batch")
    path = tmp_path / "bn.h5"
    write_keras2_file(path, bn_model, distinct_values(bn_model))
    gn_model = stem("group")
    before = model_values(gn_model)
    with pytest.raises(WeightsError) as info:
        W.load_weights(gn_model, path)
    message = str(info.value)
    assert str(path) in message and "'bn_conv1'" in message and "moving_mean" in message
    assert "comes from a BatchNorm model" in message
    # Summarised: a count, a few lines, the exclude patterns (not one line per weight).
    assert len(message.splitlines()) <= 12
    assert "exclude=['bn_conv1']" in message
    for name, value in model_values(gn_model).items():  # nothing assigned
        np.testing.assert_array_equal(value, before[name])


def test_layers_on_one_side_only_are_reported(tmp_path, small_model):
    path = tmp_path / "partial.h5"
    write_keras2_file(path, small_model, distinct_values(small_model),
                      layer_rename={"fpn_c2p2": "fpn_c2p2_old"},
                      drop={"mrcnn_mask_bn1/" + n + ":0"
                            for n in ("gamma", "beta", "moving_mean", "moving_variance")})
    report = W.load_weights(build_small_model(), path)
    assert report.missing_in_model == ["fpn_c2p2_old"]
    assert report.missing_in_file == ["fpn_c2p2", "mrcnn_mask_bn1"]
    assert "conv1" in report.loaded and "fpn_c2p2" not in report.loaded
    assert "fpn_c2p2_old" in report.summary()


def test_load_in_order_ignores_layer_names(tmp_path, small_model):
    values = distinct_values(small_model)
    rename = {name: f"renamed_{i}" for i, name in enumerate(weighted_layer_names(small_model))
              if name != "rpn_model"}
    path = tmp_path / "renamed.h5"
    write_keras2_file(path, small_model, values, layer_rename=rename)
    model = build_small_model()
    # Names differ: only rpn_model fits, a partial load that must be asked for.
    by_name = W.load_weights(model, path, by_name=True, allow_partial=True)
    assert by_name.loaded == ["rpn_model"]
    assert by_name.missing_in_model == list(rename.values())
    report = W.load_weights(model, path, by_name=False)
    loaded = model_values(model)
    for name, value in values.items():
        np.testing.assert_array_equal(loaded[name], value)
    assert report.loaded == weighted_layer_names(model)


def test_load_in_order_needs_equal_layer_counts(tmp_path, small_model):
    path = tmp_path / "ok.h5"
    write_keras2_file(path, small_model, distinct_values(small_model))
    image = keras.Input((16, 16, 3))
    tiny = keras.Model(image, layers.Conv2D(4, 3, name="conv1")(image))
    with pytest.raises(ValueError, match=r"layer count mismatch.*model has 1 .*file has 10"):
        W.load_weights(tiny, path, by_name=False)


def test_keras1_names_of_the_imagenet_resnet50_file(tmp_path):
    """keras-applications' ResNet-50 file: flat Keras-1 names, no root attributes."""
    image = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, name="conv1")(image)
    model = keras.Model(image, layers.BatchNormalization(name="bn_conv1")(x))
    rng = np.random.default_rng(0)
    kernel, bias = rng.normal(size=(3, 3, 3, 4)), rng.normal(size=4)
    gamma, beta, mean, var = (rng.normal(size=4) for _ in range(4))
    path = tmp_path / "resnet50_keras1.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"input_1", b"conv1", b"bn_conv1"])
        f.create_group("input_1").attrs["weight_names"] = np.zeros((0,))
        g = f.create_group("conv1")
        g.attrs["weight_names"] = np.array([b"conv1_W_1:0", b"conv1_b_1:0"])
        g["conv1_W_1:0"], g["conv1_b_1:0"] = kernel, bias
        g = f.create_group("bn_conv1")
        names = [f"bn_conv1_{n}_1:0" for n in ("running_std", "beta", "running_mean", "gamma")]
        g.attrs["weight_names"] = np.array([n.encode() for n in names])
        for name, value in zip(names, (var, beta, mean, gamma)):
            g[name] = value
    W.load_weights(model, path)
    conv, bn = model.get_layer("conv1"), model.get_layer("bn_conv1")
    np.testing.assert_allclose(conv.kernel.numpy(), kernel, rtol=1e-6)
    np.testing.assert_allclose(conv.bias.numpy(), bias, rtol=1e-6)
    for var_, expected in zip((bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance),
                              (gamma, beta, mean, var)):
        np.testing.assert_allclose(var_.numpy(), expected, rtol=1e-6)


# --- Bad files ----------------------------------------------------------------------------

def _valid_file(tmp_path, model):
    path = tmp_path / "valid.h5"
    write_keras2_file(path, model, distinct_values(model))
    return path


@pytest.mark.parametrize("kind", ["truncated", "truncated95", "garbage", "empty", "text",
                                  "no_layer_names", "missing_dataset", "keras3"])
def test_bad_files_give_a_clear_error_naming_the_file(tmp_path, small_model, kind):
    path = tmp_path / f"{kind}.h5"
    if kind.startswith("truncated"):
        data = _valid_file(tmp_path, small_model).read_bytes()
        keep = 0.95 if kind == "truncated95" else 0.5
        path.write_bytes(data[: int(len(data) * keep)])
    elif kind == "keras3":
        path = tmp_path / "model.weights.h5"
        build_small_model().save_weights(path)  # Keras 3's own format
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(1).bytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("<html>404 Not Found</html>\n")
    elif kind == "no_layer_names":
        with h5py.File(path, "w") as f:
            f.create_group("vars")  # a Keras 3 .weights.h5-like file
    else:
        with h5py.File(path, "w") as f:
            f.attrs["layer_names"] = np.array([b"conv1"])
            f.create_group("conv1").attrs["weight_names"] = np.array([b"conv1/kernel:0"])
    model = build_small_model()
    before = model_values(model)
    with pytest.raises(W.UnreadableWeightsFile) as info:
        W.load_weights(model, path)
    assert isinstance(info.value, WeightsError) and isinstance(info.value, ValueError)
    assert str(path) in str(info.value)
    if kind == "keras3":
        assert "Keras 3 '.weights.h5' file" in str(info.value)
    for name, value in model_values(model).items():  # nothing assigned
        np.testing.assert_array_equal(value, before[name])
    # No h5py traceback chained behind ours.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_many_shape_mismatches_are_summarised(tmp_path):
    """A checkpoint whose every conv differs (e.g. another width): count and first few."""
    def stack(width):
        image = keras.Input((8, 8, 3))
        x = image
        for i in range(40):
            x = layers.Conv2D(width, 1, name=f"res{i}_conv")(x)
        return keras.Model(image, layers.Conv2D(2, 1, name="mrcnn_mask")(x))

    path = tmp_path / "wide.h5"
    W.save_weights(stack(4), path)
    with pytest.raises(WeightsError) as info:
        W.load_weights(stack(3), path)
    message = str(info.value)
    lines = message.splitlines()
    assert lines[0] == f"Cannot load {path}: 81 weight(s) in 41 layer(s) do not fit the model:"
    assert "layer 'res0_conv': weight 'kernel' (res0_conv/kernel:0) has file shape " \
           "(1, 1, 3, 4) but model shape (1, 1, 3, 3)" in message
    assert "... and 75 more" in message and len(lines) <= 10
    assert "exclude=['res.*', 'mrcnn.*']" in message


def test_zero_or_too_few_matching_layers_is_an_error(tmp_path, small_model):
    image = keras.Input((4,))
    foreign = keras.Model(image, layers.Dense(2, name="dense_1")(image))
    path = tmp_path / "foreign.h5"
    W.save_weights(foreign, path)
    model = build_small_model()
    for partial in (False, True):  # nothing matched is an error either way
        with pytest.raises(WeightsError, match="none of the file's 1 weighted layers"):
            W.load_weights(model, path, allow_partial=partial)

    stem_path = tmp_path / "stem.h5"  # 2 of the 10 weighted layers
    write_keras2_file(stem_path, small_model, distinct_values(small_model),
                      layer_rename={n: n + "_other" for n in weighted_layer_names(small_model)
                                    if n not in ("conv1", "bn_conv1")})
    with pytest.raises(WeightsError) as info:
        W.load_weights(model, stem_path)
    assert str(stem_path) in str(info.value)
    assert "only 2 of the model's 10 weighted layers" in str(info.value)
    assert "allow_partial=True" in str(info.value)
    assert W.load_weights(model, stem_path, allow_partial=True).loaded == ["conv1", "bn_conv1"]
    # Excluded layers count as covered: a COCO file without its heads still loads.
    report = W.load_weights(model, _valid_file(tmp_path, small_model),
                            exclude=[n for n in weighted_layer_names(small_model)[2:6]])
    assert len(report.loaded) == 6 and len(report.skipped) == 4


def test_missing_file_is_file_not_found(tmp_path, small_model):
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        W.load_weights(small_model, tmp_path / "nowhere.h5")


# --- Writing -------------------------------------------------------------------------------

def _set_distinct(model, offset):
    values = distinct_values(model, offset)
    for layer in model.layers:
        for v in layer.weights:
            v.assign(values[expected_keras2_name(layer, v)])
    return values


def test_save_writes_the_exact_keras2_layout(tmp_path, coco_layout):
    model = build_small_model()
    values = _set_distinct(model, 100)
    path = tmp_path / "ours.h5"
    W.save_weights(model, path)
    with h5py.File(path, "r") as f:
        names = f.attrs["layer_names"]
        assert names.dtype.kind == "S"  # fixed-length bytes, as Keras 2 wrote them
        # What Keras 2.0.8's loader does with them:
        assert [n.decode("utf8") for n in names] == [layer.name for layer in model.layers]
        assert f.attrs["backend"].decode("utf8") == "tensorflow"
        assert f.attrs["keras_version"].decode("utf8") == keras.__version__
        for layer in model.layers:
            group = f[layer.name]
            weight_names = [n.decode("utf8") for n in group.attrs["weight_names"]]
            if not layer.weights:
                assert weight_names == []
                continue
            assert group.attrs["weight_names"].dtype.kind == "S"
            # Names and order exactly as in mask_rcnn_coco.h5.
            assert weight_names == [n for n, _ in coco_layout[layer.name]]
            for name in weight_names:
                assert group[name].dtype == np.float32
                np.testing.assert_array_equal(group[name][()], values[name])
        assert "rpn_conv_shared" in f["rpn_model"]  # nested: rpn_model/rpn_conv_shared/kernel:0


def test_save_then_load_round_trip(tmp_path):
    model = build_small_model()
    values = _set_distinct(model, 200)
    path = tmp_path / "round.h5"
    W.save_weights(model, path)

    fresh = build_small_model()
    W.load_weights(fresh, path, by_name=False)
    loaded = model_values(fresh)
    for name, value in values.items():
        np.testing.assert_array_equal(loaded[name], value)
    image = np.random.default_rng(2).normal(size=(1, 16, 16, 3)).astype(np.float32)
    for a, b in zip(model.predict_on_batch(image), fresh.predict_on_batch(image)):
        np.testing.assert_array_equal(a, b)

    # Keras 3's own reader of legacy Keras-2 files (by position) agrees.
    other = build_small_model()
    other.load_weights(str(path))
    for name, value in model_values(other).items():
        np.testing.assert_array_equal(value, values[name])


def test_save_needs_an_existing_folder(tmp_path, small_model):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        W.save_weights(small_model, tmp_path / "nope" / "w.h5")


_CHILD = textwrap.dedent("""
    import os, sys, time
    import h5py, keras
    sys.path.insert(0, {root!r})
    from mrcnn import weights as W

    def tiny():
        image = keras.Input((4,), name="input_image")
        x = keras.layers.Dense(3, name="mrcnn_class_logits")(image)
        return keras.Model(image, keras.layers.Dense(2, name="mrcnn_bbox_fc")(x))

    if __name__ == "__main__":
        model = tiny()
        for v in model.weights:
            v.assign(v.numpy() * 0 + 7.0)
        original = h5py.Group.create_dataset

        def stalled(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            open(sys.argv[2], "w").close()  # tell the parent we are mid-write
            time.sleep(60)
            return result

        h5py.Group.create_dataset = stalled
        W.save_weights(model, sys.argv[1])
""")


def test_killed_save_leaves_the_previous_file_intact(tmp_path):
    namespace = {}
    exec(_CHILD.format(root=ROOT).replace("if __name__", "if False and __name__"), namespace)
    model = namespace["tiny"]()
    target, marker = tmp_path / "mask_rcnn_x_0001.h5", tmp_path / "mid_write"
    W.save_weights(model, target)
    before = {v.path: v.numpy().copy() for v in model.weights}
    digest = hashlib.sha256(target.read_bytes()).hexdigest()

    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(root=ROOT))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    child = subprocess.Popen([sys.executable, str(script), str(target), str(marker)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 45
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), child.stderr.read().decode()[-2000:] if child.poll() else "timeout"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".mask_rcnn_x_0001.h5.")
    reloaded = namespace["tiny"]()
    W.load_weights(reloaded, target)
    for v in reloaded.weights:
        np.testing.assert_array_equal(v.numpy(), before[v.path])


# --- Module rules ----------------------------------------------------------------

def test_weights_module_does_not_import_the_model():
    with open(os.path.join(ROOT, "mrcnn", "weights.py")) as f:
        tree = ast.parse(f.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
    assert not any(name.startswith(("mrcnn.model", "mrcnn.training", "mrcnn.pretrained"))
                   for name in imported)
