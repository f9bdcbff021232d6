"""Tests of mrcnn.pretrained: published weight sources, the Keras-ResNet name map,
describe_checkpoint, and what MaskRCNN does with damaged or foreign weight files.

Every file is written here (h5py in the Keras-2 layout, or a tiny Keras model).
"""

import os
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest
from keras import layers

from mrcnn import pretrained as P
from mrcnn import weights as W
from mrcnn.errors import UserInputError, WeightsError
from tests.test_weights import coco_layout, write_keras2_file  # noqa: F401 (fixture)


# --- Name maps -------------------------------------------------------------------------------

def matterport_resnet101_names():
    """Matterport's resnet_graph('resnet101') weighted layer names, derived from its loops."""
    names = {"conv1", "bn_conv1"}
    for stage, count in ((2, 3), (3, 4), (4, 23), (5, 3)):
        for block in "abcdefghijklmnopqrstuvw"[:count]:
            branches = ["2a", "2b", "2c"] + (["1"] if block == "a" else [])
            for branch in branches:
                names |= {f"res{stage}{block}_branch{branch}", f"bn{stage}{block}_branch{branch}"}
    return names


def test_resnet101_name_map_covers_keras_resnet101(coco_layout):
    keras_model = keras.applications.ResNet101(weights=None, include_top=False,
                                               input_shape=(64, 64, 3))
    mapping = P.resnet101_keras_name_map()
    weighted = [layer for layer in keras_model.layers if layer.weights]
    assert len(weighted) == 208
    assert {layer.name for layer in weighted} == set(mapping)
    assert set(mapping.values()) == matterport_resnet101_names()
    assert len(set(mapping.values())) == len(mapping)
    assert mapping["conv2_block1_0_conv"] == "res2a_branch1"
    assert mapping["conv2_block1_1_bn"] == "bn2a_branch2a"
    assert mapping["conv4_block23_3_bn"] == "bn4w_branch2c"
    assert mapping["conv5_block3_3_bn"] == "bn5c_branch2c"
    # Same weights, same shapes as Matterport's ResNet-101 in mask_rcnn_coco.h5.
    for layer in weighted:
        ref = coco_layout[mapping[layer.name]]
        assert [f"{mapping[layer.name]}/{v.name}:0" for v in layer.weights] == [n for n, _ in ref]
        assert [tuple(v.shape) for v in layer.weights] == [s for _, s in ref]


def _matterport_stem():
    image = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, name="conv1")(image)
    x = layers.BatchNormalization(name="bn_conv1")(x)
    x = layers.Conv2D(5, 1, name="res2a_branch2a")(x)
    x = layers.BatchNormalization(name="bn2a_branch2a")(x)
    x = layers.Conv2D(5, 1, name="res4w_branch2c")(x)
    return keras.Model(image, x)


@pytest.mark.parametrize("name_map", ["dict", "callable"])
def test_load_keras_resnet_file_with_name_map(tmp_path, name_map):
    """A keras-applications ResNet file (Keras-2 names such as conv1_conv/kernel:0)."""
    model = _matterport_stem()
    keras_names = {"conv1": "conv1_conv", "bn_conv1": "conv1_bn",
                   "res2a_branch2a": "conv2_block1_1_conv", "bn2a_branch2a": "conv2_block1_1_bn",
                   "res4w_branch2c": "conv4_block23_3_conv"}
    values = {f"{keras_names[layer.name]}/{v.name}:0": np.full(v.shape, 3.0 + i, np.float32)
              for layer in model.layers for i, v in enumerate(layer.weights)}
    path = tmp_path / P.RESNET101_KERAS_IMAGENET_NOTOP_FILE
    write_keras2_file(path, model, values, layer_rename=keras_names,
                      weight_order={m: [f"{k}/{v.name}:0" for v in model.get_layer(m).weights]
                                    for m, k in keras_names.items()})
    chosen = {"dict": P.resnet101_keras_name_map(),
              "callable": P.keras_resnet_layer_name}[name_map]
    report = W.load_weights(model, path, name_map=chosen)
    assert report.loaded == list(keras_names)
    assert report.name_map
    for layer in model.layers:
        for i, v in enumerate(layer.weights):
            np.testing.assert_array_equal(v.numpy(), np.full(v.shape, 3.0 + i))


