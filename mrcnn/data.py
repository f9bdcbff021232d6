"""Training data pipeline (numpy, host side): ground truth, RPN targets, batches.

- ``load_image_gt``: one image with its resized masks, boxes and meta.
- ``build_rpn_targets``: anchor labels and box deltas for the RPN losses.
- ``DataGenerator``: a ``keras.utils.PyDataset`` of training batches, keyed by the
  training model's input names.

Boxes are pixel boxes ``(y1, x1, y2, x2)`` with y2/x2 exclusive; masks are bool
``[H, W, N]`` (see docs/DESIGN.md).
"""
import logging
import math
import threading
from collections import namedtuple

import keras
import numpy as np

from mrcnn.boxes import box_refinement, compute_overlaps, extract_bboxes
from mrcnn.config import TRAINING_INPUT_NAMES
from mrcnn.dataset import load_image_with_channels
from mrcnn.errors import DatasetError
from mrcnn.images import compose_image_meta, mold_image
from mrcnn.masks import minimize_mask, resize_mask
from mrcnn.network_io import anchors_for_shape, resize_for_config

__all__ = [
    "load_image_gt",
    "apply_augmentation",
    "build_rpn_targets",
    "DataGenerator",
    "ImageLoadError",
    "IMGAUG_MASK_AUGMENTERS",
]

logger = logging.getLogger(__name__)

# RPN anchor labelling thresholds (Faster R-CNN's, as in Matterport).
RPN_POSITIVE_IOU = 0.7
RPN_NEGATIVE_IOU = 0.3

# imgaug augmenters that Matterport also applied to masks (geometric ones). Others,
# e.g. colour changes, are applied to the image only.
IMGAUG_MASK_AUGMENTERS = ("Sequential", "SomeOf", "OneOf", "Sometimes", "Fliplr", "Flipud",
                          "CropAndPad", "Affine", "PiecewiseAffine")


class ImageLoadError(ValueError):
    """An image (or its masks) could not be turned into a training sample."""


############################################################
#  Ground truth of one image
############################################################

def load_image_gt(dataset, config, image_id, augmentation=None, *, use_mini_mask=None, rng=None):
    """Loads an image and its instances, resized (and augmented) for the network.

    dataset: a prepared ``Dataset``.
    config: a ``Config`` (resize settings, NUM_CLASSES, MINI_MASK_SHAPE, ...).
    image_id: internal image id.
    augmentation: optional; an albumentations transform (``A.Compose`` or any single
        transform), applied to the image and all masks together; or an imgaug
        augmenter (anything with ``to_deterministic``; needs ``import imgaug`` to work,
        which it does not under NumPy 2). Must keep the image size.
    use_mini_mask: return mini masks; None follows ``config.USE_MINI_MASK``.
        Evaluation code wants full masks: pass False.
    rng: optional ``np.random.Generator`` for the random crop of "crop" mode and,
        with an albumentations transform, the seed of its random draws.

    Returns:
        image: [H, W, C] resized image, dtype of ``dataset.load_image``.
        image_meta: [12 + NUM_CLASSES] (see ``compose_image_meta``).
        class_ids: int32 [N], instances whose mask survived resizing/augmentation.
        bbox: int32 [N, (y1, x1, y2, x2)] tight boxes around the masks.
        mask: bool [H, W, N], or [mini_h, mini_w, N] with mini masks.
    """
    image = load_image_with_channels(dataset, image_id, config.IMAGE_CHANNEL_COUNT)
    mask, class_ids = dataset.load_mask(image_id)
    image, mask, class_ids = _checked_sample(dataset, config, image_id, image, mask, class_ids)
    original_shape = image.shape
    image, window, scale, padding, crop = resize_for_config(image, config, rng=rng)
    if mask.shape[-1]:
        mask = resize_mask(mask, scale, padding, crop)
    else:
        mask = np.zeros(image.shape[:2] + (0,), dtype=bool)

    if augmentation is not None:
        image, mask = apply_augmentation(image, mask, augmentation, rng=rng)

    # Cropping or augmentation can push an instance out of the image.
    visible = mask.any(axis=(0, 1))
    mask, class_ids = mask[:, :, visible], class_ids[visible]
    bbox = extract_bboxes(mask)

    if config.USE_MINI_MASK if use_mini_mask is None else use_mini_mask:
        mask = minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)

    image_meta = compose_image_meta(image_id, original_shape, image.shape, window, scale,
                                    _active_class_ids(dataset, image_id))
    return image, image_meta, class_ids, bbox, mask


