"""CocoDataset on a synthetic tinyvoc-format folder, checked against pycocotools."""
import json
import os
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from mrcnn import coco as coco_module
from mrcnn.coco import CocoDataset, annotation_problem, read_coco_json
from mrcnn.errors import DatasetError
from samples.synthetic_tinyvoc import write_synthetic_tinyvoc


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tinyvoc")
    info = write_synthetic_tinyvoc(str(folder), n_train=12, n_test=2, seed=0)
    with open(info["train_json"]) as f:
        info["raw"] = json.load(f)
    return info


def _load(info, **kwargs):
    dataset = CocoDataset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset.load_coco(info["train_json"], os.path.join(info["folder"], "train_images"), **kwargs)
    dataset.prepare()
    return dataset, [str(w.message) for w in caught]


def _copy(info, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(info["folder"], folder)
    return folder


def test_skipped_items_are_counted_in_warnings(synthetic):
    dataset, messages = _load(synthetic)
    raw, defects = synthetic["raw"], synthetic["defects"]
    assert dataset.skipped["annotations"] == {
        coco_module.ZERO_AREA: 1, coco_module.DEGENERATE_POLYGON: 1, coco_module.UNKNOWN_CATEGORY: 1}
    assert dataset.skipped["images"] == {coco_module.CORRUPT_FILE: 1, coco_module.NO_ANNOTATIONS: 1}
    # Annotations of the corrupt image are not "skipped": the whole image is dropped.
    assert any(f"skipped 3 of {len(raw['annotations'])} annotations" in m for m in messages)
    image_warning = [m for m in messages if "dropped 2 of 12 images" in m]
    assert len(image_warning) == 1
    assert defects["corrupt"] in image_warning[0] and defects["empty_image"] in image_warning[0]
    assert "keep_empty=True" in image_warning[0]

    kept_files = {info["file_name"] for info in dataset.image_info}
    assert kept_files == {im["file_name"] for im in raw["images"]} - {
        defects["corrupt"], defects["empty_image"]}
    kept_ann_ids = {a["id"] for info in dataset.image_info for a in info["annotations"]}
    assert not kept_ann_ids & {defects["zero_area"], defects["degenerate_polygon"],
                               defects["unknown_category"]}


def test_keep_empty_keeps_image_without_annotations(synthetic):
    dataset, messages = _load(synthetic, keep_empty=True)
    assert dataset.skipped["images"] == {coco_module.CORRUPT_FILE: 1}
    assert not any("keep_empty" in m for m in messages)
    [empty] = [i for i, info in enumerate(dataset.image_info)
               if info["file_name"] == synthetic["defects"]["empty_image"]]
    masks, class_ids = dataset.load_mask(empty)
    info = dataset.image_info[empty]
    assert masks.shape == (info["height"], info["width"], 0) and masks.dtype == bool
    assert class_ids.shape == (0,) and class_ids.dtype == np.int32


def test_masks_match_pycocotools_ann_to_mask(synthetic):
    dataset, _ = _load(synthetic)
    reference = COCO(synthetic["train_json"])
    names = {c["id"]: c["name"] for c in synthetic["raw"]["categories"]}
    kinds = set()
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        masks, class_ids = dataset.load_mask(image_id)
        anns = info["annotations"]
        assert masks.shape == (info["height"], info["width"], len(anns))
        for k, ann in enumerate(anns):
            expected = reference.annToMask(reference.anns[ann["id"]]).astype(bool)
            np.testing.assert_array_equal(masks[:, :, k], expected)
            # The internal class carries the COCO category's name; crowds are negative.
            assert dataset.class_names[abs(class_ids[k])] == names[ann["category_id"]]
            assert (class_ids[k] < 0) == bool(ann["iscrowd"])
            kinds.add("polygon" if isinstance(ann["segmentation"], list)
                      else "rle-" + type(ann["segmentation"]["counts"]).__name__)
    # Polygons, compressed RLE (str) and uncompressed crowd RLE (list) were all covered.
    assert kinds == {"polygon", "rle-str", "rle-list"}


def test_crowd_region_has_negative_class_id(synthetic):
    dataset, _ = _load(synthetic)
    crowd = next(a for a in synthetic["raw"]["annotations"] if a["id"] == synthetic["crowd_annotation"])
    assert crowd["iscrowd"] == 1
    internal_image = dataset.image_from_source_map[f"coco.{crowd['image_id']}"]
    _, class_ids = dataset.load_mask(internal_image)
    person = dataset.class_names.index("person")
    assert -person in class_ids.tolist()
    assert person not in class_ids.tolist()


def test_category_ids_map_both_ways(synthetic):
    dataset, _ = _load(synthetic)
    assert dataset.num_classes == 21
    for category in synthetic["raw"]["categories"]:
        internal = dataset.map_source_class_id(f"coco.{category['id']}")
        assert dataset.class_names[internal] == category["name"]
        assert dataset.get_source_class_id(internal, "coco") == category["id"]
        assert dataset.class_map()[internal] == category["id"]


def test_grayscale_jpeg_loads_as_rgb(synthetic):
    dataset, _ = _load(synthetic)
    [gray] = [i for i, info in enumerate(dataset.image_info)
              if info["file_name"] == synthetic["defects"]["grayscale"]]
    image = dataset.load_image(gray)
    info = dataset.image_info[gray]
    assert image.shape == (info["height"], info["width"], 3) and image.dtype == np.uint8
    assert np.array_equal(image[..., 0], image[..., 2])
    with Image.open(info["path"]) as im:
        assert im.mode == "L"
    assert info["path"] in dataset.image_reference(gray)


def test_class_and_image_subsets(synthetic):
    dataset, messages = _load(synthetic, class_ids=[20], image_ids=[1, 2, 3, 4])
    assert dataset.class_names == ["BG", "tvmonitor"]
    expected_images = {a["image_id"] for a in synthetic["raw"]["annotations"]
                       if a["category_id"] == 20 and a["image_id"] in (1, 2, 4)}  # 3 is corrupt
    assert {info["id"] for info in dataset.image_info} == expected_images
    # Image 4 only has other categories: a choice of the caller, not worth a warning.
    assert 20 not in {a["category_id"] for a in synthetic["raw"]["annotations"] if a["image_id"] == 4}
    assert dataset.skipped["images"][coco_module.OTHER_CLASSES_ONLY] == 1
    assert not any("dropped" in m and coco_module.OTHER_CLASSES_ONLY in m for m in messages)
    for image_id in dataset.image_ids:
        _, class_ids = dataset.load_mask(image_id)
        assert set(class_ids.tolist()) == {1}
    with pytest.raises(ValueError, match=r"category ids \[77\]"):
        CocoDataset().load_coco(synthetic["train_json"], os.path.join(synthetic["folder"], "train_images"),
                                class_ids=[77])


def test_missing_and_resized_files_are_dropped(synthetic, tmp_path):
    folder = _copy(synthetic, tmp_path)
    os.remove(folder / "train_images" / "synthetic_000007.jpg")
    Image.new("RGB", (50, 40)).save(folder / "train_images" / "synthetic_000008.jpg")
    dataset = CocoDataset()
    with pytest.warns(UserWarning, match="synthetic_000007.jpg") as record:
        dataset.load_coco(folder / "pascal_train.json", folder / "train_images")
    assert dataset.skipped["images"][coco_module.MISSING_FILE] == 1
    assert dataset.skipped["images"][coco_module.SIZE_MISMATCH] == 1
    assert any("synthetic_000008.jpg" in str(w.message) for w in record)


def test_missing_json_and_folder_errors_name_the_path(synthetic, tmp_path):
    images = os.path.join(synthetic["folder"], "train_images")
    missing_json = str(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoDataset().load_coco(missing_json, images)
    missing_dir = str(tmp_path / "no_images")
    with pytest.raises(FileNotFoundError, match="no_images"):
        CocoDataset().load_coco(synthetic["train_json"], missing_dir)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json.*not valid JSON"):
        read_coco_json(broken)
    no_images = tmp_path / "keys.json"
    no_images.write_text(json.dumps({"annotations": []}))
    with pytest.raises(ValueError, match="keys.json.*images"):
        read_coco_json(no_images)


def test_no_usable_image_is_an_error(synthetic, tmp_path):
    folder = tmp_path / "empty"
    (folder / "train_images").mkdir(parents=True)
    with pytest.raises(ValueError, match="no usable image"), pytest.warns(UserWarning, match="missing file"):
        CocoDataset().load_coco(synthetic["train_json"], folder / "train_images")


@pytest.mark.parametrize("ann, reason", [
    ({"category_id": 5, "segmentation": [[0, 0, 9, 0, 9, 9]], "area": 40}, None),
    ({"category_id": 99, "segmentation": [[0, 0, 9, 0, 9, 9]], "area": 40}, coco_module.UNKNOWN_CATEGORY),
    ({"category_id": 5, "segmentation": [[0, 0, 9, 0, 9, 9]], "area": 0}, coco_module.ZERO_AREA),
    ({"category_id": 5, "segmentation": [[0, 0, 9, 0, 9, 9]], "bbox": [0, 0, 9, 0]}, coco_module.ZERO_AREA),
    ({"category_id": 5, "segmentation": [[0, 0, 9, 9]]}, coco_module.DEGENERATE_POLYGON),
    ({"category_id": 5, "segmentation": [[0, 0, 5, 5, 9, 9]]}, coco_module.DEGENERATE_POLYGON),
    ({"category_id": 5, "segmentation": [[0, 0, 9, 0, 9]]}, coco_module.MALFORMED),
    ({"category_id": 5, "segmentation": []}, coco_module.MALFORMED),
    ({"category_id": 5}, coco_module.MALFORMED),
    ({"category_id": 5, "segmentation": {"size": [10, 20], "counts": "00"}}, None),
    ({"category_id": 5, "segmentation": {"size": [20, 10], "counts": "00"}}, coco_module.MALFORMED),
    # One degenerate part next to a good one: the good part is enough.
    ({"category_id": 5, "segmentation": [[0, 0, 1, 1], [0, 0, 9, 0, 9, 9]]}, None),
    # Entirely outside the 20 x 10 image (right of it, below it, left of it).
    ({"category_id": 5, "segmentation": [[20, 0, 29, 0, 29, 9]]}, coco_module.OUTSIDE_IMAGE),
    ({"category_id": 5, "segmentation": [[0, 10, 9, 10, 9, 19]]}, coco_module.OUTSIDE_IMAGE),
    ({"category_id": 5, "segmentation": [[-9, 0, 0, 0, -5, 9]]}, coco_module.OUTSIDE_IMAGE),
    # Partly inside: usable; one part inside is enough.
    ({"category_id": 5, "segmentation": [[15, 0, 29, 0, 29, 9]]}, None),
    ({"category_id": 5, "segmentation": [[40, 0, 49, 0, 49, 9], [0, 0, 9, 0, 9, 9]]}, None),
])
def test_annotation_problem(ann, reason):
    assert annotation_problem(ann, {5: {"id": 5}}, height=10, width=20) == reason


def _rewrite(folder, change):
    path = folder / "pascal_train.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))
    return raw


def test_duplicate_image_id_names_the_id_and_both_files(synthetic, tmp_path):
    folder = _copy(synthetic, tmp_path)

    def duplicate(raw):
        raw["images"][2]["id"] = raw["images"][0]["id"]

    raw = _rewrite(folder, duplicate)
    first, second = raw["images"][0]["file_name"], raw["images"][2]["file_name"]
    with pytest.raises(DatasetError, match=f"pascal_train.json: image id {raw['images'][0]['id']} "
                       f"is used twice, by '{first}' and '{second}'"):
        CocoDataset().load_coco(folder / "pascal_train.json", folder / "train_images")


def test_unknown_image_id_and_outside_polygon_are_counted(synthetic, tmp_path):
    folder = _copy(synthetic, tmp_path)

    def corrupt(raw):
        polygons = [a for a in raw["annotations"] if isinstance(a["segmentation"], list)
                    and a["id"] not in synthetic["defects"].values() and not a["iscrowd"]]
        polygons[0]["image_id"] = 987654            # no such image
        image = next(im for im in raw["images"] if im["id"] == polygons[1]["image_id"])
        shift = image["width"] + 5                  # every point right of the image
        polygons[1]["segmentation"] = [[v + shift if i % 2 == 0 else v for i, v in enumerate(p)]
                                       for p in polygons[1]["segmentation"]]
        corrupt.ids = polygons[0]["id"], polygons[1]["id"]

    raw = _rewrite(folder, corrupt)
    dataset = CocoDataset()
    with pytest.warns(UserWarning) as record:
        dataset.load_coco(folder / "pascal_train.json", folder / "train_images")
    skipped = dataset.skipped["annotations"]
    assert skipped[coco_module.UNKNOWN_IMAGE] == 1 and skipped[coco_module.OUTSIDE_IMAGE] == 1
    summary = [str(w.message) for w in record if "skipped" in str(w.message)]
    assert len(summary) == 1
    # The 3 defects of the synthetic file, and the 2 new ones.
    assert f"skipped 5 of {len(raw['annotations'])} annotations" in summary[0]
    assert "1 unknown image id" in summary[0] and "1 polygon outside its image" in summary[0]
    kept = {a["id"] for info in dataset.image_info for a in info["annotations"]}
    assert not kept & set(corrupt.ids)
