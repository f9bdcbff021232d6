"""COCO-format datasets: ``CocoDataset.load_coco`` reads any COCO-style annotation file.

Ids: COCO's category ids become internal class ids through ``add_class`` /
``prepare()``; use ``dataset.map_source_class_id(f"{source}.{category_id}")`` for
COCO -> internal and ``dataset.get_source_class_id(class_id, source)`` for
internal -> COCO. Image ids likewise (``image_info[i]["id"]`` is the COCO image id).

Bad data is skipped, never a traceback, and each kind is counted in one warning per
``load_coco`` call (counts also in ``dataset.skipped``):

- annotations: unknown category id, unknown image id (not in "images"), zero area
  (``area <= 0`` or an empty bbox), degenerate polygon (no part with 3 points that
  encloses area), polygon entirely outside its image, malformed segmentation
  (missing, odd coordinate count, RLE of another size).
- images: missing file, unreadable or corrupt file, file size differing from the
  JSON's height/width, and (unless ``keep_empty=True``) images left without a usable
  annotation.

Image files are checked when the annotations are loaded by reading the header only
(PIL: format, width and height; about 0.1 ms per file). That catches missing files,
non-images and size mismatches cheaply; a file that is truncated *after* a valid
header still passes and fails later in ``load_image`` with an error naming the file.
"""
import contextlib
import io
import json
import os
import warnings
from collections import Counter
from numbers import Number

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO

from mrcnn.dataset import Dataset
from mrcnn.errors import DatasetError
from mrcnn.masks import segmentation_to_mask

__all__ = ["CocoDataset", "read_coco_json"]

# Reasons an annotation or an image is skipped (the keys of ``CocoDataset.skipped``).
UNKNOWN_CATEGORY = "unknown category id"
UNKNOWN_IMAGE = "unknown image id"
OUTSIDE_IMAGE = "polygon outside its image"
ZERO_AREA = "zero area"
DEGENERATE_POLYGON = "degenerate polygon"
MALFORMED = "malformed segmentation"
MISSING_FILE = "missing file"
CORRUPT_FILE = "unreadable or corrupt file"
SIZE_MISMATCH = "file size differs from the annotation file"
NO_ANNOTATIONS = "without usable annotations"
# Not a data problem (the caller chose class_ids), so counted but not warned about.
OTHER_CLASSES_ONLY = "only categories not selected"

_EXAMPLES_IN_WARNING = 3