def _checked_sample(dataset, config, image_id, image, mask, class_ids):
    """Validates what the dataset returned; returns (image, bool mask, int32 class_ids)."""
    where = f"image {image_id}"
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != config.IMAGE_CHANNEL_COUNT:
        raise ValueError(f"{where}: load_image returned shape {image.shape}; expected "
                         f"[H, W, {config.IMAGE_CHANNEL_COUNT}] (IMAGE_CHANNEL_COUNT)")
    mask = np.asarray(mask)
    class_ids = np.asarray(class_ids).reshape(-1)
    if mask.ndim != 3:
        raise ValueError(f"{where}: load_mask returned a mask of shape {mask.shape}; expected [H, W, N]")
    if class_ids.size != mask.shape[2]:
        raise ValueError(f"{where}: load_mask returned {mask.shape[2]} masks but {class_ids.size} class ids")
    if mask.shape[2] and mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"{where}: masks are {mask.shape[:2]} but the image is {image.shape[:2]}")
    if class_ids.size and not np.issubdtype(class_ids.dtype, np.integer):
        raise ValueError(f"{where}: class ids must be integers, got dtype {class_ids.dtype}")
    # Negative ids mark crowd regions; 0 is the background and would read as padding.
    bad = (class_ids == 0) | (np.abs(class_ids) >= config.NUM_CLASSES)
    if bad.any():
        raise ValueError(f"{where}: class ids {class_ids[bad].tolist()} are not valid object classes "
                         f"(1..{config.NUM_CLASSES - 1}, negative for crowds; NUM_CLASSES = {config.NUM_CLASSES})")
    if dataset.num_classes != config.NUM_CLASSES:
        raise ValueError(f"the dataset has {dataset.num_classes} classes but config.NUM_CLASSES = "
                         f"{config.NUM_CLASSES}")
    return image, mask.astype(bool, copy=False), class_ids.astype(np.int32)


def _active_class_ids(dataset, image_id):
    """[num_classes] int32 flags of the classes of the image's source (BG included)."""
    active = np.zeros([dataset.num_classes], dtype=np.int32)
    active[dataset.source_class_ids[dataset.image_info[image_id]["source"]]] = 1
    return active


############################################################
#  Augmentation
############################################################

def apply_augmentation(image, mask, augmentation, rng=None):
    """Applies one random augmentation to an image and its masks together.

    image: [H, W, C]; mask: bool [H, W, N].
    augmentation: an albumentations transform, or an imgaug augmenter (duck-typed by
        ``to_deterministic``; only usable where ``import imgaug`` works).
    rng: optional ``np.random.Generator``: an albumentations transform is reseeded from
        it, so the draw depends on `rng` only, not on which worker thread ran the
        transform before (``DataGenerator`` passes one seeded per batch).

    Returns: (image, mask) with unchanged shapes and dtypes. Geometric transforms move
    the masks with the image (nearest-neighbour); pixel-level ones touch the image only.
    """
    if hasattr(augmentation, "to_deterministic"):
        new_image, new_mask = _apply_imgaug(image, mask, augmentation)
    elif _is_albumentations(augmentation):
        new_image, new_mask = _apply_albumentations(image, mask, augmentation, rng)
    else:
        raise TypeError(f"augmentation must be an albumentations transform (e.g. A.Compose) or an "
                        f"imgaug augmenter, got {type(augmentation).__name__}")
    new_image = np.asarray(new_image)
    if new_image.shape != image.shape or new_mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"augmentation changed the image shape from {image.shape} to {new_image.shape} "
                         f"(masks {new_mask.shape}); use size-preserving augmentations")
    if new_image.dtype != image.dtype and np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        new_image = np.clip(np.round(new_image), info.min, info.max)
    return new_image.astype(image.dtype, copy=False), new_mask


def _is_albumentations(augmentation):
    try:
        import albumentations
    except ImportError:
        return False
    return isinstance(augmentation, (albumentations.BasicTransform, albumentations.BaseCompose))


# Reseeding and applying a (shared) transform must not interleave between worker threads.
_ALBUMENTATIONS_LOCK = threading.Lock()


