"""COCO-style evaluation and submission files for Mask R-CNN detections.

- ``detections_to_coco``: one image's ``model.detect`` result -> COCO result dicts.
- ``evaluate_coco``: detect on dataset images, then pycocotools COCOeval (bbox, segm).
- ``make_submission``: detect on a test set and write a validated COCO result JSON.
- ``write_json_atomic``: write JSON so that readers never see a half-written file.

``model`` is anything with Matterport's ``detect(images, verbose=0)`` returning, per
image, ``{"rois": [N, (y1, x1, y2, x2)] pixels (y2/x2 exclusive), "class_ids": [N],
"scores": [N], "masks": bool [H, W, N] at the original image size}``; if it has a
``config.BATCH_SIZE`` the images are fed in batches of that size.
"""
import contextlib
import copy
import io
import json
import os
import time
import warnings

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn import fileio
from mrcnn.dataset import load_image_with_channels
from mrcnn.errors import UserInputError
from mrcnn.images import read_image
from mrcnn.masks import mask_to_rle
from mrcnn.network_io import pad_to_batch

__all__ = [
    "STAT_NAMES",
    "EVAL_TYPES",
    "detections_to_coco",
    "class_map_of",
    "evaluate_coco",
    "ground_truth_coco",
    "run_cocoeval",
    "load_results",
    "make_submission",
    "validate_submission",
    "write_json_atomic",
]

# The 12 numbers of COCOeval.stats, in order.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
EVAL_TYPES = ("bbox", "segm")


############################################################
#  Conversion
############################################################

def class_map_of(dataset_or_class_map):
    """{internal class id: COCO category id} from a Dataset or a dict.

    A Dataset's map comes from ``class_info`` (each class's source id); the
    background (internal id 0) has no category.
    """
    if isinstance(dataset_or_class_map, dict):
        return {int(k): int(v) for k, v in dataset_or_class_map.items()}
    class_info = getattr(dataset_or_class_map, "class_info", None)
    if class_info is None:
        raise TypeError("expected a Dataset (with class_info) or a {class id: category id} dict, "
                        f"got {type(dataset_or_class_map).__name__}")
    return {i: int(info["id"]) for i, info in enumerate(class_info) if i > 0}


def detections_to_coco(image_id, results, dataset_or_class_map, image_shape=None):
    """Converts one image's detections to COCO result dicts.

    image_id: the COCO image id to write (not the Dataset's internal id).
    results: one dict of ``model.detect``: rois [N, (y1, x1, y2, x2)] pixels,
        class_ids [N] internal ids, scores [N], masks bool [H, W, N].
    dataset_or_class_map: Dataset or {internal class id: COCO category id}.
    image_shape: optional (H, W) the masks must have (the original image size).

    Returns: list of N dicts {"image_id", "category_id", "segmentation": {"size": [H, W],
    "counts": str}, "bbox": [x, y, width, height], "score"} with plain Python types.
    """
    class_map = class_map_of(dataset_or_class_map)
    rois = np.asarray(results["rois"], dtype=np.float64).reshape(-1, 4)
    class_ids = np.asarray(results["class_ids"]).reshape(-1)
    scores = np.asarray(results["scores"], dtype=np.float64).reshape(-1)
    masks = np.asarray(results["masks"])
    n = len(class_ids)
    if masks.ndim != 3:
        raise ValueError(f"detections_to_coco: masks of image {image_id} must be [H, W, N], "
                         f"got shape {masks.shape}")
    if not len(rois) == len(scores) == masks.shape[2] == n:
        raise ValueError(
            f"detections_to_coco: image {image_id} has {len(rois)} rois, {n} class_ids, "
            f"{len(scores)} scores and {masks.shape[2]} masks; they must agree")
    if image_shape is not None and tuple(masks.shape[:2]) != tuple(image_shape[:2]):
        raise ValueError(
            f"detections_to_coco: masks of image {image_id} are {masks.shape[:2]}, but the "
            f"image is {tuple(image_shape[:2])}; masks must be at the original size")
    out = []
    for i in range(n):
        class_id = int(class_ids[i])
        if class_id not in class_map:
            raise ValueError(f"detections_to_coco: class id {class_id} of image {image_id} "
                             f"has no COCO category (known: {sorted(class_map)})")
        y1, x1, y2, x2 = (float(v) for v in rois[i])
        out.append({
            "image_id": int(image_id),
            "category_id": class_map[class_id],
            "segmentation": mask_to_rle(masks[:, :, i]),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(scores[i]),
        })
    return out


