"""mrcnn/network_io.py: the host pre/post-processing shared by training and detect."""
import numpy as np
import pytest

from mrcnn.config import Config
from mrcnn.network_io import (anchors_for_shape, mold_inputs, pad_to_batch,
                              resize_for_config, unmold_detections, window_to_original)


class SmallConfig(Config):
    NAME = "small"
    NUM_CLASSES = 3
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)


def test_window_to_original_undoes_resize_and_padding():
    # A 50x100 image scaled by 1.28 to 64x128 and padded to 128x128: window (32, 0, 96, 128).
    config = SmallConfig()
    image = np.zeros((50, 100, 3), np.uint8)
    resized, window, scale, _, _ = resize_for_config(image, config)
    assert resized.shape == (128, 128, 3) and tuple(window) == (32, 0, 96, 128) and scale == 1.28
    # The window itself, normalized in the molded image, is the whole original image.
    norm_window = (np.array(window, float) - [0, 0, 1, 1]) / (np.array([128, 128, 128, 128]) - 1)
    out = window_to_original(norm_window[None], window, resized.shape, image.shape)
    np.testing.assert_array_equal(out, [[0, 0, 50, 100]])


def test_unmold_detections_drops_padding_rows_and_pastes_masks():
    config = SmallConfig()
    image = np.zeros((64, 64, 3), np.uint8)  # scaled 2x, no padding
    molded, metas, windows = mold_inputs([image], config)
    assert molded.shape == (1, 128, 128, 3) and metas.shape == (1, 12 + 3)
    detections = np.zeros((4, 6), np.float32)
    detections[0] = [0, 0, 0.5, 0.5, 2, 0.9]  # top-left quarter of the molded image
    masks = np.zeros((4, 8, 8, 3), np.float32)
    masks[0, :, :, 2] = 1.0
    boxes, class_ids, scores, full = unmold_detections(detections, masks, image.shape,
                                                       molded[0].shape, windows[0])
    assert class_ids.tolist() == [2] and scores.tolist() == [pytest.approx(0.9)]
    # The window is the whole molded image, so y2 = round(0.5 * (64 - 1) + 1) = round(32.5)
    # = 32 (numpy rounds half to even, as Matterport's denorm_boxes).
    np.testing.assert_array_equal(boxes, [[0, 0, 32, 32]])
    assert full.shape == (64, 64, 1) and full[:32, :32, 0].all() and not full[32:, :, 0].any()


def test_anchors_for_shape_cover_every_level_and_ratio():
    config = SmallConfig()
    anchors = anchors_for_shape(config, (128, 192))
    ratios = len(config.RPN_ANCHOR_RATIOS)
    expected = sum(-(-128 // s) * -(-192 // s) * ratios for s in config.BACKBONE_STRIDES)
    assert anchors.shape == (expected, 4)
    # The first level's first anchor is centred on cell (0, 0): scale 8, ratio 0.5.
    h, w = 8 / np.sqrt(0.5), 8 * np.sqrt(0.5)
    np.testing.assert_allclose(anchors[0], [-h / 2, -w / 2, h / 2, w / 2])


def test_pad_to_batch_repeats_the_last_item():
    assert pad_to_batch([1, 2], 4) == [1, 2, 2, 2]
    assert pad_to_batch(["a"], 1) == ["a"]