# --- Downloads ---------------------------------------------------------------------------------

@pytest.fixture
def no_network(monkeypatch):
    calls = []

    def refuse(url, *args, **kwargs):
        calls.append(getattr(url, "full_url", url))
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


def test_get_file_uses_the_keras_cache_without_network(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cached = tmp_path / "models" / P.COCO_WEIGHTS_FILE
    cached.parent.mkdir()
    cached.write_bytes(b"weights")
    assert P.get_file(P.COCO_WEIGHTS_URL, P.COCO_WEIGHTS_FILE, "models") == str(cached)
    assert P.get_coco_weights() == str(cached)
    assert no_network == []


def test_get_file_offline_names_url_file_and_folder(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(P.WeightsNotAvailable) as info:
        P.get_imagenet_weights("resnet101")
    message = str(info.value)
    folder = os.path.join(str(tmp_path), "models")
    assert P.RESNET101_KERAS_IMAGENET_NOTOP_URL in message
    assert P.RESNET101_KERAS_IMAGENET_NOTOP_FILE in message and folder in message
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, UserInputError)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    assert no_network == [P.RESNET101_KERAS_IMAGENET_NOTOP_URL]
    assert not os.path.exists(os.path.join(folder, P.RESNET101_KERAS_IMAGENET_NOTOP_FILE))
    assert P.imagenet_source("resnet50").url == P.RESNET50_IMAGENET_NOTOP_URL
    with pytest.raises(ValueError, match="resnet18"):
        P.imagenet_source("resnet18")


def test_keras_resnet_map_leaves_matterport_names_alone(tmp_path):
    model = _matterport_stem()
    values = {f"{layer.name}/{v.name}:0": np.full(v.shape, 2.0, np.float32)
              for layer in model.layers for v in layer.weights}
    path = tmp_path / "matterport_names.h5"
    write_keras2_file(path, model, values)
    report = W.load_weights(model, path, name_map=P.keras_resnet_layer_name)
    assert report.name_map is None  # nothing was renamed
    assert report.loaded == [layer.name for layer in model.layers if layer.weights]


# --- describe_checkpoint -------------------------------------------------------------------

def _checkpoint_model(norm_layer, deepest_block="w", num_classes=7):
    image = keras.Input((16, 16, 3), name="input_image")
    x = layers.Conv2D(4, 3, name="conv1")(image)
    x = norm_layer(name="bn_conv1")(x)
    x = layers.Conv2D(4, 1, name="res4a_branch2a")(x)
    x = layers.Conv2D(4, 1, name=f"res4{deepest_block}_branch2a")(x)
    rois = layers.Reshape((1, 14 * 14 * 4), name="pool_squeeze")(x)
    logits = layers.TimeDistributed(layers.Dense(num_classes), name="mrcnn_class_logits")(rois)
    return keras.Model(image, logits)


@pytest.mark.parametrize("norm, deepest, backbone", [
    ("batch", "w", "resnet101"), ("group", "f", "resnet50")])
def test_describe_checkpoint_reads_backbone_norm_and_classes(tmp_path, norm, deepest, backbone):
    norm_layer = (layers.BatchNormalization if norm == "batch"
                  else lambda name: layers.GroupNormalization(groups=2, name=name))
    path = tmp_path / "ckpt.h5"
    W.save_weights(_checkpoint_model(norm_layer, deepest), path)
    info = P.describe_checkpoint(path)
    assert info == {"path": str(path), "layers": 5, "backbone": backbone,
                    "backbone_norm": norm, "num_classes": 7, "keras_resnet_names": False}


def test_describe_checkpoint_maps_keras_resnet_names(tmp_path):
    model = _matterport_stem()
    keras_names = {"conv1": "conv1_conv", "bn_conv1": "conv1_bn",
                   "res2a_branch2a": "conv2_block1_1_conv", "bn2a_branch2a": "conv2_block1_1_bn",
                   "res4w_branch2c": "conv4_block23_1_conv"}  # -> res4w_branch2a
    values = {f"{keras_names[layer.name]}/{v.name}:0": np.zeros(v.shape, np.float32)
              for layer in model.layers for v in layer.weights}
    path = tmp_path / "keras_resnet.h5"
    write_keras2_file(path, model, values, layer_rename=keras_names,
                      weight_order={m: [f"{k}/{v.name}:0" for v in model.get_layer(m).weights]
                                    for m, k in keras_names.items()})
    info = P.describe_checkpoint(path)
    assert info["backbone"] == "resnet101" and info["backbone_norm"] == "batch"
    assert info["num_classes"] is None and info["keras_resnet_names"] is True


def test_describe_checkpoint_of_a_broken_file_names_it(tmp_path):
    path = tmp_path / "broken.h5"
    path.write_text("not weights\n")
    with pytest.raises(WeightsError, match="broken.h5"):
        P.describe_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        P.describe_checkpoint(tmp_path / "absent.h5")


# --- MaskRCNN and bad files (issue 18) ---------------------------------------------------------

@pytest.fixture(scope="module")
def mask_rcnn(tmp_path_factory):
    from mrcnn.config import Config
    from mrcnn.model import MaskRCNN

    class TinyConfig(Config):
        NAME = "tiny"
        NUM_CLASSES = 1 + 3
        BACKBONE = "resnet50"
        IMAGES_PER_GPU = 1
        IMAGE_MIN_DIM = 128
        IMAGE_MAX_DIM = 128

    return MaskRCNN("inference", TinyConfig(), str(tmp_path_factory.mktemp("logs")))


@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_damaged_cached_coco_file_says_delete_it(mask_rcnn, tmp_path, monkeypatch, keep):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cached = tmp_path / "keras" / "models" / P.COCO_WEIGHTS_FILE
    cached.parent.mkdir(parents=True)
    W.save_weights(mask_rcnn.keras_model, cached)
    data = cached.read_bytes()
    cached.write_bytes(data[: int(len(data) * keep)])
    before = mask_rcnn.keras_model.get_layer("conv1").get_weights()[0].copy()
    with pytest.raises(WeightsError) as info:
        mask_rcnn.load_named_weights("coco", verbose=0)
    message = str(info.value)
    assert f"Delete {cached}" in message
    assert P.COCO_WEIGHTS_URL in message and f"{cached.parent}/" in message
    np.testing.assert_array_equal(mask_rcnn.keras_model.get_layer("conv1").get_weights()[0],
                                  before)


def test_checkpoint_of_another_model_is_refused(mask_rcnn, tmp_path):
    """Issue 18: a one-Dense-layer model.save('x.h5') loaded as --weights."""
    image = keras.Input((4,))
    other = keras.Model(image, layers.Dense(2, name="dense")(image))
    path = tmp_path / "other_model.h5"
    W.save_weights(other, path)
    with pytest.raises(WeightsError) as info:
        mask_rcnn.load_weights(str(path))
    message = str(info.value)
    assert str(path) in message and "none of the file's 1 weighted layers" in message
    assert isinstance(info.value, UserInputError) and isinstance(info.value, ValueError)


def test_backbone_only_file_needs_allow_partial(mask_rcnn, tmp_path):
    """The ImageNet files hold only the backbone: load_named_weights('imagenet') passes
    allow_partial; a plain load of a file matching few layers is refused."""
    stem = [mask_rcnn.keras_model.get_layer(n) for n in ("conv1", "bn_conv1")]
    image = keras.Input((None, None, 3))
    x = layers.Conv2D(64, 7, strides=2, name="conv1")(image)
    model = keras.Model(image, layers.BatchNormalization(name="bn_conv1")(x))
    for mine, theirs in zip(model.layers[1:], stem):
        mine.set_weights([w + 1.0 for w in theirs.get_weights()])
    path = tmp_path / "stem.h5"
    W.save_weights(model, path)
    with pytest.raises(WeightsError, match=r"only 2 of the model's \d+ weighted layers"):
        mask_rcnn.load_weights(str(path))
    report = mask_rcnn.load_weights(str(path), allow_partial=True)
    assert report.loaded == ["conv1", "bn_conv1"]
    np.testing.assert_array_equal(stem[0].get_weights()[0], model.layers[1].get_weights()[0])