def _apply_albumentations(image, mask, transform, rng=None):
    if rng is not None:
        with _ALBUMENTATIONS_LOCK:
            transform.set_random_seed(int(rng.integers(2 ** 32)))
            return _apply_albumentations(image, mask, transform)
    if not mask.shape[-1]:
        # albumentations cannot stack an empty list of masks.
        out = transform(image=image)
        return out["image"], np.zeros(np.shape(out["image"])[:2] + (0,), dtype=bool)
    out = transform(image=image, masks=np.moveaxis(mask, -1, 0).astype(np.uint8))
    masks = np.stack([np.asarray(m) for m in out["masks"]], axis=-1)
    return out["image"], masks.astype(bool)


def _apply_imgaug(image, mask, augmenter):
    try:
        import imgaug
    except Exception as err:  # imgaug 0.4 fails at import under NumPy 2 (np.sctypes)
        raise ImportError("augmentation looks like an imgaug augmenter, but imgaug cannot be "
                          f"imported ({err}); use an albumentations transform instead") from err

    def mask_safe(images, augmenter, parents, default):
        return type(augmenter).__name__ in IMGAUG_MASK_AUGMENTERS

    # The same random draw must hit the image and the masks.
    det = augmenter.to_deterministic()
    new_image = det.augment_image(image)
    if not mask.shape[-1]:
        return new_image, np.zeros(np.shape(new_image)[:2] + (0,), dtype=bool)
    # imgaug has no bool support for images.
    new_mask = det.augment_image(mask.astype(np.uint8), hooks=imgaug.HooksImages(activator=mask_safe))
    return new_image, np.asarray(new_mask).astype(bool)


############################################################
#  RPN targets
############################################################

