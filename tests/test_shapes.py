"""Tests for samples/shapes.py: the synthetic shapes dataset and its config."""
import numpy as np
import pytest

from mrcnn.boxes import compute_overlaps
from samples.shapes import SHAPE_NAMES, ShapesConfig, ShapesDataset


def _dataset(count=8, seed=0, size=128):
    ds = ShapesDataset()
    ds.load_shapes(count, size, size, seed=seed)
    ds.prepare()
    return ds


def _manual_dataset(shapes, bg=(10, 20, 30), size=128):
    """A shapes dataset with one hand-written image spec."""
    ds = ShapesDataset()
    for class_id, name in enumerate(SHAPE_NAMES, start=1):
        ds.add_class("shapes", class_id, name)
    ds.add_image("shapes", image_id=0, path=None, width=size, height=size, bg_color=bg, shapes=shapes)
    ds.prepare()
    return ds


def test_config_matches_the_shapes_task():
    config = ShapesConfig()
    assert config.NAME == "shapes"
    assert config.NUM_CLASSES == 4
    np.testing.assert_array_equal(config.IMAGE_SHAPE, [128, 128, 3])
    assert tuple(config.RPN_ANCHOR_SCALES) == (8, 16, 32, 64, 128)
    assert config.TRAIN_ROIS_PER_IMAGE == 32
    assert config.BATCH_SIZE == config.IMAGES_PER_GPU
    assert config.IMAGE_META_SIZE == 16


def test_same_seed_gives_same_images_and_masks():
    a, b = _dataset(seed=3), _dataset(seed=3)
    assert [i["shapes"] for i in a.image_info] == [i["shapes"] for i in b.image_info]
    for image_id in a.image_ids:
        np.testing.assert_array_equal(a.load_image(image_id), b.load_image(image_id))
        np.testing.assert_array_equal(a.load_mask(image_id)[0], b.load_mask(image_id)[0])


def test_different_seeds_differ_and_global_rng_is_untouched():
    state = np.random.get_state()
    a, b = _dataset(seed=1), _dataset(seed=2)
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2] == after[2]
    assert [i["shapes"] for i in a.image_info] != [i["shapes"] for i in b.image_info]


def test_classes_are_registered():
    ds = _dataset(count=1)
    assert ds.class_names == ["BG", "square", "circle", "triangle"]
    assert ds.source_class_ids["shapes"] == [0, 1, 2, 3]


def test_masks_are_non_empty_and_match_the_drawn_image():
    ds = _dataset(count=12, seed=5)
    for image_id in ds.image_ids:
        info = ds.image_info[image_id]
        image = ds.load_image(image_id)
        masks, class_ids = ds.load_mask(image_id)
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        assert masks.dtype == bool and masks.shape[:2] == (128, 128)
        assert class_ids.dtype == np.int32 and masks.shape[2] == class_ids.size >= 1
        assert masks.sum(axis=(0, 1)).min() > 0
        assert set(class_ids.tolist()) <= {1, 2, 3}
        # Visible instances never overlap.
        assert masks.sum(axis=2).max() <= 1
        # Each visible mask is painted in its shape's colour; here no shape is
        # fully hidden, so masks line up with the spec order.
        if masks.shape[2] == len(info["shapes"]):
            for i, (name, color, _) in enumerate(info["shapes"]):
                assert class_ids[i] == SHAPE_NAMES.index(name) + 1
                assert (image[masks[:, :, i]] == color).all()
        # Outside every mask the background shows.
        background = ~masks.any(axis=2)
        assert (image[background] == info["bg_color"]).all()


def test_shapes_overlap_little_after_nms():
    ds = _dataset(count=20, seed=9)
    for info in ds.image_info:
        boxes = np.array([[y - s, x - s, y + s, x + s] for _, _, (x, y, s) in info["shapes"]])
        iou = compute_overlaps(boxes, boxes)
        np.fill_diagonal(iou, 0)
        assert iou.max() <= 0.3


def test_later_shapes_occlude_earlier_ones():
    red, blue = (255, 0, 0), (0, 0, 255)
    ds = _manual_dataset([("square", red, (50, 50, 20)), ("circle", blue, (70, 50, 20))])
    masks, class_ids = ds.load_mask(0)
    image = ds.load_image(0)
    assert class_ids.tolist() == [1, 2]
    # The square is cut where the circle (drawn later) covers it.
    overlap_pixel = (50, 60)  # row, col: inside both shapes
    assert not masks[overlap_pixel + (0,)] and masks[overlap_pixel + (1,)]
    assert tuple(image[overlap_pixel]) == blue
    assert masks[50, 35, 0] and tuple(image[50, 35]) == red


def test_fully_hidden_shape_is_dropped():
    ds = _manual_dataset([("square", (255, 0, 0), (60, 60, 10)), ("square", (0, 255, 0), (60, 60, 25))])
    masks, class_ids = ds.load_mask(0)
    assert masks.shape[2] == 1 and class_ids.tolist() == [1]
    assert masks[:, :, 0].sum() == 51 * 51  # the big square, inclusive corners


def test_image_reference_describes_the_shapes():
    ds = _manual_dataset([("triangle", (1, 2, 3), (40, 60, 22))])
    assert ds.image_reference(0) == "shapes image 0: triangle at (x=40, y=60) size 22"


def test_too_small_images_are_rejected():
    with pytest.raises(ValueError, match="at least 80"):
        ShapesDataset().load_shapes(1, 64, 64)
