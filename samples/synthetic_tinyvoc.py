"""Writes a small synthetic dataset in the tiny-PASCAL-VOC ("tinyvoc") layout.

The layout is the one the real data ships in::

    FOLDER/
        train_images/*.jpg
        pascal_train.json     COCO format: images, categories (20 VOC classes, ids 1..20),
                              annotations (polygon or RLE segmentation, bbox, area, iscrowd)
        test_images/*.jpg
        test.json             images and categories only, no annotations

Images are coloured shapes on a plain background. Every shape's pixels are painted
through the very mask its annotation decodes to, so images and annotations agree
exactly. Shape kind decides the category (rectangle -> tvmonitor, triangle -> boat,
circle -> bottle), so a model can learn it. Rectangles and triangles are stored as
polygons, circles as compressed RLE, and one crowd region (a cluster of dots, category
person, ``iscrowd=1``) as uncompressed RLE, COCO's convention for crowds.

With ``with_defects=True`` the training set also contains the problems real data has:
a grayscale JPEG, a corrupt file, an annotation with zero area, a degenerate polygon
(two points), an annotation with an unknown category id (99) and an image without
annotations. The return value says which file/annotation carries which defect.

Run as a script to write a folder: ``python samples/synthetic_tinyvoc.py OUT_DIR``.
"""
import argparse
import json
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

