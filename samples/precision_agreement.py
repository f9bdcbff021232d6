"""Does a model trained in float32 detect the same when run in mixed_bfloat16? (issue 13)

Trains a model in float32 from random weights on synthetic tinyvoc shapes
(``samples.synthetic_tinyvoc``: 1-3 bright rectangles, triangles and circles on a dark
background, 128 px), loads its checkpoint into a float32 and a mixed_bfloat16 inference
model, and compares their detections on held-out images:

- agreement: the share of the float32 detections that bfloat16 finds again (same class,
  box IoU >= 0.9, ``mrcnn.metrics.detections_reproduced``), and for each one it misses
  its score and the nearest bfloat16 detection of its class (the margins that explain it);
- COCO mask and box AP50 of each precision on the held-out images (``mrcnn.evaluate``).

Detections are counted at ``DETECTION_MIN_CONFIDENCE`` 0.7, Matterport's default: what
``detect()`` returns to a user. Below it the two precisions disagree more, and for a
reason that is not an error: a model trained briefly gives each object a few
lower-scored duplicates of other classes or shifted boxes, and which of those near-ties
survives NMS flips with rounding.

The recipe is the demo's (scripts/demo.sh): all layers from random weights, GroupNorm,
a linear warm-up then a cosine decay to 0, no augmentation. ``SMALL_MODEL`` swaps
ResNet-50 for a 9-convolution GroupNorm backbone and narrows the FPN and the heads, so
that a CI test trains a confident model in about a minute on 2 cores;
tests/test_precision_agreement.py uses it and benchmarks/precision_agreement.py the
full-size model.
"""
import os

import keras
import numpy as np

from mrcnn.boxes import compute_overlaps
from mrcnn.evaluate import detections_to_coco, ground_truth_coco, run_cocoeval
from mrcnn.metrics import detections_reproduced
from mrcnn.model import MaskRCNN
from samples.synthetic_tinyvoc import write_synthetic_tinyvoc
from samples.tinyvoc import TinyVOCConfig, load_subset

__all__ = ["small_backbone", "SMALL_MODEL", "AgreementConfig", "make_config", "write_data",
           "train_float32", "detect", "above", "compare", "MIN_IOU"]

# A detection is found again by a box of its class overlapping it this much (issue 13).
MIN_IOU = 0.9


def small_backbone(input_image, stage5=True, train_bn=False):
    """[C1, C2, C3, C4, C5] (strides 2-32, 32-256 channels) of 9 3x3 convolutions with
    GroupNorm, as a Matterport-style callable ``BACKBONE``. GroupNorm trains from random
    weights at 2 images per step (BatchNorm statistics would not settle in a few hundred).
    """
    def conv(x, channels, stride, name):
        x = keras.layers.Conv2D(channels, 3, strides=stride, padding="same", use_bias=False,
                                name=f"small_{name}_conv")(x)
        x = keras.layers.GroupNormalization(groups=8, name=f"small_{name}_gn")(x)
        return keras.layers.Activation("relu", name=f"small_{name}_relu")(x)

    x = conv(input_image, 32, 2, "c1")
    features = [x]
    for stage, channels in zip((2, 3, 4, 5), (64, 128, 256, 256)):
        x = conv(x, channels, 2, f"c{stage}a")
        x = conv(x, channels, 1, f"c{stage}b")
        features.append(x)
    return features


# Narrow pyramid, RPN and heads for small_backbone (the mask head stays 256 wide; 7x7
# pooled masks of 14x14 suffice for 20-50 px shapes).
SMALL_MODEL = dict(BACKBONE=small_backbone, TOP_DOWN_PYRAMID_SIZE=64, RPN_CONV_CHANNELS=64,
                   FPN_CLASSIF_FC_LAYERS_SIZE=256, MASK_POOL_SIZE=7, MASK_SHAPE=[14, 14],
                   MINI_MASK_SHAPE=(28, 28))


class AgreementConfig(TinyVOCConfig):
    """The demo's training recipe at 128 px (ResNet-50 with GroupNorm)."""
    NAME = "agreement"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    BACKBONE_NORM = "group"
    VALIDATION_STEPS = 0
    LEARNING_RATE = 0.02
    LR_SCHEDULE = "cosine"
    LEARNING_RATE_WARMUP_STEPS = 40
    # 1-3 objects per image: 16 sampled ROIs keep ~5 positives, each a mask-head pass.
    TRAIN_ROIS_PER_IMAGE = 16
    DETECTION_MIN_CONFIDENCE = 0.7


