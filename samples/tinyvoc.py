"""Mask R-CNN on tiny PASCAL VOC: train, evaluate (COCO mAP), submit and detect.

The data folder (``--dataset``) has the layout::

    DATASET/train_images/*.jpg   training images
    DATASET/pascal_train.json    their COCO-format annotations (20 VOC classes, ids 1..20)
    DATASET/test_images/*.jpg    test images
    DATASET/test.json            the test images and categories (no annotations)

``python samples/synthetic_tinyvoc.py FOLDER`` (or the ``synth`` command below)
writes a small synthetic folder in this layout.

Usage::

    # Train the heads, then all layers, starting from ImageNet weights
    python samples/tinyvoc.py train --dataset=/path/to/tinyvoc --weights=imagenet
    # Resume the last run where it stopped (continues the epoch count)
    python samples/tinyvoc.py train --dataset=/path/to/tinyvoc --weights=last
    # COCO bbox and segm mAP on the held-out split (same --val-fraction and --seed)
    python samples/tinyvoc.py evaluate --dataset=/path/to/tinyvoc --weights=last
    # Submission JSON for every image in test.json
    python samples/tinyvoc.py submit --dataset=/path/to/tinyvoc --weights=last --out=submission.json
    # A picture of the detections in one image
    python samples/tinyvoc.py detect --weights=last --image=photo.jpg --out=photo_detections.png
    # For serving: a TF SavedModel folder (--format=tflite: a TFLite file)
    python samples/tinyvoc.py export --weights=last --out=exported/tinyvoc
    # A synthetic dataset to try all of the above on
    python samples/tinyvoc.py synth /tmp/tinyvoc_synthetic

``--weights`` is ``imagenet``, ``coco`` (Matterport's mask_rcnn_coco.h5, without the
81-class layers), ``last`` (newest checkpoint under ``--logs``), ``none`` (random
initialization, for smoke tests) or a path to an ``.h5`` file.
"""
import argparse
import math
import os
import sys
import warnings

import numpy as np

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT_DIR not in sys.path:
    # Run as a script from anywhere: make `mrcnn` and `samples` importable.
    sys.path.insert(0, ROOT_DIR)

from mrcnn import fileio  # noqa: E402
from mrcnn.coco import CocoDataset, read_coco_json  # noqa: E402
from mrcnn.config import PRECISIONS, Config  # noqa: E402
from mrcnn.errors import UserInputError  # noqa: E402
from samples.synthetic_tinyvoc import add_synth_arguments  # noqa: E402
from samples.training_options import (add_training_options, map_callbacks,  # noqa: E402
                                      schedule_overrides, seed_initial_weights)
from samples.tinyvoc_export import add_export_command  # noqa: E402

DEFAULT_LOGS_DIR = os.path.join(ROOT_DIR, "logs")
SOURCE = "tinyvoc"
TRAIN_JSON, TRAIN_DIR = "pascal_train.json", "train_images"
TEST_JSON, TEST_DIR = "test.json", "test_images"
LAYOUT = (
    "Expected layout:\n"
    f"  DATASET/{TRAIN_DIR}/*.jpg   training images\n"
    f"  DATASET/{TRAIN_JSON}    COCO annotations of the training images\n"
    f"  DATASET/{TEST_DIR}/*.jpg    test images\n"
    f"  DATASET/{TEST_JSON}            test images and categories (no annotations)")
WEIGHT_CHOICES = ("imagenet", "coco", "last", "none")


class InputError(UserInputError):
    """Bad command-line input (missing folder/file, invalid data): printed, no traceback."""


############################################################
#  Configurations
############################################################