def read_coco_json(annotation_file, require_annotations=False):
    """Loads a COCO-format JSON file into a ``pycocotools.coco.COCO`` object.

    annotation_file: path of the JSON file.
    require_annotations: raise if the file has no "annotations" list (a test-set
        file such as test.json has none; a training file must).

    Raises FileNotFoundError naming the file if it is missing, DatasetError (a
    ValueError) naming the file and the problem if it is not valid JSON, lacks
    "images"/"categories", or gives two images the same id (naming both files).
    pycocotools' own "loading annotations..." output is silenced.
    """
    annotation_file = os.fspath(annotation_file)
    if not os.path.isfile(annotation_file):
        raise FileNotFoundError(
            f"COCO annotation file not found: {annotation_file!r} (expected a JSON file with "
            f'"images", "categories" and, for training data, "annotations")')
    try:
        with open(annotation_file) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{annotation_file}: not valid JSON: {err}") from err
    required = ["images", "categories"] + (["annotations"] if require_annotations else [])
    if not isinstance(data, dict) or any(not isinstance(data.get(k), list) for k in required):
        raise DatasetError(f"{annotation_file}: a COCO annotation file needs the lists {required}; "
                         f"found keys {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    file_names = {}
    for i, image in enumerate(data["images"]):
        missing = [k for k in ("id", "file_name", "height", "width") if k not in image]
        if missing:
            raise DatasetError(f"{annotation_file}: images[{i}] lacks {missing}")
        # pycocotools would keep the last image of an id: the other one's annotations
        # would land on it, and detections be written under the wrong file.
        if image["id"] in file_names:
            raise DatasetError(f"{annotation_file}: image id {image['id']} is used twice, by "
                               f"{file_names[image['id']]!r} and {image['file_name']!r}; image "
                               f"ids must be unique")
        file_names[image["id"]] = image["file_name"]
    for i, ann in enumerate(data.get("annotations", [])):
        missing = [k for k in ("id", "image_id", "category_id") if k not in ann]
        if missing:
            raise DatasetError(f"{annotation_file}: annotations[{i}] lacks {missing}")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    # Remembered so that messages about a COCO object passed around can name the file.
    coco.annotation_file = annotation_file
    return coco


class CocoDataset(Dataset):
    """A Dataset read from a COCO-format annotation file (polygons, RLE and crowds).

    After ``load_coco`` and ``prepare()``:
        image_info[i]: {"id": COCO image id, "source", "path", "width", "height",
                        "file_name", "annotations": [usable COCO annotations]}.
        coco: the ``pycocotools.coco.COCO`` of the last ``load_coco`` call (for COCOeval).
        skipped: {"annotations": {reason: count}, "images": {reason: count}} of the
                 last ``load_coco`` call.
    """

    def __init__(self, class_map=None):
        super().__init__(class_map=class_map)
        self.coco = None
        self.skipped = {"annotations": {}, "images": {}}
        self._coco_sources = set()

    def load_coco(self, annotation_file, image_dir, source="coco", class_ids=None,
                  image_ids=None, keep_empty=False, check_files=True, return_coco=True):
        """Registers the classes and images of a COCO-format annotation file.

        annotation_file: COCO JSON (images, categories, annotations), or a COCO object
            already loaded (e.g. by ``read_coco_json``).
        image_dir: folder holding the images' ``file_name``s.
        source: source name of the classes and images (no "."); "coco" by default.
        class_ids: COCO category ids to load (default: all in the file). Annotations
            of other (existing) categories, and images that only have such
            annotations, are left out without a warning (counted in ``skipped``).
        image_ids: COCO image ids to load (default: all in the file).
        keep_empty: keep images that have no usable annotation (needed for test sets
            and for training on background images); they are dropped, with a counted
            warning, by default.
        check_files: check each image file's header (see the module docstring).
        return_coco: return the COCO object (Matterport returned it only when asked;
            here it is also kept in ``self.coco``).

        Returns: the ``pycocotools.coco.COCO`` object (None if return_coco is False).
        Raises: FileNotFoundError naming a missing file or folder; ValueError for
        unknown requested ids or when no usable image is left.
        """
        if isinstance(annotation_file, COCO):
            coco = annotation_file
            annotation_file = getattr(coco, "annotation_file", "COCO annotations")
        else:
            coco = read_coco_json(annotation_file)
        image_dir = os.fspath(image_dir)
        if not os.path.isdir(image_dir):
            raise FileNotFoundError(
                f"image folder not found: {image_dir!r} (the images of {annotation_file!r} "
                f"are expected there, by their file_name)")
        name = os.path.basename(os.fspath(annotation_file))
        class_ids = self._select(class_ids, coco.cats, "category", name)
        image_ids = self._select(image_ids, coco.imgs, "image", name)

        for category_id in class_ids:
            self.add_class(source, category_id, coco.cats[category_id]["name"])
        selected = set(class_ids)
        self._coco_sources.add(source)

        ann_skips, image_skips, examples = Counter(), Counter(), {}
        # Annotations of no image belong to no selection: every call counts them.
        orphans = sum(ann["image_id"] not in coco.imgs for ann in coco.anns.values())
        if orphans:
            ann_skips[UNKNOWN_IMAGE] = orphans
        ann_total, kept = orphans, 0
        for image_id in image_ids:
            image = coco.imgs[image_id]
            height, width = int(image["height"]), int(image["width"])
            annotations, unselected = [], 0
            for ann in coco.imgToAnns.get(image_id, []):
                ann_total += 1
                problem = annotation_problem(ann, coco.cats, height, width)
                if problem:
                    ann_skips[problem] += 1
                elif ann["category_id"] in selected:
                    annotations.append(ann)
                else:
                    unselected += 1
            path = os.path.join(image_dir, image["file_name"])
            problem = None
            if not annotations and not keep_empty:
                problem = OTHER_CLASSES_ONLY if unselected else NO_ANNOTATIONS
            elif check_files:
                problem = image_file_problem(path, height, width)
            if problem:
                image_skips[problem] += 1
                examples.setdefault(problem, []).append(image["file_name"])
                continue
            self.add_image(source, image_id=image_id, path=path, width=width, height=height,
                           file_name=image["file_name"], annotations=annotations)
            kept += 1

        self.skipped = {"annotations": dict(ann_skips), "images": dict(image_skips)}
        self._warn(name, ann_skips, ann_total, image_skips, len(image_ids), examples)
        if kept == 0:
            raise ValueError(
                f"{annotation_file}: no usable image among the {len(image_ids)} selected "
                f"(dropped: {_describe(image_skips) or 'none'}); check the image folder "
                f"{image_dir!r} and the annotations")
        self.coco = coco
        return coco if return_coco else None

    @staticmethod
    def _select(requested, available, what, name):
        """The requested ids (all when None), sorted; unknown ones are a DatasetError."""
        if requested is None:
            return sorted(available)
        unknown = sorted(set(requested) - set(available))
        if unknown:
            raise DatasetError(f"{name}: requested {what} ids {unknown[:10]} are not in the file "
                               f"(it has {len(available)})")
        return sorted(set(requested))

    @staticmethod
    def _warn(name, ann_skips, ann_total, image_skips, image_total, examples):
        if ann_skips:
            warnings.warn(f"{name}: skipped {sum(ann_skips.values())} of {ann_total} "
                          f"annotations: {_describe(ann_skips)}", stacklevel=3)
        image_skips = {k: v for k, v in image_skips.items() if k != OTHER_CLASSES_ONLY}
        if image_skips:
            details = []
            for reason, count in sorted(image_skips.items()):
                hint = ", pass keep_empty=True to keep them" if reason == NO_ANNOTATIONS else ""
                files = ", ".join(examples[reason][:_EXAMPLES_IN_WARNING])
                details.append(f"{count} {reason} (e.g. {files}{hint})")
            warnings.warn(f"{name}: dropped {sum(image_skips.values())} of {image_total} "
                          f"images: {'; '.join(details)}", stacklevel=3)

    def load_mask(self, image_id):
        """Instance masks of one image at its original size.

        Returns:
            masks: bool [H, W, N].
            class_ids: int32 [N] internal class ids; crowd regions (``iscrowd=1``) get
                the negative id (Matterport's convention: training uses them only to
                ignore proposals that overlap them).
        Masks with no pixel (e.g. a tiny polygon that rasterizes to nothing) are dropped.
        An image without instances gives masks [H, W, 0] and class_ids [0].
        """
        info = self.image_info[image_id]
        if info["source"] not in self._coco_sources:
            return super().load_mask(image_id)
        height, width = info["height"], info["width"]
        masks, class_ids = [], []
        for ann in info["annotations"]:
            class_id = self.map_source_class_id(f"{info['source']}.{ann['category_id']}")
            mask = segmentation_to_mask(ann["segmentation"], height, width)
            if not mask.any():
                continue
            masks.append(mask)
            class_ids.append(-class_id if ann.get("iscrowd") else class_id)
        if not masks:
            return np.zeros((height, width, 0), dtype=bool), np.zeros((0,), dtype=np.int32)
        return np.stack(masks, axis=2), np.array(class_ids, dtype=np.int32)

    def image_reference(self, image_id):
        """The image's file path and COCO id, e.g. "train_images/x.jpg (coco image 12)"."""
        info = self.image_info[image_id]
        if info["source"] not in self._coco_sources:
            return super().image_reference(image_id)
        return f"{info['path']} ({info['source']} image {info['id']})"

    def coco_category_id(self, class_id):
        """COCO category id of internal class ``class_id`` (its source's own id)."""
        return self.class_info[int(class_id)]["id"]

    def class_map(self):
        """{internal class id: COCO category id} for every non-background class."""
        return {i: info["id"] for i, info in enumerate(self.class_info) if i > 0}


############################################################
#  Checks
############################################################

def annotation_problem(ann, categories, height, width):
    """Why a COCO annotation cannot be used, or None if it can.

    ann: COCO annotation dict.
    categories: the file's {category id: category} (``COCO.cats``).
    height, width: its image's size.

    Returns: one of the reason strings of this module, or None. The checks are
    structural (no rasterizing), so loading stays fast; load_mask still drops masks
    that rasterize to nothing.
    """
    if ann["category_id"] not in categories:
        return UNKNOWN_CATEGORY
    area = ann.get("area")
    bbox = ann.get("bbox")
    if isinstance(area, Number) and area <= 0:
        return ZERO_AREA
    if isinstance(bbox, (list, tuple)) and len(bbox) == 4 and (bbox[2] <= 0 or bbox[3] <= 0):
        return ZERO_AREA
    segm = ann.get("segmentation")
    if isinstance(segm, dict):
        size = segm.get("size")
        if "counts" not in segm or not isinstance(size, (list, tuple)) or \
                [int(s) for s in size] != [height, width]:
            return MALFORMED
        return None
    if not isinstance(segm, (list, tuple)) or not segm:
        return MALFORMED
    if isinstance(segm[0], Number):
        segm = [segm]
    if any(not isinstance(p, (list, tuple)) or len(p) % 2 for p in segm):
        return MALFORMED
    polygons = [p for p in segm if len(p) >= 6 and _polygon_area(p) > 0]
    if not polygons:
        return DEGENERATE_POLYGON
    if not any(_touches_image(p, height, width) for p in polygons):
        return OUTSIDE_IMAGE
    return None


def _touches_image(poly, height, width):
    """Whether a flat [x0, y0, ...] polygon's bounding box overlaps the image."""
    xs, ys = poly[0::2], poly[1::2]
    return max(xs) > 0 and min(xs) < width and max(ys) > 0 and min(ys) < height


def _polygon_area(poly):
    """Shoelace area of a flat [x0, y0, x1, y1, ...] polygon."""
    xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def image_file_problem(path, height, width):
    """Why an image file cannot be used, or None: a header-only check with PIL.

    Returns MISSING_FILE, CORRUPT_FILE, SIZE_MISMATCH (the file is not
    ``height`` x ``width``) or None.
    """
    if not os.path.isfile(path):
        return MISSING_FILE
    try:
        with Image.open(path) as image:
            file_width, file_height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return CORRUPT_FILE
    if (file_height, file_width) != (height, width):
        return SIZE_MISMATCH
    return None


def _describe(counts):
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
