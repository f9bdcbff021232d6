import numpy as np
import pytest

from mrcnn.config import Config


class TinyConfig(Config):
    NAME = "tiny"
    NUM_CLASSES = 4
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128


def test_matterport_defaults_and_derived_values():
    config = TinyConfig()
    assert config.BATCH_SIZE == 2
    np.testing.assert_array_equal(config.IMAGE_SHAPE, [128, 128, 3])
    assert config.IMAGE_META_SIZE == 12 + 4
    assert Config.BACKBONE == "resnet101"
    assert Config.PRE_NMS_LIMIT == 6000
    assert Config.POST_NMS_ROIS_TRAINING == 2000 and Config.POST_NMS_ROIS_INFERENCE == 1000
    assert Config.MASK_SHAPE == [28, 28] and Config.MINI_MASK_SHAPE == (56, 56)
    assert Config.DETECTION_MIN_CONFIDENCE == 0.7 and Config.DETECTION_NMS_THRESHOLD == 0.3
    assert set(Config.LOSS_WEIGHTS) == {"rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
                                        "mrcnn_bbox_loss", "mrcnn_mask_loss"}


def test_coco_meta_size_is_93():
    class Coco(Config):
        NAME = "coco"
        NUM_CLASSES = 81
    assert Coco().IMAGE_META_SIZE == 93


def test_crop_mode_uses_min_dim():
    class Crop(TinyConfig):
        IMAGE_RESIZE_MODE = "crop"
        IMAGE_MIN_DIM = 64
    np.testing.assert_array_equal(Crop().IMAGE_SHAPE, [64, 64, 3])


def test_display_prints_every_attribute(capsys):
    TinyConfig().display()
    out = capsys.readouterr().out
    for name in ("NAME", "BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE", "LEARNING_RATE"):
        assert name in out


@pytest.mark.parametrize("attr, value", [
    ("IMAGE_MAX_DIM", 100),
    ("NUM_CLASSES", 1),
    ("BACKBONE", "vgg16"),
    ("IMAGE_RESIZE_MODE", "stretch"),
    ("MEAN_PIXEL", np.array([1.0, 2.0])),
    ("ROI_POSITIVE_RATIO", 0.0),
    ("MASK_SHAPE", [32, 32]),
    ("NAME", None),
    ("IMAGES_PER_GPU", 0),
    ("TRAIN_ROIS_PER_IMAGE", 5000),
    ("USE_RPN_ROIS", False),
    ("BACKBONE_NORM", "layer"),
    ("BACKBONE_NORM_GROUPS", 5),
    ("RPN_CONV_CHANNELS", 0),
])
def test_invalid_settings_name_the_attribute(attr, value):
    bad = type("Bad", (TinyConfig,), {attr: value})
    with pytest.raises(ValueError, match=attr):
        bad()