def load_results(coco_gt, results, iou_type="segm"):
    """COCO results -> a COCO object for COCOeval (``COCO.loadRes`` on a copy).

    For "segm" the "bbox" field is removed first: otherwise pycocotools takes the box
    area as the instance area, and the small/medium/large split would not be by mask
    area (detectron2 does the same). An empty result list gives an empty (but valid)
    COCO object, so that COCOeval reports zeros instead of crashing.
    """
    results = copy.deepcopy(list(results))
    if iou_type == "segm":
        for r in results:
            r.pop("bbox", None)
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            return coco_gt.loadRes(results)
        empty = COCO()
        empty.dataset = {"images": list(coco_gt.dataset["images"]),
                         "categories": copy.deepcopy(coco_gt.dataset["categories"]),
                         "annotations": []}
        empty.createIndex()
        return empty


def run_cocoeval(coco_gt, results, iou_type, image_ids=None, verbose=True):
    """Runs pycocotools COCOeval on COCO results.

    coco_gt: ground truth ``COCO`` object.
    results: list of COCO result dicts (as from ``detections_to_coco``).
    iou_type: "bbox" or "segm".
    image_ids: COCO image ids to evaluate (default: all in coco_gt).
    verbose: print COCOeval's progress and its standard 12-line table.

    Returns: {name: value} for the 12 ``STAT_NAMES`` (-1 where COCOeval has no
    ground truth for a row, e.g. no small objects).
    """
    if iou_type not in EVAL_TYPES:
        raise ValueError(f"run_cocoeval: iou_type must be one of {EVAL_TYPES}, got {iou_type!r}")
    coco_dt = load_results(coco_gt, results, iou_type)
    cocoeval = COCOeval(coco_gt, coco_dt, iou_type)
    if image_ids is not None:
        cocoeval.params.imgIds = [int(i) for i in image_ids]
    output = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with output:
        cocoeval.evaluate()
        cocoeval.accumulate()
        cocoeval.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, cocoeval.stats)}


############################################################
#  Detection loop
############################################################

def _detect_each(model, images, total, progress):
    """Yields (image, detect result) for each image, batching by the model's BATCH_SIZE.

    An image given as None (one that could not be read) gets no result but counts
    toward the progress bar, so the bar still ends at `total`.
    A last partial batch is filled by repeating its final image, because Matterport's
    detect asserted exactly BATCH_SIZE images; the repeats' results are discarded.
    """
    mode = getattr(model, "mode", "inference")
    if mode != "inference":
        raise ValueError(f"the model must be built in inference mode to detect, not {mode!r}")
    batch_size = int(getattr(getattr(model, "config", None), "BATCH_SIZE", 1) or 1)
    bar = _progress_bar(total) if progress else None
    done = unread = 0  # images detected, images found unreadable

    def run(batch):
        nonlocal done
        results = _detect_batch(model, batch, batch_size)
        done += len(batch)
        # Updated before the results are handed out: a consumer that stops after the
        # last image (zip) never resumes this generator.
        if bar is not None:
            bar.update(done + unread)
        return zip(batch, results)

    batch = []
    for image in images:
        if image is None:
            unread += 1
            continue
        batch.append(image)
        if len(batch) == batch_size:
            yield from run(batch)
            batch = []
    if batch:
        yield from run(batch)
    elif bar is not None and unread:  # the last images were unreadable
        bar.update(done + unread)