class TinyVOCConfig(Config):
    """Training configuration for tiny PASCAL VOC (20 classes, ~500 px images).

    - 512x512 "square" images: VOC images are at most 500 px a side, so 512 keeps
      them at native resolution (a 1024 canvas would quadruple the compute for
      upsampled pixels) and 512 is divisible by 64 as the FPN needs.
    - ResNet-50: about 40% fewer FLOPs than ResNet-101, which matters on a CPU or
      small GPU, and with ~1,350 training images the deeper backbone mostly adds
      overfitting capacity. Matterport's own ImageNet initialization was the
      ResNet-50 file. ``--weights=coco`` switches to ResNet-101 automatically
      (mask_rcnn_coco.h5 is a ResNet-101 model).
    - Anchors keep Matterport's 32..512 px: VOC objects are large relative to the
      image (few are smaller than 32x32), and 512 px anchors on P6 cover objects
      that fill the whole 512 canvas.
    - VOC images hold ~2-3 objects, so fewer sampled ROIs (128) and ground-truth
      slots (50) are enough and make each step cheaper.
    - STEPS_PER_EPOCH / VALIDATION_STEPS are placeholders; the train command sets
      them to one pass over the training / validation split.
    """
    NAME = "tinyvoc"
    NUM_CLASSES = 1 + 20
    IMAGES_PER_GPU = 2
    BACKBONE = "resnet50"
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 512
    IMAGE_MAX_DIM = 512
    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)
    TRAIN_ROIS_PER_IMAGE = 128
    POST_NMS_ROIS_TRAINING = 1000
    POST_NMS_ROIS_INFERENCE = 1000
    MAX_GT_INSTANCES = 50
    STEPS_PER_EPOCH = 100
    VALIDATION_STEPS = 10


class TinyVOCInferenceConfig(TinyVOCConfig):
    """Inference: one image at a time and a low score threshold.

    COCO AP integrates over the whole precision/recall curve, so low-score
    detections can only add recall at the tail; 0.05 is the usual threshold for
    COCO-style evaluation and submissions (the ``detect`` picture uses a higher one).
    """
    IMAGES_PER_GPU = 1
    DETECTION_MIN_CONFIDENCE = 0.05


############################################################
#  Dataset
############################################################

class TinyVOCDataset(CocoDataset):
    """The tinyvoc folder as a Dataset; see ``load_tinyvoc``."""

    def load_tinyvoc(self, dataset_dir, subset="train", val_fraction=0.1, seed=0,
                     check_files=True):
        """Registers the images of one subset.

        dataset_dir: the tinyvoc folder (layout in the module docstring).
        subset: "train" or "val" (a seeded split of pascal_train.json's images: the
            same val_fraction and seed always give the same disjoint split), or
            "test" (the images of test.json, without annotations).
        val_fraction: share of the annotated images held out for "val", in [0, 1).
        seed: seed of the split.
        check_files: check image file headers at load time (see mrcnn.coco).

        Returns: the ``pycocotools.coco.COCO`` object of the subset's JSON, also kept
        in ``self.coco`` (for COCOeval or loadRes).
        Raises: FileNotFoundError naming what is missing and the expected layout.
        """
        if subset not in ("train", "val", "test"):
            raise ValueError(f"subset must be 'train', 'val' or 'test', got {subset!r}")
        check_layout(dataset_dir, subset)
        if subset == "test":
            return self.load_coco(os.path.join(dataset_dir, TEST_JSON),
                                  os.path.join(dataset_dir, TEST_DIR), source=SOURCE,
                                  keep_empty=True, check_files=check_files)
        coco = read_coco_json(os.path.join(dataset_dir, TRAIN_JSON), require_annotations=True)
        train_ids, val_ids = split_image_ids(coco.getImgIds(), val_fraction, seed)
        if subset == "val" and not val_ids:
            raise ValueError(f"val_fraction={val_fraction} holds out no image of "
                             f"{len(train_ids)}; use a fraction > 0 for the 'val' subset")
        return self.load_coco(coco, os.path.join(dataset_dir, TRAIN_DIR), source=SOURCE,
                              image_ids=train_ids if subset == "train" else val_ids,
                              check_files=check_files)