__all__ = ["VOC_CLASSES", "SHAPE_CATEGORIES", "write_synthetic_tinyvoc", "add_synth_arguments"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
# COCO category id (1-based index into VOC_CLASSES) of each shape kind.
SHAPE_CATEGORIES = {
    "rectangle": VOC_CLASSES.index("tvmonitor") + 1,
    "triangle": VOC_CLASSES.index("boat") + 1,
    "circle": VOC_CLASSES.index("bottle") + 1,
}
CROWD_CATEGORY = VOC_CLASSES.index("person") + 1
UNKNOWN_CATEGORY = 99
TEST_ID_OFFSET = 1000

# Training-image indices that carry the defects (when with_defects is set).
_GRAY, _CORRUPT, _ZERO_AREA, _UNKNOWN, _EMPTY, _CROWD = 1, 2, 3, 3, 4, 5
_MIN_TRAIN_WITH_DEFECTS = 7


def write_synthetic_tinyvoc(folder, n_train=12, n_test=4, size=(128, 160), seed=0,
                            with_defects=True):
    """Writes a synthetic tinyvoc folder (see the module docstring) and describes it.

    folder: output folder; created if needed. Existing files of the same names are
        overwritten.
    n_train, n_test: number of training / test images.
    size: (height, width) of even-indexed images; odd-indexed ones are (width, height)
        so that code mixing up the two axes fails.
    seed: everything (shapes, colours, defects) is a deterministic function of it.
    with_defects: add the defects listed in the module docstring (needs n_train >= 7).

    Returns: dict with "folder", "train_json", "test_json", "train_images" and
    "test_images" (file counts), "crowd_annotation" (annotation id or None) and
    "defects": {"grayscale", "corrupt", "empty_image": file names;
    "zero_area", "degenerate_polygon", "unknown_category": annotation ids} (empty
    when with_defects is False).
    """
    height, width = (int(s) for s in size)
    if min(height, width) < 64:
        raise ValueError(f"write_synthetic_tinyvoc: size {size} is too small; use at least 64x64")
    if n_train < 1 or n_test < 0:
        raise ValueError(f"write_synthetic_tinyvoc: need n_train >= 1 and n_test >= 0, "
                         f"got {n_train}, {n_test}")
    if with_defects and n_train < _MIN_TRAIN_WITH_DEFECTS:
        raise ValueError(f"write_synthetic_tinyvoc: with_defects needs n_train >= "
                         f"{_MIN_TRAIN_WITH_DEFECTS} so that clean images remain, got {n_train}")
    rng = np.random.default_rng(seed)
    categories = [{"supercategory": name, "name": name, "id": i + 1}
                  for i, name in enumerate(VOC_CLASSES)]
    train_dir = os.path.join(folder, "train_images")
    test_dir = os.path.join(folder, "test_images")
    os.makedirs(train_dir, exist_ok=True)
    os.makedirs(test_dir, exist_ok=True)

    images, annotations, defects = [], [], {}
    crowd_id = None
    crowd_index = _CROWD if n_train > _CROWD else 0
    for index in range(n_train):
        shape = _image_shape(index, height, width)
        file_name = f"synthetic_{index + 1:06d}.jpg"
        record = {"file_name": file_name, "id": index + 1, "height": shape[0], "width": shape[1]}
        images.append(record)
        empty = with_defects and index == _EMPTY
        image, anns = _draw_image(rng, shape, record["id"], len(annotations) + 1,
                                  n_shapes=0 if empty else None)
        if index == crowd_index:
            crowd = _crowd_annotation(rng, image, anns, record["id"], len(annotations) + len(anns) + 1)
            anns.append(crowd)
            crowd_id = crowd["id"]
        if with_defects and index == _ZERO_AREA:
            next_id = len(annotations) + len(anns) + 1
            anns.append(_zero_area_annotation(record["id"], next_id, shape))
            anns.append(_degenerate_polygon_annotation(record["id"], next_id + 1, shape))
            anns.append(_unknown_category_annotation(anns[0], next_id + 2))
            defects.update(zero_area=next_id, degenerate_polygon=next_id + 1,
                           unknown_category=next_id + 2)
        annotations.extend(anns)
        path = os.path.join(train_dir, file_name)
        if with_defects and index == _CORRUPT:
            _write_corrupt(path, rng)
            defects["corrupt"] = file_name
        elif with_defects and index == _GRAY:
            Image.fromarray(image).convert("L").save(path, quality=95)
            defects["grayscale"] = file_name
        else:
            Image.fromarray(image).save(path, quality=95)
        if empty:
            defects["empty_image"] = file_name

    test_images = []
    for index in range(n_test):
        shape = _image_shape(index, height, width)
        file_name = f"synthetic_test_{index + 1:06d}.jpg"
        record = {"file_name": file_name, "id": TEST_ID_OFFSET + index + 1,
                  "height": shape[0], "width": shape[1]}
        image, _ = _draw_image(rng, shape, record["id"], 1)
        Image.fromarray(image).save(os.path.join(test_dir, file_name), quality=95)
        test_images.append(record)

    train_json = os.path.join(folder, "pascal_train.json")
    test_json = os.path.join(folder, "test.json")
    _write_json({"images": images, "categories": categories, "annotations": annotations},
                train_json)
    _write_json({"images": test_images, "categories": categories}, test_json)
    return {"folder": folder, "train_json": train_json, "test_json": test_json,
            "train_images": n_train, "test_images": n_test,
            "crowd_annotation": crowd_id, "defects": defects}


def _image_shape(index, height, width):
    return (height, width) if index % 2 == 0 else (width, height)


def _write_json(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f)


def _write_corrupt(path, rng):
    # A JPEG start-of-image marker followed by noise: looks like a JPEG by name and
    # first bytes, but no decoder can read it.
    with open(path, "wb") as f:
        f.write(b"\xff\xd8\xff" + rng.integers(0, 256, 200, dtype=np.uint8).tobytes())


############################################################
#  Drawing
############################################################

def _draw_image(rng, shape, image_id, first_ann_id, n_shapes=None):
    """A background with 1-3 non-overlapping shapes.

    Returns: (uint8 [H, W, 3] image, list of COCO annotations with ids from first_ann_id).
    """
    h, w = shape
    background = rng.integers(40, 110, 3)
    image = np.empty((h, w, 3), dtype=np.uint8)
    image[:] = background
    if n_shapes is None:
        n_shapes = int(rng.integers(1, 4))
    boxes, anns = [], []
    for _ in range(n_shapes):
        box = _free_box(rng, h, w, boxes)
        if box is None:
            break
        boxes.append(box)
        kind = ("rectangle", "triangle", "circle")[int(rng.integers(0, 3))]
        segmentation = _segmentation(kind, box, h, w)
        ann = _annotation(len(anns) + first_ann_id, image_id, SHAPE_CATEGORIES[kind],
                          segmentation, h, w)
        # Paint through the annotation's own mask so image and annotation agree.
        image[_decode(segmentation, h, w)] = rng.integers(150, 256, 3)
        anns.append(ann)
    return image, anns


def _free_box(rng, h, w, boxes, tries=50):
    """A random (y1, x1, y2, x2) box, 20-50 px a side, 4 px away from ``boxes``."""
    for _ in range(tries):
        bh, bw = (int(v) for v in rng.integers(20, min(51, h // 2, w // 2), 2))
        y1 = int(rng.integers(2, h - bh - 2))
        x1 = int(rng.integers(2, w - bw - 2))
        box = (y1, x1, y1 + bh, x1 + bw)
        if all(box[2] + 4 <= b[0] or b[2] + 4 <= box[0] or box[3] + 4 <= b[1] or b[3] + 4 <= box[1]
               for b in boxes):
            return box
    return None


def _segmentation(kind, box, h, w):
    y1, x1, y2, x2 = box
    if kind == "rectangle":
        return [[x1, y1, x2, y1, x2, y2, x1, y2]]
    if kind == "triangle":
        return [[(x1 + x2) / 2, y1, x2, y2, x1, y2]]
    # Circle: rasterized here and stored as compressed RLE.
    yy, xx = np.mgrid[:h, :w]
    cy, cx, r = (y1 + y2) / 2, (x1 + x2) / 2, min(y2 - y1, x2 - x1) / 2
    mask = (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 <= r ** 2
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def _to_rle(segmentation, h, w):
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, h, w)
    return {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}


def _decode(segmentation, h, w):
    return mask_utils.decode(_to_rle(segmentation, h, w)).astype(bool)


def _annotation(ann_id, image_id, category_id, segmentation, h, w, iscrowd=0):
    # area and bbox come from the rasterized mask, as the COCO tools compute them.
    rle = _to_rle(segmentation, h, w)
    return {"id": ann_id, "image_id": image_id, "category_id": category_id,
            "segmentation": segmentation, "area": float(mask_utils.area(rle)),
            "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": iscrowd}


############################################################
#  Crowds and defects
############################################################

def _crowd_annotation(rng, image, anns, image_id, ann_id):
    """A cluster of small dots in a free corner, as an uncompressed-RLE crowd region."""
    h, w = image.shape[:2]
    taken = np.zeros((h, w), dtype=bool)
    for ann in anns:
        taken |= _decode(ann["segmentation"], h, w)
    mask = np.zeros((h, w), dtype=bool)
    for cy, cx in zip(rng.integers(4, 28, 12), rng.integers(4, 28, 12)):
        mask[cy - 2:cy + 2, cx - 2:cx + 2] = True
    mask &= ~taken
    image[mask] = (230, 230, 230)
    # Uncompressed RLE: column-major run lengths, starting with a background run.
    flat = mask.ravel(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    segmentation = {"size": [h, w], "counts": counts}
    return _annotation(ann_id, image_id, CROWD_CATEGORY, segmentation, h, w, iscrowd=1)


def _zero_area_annotation(image_id, ann_id, shape):
    # Three collinear points: a polygon that encloses nothing.
    y = shape[0] // 2
    return {"id": ann_id, "image_id": image_id, "category_id": 1,
            "segmentation": [[10.0, y, 20.0, y, 30.0, y]], "area": 0.0,
            "bbox": [10.0, float(y), 20.0, 0.0], "iscrowd": 0}


def _degenerate_polygon_annotation(image_id, ann_id, shape):
    # Two points only, with a (wrong) positive area as sloppy converters write it.
    return {"id": ann_id, "image_id": image_id, "category_id": 2,
            "segmentation": [[5.0, 5.0, 25.0, 25.0]], "area": 200.0,
            "bbox": [5.0, 5.0, 20.0, 20.0], "iscrowd": 0}


def _unknown_category_annotation(template, ann_id):
    ann = dict(template)
    ann.update(id=ann_id, category_id=UNKNOWN_CATEGORY)
    return ann


def int_at_least(minimum):
    """argparse type: an integer >= minimum (one definition for the samples' parsers)."""
    def parse(text):
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text}")
        return value
    return parse


def add_synth_arguments(parser):
    """The options of the synthetic writer, shared with ``tinyvoc.py synth``."""
    parser.add_argument("folder")
    parser.add_argument("--train", type=int_at_least(1), default=12, help="training images (default 12)")
    parser.add_argument("--test", type=int_at_least(0), default=4, help="test images (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int_at_least(64), nargs=2, default=(128, 160), metavar=("H", "W"),
                        help="height and width of even-indexed images; odd ones are W x H "
                             "(default 128 160; shapes are 20-50 px, at most half the image)")
    parser.add_argument("--no-defects", action="store_true",
                        help="leave out the grayscale/corrupt/invalid items")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write a synthetic tinyvoc-format folder.")
    add_synth_arguments(parser)
    args = parser.parse_args(argv)
    try:
        info = write_synthetic_tinyvoc(args.folder, n_train=args.train, n_test=args.test,
                                       size=args.size, seed=args.seed,
                                       with_defects=not args.no_defects)
    except ValueError as err:  # an impossible request, e.g. defects in 3 images
        parser.error(f"{err} (or pass --no-defects)")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