def _detect_batch(model, batch, batch_size):
    padded = pad_to_batch(batch, batch_size)
    results = model.detect(padded, verbose=0)
    if len(results) != len(padded):
        raise ValueError(f"model.detect returned {len(results)} results for {len(padded)} images")
    return results[:len(batch)]


def _progress_bar(total):
    # Imported here: keras is heavy and only needed when a bar is shown.
    import keras
    return keras.utils.Progbar(total, unit_name="image")


############################################################
#  Evaluation
############################################################

def ground_truth_coco(dataset, image_ids=None):
    """A ground-truth COCO object made of the annotations a CocoDataset kept.

    dataset: a prepared dataset whose image_info entries carry "annotations" (COCO
        annotation dicts), "height" and "width", as ``CocoDataset.load_coco`` makes.
    image_ids: internal ids of the images to include (default: all).

    Annotations that loading skipped (zero area, degenerate polygons, unknown
    categories) are not in it: no model could match them, and counting them would
    lower the AP of every category they claim (and a 2-point polygon makes
    pycocotools' COCOeval fail: it reads [x0, y0, x1, y1] as a box). Missing "area"/"bbox" fields are
    computed from the segmentation; annotation ids are renumbered 1..n so that
    duplicates across files cannot collapse.
    """
    image_ids = dataset.image_ids if image_ids is None else image_ids
    images, annotations, sources = [], [], set()
    for i in image_ids:
        info = dataset.image_info[i]
        if "annotations" not in info:
            raise ValueError(f"ground_truth_coco: image {i} ({info.get('path')}) has no "
                             f"'annotations'; load the dataset with CocoDataset.load_coco")
        height, width = int(info["height"]), int(info["width"])
        images.append({"id": info["id"], "height": height, "width": width,
                       "file_name": info.get("file_name") or os.path.basename(str(info.get("path")))})
        sources.add(info["source"])
        for ann in info["annotations"]:
            ann = dict(ann, id=len(annotations) + 1, iscrowd=int(ann.get("iscrowd", 0)))
            if "area" not in ann or "bbox" not in ann:
                rle = _segmentation_rle(ann["segmentation"], height, width)
                ann.setdefault("area", float(mask_utils.area(rle)))
                ann.setdefault("bbox", [float(v) for v in mask_utils.toBbox(rle)])
            annotations.append(ann)
    categories = [{"id": c["id"], "name": c["name"]} for c in dataset.class_info[1:]
                  if c["source"] in sources]
    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _segmentation_rle(segm, height, width):
    if isinstance(segm, list):
        return mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    if isinstance(segm.get("counts"), list):
        return mask_utils.frPyObjects(segm, height, width)
    return segm


