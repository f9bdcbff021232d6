"""Any IMAGE_CHANNEL_COUNT (issue 16): conversions, loading, MEAN_PIXEL, training and
detection with 1- and 4-channel images, 3-channel weights into a 1-channel model
(conv1 skipped with a message), and pictures of N-channel images."""

import logging

import numpy as np
import pytest
import skimage.io

from mrcnn import visualize
from mrcnn.config import Config
from mrcnn.dataset import Dataset, load_image_with_channels
from mrcnn.images import to_channels
from mrcnn.model import MaskRCNN
from samples.shapes import ShapesDataset
from tests.configs import never_background
from tests.test_model import SmallConfig

# Pixel values chosen so the luma is easy by hand: 0.299*100 + 0.587*200 + 0.114*50 = 153.
RGB = np.array([[[100, 200, 50], [0, 0, 0]]], np.uint8)


# --- Conversions and loading ------------------------------------------------------

def test_to_channels_conversions_by_hand():
    gray = to_channels(RGB, 1)
    np.testing.assert_array_equal(gray[..., 0], [[153, 0]])
    rgba = to_channels(RGB, 4)
    np.testing.assert_array_equal(rgba[0, 0], [100, 200, 50, 255])
    np.testing.assert_array_equal(to_channels(rgba, 3), RGB)
    np.testing.assert_array_equal(to_channels(gray, 3)[0, 0], [153, 153, 153])
    gray_alpha = np.array([[[7, 9]]], np.uint8)
    np.testing.assert_array_equal(to_channels(gray_alpha, 4)[0, 0], [7, 7, 7, 9])
    np.testing.assert_array_equal(to_channels(gray_alpha, 1)[0, 0], [7])
    assert to_channels(np.ones((2, 2, 1), np.float32), 4)[0, 0, 3] == 1.0
    five = np.zeros((2, 2, 5), np.uint16)
    assert to_channels(five, 5) is five
    with pytest.raises(ValueError, match=r"\(my.tif\) has 5 channels but 3"):
        to_channels(five, 3, source="my.tif")


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_dataset_load_image_honours_the_channel_count(tmp_path, channels):
    rgba = to_channels(np.repeat(np.repeat(RGB, 4, axis=0), 2, axis=1), 4)
    rgba[..., 3] = 77
    path = str(tmp_path / "image.png")
    skimage.io.imsave(path, rgba, check_contrast=False)
    ds = Dataset()
    ds.add_class("x", 1, "thing")
    ds.add_image("x", 0, path)
    ds.prepare()
    image = ds.load_image(0, channels=channels)
    assert image.shape == (4, 4, channels) and image.dtype == np.uint8
    want = {1: [153], 3: [100, 200, 50], 4: [100, 200, 50, 77]}[channels]
    np.testing.assert_array_equal(image[0, 0], want)
    np.testing.assert_array_equal(load_image_with_channels(ds, 0, channels), image)
    assert ds.load_image(0).shape == (4, 4, 3)  # Matterport's call: RGB


def test_an_override_without_channels_must_return_the_count():
    ds = ShapesDataset()  # load_image(self, image_id): RGB only
    ds.load_shapes(1, 128, 128, seed=0)
    ds.prepare()
    with pytest.raises(ValueError, match=r"\[H, W, 1\] \(IMAGE_CHANNEL_COUNT\).*channels"):
        load_image_with_channels(ds, 0, 1)


def test_mean_pixel_needs_one_value_per_channel():
    class Gray(Config):
        NAME = "gray"
        NUM_CLASSES = 2
        IMAGE_CHANNEL_COUNT = 1

    with pytest.raises(ValueError, match="MEAN_PIXEL.*IMAGE_CHANNEL_COUNT = 1"):
        Gray()

    class GrayWithMean(Gray):
        MEAN_PIXEL = np.array([120.0])

    assert GrayWithMean().IMAGE_SHAPE[2] == 1


# --- Training, detection and weights with N channels ------------------------------

class ChannelShapes(ShapesDataset):
    """The shapes images with any channel count (one of them without any shape)."""

    def load_image(self, image_id, channels=3):
        return to_channels(super().load_image(image_id), channels)

    def load_mask(self, image_id):
        if image_id == 0:  # an image without objects: trained on by default
            return np.zeros((128, 128, 0), bool), np.zeros([0], np.int32)
        return super().load_mask(image_id)


