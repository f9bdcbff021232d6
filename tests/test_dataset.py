"""Tests for mrcnn.dataset.Dataset: registration, prepare(), id maps, image loading."""
import numpy as np
import pytest
import skimage.io

from mrcnn.dataset import Dataset


def _two_source_dataset():
    ds = Dataset()
    ds.add_class("coco", 1, "person, human")
    ds.add_class("coco", 3, "car")
    ds.add_class("coco", 1, "duplicate person")  # same (source, id): skipped
    ds.add_class("balloon", 1, "balloon")
    ds.add_image("coco", image_id=42, path="/data/a.jpg", width=10)
    ds.add_image("balloon", image_id="b7", path="/data/b.jpg", polygons=[[1, 2]])
    ds.add_image("coco", image_id=43, path="/data/c.jpg")
    ds.prepare()
    return ds


def test_background_is_class_zero_before_anything_is_added():
    ds = Dataset()
    assert ds.class_info == [{"source": "", "id": 0, "name": "BG"}]
    assert ds.image_info == []


def test_prepare_builds_ids_names_and_counts():
    ds = _two_source_dataset()
    assert ds.num_classes == 4
    np.testing.assert_array_equal(ds.class_ids, [0, 1, 2, 3])
    # Names are shortened to their first comma-separated part.
    assert ds.class_names == ["BG", "person", "car", "balloon"]
    assert ds.num_images == 3
    np.testing.assert_array_equal(ds.image_ids, [0, 1, 2])
    assert ds.sources == ["", "balloon", "coco"]


def test_source_maps():
    ds = _two_source_dataset()
    assert ds.class_from_source_map == {".0": 0, "coco.1": 1, "coco.3": 2, "balloon.1": 3}
    assert ds.image_from_source_map == {"coco.42": 0, "balloon.b7": 1, "coco.43": 2}
    assert ds.map_source_class_id("coco.3") == 2
    assert ds.get_source_class_id(2, "coco") == 3
    assert ds.get_source_class_id(3, "balloon") == 1
    # Every source's classes include the background.
    assert ds.source_class_ids == {"": [0], "balloon": [0, 3], "coco": [0, 1, 2]}


def test_map_errors_are_clear():
    ds = _two_source_dataset()
    with pytest.raises(KeyError, match="coco.99"):
        ds.map_source_class_id("coco.99")
    with pytest.raises(ValueError, match="balloon"):
        ds.get_source_class_id(1, "balloon")


def test_image_info_keeps_extra_fields_and_links():
    ds = _two_source_dataset()
    assert ds.image_info[0] == {"id": 42, "source": "coco", "path": "/data/a.jpg", "width": 10}
    assert ds.image_info[1]["polygons"] == [[1, 2]]
    assert ds.source_image_link(2) == "/data/c.jpg"
    assert ds.image_reference(0) == "/data/a.jpg"


def test_source_with_dot_is_rejected():
    ds = Dataset()
    with pytest.raises(ValueError, match="'my.data'"):
        ds.add_class("my.data", 1, "thing")
    with pytest.raises(ValueError, match="'my.data'"):
        ds.add_image("my.data", 1, None)


def test_using_ids_before_prepare_says_so():
    ds = Dataset()
    ds.add_class("x", 1, "thing")
    with pytest.raises(AttributeError, match="prepare"):
        _ = ds.num_classes
    with pytest.raises(AttributeError, match="prepare"):
        _ = ds.image_ids
    assert not hasattr(ds, "class_from_source_map")


def test_class_map_is_rejected_not_ignored():
    with pytest.raises(NotImplementedError, match="class_map"):
        Dataset().prepare(class_map={"a": 1})


def test_prepare_can_be_called_again_after_adding_more():
    ds = _two_source_dataset()
    ds.add_class("coco", 5, "dog")
    ds.add_image("coco", image_id=44, path=None)
    ds.prepare()
    assert ds.num_classes == 5 and ds.num_images == 4
    assert ds.source_class_ids["coco"] == [0, 1, 2, 4]


# ---------------------------------------------------------------- loading


def _file_dataset(*paths):
    ds = Dataset()
    for i, path in enumerate(paths):
        ds.add_image("files", image_id=i, path=str(path))
    ds.prepare()
    return ds


def test_load_image_gray_png_becomes_rgb(tmp_path):
    gray = np.random.default_rng(0).integers(0, 256, (9, 13)).astype(np.uint8)
    path = tmp_path / "gray.png"
    skimage.io.imsave(path, gray, check_contrast=False)
    image = _file_dataset(path).load_image(0)
    assert image.shape == (9, 13, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, np.stack([gray] * 3, axis=-1))


def test_load_image_rgba_png_drops_alpha(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, (7, 5, 4)).astype(np.uint8)
    path = tmp_path / "rgba.png"
    skimage.io.imsave(path, rgba, check_contrast=False)
    image = _file_dataset(path).load_image(0)
    np.testing.assert_array_equal(image, rgba[:, :, :3])


def test_load_image_16_bit_png_is_rescaled_to_uint8(tmp_path):
    gray16 = np.array([[0, 257 * 10], [257 * 200, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    skimage.io.imsave(path, gray16, check_contrast=False)
    image = _file_dataset(path).load_image(0)
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image[:, :, 0], [[0, 10], [200, 255]])


def test_load_image_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "img.jpg"
    with pytest.raises(FileNotFoundError, match="nowhere/img.jpg"):
        _file_dataset(missing).load_image(0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # imageio probes its legacy plugins
def test_load_image_corrupt_file_names_the_path(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="broken.png"):
        _file_dataset(path).load_image(0)


def test_default_load_mask_warns_and_returns_no_instances():
    ds = _two_source_dataset()
    with pytest.warns(UserWarning, match="load_mask is not overridden"):
        mask, class_ids = ds.load_mask(0)
    assert mask.shape == (0, 0, 0)
    assert class_ids.shape == (0,) and class_ids.dtype == np.int32


def test_utils_reexports_the_matterport_names():
    from mrcnn import boxes, images, masks, metrics, utils

    assert utils.Dataset is Dataset
    for name in utils.__all__:
        assert hasattr(utils, name), name
    assert utils.extract_bboxes is boxes.extract_bboxes
    assert utils.resize_mask is masks.resize_mask
    assert utils.compute_ap is metrics.compute_ap
    assert utils.resize_image is images.resize_image
    assert utils.generate_pyramid_anchors.__module__ == "mrcnn.anchors"