def build_rpn_targets(anchors, gt_class_ids, gt_boxes, config, *, rng=None):
    """Labels anchors for the RPN and computes the deltas of the positive ones.

    anchors: [A, (y1, x1, y2, x2)] pixel anchors.
    gt_class_ids: [G] int class ids; negative ids are crowd regions (their anchors
        are neither positive nor negative unless they are some GT's best anchor);
        0 entries are padding and ignored.
    gt_boxes: [G, (y1, x1, y2, x2)] pixel boxes.
    config: uses RPN_TRAIN_ANCHORS_PER_IMAGE and RPN_BBOX_STD_DEV.
    rng: optional ``np.random.Generator`` for the subsampling.

    Rules (Matterport's): IoU >= 0.7 with any GT -> positive; max IoU < 0.3 and not
    touching a crowd -> negative; each GT's best anchor(s) (ties included) -> positive.
    Then at most half of RPN_TRAIN_ANCHORS_PER_IMAGE are kept positive and the rest of
    that budget negative, both by random sampling; the others become neutral.

    Returns:
        rpn_match: int32 [A]: 1 positive, -1 negative, 0 neutral.
        rpn_bbox: float32 [RPN_TRAIN_ANCHORS_PER_IMAGE, (dy, dx, log(dh), log(dw))]:
            deltas from each positive anchor (in anchor order) to its best-IoU GT box,
            divided by RPN_BBOX_STD_DEV; zero rows after the last positive.
    """
    rng = np.random.default_rng() if rng is None else rng
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 4)
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if gt_class_ids.size != gt_boxes.shape[0]:
        raise ValueError(f"build_rpn_targets: {gt_class_ids.size} class ids but {gt_boxes.shape[0]} boxes")
    budget = int(config.RPN_TRAIN_ANCHORS_PER_IMAGE)
    rpn_match = np.zeros([anchors.shape[0]], dtype=np.int32)
    rpn_bbox = np.zeros([budget, 4], dtype=np.float32)

    crowd_boxes = gt_boxes[gt_class_ids < 0]
    if crowd_boxes.shape[0]:
        no_crowd = compute_overlaps(anchors, crowd_boxes).max(axis=1) < config.CROWD_IOU
    else:
        no_crowd = np.ones([anchors.shape[0]], dtype=bool)
    gt_boxes = gt_boxes[gt_class_ids > 0]

    if gt_boxes.shape[0] == 0:
        # An image without objects: everything outside crowds is background.
        rpn_match[no_crowd] = -1
    else:
        overlaps = compute_overlaps(anchors, gt_boxes)
        anchor_gt = overlaps.argmax(axis=1)
        anchor_iou = overlaps[np.arange(anchors.shape[0]), anchor_gt]
        # Negatives first: the positive rules below override them.
        rpn_match[(anchor_iou < RPN_NEGATIVE_IOU) & no_crowd] = -1
        # Every GT gets its best anchor(s), however low the IoU. A GT that overlaps no
        # anchor at all (max 0) would otherwise mark every non-touching anchor positive.
        gt_best = overlaps.max(axis=0)
        rpn_match[np.nonzero((overlaps == gt_best) & (gt_best > 0))[0]] = 1
        rpn_match[anchor_iou >= RPN_POSITIVE_IOU] = 1

    _subsample(rpn_match, 1, budget // 2, rng)
    _subsample(rpn_match, -1, budget - int(np.sum(rpn_match == 1)), rng)

    positives = np.flatnonzero(rpn_match == 1)
    if positives.size:
        deltas = box_refinement(anchors[positives], gt_boxes[anchor_gt[positives]])
        rpn_bbox[:positives.size] = deltas / np.asarray(config.RPN_BBOX_STD_DEV, dtype=np.float32)
    return rpn_match, rpn_bbox


def _subsample(rpn_match, label, limit, rng):
    """Randomly resets anchors labelled ``label`` to neutral until at most ``limit`` remain."""
    ids = np.flatnonzero(rpn_match == label)
    extra = ids.size - limit
    if extra > 0:
        rpn_match[rng.choice(ids, extra, replace=False)] = 0


############################################################
#  Batches
############################################################

_Sample = namedtuple("_Sample", "image meta class_ids boxes masks rpn_match rpn_bbox")


class DataGenerator(keras.utils.PyDataset):
    """Training batches for the Mask R-CNN training model.

    dataset: a prepared ``Dataset``; config: the ``Config`` (BATCH_SIZE, IMAGE_SHAPE, ...).
    shuffle: visit the images in a new random order every epoch.
    augmentation: optional albumentations transform (or imgaug augmenter, see
        ``load_image_gt``).
    skip_empty: as Matterport, an image without (non-crowd) instances is replaced by the
        next image of the epoch order that has some; replacements are counted in
        ``skipped_count`` / ``skipped_image_ids`` and logged. False keeps such images:
        all their anchors are negatives and their GT arrays are all padding.
        ``MaskRCNN.train`` passes ``not config.TRAIN_IMAGES_WITHOUT_INSTANCES`` (default: kept).
        An image whose file cannot be decoded (``DatasetError``, e.g. a JPEG truncated
        after a valid header, which only shows when the image is first read) is always
        replaced the same way, counted, named in the log, and not read again
        (``unreadable_image_ids``); the epoch keeps its length. Any other failure raises ``ImageLoadError`` naming the image.
    seed: makes the order and the random sampling reproducible; each image of a batch
        draws from its own generator seeded by (seed, epoch, idx, position), so loader
        threads never share a stream and ``part`` gives the same rows in any process.
    no_augmentation_sources: sources whose images are never augmented.
    kwargs: passed to ``keras.utils.PyDataset`` (workers, use_multiprocessing,
        max_queue_size). Skip counts are per process when use_multiprocessing=True.

    steps: batches per epoch (``len(generator)``); default ceil(num_images / BATCH_SIZE),
        one pass. More steps than one pass take several passes, each in its own order.
    Every batch is full (the last one wraps around to the start of the order). ``generator[idx]`` is a dict:
        input_image: float32 [B, H, W, C] molded images.
        input_image_meta: float32 [B, 12 + NUM_CLASSES].
        input_rpn_match: int32 [B, A, 1].
        input_rpn_bbox: float32 [B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4].
        input_gt_class_ids: int32 [B, MAX_GT_INSTANCES], zero padded.
        input_gt_boxes: float32 [B, MAX_GT_INSTANCES, (y1, x1, y2, x2)] pixels, zero padded.
        input_gt_masks: bool [B, h, w, MAX_GT_INSTANCES], [h, w] = GT_MASK_SHAPE.
    """

    def __init__(self, dataset, config, shuffle=True, augmentation=None, *, skip_empty=True,
                 seed=None, no_augmentation_sources=None, steps=None, **kwargs):
        super().__init__(**kwargs)
        if steps is not None and steps < 1:
            raise ValueError(f"DataGenerator: steps must be >= 1, not {steps}")
        self.steps = steps
        if not hasattr(dataset, "_image_ids"):
            raise ValueError("DataGenerator: call dataset.prepare() first")
        if dataset.num_images == 0:
            raise ValueError("DataGenerator: the dataset has no images")
        if dataset.num_classes != config.NUM_CLASSES:
            raise ValueError(f"DataGenerator: the dataset has {dataset.num_classes} classes but "
                             f"config.NUM_CLASSES = {config.NUM_CLASSES}")
        self.dataset = dataset
        self.config = config
        self.shuffle = shuffle
        self.augmentation = augmentation
        self.skip_empty = skip_empty
        self.no_augmentation_sources = set(no_augmentation_sources or ())
        self.seed = int(np.random.SeedSequence(seed).entropy)
        self.image_shape = tuple(int(s) for s in config.IMAGE_SHAPE)
        self.anchors = anchors_for_shape(config, self.image_shape)
        self.epoch = 0
        self.skipped_count = 0
        self.skipped_image_ids = set()
        self.unreadable_image_ids = set()
        # The last exception `part` raised. A tf.data pipeline that calls `part`
        # keeps only its text, so distribute.original_loading_errors re-raises this.
        self.loading_error = None
        self._lock = threading.Lock()
        self._orders = {}  # epoch -> image order; the last two epochs are kept

    def __len__(self):
        return self.steps or math.ceil(self.dataset.num_images / self.config.BATCH_SIZE)

    def on_epoch_end(self):
        self.epoch += 1

    def _epoch_order(self, epoch):
        """The image ids of `epoch` in visiting order (a function of seed and epoch
        only, so every process of a multi-worker run computes the same one)."""
        with self._lock:
            if epoch in self._orders:
                return self._orders[epoch]
        # An epoch of `steps` batches may need several passes over the images
        # (Matterport's epochs are STEPS_PER_EPOCH long whatever the data size):
        # chain that many permutations so every image comes up equally often.
        image_ids = np.array(self.dataset.image_ids)
        passes = max(1, math.ceil(len(self) * self.config.BATCH_SIZE / image_ids.size))
        if not self.shuffle:
            order = np.tile(image_ids, passes)
        else:
            order = np.concatenate([np.random.default_rng([self.seed, epoch, 0, p]).permutation(image_ids)
                                    for p in range(passes)])
        with self._lock:
            self._orders = {e: o for e, o in self._orders.items() if e == epoch - 1}
            self._orders[epoch] = order
        return order

    def __getitem__(self, idx):
        return self.part(self.epoch, idx, 0, self.config.BATCH_SIZE)

    def part(self, epoch, idx, start, count):
        """Images ``start .. start + count - 1`` of batch `idx` of `epoch`, collated
        like a batch (``generator[idx]`` is the whole batch of the current epoch).
        Each image's random draws are seeded by (seed, epoch, idx, position), so a
        part equals the same rows of the whole batch, whichever process loads it."""
        if not 0 <= idx < len(self):
            raise IndexError(f"DataGenerator: batch {idx} out of range (0..{len(self) - 1})")
        if not (count >= 1 and 0 <= start and start + count <= self.config.BATCH_SIZE):
            raise IndexError(f"DataGenerator: images {start}..{start + count - 1} are not in a batch "
                             f"of {self.config.BATCH_SIZE} (BATCH_SIZE)")
        order = self._epoch_order(epoch)
        try:
            samples = [self._sample_at(order, idx * self.config.BATCH_SIZE + k,
                                       np.random.default_rng([self.seed, epoch, 1, idx, k]))
                       for k in range(start, start + count)]
        except Exception as err:
            self.loading_error = err
            raise
        return self._collate(samples)

    def _sample_at(self, order, position, rng):
        """The sample at ``position`` of the epoch `order`, or the next usable one."""
        num_images = len(order)
        for step in range(num_images):
            image_id = int(order[(position + step) % num_images])
            if image_id in self.unreadable_image_ids:
                self._note_skipped(image_id, "unreadable")
                continue
            try:
                sample = self._load_sample(image_id, rng)
            except DatasetError as err:  # the user's bad file, not a bug: skip it
                self.unreadable_image_ids.add(image_id)
                self._note_skipped(image_id, f"unreadable: {err}")
                continue
            if not self.skip_empty or np.any(sample.class_ids > 0):
                return sample
            self._note_skipped(image_id, "no instances")
        raise ValueError(f"DataGenerator: none of the {num_images} images has any instance "
                         f"({len(self.unreadable_image_ids)} could not be read); check the "
                         f"images and load_mask, or pass skip_empty=False (train(): Config."
                         f"TRAIN_IMAGES_WITHOUT_INSTANCES = True) to train on empty images")

    def _note_skipped(self, image_id, reason):
        with self._lock:
            self.skipped_count += 1
            first_time = image_id not in self.skipped_image_ids
            self.skipped_image_ids.add(image_id)
            count = self.skipped_count
        if first_time:
            logger.warning("DataGenerator: skipping image %d (%s): %s (%d skips so far)",
                           image_id, self._reference(image_id), reason, count)

    def _load_sample(self, image_id, rng):
        config = self.config
        source = self.dataset.image_info[image_id]["source"]
        augmentation = None if source in self.no_augmentation_sources else self.augmentation
        try:
            image, meta, class_ids, boxes, masks = load_image_gt(
                self.dataset, config, image_id, augmentation, rng=rng)
            if image.shape != self.image_shape:
                raise ValueError(f"resized image is {image.shape}, but batches need IMAGE_SHAPE "
                                 f"{self.image_shape} (IMAGE_RESIZE_MODE {config.IMAGE_RESIZE_MODE!r})")
            rpn_match, rpn_bbox = build_rpn_targets(self.anchors, class_ids, boxes, config, rng=rng)
        except DatasetError:
            raise
        except Exception as err:
            reference = self._reference(image_id)
            logger.exception("DataGenerator: cannot load image %d (%s)", image_id, reference)
            raise ImageLoadError(f"DataGenerator: cannot load image {image_id} ({reference}): {err}") from err
        if class_ids.size > config.MAX_GT_INSTANCES:
            keep = rng.choice(class_ids.size, config.MAX_GT_INSTANCES, replace=False)
            class_ids, boxes, masks = class_ids[keep], boxes[keep], masks[:, :, keep]
        return _Sample(image, meta, class_ids, boxes, masks, rpn_match, rpn_bbox)

    def _reference(self, image_id):
        try:
            return str(self.dataset.image_reference(image_id))
        except Exception:  # a broken image_reference must not hide the real error
            return repr(self.dataset.image_info[image_id].get("path"))

    def batch_signature(self, count):
        """{input name: (shape, numpy dtype)} of `count` collated images."""
        config = self.config
        max_gt = config.MAX_GT_INSTANCES
        return {
            "input_image": ((count,) + self.image_shape, np.float32),
            "input_image_meta": ((count, config.IMAGE_META_SIZE), np.float32),
            "input_rpn_match": ((count, len(self.anchors), 1), np.int32),
            "input_rpn_bbox": ((count, config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4), np.float32),
            "input_gt_class_ids": ((count, max_gt), np.int32),
            "input_gt_boxes": ((count, max_gt, 4), np.float32),
            "input_gt_masks": ((count,) + tuple(config.GT_MASK_SHAPE) + (max_gt,), bool),
        }

    def _collate(self, samples):
        # Ground truth is zero padded up to MAX_GT_INSTANCES.
        batch = {name: np.zeros(shape, dtype)
                 for name, (shape, dtype) in self.batch_signature(len(samples)).items()}
        for b, sample in enumerate(samples):
            n = sample.class_ids.size
            batch["input_image"][b] = mold_image(sample.image, self.config.MEAN_PIXEL)
            batch["input_image_meta"][b] = sample.meta
            batch["input_rpn_match"][b, :, 0] = sample.rpn_match
            batch["input_rpn_bbox"][b] = sample.rpn_bbox
            batch["input_gt_class_ids"][b, :n] = sample.class_ids
            batch["input_gt_boxes"][b, :n] = sample.boxes
            batch["input_gt_masks"][b, :, :, :n] = sample.masks
        return batch


class MatterportBatches(DataGenerator):
    """``DataGenerator`` with the TF2 ports' item form (their ``modellib.DataGenerator``):
    ``generator[idx]`` is ``(inputs, [])``, inputs the arrays of the batch as a list in
    Matterport's input order (``config.TRAINING_INPUT_NAMES``: image, meta, rpn_match,
    rpn_bbox, gt_class_ids, gt_boxes, gt_masks); ``keras_model.train_on_batch(*item)``
    trains on it as the ports do."""

    def __getitem__(self, idx):
        batch = super().__getitem__(idx)
        return [batch[name] for name in TRAINING_INPUT_NAMES], []