def evaluate_coco(model, dataset, coco=None, eval_type=EVAL_TYPES, image_ids=None, limit=0,
                  progress=True, verbose=True):
    """COCO mAP of a model on (a subset of) a CocoDataset, with pycocotools COCOeval.

    model: inference model (see the module docstring).
    dataset: prepared Dataset whose image_info[i]["id"] are the COCO image ids of ``coco``.
    coco: ground-truth ``COCO`` object. Default: ``ground_truth_coco(dataset)``, the
        annotations the dataset kept (pass ``dataset.coco`` to score against the raw
        file, skipped annotations included).
    eval_type: "bbox", "segm" or a sequence of them.
    image_ids: internal image ids to evaluate (default: all of the dataset).
    limit: evaluate only the first ``limit`` images (0: all).
    progress: show a per-image progress bar.
    verbose: print COCOeval's standard table for each type and the timing.

    Returns: {eval_type: {stat name: value}} with the 12 ``STAT_NAMES`` per type.
    Only the evaluated images count (COCOeval's imgIds is set to them). An image that
    cannot be read is left out with a warning naming it (as in ``make_submission``),
    so one bad file does not cost the detections made so far.
    """
    eval_types = (eval_type,) if isinstance(eval_type, str) else tuple(eval_type)
    unknown = [t for t in eval_types if t not in EVAL_TYPES]
    if unknown or not eval_types:
        raise ValueError(f"evaluate_coco: eval_type must be among {EVAL_TYPES}, got {eval_type!r}")
    image_ids = list(dataset.image_ids if image_ids is None else image_ids)
    if limit:
        image_ids = image_ids[:int(limit)]
    if not image_ids:
        raise ValueError("evaluate_coco: no images to evaluate")
    if coco is None:
        coco = ground_truth_coco(dataset, image_ids)
    coco_image_ids = [dataset.image_info[i]["id"] for i in image_ids]

    start = time.time()
    # A MaskRCNN's channel count; 3 (RGB) for other objects with detect().
    channels = getattr(getattr(model, "config", None), "IMAGE_CHANNEL_COUNT", 3)
    evaluated, skipped = [], []

    def readable_images():
        for image_id, coco_id in zip(image_ids, coco_image_ids):
            try:
                image = load_image_with_channels(dataset, image_id, channels)
            except (UserInputError, OSError) as err:  # undecodable or missing
                skipped.append(f"{dataset.image_reference(image_id)} ({err})")
                yield None  # counted by the progress bar, not detected
                continue
            evaluated.append(coco_id)  # in the order _detect_each hands results back
            yield image

    results = []
    detected = _detect_each(model, readable_images(), len(image_ids), progress)
    for k, (image, r) in enumerate(detected):
        results.extend(detections_to_coco(evaluated[k], r, dataset, image_shape=image.shape))
    detect_time = time.time() - start
    if skipped:
        warnings.warn(f"evaluate_coco: left out {len(skipped)} of {len(image_ids)} images that "
                      f"could not be read: {'; '.join(skipped[:3])}", stacklevel=2)
    if not evaluated:
        raise UserInputError(f"evaluate_coco: none of the {len(image_ids)} images could be read")

    stats = {}
    for t in eval_types:
        if verbose:
            print(f"\nCOCO {t} evaluation: {_count(len(evaluated), 'image')}, "
                  f"{_count(len(results), 'detection')}")
        stats[t] = run_cocoeval(coco, results, t, evaluated, verbose=verbose)
    if verbose:
        print(f"Detection: {detect_time:.1f} s, {detect_time / len(evaluated):.3f} s per image; "
              f"total {time.time() - start:.1f} s")
    return stats


############################################################
#  Submission
############################################################

def make_submission(model, image_records, class_map, out_path, coco=None, progress=True,
                    include_bbox=False):
    """Detects on test images and writes a COCO result JSON, validated before it is written.

    model: inference model (see the module docstring).
    image_records: sequence of (coco_image_id, path, height, width), e.g. from test.json.
    class_map: Dataset or {internal class id: COCO category id}.
    out_path: output JSON path; written atomically (a tmp file, then os.replace). It is
        checked before any detection: an unwritable folder raises OutputPathError.
    coco: the test set's ``COCO`` object (test.json: images and categories); results
        are validated with ``coco.loadRes``. Default: one built from image_records
        and class_map.
    include_bbox: also write "bbox" [x, y, w, h]; by default each entry is
        {"image_id", "category_id", "segmentation": {"size": [h, w], "counts": str}, "score"}.

    Images that cannot be read are skipped with a counted warning; an image whose
    file size differs from its record is an error (its masks would be misplaced).
    Returns: {"path", "images" (detected), "skipped" (file names), "detections"}.
    """
    records = [_check_record(r) for r in image_records]
    class_map = class_map_of(class_map)
    # Before the detections, which can take hours: a folder that cannot be written.
    fileio.check_output_file(out_path, "submission file")
    if coco is None:
        coco = _coco_from_records(records, class_map)

    readable, skipped = [], []
    for record in records:
        image = _read_image(record[1])
        if image is None:
            skipped.append(os.path.basename(record[1]))
            continue
        if image.shape[:2] != (record[2], record[3]):
            raise ValueError(f"make_submission: {record[1]} is {image.shape[1]}x{image.shape[0]} "
                             f"(w x h) but its record says {record[3]}x{record[2]}")
        readable.append(record)
    if skipped:
        warnings.warn(f"make_submission: skipped {len(skipped)} of {len(records)} images that "
                      f"could not be read: {', '.join(skipped[:5])}", stacklevel=2)

    images = (_read_image(r[1]) for r in readable)
    results = []
    for record, (image, r) in zip(readable, _detect_each(model, images, len(readable), progress)):
        results.extend(detections_to_coco(record[0], r, class_map, image_shape=image.shape))
    if not include_bbox:
        for r in results:
            del r["bbox"]

    validate_submission(results, coco, {r[0]: (r[2], r[3]) for r in records})
    write_json_atomic(results, out_path)
    return {"path": os.fspath(out_path), "images": len(readable), "skipped": skipped,
            "detections": len(results)}