def check_categories(dataset, json_name, dataset_dir):
    """Raises InputError, before any detection, unless the dataset has as many categories
    as the model predicts and, for test.json, the same as pascal_train.json (the model's
    class ids follow the training categories)."""
    expected, path = TinyVOCConfig.NUM_CLASSES - 1, os.path.join(dataset_dir, json_name)
    if len(dataset.class_map()) != expected:
        raise InputError(f"{path} has {len(dataset.class_map())} categories; the tinyvoc "
                         f"model predicts {expected}")
    train_json = os.path.join(dataset_dir, TRAIN_JSON)
    if json_name != TRAIN_JSON and os.path.isfile(train_json):
        def categories(coco):
            return sorted((c["id"], c["name"]) for c in coco.dataset["categories"])
        if categories(read_coco_json(train_json)) != categories(dataset.coco):
            raise InputError(f"{json_name} and {TRAIN_JSON} in {dataset_dir} list different "
                             "categories; the model's class ids follow the training categories")


def split_image_ids(image_ids, val_fraction=0.1, seed=0):
    """Seeded train/val split of image ids.

    image_ids: the ids to split (their order does not matter: they are sorted first,
        so the split depends only on the set of ids, val_fraction and seed).
    val_fraction: in [0, 1). A positive fraction holds out at least one image and
        always leaves at least one for training.

    Returns: (train_ids, val_ids), sorted lists, disjoint, together all the ids.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ids = sorted(image_ids)
    n_val = int(round(len(ids) * val_fraction))
    if val_fraction > 0 and len(ids) > 1:
        n_val = min(max(n_val, 1), len(ids) - 1)
    order = np.random.default_rng(seed).permutation(len(ids))
    val = set(order[:n_val].tolist())
    return ([x for i, x in enumerate(ids) if i not in val],
            [x for i, x in enumerate(ids) if i in val])


def check_layout(dataset_dir, subset):
    """Raises FileNotFoundError naming what ``subset`` needs and ``dataset_dir`` lacks."""
    dataset_dir = os.fspath(dataset_dir)
    if not os.path.isdir(dataset_dir):
        raise FileNotFoundError(f"tinyvoc dataset folder not found: {dataset_dir!r}\n{LAYOUT}")
    needed = [TEST_DIR, TEST_JSON] if subset == "test" else [TRAIN_DIR, TRAIN_JSON]
    missing = [name for name in needed if not os.path.exists(os.path.join(dataset_dir, name))]
    if missing:
        raise FileNotFoundError(
            f"{dataset_dir!r} lacks {' and '.join(missing)}, needed for the {subset!r} "
            f"subset.\n{LAYOUT}")


def load_subset(dataset_dir, subset, val_fraction=0.1, seed=0):
    """A prepared TinyVOCDataset of one subset; data problems raise InputError."""
    dataset = TinyVOCDataset()
    try:
        dataset.load_tinyvoc(dataset_dir, subset, val_fraction=val_fraction, seed=seed)
    except FileNotFoundError as err:
        raise InputError(str(err)) from err
    except ValueError as err:
        # Say which split: a small held-out split can consist of unusable images only.
        where = {"train": "training split",
                 "val": f"validation split (--val-fraction={val_fraction}, --seed={seed})",
                 "test": "test set"}[subset]
        raise InputError(f"{where}: {err}") from err
    dataset.prepare()
    return dataset


############################################################
#  Configuration from the command line
############################################################

def resolve_weights(args):
    """--weights resolved once per command: "imagenet", "coco", "none" or an .h5 path
    ("last": the newest checkpoint under --logs). Fails fast, before the slow model build,
    on "last" without a checkpoint or a missing path (InputError); imagenet/coco are left
    to the loader, which knows their cache and download."""
    if args.weights == "last":
        from mrcnn import training
        try:
            return training.find_last(args.logs, TinyVOCConfig.NAME)
        except FileNotFoundError as err:
            raise InputError(f"--weights=last: {err}") from err
    if args.weights not in WEIGHT_CHOICES and not os.path.isfile(args.weights):
        raise InputError(f"--weights: no weights file at {os.path.abspath(args.weights)!r} "
                         f"(use {' | '.join(WEIGHT_CHOICES)} or the path of an .h5 file)")
    return args.weights


def describe_weights(weights):
    """pretrained.describe_checkpoint of a resolved --weights ({} for imagenet, coco, none);
    a file that is not a Keras-2 weights file raises InputError."""
    if weights in WEIGHT_CHOICES:
        return {}
    from mrcnn import pretrained
    from mrcnn.errors import WeightsError
    try:
        return pretrained.describe_checkpoint(weights)
    except WeightsError as err:
        raise InputError(f"--weights: {err}") from err


def choose_backbone(args, checkpoint):
    """The backbone for --backbone (auto: ResNet-101 for coco weights or a ResNet-101
    checkpoint, else ResNet-50). checkpoint: `describe_weights` of --weights."""
    if args.backbone != "auto":
        return args.backbone
    if args.weights == "coco":
        return "resnet101"
    return checkpoint.get("backbone") or TinyVOCConfig.BACKBONE


def choose_norm(args, checkpoint):
    """BACKBONE_NORM for --backbone-norm (auto: the checkpoint's, else BatchNorm, which the
    ImageNet and COCO files need; pass group to train from scratch with --weights none)."""
    if args.backbone_norm != "auto":
        return args.backbone_norm
    return checkpoint.get("backbone_norm") or "batch"


def make_config(args, inference, weights, train_images=None, val_images=None):
    """A TinyVOC(Inference)Config with the command line's overrides applied.

    weights: `resolve_weights(args)`; the backbone and its normalization follow the file.
    train_images / val_images: sizes of the splits; STEPS_PER_EPOCH and
    VALIDATION_STEPS become one pass over each unless --steps / --val-steps are given.
    """
    base = TinyVOCInferenceConfig if inference else TinyVOCConfig
    checkpoint = describe_weights(weights)
    overrides = {"BACKBONE": choose_backbone(args, checkpoint),
                 "BACKBONE_NORM": choose_norm(args, checkpoint),
                 "PRECISION": getattr(args, "precision", Config.PRECISION)}
    if getattr(args, "image_size", None):
        overrides.update(IMAGE_MIN_DIM=args.image_size, IMAGE_MAX_DIM=args.image_size)
    if getattr(args, "min_confidence", None) is not None:
        overrides["DETECTION_MIN_CONFIDENCE"] = args.min_confidence
    if not inference:
        overrides.update(schedule_overrides(args))
        overrides["GPU_COUNT"] = getattr(args, "gpus", None) or base.GPU_COUNT
        batch = base.IMAGES_PER_GPU * overrides["GPU_COUNT"]
        if getattr(args, "steps", None):
            overrides["STEPS_PER_EPOCH"] = args.steps
        elif train_images:
            overrides["STEPS_PER_EPOCH"] = max(1, math.ceil(train_images / batch))
        if getattr(args, "val_steps", None) is not None:
            overrides["VALIDATION_STEPS"] = args.val_steps
        elif val_images is not None:
            overrides["VALIDATION_STEPS"] = math.ceil(val_images / batch)
    config_class = type(base.__name__, (base,), overrides)
    return config_class()


############################################################
#  Weights
############################################################

def load_initial_weights(model, weights):
    """Loads --weights into a MaskRCNN; returns the file loaded (None for "none").

    A weights file that is missing or cannot be fetched raises InputError.
    """
    try:
        return model.load_named_weights(weights)
    except FileNotFoundError as err:  # includes mrcnn.pretrained.WeightsNotAvailable
        raise InputError(str(err)) from err


def build_augmentation():
    """Horizontal flip and a 0.8-1.2 zoom, each with probability 0.5 (size-preserving,
    so the masks move with the image)."""
    import albumentations as A
    return A.Compose([
        A.HorizontalFlip(p=0.5),
        A.Affine(scale=(0.8, 1.2), p=0.5),
    ])


############################################################
#  Commands
############################################################

def cmd_train(args):
    """Heads for --heads-epochs, then all layers for --all-epochs more (at --all-lr)."""
    train = load_subset(args.dataset, "train", args.val_fraction, args.seed)
    val = load_subset(args.dataset, "val", args.val_fraction, args.seed) if args.val_fraction > 0 else None
    check_categories(train, TRAIN_JSON, args.dataset)
    weights = resolve_weights(args)
    fileio.check_output_folder(args.logs, "--logs folder")
    from mrcnn.model import MaskRCNN  # after the data checks: TensorFlow is slow to import
    config = make_config(args, False, weights, train_images=train.num_images,
                         val_images=val.num_images if val is not None else 0)
    config.display()
    seed_initial_weights(args)
    model = MaskRCNN("training", config, args.logs)
    load_initial_weights(model, weights)
    augmentation = None if args.no_augment else build_augmentation()
    callbacks = map_callbacks(args, model, val, make_config(args, True, weights))
    lr = args.lr if args.lr is not None else config.LEARNING_RATE
    all_lr = args.all_lr if args.all_lr is not None else lr / 10
    heads_end = args.heads_epochs
    all_end = heads_end + args.all_epochs
    if model.epoch < heads_end:
        print(f"Training network heads to epoch {heads_end} (lr {lr})")
        model.train(train, val, learning_rate=lr, epochs=heads_end, layers="heads",
                    augmentation=augmentation, custom_callbacks=callbacks, seed=args.train_seed)
    if model.epoch < all_end:
        print(f"Training all layers to epoch {all_end} (lr {all_lr})")
        model.train(train, val, learning_rate=all_lr, epochs=all_end, layers="all",
                    augmentation=augmentation, custom_callbacks=callbacks, seed=args.train_seed)
    print(f"Done: {model.epoch} epochs, checkpoints in {model.log_dir}")
    return model.log_dir


def _inference_model(args):
    weights = resolve_weights(args)
    from mrcnn.model import MaskRCNN

    config = make_config(args, True, weights)
    model = MaskRCNN("inference", config, args.logs)
    path = load_initial_weights(model, weights)
    return model, path


def cmd_evaluate(args):
    """COCO bbox and segm mAP on the held-out split; writes the stats as JSON."""
    from mrcnn.evaluate import evaluate_coco, write_json_atomic

    val = load_subset(args.dataset, "val", args.val_fraction, args.seed)
    check_categories(val, TRAIN_JSON, args.dataset)
    out = args.out and fileio.check_output_file(args.out, "--out file")
    model, weights_path = _inference_model(args)
    out = out or fileio.check_output_file(_eval_json_path(weights_path, args.logs))
    # coco=None: the ground truth is what the dataset kept, so annotations skipped as
    # invalid (which pycocotools may not even parse) do not count.
    stats = evaluate_coco(model, val, None, eval_type=("bbox", "segm"), limit=args.limit)
    images = min(args.limit, val.num_images) if args.limit else val.num_images
    write_json_atomic({"weights": weights_path, "images": images,
                       "val_fraction": args.val_fraction, "seed": args.seed, "stats": stats}, out)
    print(f"Wrote {out}")
    return stats


def _eval_json_path(weights_path, logs):
    """<weights>_coco_eval.json next to the weights (in --logs for none/imagenet)."""
    if weights_path and os.path.isfile(weights_path) and os.access(os.path.dirname(
            os.path.abspath(weights_path)), os.W_OK):
        return os.path.splitext(weights_path)[0] + "_coco_eval.json"
    return os.path.join(logs, "tinyvoc_coco_eval.json")


def cmd_submit(args):
    """Detects on every test.json image and writes the validated submission JSON."""
    from mrcnn.evaluate import make_submission

    test = load_subset(args.dataset, "test")
    check_categories(test, TEST_JSON, args.dataset)
    records = [(info["id"], info["path"], info["height"], info["width"]) for info in test.image_info]
    if args.limit:
        records = records[:args.limit]
    fileio.check_output_file(args.out, "--out file")
    model, _ = _inference_model(args)
    report = make_submission(model, records, test.class_map(), args.out, coco=test.coco)
    print(f"Wrote {report['detections']} detections on {report['images']} images to "
          f"{report['path']} (validated with pycocotools loadRes)")
    return report


def cmd_detect(args):
    """Saves a picture of the detections in --image."""
    from mrcnn.images import read_image
    from samples.synthetic_tinyvoc import VOC_CLASSES

    if not os.path.isfile(args.image):
        raise InputError(f"--image: no file at {args.image!r}")
    image = read_image(args.image)  # an undecodable file raises DatasetError naming it
    out = args.out or os.path.splitext(os.path.basename(args.image))[0] + "_detections.png"
    fileio.check_output_file(out, "--out picture")
    model, _ = _inference_model(args)
    from mrcnn import visualize
    r = model.detect([image], verbose=0)[0]
    class_names = ["BG"] + list(VOC_CLASSES)
    visualize.display_instances(image, r["rois"], r["masks"], r["class_ids"], class_names,
                                r["scores"], figsize=(8, 8), save_path=out)
    for class_id, score in zip(r["class_ids"], r["scores"]):
        print(f"  {class_names[class_id]:12s} {score:.3f}")
    print(f"{len(r['class_ids'])} instances; saved {out}")
    return out


def cmd_synth(args):
    """Writes a synthetic dataset in the tinyvoc layout."""
    from samples.synthetic_tinyvoc import write_synthetic_tinyvoc

    try:
        info = write_synthetic_tinyvoc(args.folder, n_train=args.train, n_test=args.test,
                                       size=args.size, seed=args.seed,
                                       with_defects=not args.no_defects)
    except ValueError as err:  # an impossible request, e.g. defects in 3 images
        raise InputError(f"synth: {err} (or pass --no-defects)") from None
    print(f"Wrote {info['train_images']} training and {info['test_images']} test images "
          f"to {args.folder}")
    return info


############################################################
#  Command line
############################################################

def build_parser():
    parser = argparse.ArgumentParser(
        description="Mask R-CNN on tiny PASCAL VOC.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=LAYOUT)
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name, func, help_text, dataset=True, default_weights="last"):
        p = commands.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        if dataset:
            p.add_argument("--dataset", required=True, metavar="DIR",
                           help="tinyvoc folder (train_images/, pascal_train.json, test_images/, test.json)")
        p.add_argument("--weights", default=default_weights,
                       help=f"imagenet | coco | last | none | PATH.h5 (default {default_weights})")
        p.add_argument("--logs", default=DEFAULT_LOGS_DIR, metavar="DIR",
                       help=f"logs and checkpoints folder (default {DEFAULT_LOGS_DIR})")
        p.add_argument("--backbone", default="auto", choices=("auto", "resnet50", "resnet101"),
                       help="auto: resnet101 for --weights=coco or a ResNet-101 checkpoint, "
                            "else resnet50")
        p.add_argument("--backbone-norm", default="auto", choices=("auto", "batch", "group"),
                       help="auto: the checkpoint's, else batch (BatchNorm, needed by the "
                            "imagenet and coco files); group: GroupNorm, to train from "
                            "scratch with --weights none (see benchmarks/RESULTS.md)")
        p.add_argument("--image-size", type=_positive_int, default=None, metavar="PX",
                       help="square input size, a multiple of 64 (default 512)")
        p.add_argument("--precision", default="float32", choices=PRECISIONS,
                       help="compute precision (default float32; mixed_bfloat16: ~2x on AVX-512-BF16 CPUs)")
        return p

    def add_split(p):
        p.add_argument("--val-fraction", type=float, default=0.1,
                       help="share of pascal_train.json images held out for validation (default 0.1)")
        p.add_argument("--seed", type=int, default=0, help="seed of the train/val split (default 0)")

    train = add("train", cmd_train, "train the heads, then all layers", default_weights="imagenet")
    add_split(train)
    train.add_argument("--heads-epochs", type=_non_negative_int, default=20,
                       help="epochs of heads-only training (default 20)")
    train.add_argument("--all-epochs", type=_non_negative_int, default=20,
                       help="further epochs training all layers (default 20)")
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate of the heads stage (default config LEARNING_RATE, 0.001)")
    train.add_argument("--all-lr", type=float, default=None,
                       help="learning rate of the all-layers stage (default --lr / 10)")
    train.add_argument("--steps", type=_positive_int, default=None,
                       help="steps per epoch (default: one pass over the training split)")
    train.add_argument("--val-steps", type=_non_negative_int, default=None,
                       help="validation steps per epoch (default: one pass over the val split)")
    train.add_argument("--no-augment", action="store_true",
                       help="no horizontal flip / scale augmentation")
    train.add_argument("--gpus", type=_positive_int, default=None, metavar="N",
                       help="train on N GPUs of this machine (MirroredStrategy); with a TF_CONFIG "
                            "of several workers, on N GPUs of each machine (see README)")
    add_training_options(train)

    evaluate = add("evaluate", cmd_evaluate, "COCO bbox and segm mAP on the held-out split")
    add_split(evaluate)
    evaluate.add_argument("--limit", type=_non_negative_int, default=0,
                          help="evaluate only the first N images (0: all)")
    evaluate.add_argument("--out", default=None, metavar="JSON",
                          help="stats file (default: <weights>_coco_eval.json next to the weights)")

    submit = add("submit", cmd_submit, "write a COCO-format submission for test.json")
    submit.add_argument("--out", default="submission.json", metavar="JSON",
                        help="submission file (default submission.json)")
    submit.add_argument("--limit", type=_non_negative_int, default=0,
                        help="only the first N test images (0: all)")

    detect = add("detect", cmd_detect, "save a picture of the detections in one image",
                 dataset=False)
    detect.add_argument("--image", required=True, metavar="PATH", help="image file")
    detect.add_argument("--out", default=None, metavar="PNG",
                        help="output picture (default <image name>_detections.png)")
    detect.add_argument("--min-confidence", type=float, default=0.5,
                        help="score threshold of the drawn instances (default 0.5)")

    add_export_command(add, _inference_model)  # samples/tinyvoc_export.py

    synth = commands.add_parser("synth", help="write a synthetic tinyvoc-format folder",
                                description="write a synthetic tinyvoc-format folder")
    synth.set_defaults(func=cmd_synth)
    add_synth_arguments(synth)
    return parser


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def main(argv=None):
    # TensorFlow's C++ INFO/WARNING lines (grappler's "Error in PredictCost() for the op:
    # CropAndResize" comes once per traced graph, a screenful each) would bury the
    # training and evaluation output; errors still show. TensorFlow reads this when it
    # is loaded, which the commands do lazily, after this line. A value the user set wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserInputError as err:
        # The one place user mistakes (bad data, weights, config, output paths: the
        # mrcnn.errors types and InputError) become a message and exit code 2; any other
        # exception is a bug and keeps its traceback.
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line each ("warning: pascal_train.json: skipped 3 ..."): on a
    command line the source line that raised them is noise."""
    label = "warning" if category is UserWarning else f"warning ({category.__name__})"
    print(f"{label}: {message}", file=file or sys.stderr)


if __name__ == "__main__":
    # Only when run as a script: in-process callers (tests, notebooks) keep their own.
    warnings.showwarning = _show_warning
    main()