def channel_config(channels, mode_images=2):
    class ChannelConfig(SmallConfig):
        NAME = f"channels{channels}"
        IMAGE_CHANNEL_COUNT = channels
        MEAN_PIXEL = np.array([123.7, 116.8, 103.9, 100.0][:channels] if channels <= 4 else [0.0] * channels)
        IMAGES_PER_GPU = mode_images
        VALIDATION_STEPS = 0

    return ChannelConfig()


@pytest.mark.parametrize("channels", [1, 4])
def test_train_and_detect_with_n_channels(tmp_path, channels):
    import keras

    keras.utils.set_random_seed(0)
    dataset = ChannelShapes()
    dataset.load_shapes(4, 128, 128, seed=3)
    dataset.prepare()
    config = channel_config(channels)
    model = MaskRCNN("training", config, str(tmp_path))
    assert model.keras_model.get_layer("conv1").kernel.shape[2] == channels
    history = model.train(dataset, None, learning_rate=0.001, epochs=1, layers="all",
                          verbose=0, workers=1)
    assert all(np.isfinite(history.history["loss"]))

    inference = MaskRCNN("inference", channel_config(channels, mode_images=1), str(tmp_path))
    inference.load_weights(model.find_last())
    never_background(inference)  # two steps do not make a detector
    image = dataset.load_image(1, channels=channels)
    assert image.shape == (128, 128, channels)
    for given in (image, dataset.load_image(1)):  # N channels, or RGB converted by detect()
        r = inference.detect([given])[0]
        n = len(r["class_ids"])
        assert n > 0 and r["masks"].shape == (128, 128, n) and r["rois"].shape == (n, 4)
    picture = visualize.draw_instances(image, r["rois"], r["masks"], r["class_ids"],
                                       dataset.class_names)
    assert picture.shape == (128, 128, 3) and picture.dtype == np.uint8


def test_three_channel_weights_load_into_a_one_channel_model(tmp_path, caplog):
    rgb_model = MaskRCNN("training", channel_config(3), str(tmp_path))
    path = str(tmp_path / "rgb.h5")
    rgb_model.save_weights(path)
    gray_model = MaskRCNN("training", channel_config(1), str(tmp_path))
    conv1_before = gray_model.keras_model.get_layer("conv1").get_weights()[0].copy()
    with caplog.at_level(logging.WARNING, logger="mrcnn"):
        report = gray_model.load_weights(path)
    assert "conv1 was trained on 3-channel images" in caplog.text
    assert "IMAGE_CHANNEL_COUNT = 1" in caplog.text and "rgb.h5" in caplog.text
    assert "conv1" in report.skipped and "res2a_branch2a" in report.loaded
    np.testing.assert_array_equal(gray_model.keras_model.get_layer("conv1").get_weights()[0], conv1_before)
    for name in ("res2a_branch2a", "fpn_p2", "mrcnn_class_logits"):
        for got, want in zip(gray_model.keras_model.get_layer(name).get_weights(),
                             rgb_model.keras_model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    # The same channel count loads conv1 and says nothing.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mrcnn"):
        report = rgb_model.load_weights(path)
    assert "conv1" in report.loaded and "conv1 was trained" not in caplog.text


@pytest.mark.parametrize("channels", [1, 2, 4, 5])
def test_pictures_show_the_first_three_channels_or_grey(channels, tmp_path):
    image = np.zeros((6, 6, channels), np.uint8)
    image[..., 0] = 10
    if channels > 1:
        image[..., 1] = 20
    if channels > 2:
        image[..., 2] = 30
    picture = visualize.draw_instances(image, np.zeros((0, 4)), np.zeros((6, 6, 0), bool),
                                       np.zeros([0], np.int32), ["BG"])
    want = [10, 20, 30] if channels >= 3 else [10, 10, 10]
    np.testing.assert_array_equal(picture[0, 0], want)
    visualize.display_images([image], save_path=str(tmp_path / "images.png"))
    assert (tmp_path / "images.png").stat().st_size > 0