def validate_submission(results, coco, sizes=None):
    """Checks COCO results against a test set; raises ValueError naming the first problem.

    results: list of result dicts.
    coco: the test set's COCO object; every image_id and category_id must be in it,
        and ``coco.loadRes`` must accept the list.
    sizes: optional {image_id: (h, w)}; default from coco's images. Every RLE must
        decode to its image's size.
    """
    if sizes is None:
        sizes = {i: (img["height"], img["width"]) for i, img in coco.imgs.items()}
    categories = set(coco.getCatIds())
    for k, r in enumerate(results):
        if r["image_id"] not in coco.imgs:
            raise ValueError(f"submission entry {k}: image_id {r['image_id']} is not in the test set")
        if r["category_id"] not in categories:
            raise ValueError(f"submission entry {k}: category_id {r['category_id']} is not in "
                             f"the test set's categories {sorted(categories)}")
        size = tuple(r["segmentation"]["size"])
        if size != tuple(sizes[r["image_id"]]):
            raise ValueError(f"submission entry {k}: mask size {size} differs from image "
                             f"{r['image_id']}'s size {tuple(sizes[r['image_id']])}")
    if results:
        # loadRes also fills in area/bbox from the RLE, which fails on a bad encoding.
        load_results(coco, results, "segm")


def _check_record(record):
    try:
        image_id, path, height, width = record
    except (TypeError, ValueError):
        raise ValueError(f"image records must be (image_id, path, height, width), got {record!r}") from None
    return int(image_id), os.fspath(path), int(height), int(width)


def _coco_from_records(records, class_map):
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "file_name": os.path.basename(p), "height": h, "width": w}
                   for i, p, h, w in records],
        "categories": [{"id": c, "name": str(c)} for c in sorted(set(class_map.values()))],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _read_image(path):
    """uint8 RGB [H, W, 3] as Dataset.load_image reads it, or None if the file can't be read."""
    try:
        return read_image(path)
    except (UserInputError, OSError):  # undecodable or missing: the caller counts it
        return None


############################################################
#  Files
############################################################

def write_json_atomic(obj, path):
    """Writes ``obj`` as JSON to ``path`` atomically (``mrcnn.fileio.atomic_write``).

    Readers see either the old file or the complete new one; on any error the
    temporary file is removed and ``path`` is untouched. numpy scalars and arrays are
    converted. The parent folder is created if needed; stale temporary files of an
    earlier killed write of ``path`` are removed. A folder that cannot be written or a
    full disk raises OutputPathError naming ``path``.
    """
    with fileio.atomic_write(fileio.check_output_file(path)) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, default=_json_default)
    return os.fspath(path)


def _count(n, noun):
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("ascii")
    raise TypeError(f"write_json_atomic: cannot write a {type(value).__name__} as JSON")