def make_config(precision="float32", small=True, inference=False, **overrides):
    """An AgreementConfig in `precision` (SMALL_MODEL if `small`), one image per batch
    for inference, with `overrides` applied."""
    attributes = dict(SMALL_MODEL if small else {}, PRECISION=precision, **overrides)
    if inference:
        attributes["IMAGES_PER_GPU"] = 1
    return type("AgreementConfig", (AgreementConfig,), attributes)()


def write_data(folder, images=330, seed=0, val_fraction=0.1):
    """Writes `images` synthetic 128 px images to `folder`; (train, held-out) datasets,
    the held-out ones a seeded `val_fraction` of them."""
    if not os.path.exists(os.path.join(folder, "pascal_train.json")):
        write_synthetic_tinyvoc(folder, n_train=images, n_test=0, size=(128, 128), seed=seed,
                                with_defects=False)
    return (load_subset(folder, "train", val_fraction, seed),
            load_subset(folder, "val", val_fraction, seed))


def train_float32(config, train_set, model_dir, seed=0, verbose=0):
    """Trains all layers for config.STEPS_PER_EPOCH steps (one epoch); the checkpoint path."""
    model = MaskRCNN("training", config, model_dir)
    # One loader thread: with seed, the run repeats exactly on one machine.
    model.train(train_set, None, config.LEARNING_RATE, epochs=1, layers="all", seed=seed,
                workers=1, verbose=verbose)
    return model.find_last()


def detect(checkpoint, config, dataset, model_dir):
    """The detections of `checkpoint` loaded into an inference model of `config`, one
    result per image of `dataset`."""
    model = MaskRCNN("inference", config, model_dir)
    model.load_weights(checkpoint, by_name=True)
    return [model.detect([dataset.load_image(i)])[0] for i in dataset.image_ids]


def above(results, min_confidence):
    """`results` keeping the detections scored >= `min_confidence`: what detect() returns
    with that DETECTION_MIN_CONFIDENCE (a lower-scored box never suppresses a higher one
    in NMS), while fewer than DETECTION_MAX_INSTANCES pass the lower one."""
    kept = []
    for result in results:
        keep = result["scores"] >= min_confidence
        kept.append(dict(result, rois=result["rois"][keep], class_ids=result["class_ids"][keep],
                         scores=result["scores"][keep], masks=result["masks"][..., keep]))
    return kept


def compare(reference, other, dataset):
    """Agreement of `other`'s detections with `reference`'s (lists of detect results on
    `dataset`'s images) and COCO AP50 of each: a JSON-ready dict."""
    found = [detections_reproduced(a, b, MIN_IOU) for a, b in zip(reference, other)]
    total = sum(len(f) for f in found)
    reproduced = sum(int(f.sum()) for f in found)
    missed = [_miss(image, k, reference[image], other[image])
              for image, flags in enumerate(found) for k in np.flatnonzero(~flags)]
    return {"detections": total, "reproduced": reproduced,
            "agreement": reproduced / total if total else None, "missed": missed,
            "reference_ap50": _ap50(reference, dataset), "other_ap50": _ap50(other, dataset)}


def _miss(image, k, reference, other):
    """One reference detection `other` did not find again, with what `other` has nearest."""
    box, class_id = reference["rois"][k], int(reference["class_ids"][k])
    entry = {"image": image, "class_id": class_id, "score": float(reference["scores"][k]),
             "box": [int(v) for v in box]}
    same = np.flatnonzero(other["class_ids"] == class_id)
    if len(same):
        ious = compute_overlaps(np.asarray([box], float), np.asarray(other["rois"][same], float))[0]
        j = int(np.argmax(ious))
        entry.update(nearest_same_class_iou=float(ious[j]),
                     nearest_same_class_score=float(other["scores"][same[j]]))
    return entry


def _ap50(results, dataset):
    """COCO segm and bbox AP50 of one detect result per image of `dataset`."""
    coco = ground_truth_coco(dataset)
    records = [r for i, result in zip(dataset.image_ids, results)
               for r in detections_to_coco(dataset.image_info[i]["id"], result, dataset)]
    return {kind: run_cocoeval(coco, records, kind, verbose=False)["AP50"] if records else 0.0
            for kind in ("segm", "bbox")}
