"""mrcnn/backbones.py: the registry, Matterport's callable contract, and a second
registered backbone (keras.applications.MobileNetV3Small) trained and run end to end."""
import math

import keras
import numpy as np
import pytest

from mrcnn import backbones, training
from mrcnn.config import Config
from mrcnn.model import MaskRCNN


class SmallConfig(Config):
    NAME = "bb"
    NUM_CLASSES = 4
    IMAGES_PER_GPU = 2
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    PRE_NMS_LIMIT = 500
    POST_NMS_ROIS_TRAINING = 100
    POST_NMS_ROIS_INFERENCE = 50
    TRAIN_ROIS_PER_IMAGE = 16
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 5
    DETECTION_MAX_INSTANCES = 10
    DETECTION_MIN_CONFIDENCE = 0.0
    MINI_MASK_SHAPE = (28, 28)
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    RPN_CONV_CHANNELS = 32
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 0


def test_registry_knows_the_resnets_and_their_stage_presets():
    assert {"resnet50", "resnet101", "mobilenet_v3_small"} <= set(backbones.names())
    spec = backbones.get("resnet101")
    assert spec.strides == (4, 8, 16, 32, 64) and "group" in spec.norms
    # Matterport's preset regexes, now asked from the backbone.
    assert training.layer_regex("4+", "resnet50") == (
        r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)")
    assert training.layer_regex("heads", "mobilenet_v3_small") == training.LAYER_PRESETS["heads"]
    with pytest.raises(ValueError, match="registered"):
        backbones.get("resnet18")


def test_config_asks_the_registry():
    class Unknown(SmallConfig):
        BACKBONE = "vgg16"
    with pytest.raises(ValueError, match="BACKBONE.*vgg16.*registered"):
        Unknown()

    class WrongStrides(SmallConfig):
        BACKBONE = "resnet50"
        BACKBONE_STRIDES = [4, 8, 16, 32, 128]
    with pytest.raises(ValueError, match="BACKBONE_STRIDES"):
        WrongStrides()

    class GroupMobileNet(SmallConfig):
        BACKBONE = "mobilenet_v3_small"
        BACKBONE_NORM = "group"
    with pytest.raises(ValueError, match="BACKBONE_NORM"):
        GroupMobileNet()


def _tiny_backbone(input_image, stage5=True, train_bn=False):
    """Matterport's callable contract: four stride-2 stages after a stride-2 stem."""
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="tiny_c1")(input_image)
    outputs = [x]
    for stage in range(2, 6):
        strides = 1 if stage == 2 else 2
        if stage == 2:
            x = keras.layers.MaxPooling2D(2, name="tiny_pool")(x)
        x = keras.layers.Conv2D(8 * stage, 3, strides=strides, padding="same",
                                activation="relu", name=f"tiny_c{stage}")(x)
        outputs.append(x)
    return outputs


def test_callable_backbone_with_matterport_contract_builds_and_detects(tmp_path):
    shapes_asked = []

    def compute_shape(image_shape):
        shapes_asked.append(tuple(image_shape[:2]))
        return np.array([[math.ceil(image_shape[0] / s), math.ceil(image_shape[1] / s)]
                         for s in (4, 8, 16, 32, 64)])

    class Callable(SmallConfig):
        BACKBONE = _tiny_backbone
        COMPUTE_BACKBONE_SHAPE = compute_shape

    config = Callable()
    assert config.BACKBONE is _tiny_backbone  # not bound to the config
    model = MaskRCNN("inference", config, str(tmp_path))
    assert "tiny_c5" in {layer.name for layer in model.keras_model.layers}
    result = model.detect([np.zeros((100, 80, 3), np.uint8)])[0]
    assert shapes_asked and set(result) == {"rois", "class_ids", "scores", "masks"}
    assert result["masks"].shape[:2] == (100, 80)
    with pytest.raises(ValueError, match="callable"):
        training.layer_regex("4+", config.BACKBONE)


def test_mobilenet_v3_small_trains_and_detects(tmp_path):
    """CI smoke for the second registered backbone: build at 128 px, two training
    steps with finite losses, a checkpoint that loads into the inference graph, detect."""
    from samples.shapes import ShapesDataset

    class MobileNetConfig(SmallConfig):
        BACKBONE = "mobilenet_v3_small"

    keras.utils.set_random_seed(0)
    config = MobileNetConfig()
    dataset = ShapesDataset()
    dataset.load_shapes(4, 128, 128, seed=3)
    dataset.prepare()
    model = MaskRCNN("training", config, str(tmp_path))
    history = model.train(dataset, None, learning_rate=0.001, epochs=1, layers="all",
                          workers=1, verbose=0).history
    for name in ("loss",) + tuple(config.LOSS_WEIGHTS):
        assert np.isfinite(history[name]).all(), (name, history[name])
    trainable = training.set_trainable(model.keras_model, training.layer_regex("5+", config.BACKBONE))
    assert "expanded_conv_9_depthwise" in trainable and "expanded_conv_2_depthwise" not in trainable

    inference = MaskRCNN("inference", config, str(tmp_path))
    report = inference.load_weights(model.find_last())
    assert not report.missing_in_file and not report.missing_in_model, report.summary()
    trained = model.keras_model.get_layer("mobilenet_v3_small").get_layer("expanded_conv_9_depthwise")
    loaded = inference.keras_model.get_layer("mobilenet_v3_small").get_layer("expanded_conv_9_depthwise")
    for want, got in zip(trained.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(got, want)
    image = dataset.load_image(0)
    result = inference.detect([image])[0]
    assert result["masks"].shape[:2] == image.shape[:2]
    assert len(result["rois"]) == len(result["class_ids"]) == len(result["scores"])
