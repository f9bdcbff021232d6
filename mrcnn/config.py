"""Mask R-CNN configuration.

Subclass `Config` and override the class constants that differ for your data,
exactly as with Matterport's Mask R-CNN::

    class BalloonConfig(Config):
        NAME = "balloon"
        NUM_CLASSES = 1 + 1
        IMAGES_PER_GPU = 2

Derived values (BATCH_SIZE, IMAGE_SHAPE, IMAGE_META_SIZE) are computed when the
object is created, and impossible settings raise a `ConfigError` (a `ValueError`) naming the
attribute, at construction rather than deep inside graph building.
"""

import inspect

import numpy as np

from mrcnn import backbones
from mrcnn.errors import ConfigError
from mrcnn.layout import SIZE_MULTIPLE, image_meta_size

# The five Mask R-CNN losses, as named in the training log and in LOSS_WEIGHTS.
LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
              "mrcnn_mask_loss")

# The training graph's inputs in Matterport's positional order (its data_generator's
# lists); the graph itself takes them as a dict keyed by these names.
TRAINING_INPUT_NAMES = ("input_image", "input_image_meta", "input_rpn_match", "input_rpn_bbox",
                        "input_gt_class_ids", "input_gt_boxes", "input_gt_masks")

# Keras dtype policy names accepted as Config.PRECISION (see mrcnn.precision).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


class Config:
    # Name of the configuration; used to name log directories and checkpoints.
    NAME = None

    # Images per replica. A 12 GB GPU holds about two 1024x1024 images.
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2

    # Steps per epoch are independent of the dataset size on purpose: short epochs
    # give frequent checkpoints and TensorBoard points.
    STEPS_PER_EPOCH = 1000
    VALIDATION_STEPS = 50

    # A backbone registered in mrcnn.backbones ("resnet50", "resnet101",
    # "mobilenet_v3_small", ...) or a callable with Matterport's contract,
    # BACKBONE(input_image, stage5=True, train_bn=...) -> [C1, C2, C3, C4, C5].
    BACKBONE = "resnet101"

    # With a callable BACKBONE: a function image_shape -> [[h, w] of P2..P6], as in
    # Matterport; None derives them from BACKBONE_STRIDES.
    COMPUTE_BACKBONE_SHAPE = None

    # Strides of the FPN levels P2..P6. A registered backbone knows its own; they
    # must agree with it.
    BACKBONE_STRIDES = list(backbones.DEFAULT_STRIDES)

    # Width of the two fully connected layers of the classification head.
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024

    # Channels of the top-down FPN layers.
    TOP_DOWN_PYRAMID_SIZE = 256

    # Number of classes including background.
    NUM_CLASSES = 1

    # Anchor side lengths in pixels, one scale per pyramid level.
    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)
    # Anchor width/height ratios at every location.
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]
    # 1 places anchors at every feature-map cell, 2 at every other cell, ...
    RPN_ANCHOR_STRIDE = 1
    # Width of the RPN's shared 3x3 conv. 512 is Matterport's (its weight files need
    # it); torchvision and Detectron2 use the FPN width, 256, for half the RPN's work.
    RPN_CONV_CHANNELS = 512

    # Raise to get more proposals during training.
    RPN_NMS_THRESHOLD = 0.7
    # Anchors per image sampled to train the RPN.
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256

    # Top anchors by score kept before non-max suppression.
    PRE_NMS_LIMIT = 6000
    # Proposals kept after non-max suppression.
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000

    # Store instance masks cropped to their box and resized to MINI_MASK_SHAPE
    # to save memory during training.
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)
    # Derived: GT_MASK_SHAPE, the [h, w] of the ground-truth masks fed to training
    # (MINI_MASK_SHAPE, or IMAGE_SHAPE[:2] without mini masks). The data generator
    # writes masks of this shape and the training graph's input declares it.

    # "none", "square", "pad64" or "crop" (see mrcnn.images.resize_image).
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 800
    IMAGE_MAX_DIM = 1024
    # Minimum upscale factor; 0 disables it.
    IMAGE_MIN_SCALE = 0
    # 3 for RGB; any other count works too (1 = grey, 4 = RGBA or RGB + another
    # band, ...): Dataset.load_image and detect() give images this many channels,
    # and loading 3-channel (ImageNet/COCO) weights skips conv1 with a message.
    IMAGE_CHANNEL_COUNT = 3

    # Per-channel mean subtracted from images (RGB); one value per channel.
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9])

    # ROIs per image fed to the heads during training.
    TRAIN_ROIS_PER_IMAGE = 200
    # Share of those ROIs that are positive.
    ROI_POSITIVE_RATIO = 0.33

    # ROI Align output sizes for the box/class head and the mask head.
    POOL_SIZE = 7
    MASK_POOL_SIZE = 14
    # Output mask size; change MASK_POOL_SIZE and the mask head together with it.
    MASK_SHAPE = [28, 28]

    # Ground-truth instances kept per image.
    MAX_GT_INSTANCES = 100
    # Train on images without any (non-crowd) instance too: their ROIs are all
    # background, so the heads learn what is not an object. False skips them,
    # as Matterport did.
    TRAIN_IMAGES_WITHOUT_INSTANCES = True

    # A crowd box marks a region of many objects annotated as one. Anchors (RPN
    # targets) and proposals (head targets) whose IoU with a crowd box reaches this
    # are never used as negatives: they may well cover an object. Matterport's value,
    # shared by data.build_rpn_targets and DetectionTargetLayer.
    CROWD_IOU = 0.001

    # Std-devs the box deltas are divided by, for the RPN and the final boxes.
    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])

    # Final detections per image.
    DETECTION_MAX_INSTANCES = 100
    # Detections below this score are dropped.
    DETECTION_MIN_CONFIDENCE = 0.7
    # Per-class non-max suppression threshold of the final detections.
    DETECTION_NMS_THRESHOLD = 0.3

    # The paper uses 0.02, which diverges in Matterport's setting (TF optimizer,
    # gradient clipping); 0.001 is the tested default.
    LEARNING_RATE = 0.001
    LEARNING_MOMENTUM = 0.9

    # Learning-rate schedule of each train() call (mrcnn.schedules): "constant",
    # "step" (multiplied by LR_DROP at each epoch in LR_STEPS, counted over the whole
    # run) or "cosine" (from the call's rate to 0 at its last epoch). Warm-up raises
    # the rate linearly from LEARNING_RATE_WARMUP_FACTOR times it over the run's
    # first LEARNING_RATE_WARMUP_STEPS steps; it helps training from scratch.
    LR_SCHEDULE = "constant"
    LR_STEPS = ()
    LR_DROP = 0.1
    LEARNING_RATE_WARMUP_STEPS = 0
    LEARNING_RATE_WARMUP_FACTOR = 0.001

    # L2 weight decay.
    WEIGHT_DECAY = 0.0001

    # Relative weight of each loss term in the total.
    LOSS_WEIGHTS = dict.fromkeys(LOSS_NAMES, 1.0)

    # Train the heads on the RPN's proposals (True) or on externally given ROIs.
    USE_RPN_ROIS = True

    # Train BatchNorm layers. False freezes them (small batches make batch
    # statistics noisy); True trains them; None follows the training flag.
    TRAIN_BN = False

    # Normalisation in the ResNet backbone. "batch": BatchNorm as above, as in
    # Matterport and its weight files. "group": GroupNorm with BACKBONE_NORM_GROUPS
    # groups, for training from scratch on a few images per batch: trained
    # BatchNorm then normalises each batch by its own images' statistics, and the
    # moving averages it uses at inference no longer fit (He et al., "Rethinking
    # ImageNet Pre-training", 2018). GroupNorm layers keep the BatchNorm names but
    # have no moving statistics, so BatchNorm weight files do not load into them.
    # The heads keep BatchNorm (TRAIN_BN).
    BACKBONE_NORM = "batch"
    BACKBONE_NORM_GROUPS = 32

    # Gradient norm clipping.
    GRADIENT_CLIP_NORM = 5.0

    # ROI Align sampling. False keeps Matterport's crop_and_resize sampling (one
    # sample per bin, no half-pixel offset) so Matterport-trained weights give the
    # same detections; True selects half-pixel aligned sampling.
    ROI_ALIGN_ALIGNED = False

    # Compute precision of the model built from this config: "float32",
    # "mixed_bfloat16" (about 2x faster on CPUs with AVX-512-BF16 or AMX, and on
    # recent GPUs) or "mixed_float16" (GPUs; training uses loss scaling). Weights
    # stay float32, so weight files load into any precision. See mrcnn.precision.
    PRECISION = "float32"

    def __init__(self):
        # A function set as a class attribute reads as a method of the instance;
        # Matterport's contract calls it without the config.
        for attr in ("BACKBONE", "COMPUTE_BACKBONE_SHAPE"):
            value = getattr(self, attr)
            if inspect.ismethod(value) and value.__self__ is self:
                setattr(self, attr, value.__func__)
        self.BATCH_SIZE = self.IMAGES_PER_GPU * self.GPU_COUNT
        if self.IMAGE_RESIZE_MODE == "crop":
            self.IMAGE_SHAPE = np.array(
                [self.IMAGE_MIN_DIM, self.IMAGE_MIN_DIM, self.IMAGE_CHANNEL_COUNT])
        else:
            self.IMAGE_SHAPE = np.array(
                [self.IMAGE_MAX_DIM, self.IMAGE_MAX_DIM, self.IMAGE_CHANNEL_COUNT])
        self.GT_MASK_SHAPE = (tuple(int(d) for d in self.MINI_MASK_SHAPE) if self.USE_MINI_MASK
                              else tuple(int(d) for d in self.IMAGE_SHAPE[:2]))
        # The fields of layout.IMAGE_META_FIELDS + one active flag per class.
        self.IMAGE_META_SIZE = image_meta_size(self.NUM_CLASSES)
        self.validate()

    def validate(self):
        """Raise ConfigError (a ValueError) naming the attribute of the first impossible setting."""
        def fail(attr, why):
            raise ConfigError(f"{type(self).__name__}.{attr} = {getattr(self, attr)!r}: {why}")

        if not isinstance(self.NAME, str) or not self.NAME or any(c in self.NAME for c in "/\\ "):
            fail("NAME", "set a short name without spaces or slashes; it names log folders and checkpoints")
        if not isinstance(self.NUM_CLASSES, int) or self.NUM_CLASSES < 2:
            fail("NUM_CLASSES", "needs at least 2 classes (background + one object class)")
        for attr in ("GPU_COUNT", "IMAGES_PER_GPU", "STEPS_PER_EPOCH", "IMAGE_MAX_DIM",
                     "POST_NMS_ROIS_TRAINING", "POST_NMS_ROIS_INFERENCE", "PRE_NMS_LIMIT",
                     "TRAIN_ROIS_PER_IMAGE", "MAX_GT_INSTANCES", "DETECTION_MAX_INSTANCES",
                     "RPN_TRAIN_ANCHORS_PER_IMAGE", "POOL_SIZE", "MASK_POOL_SIZE",
                     "IMAGE_CHANNEL_COUNT", "RPN_ANCHOR_STRIDE", "RPN_CONV_CHANNELS"):
            value = getattr(self, attr)
            if not isinstance(value, (int, np.integer)) or value < 1:
                fail(attr, "must be a positive integer")
        if self.VALIDATION_STEPS is not None and self.VALIDATION_STEPS < 0:
            fail("VALIDATION_STEPS", "must be >= 0")
        self._validate_schedule(fail)
        self._validate_backbone(fail)
        groups = self.BACKBONE_NORM_GROUPS
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1 or 64 % groups:
            fail("BACKBONE_NORM_GROUPS", "must be a positive integer dividing 64 "
                 "(the narrowest backbone layer)")
        if self.PRECISION not in PRECISIONS:
            fail("PRECISION", f"must be one of {', '.join(PRECISIONS)}")
        if self.IMAGE_RESIZE_MODE not in ("none", "square", "pad64", "crop"):
            fail("IMAGE_RESIZE_MODE", 'must be one of "none", "square", "pad64", "crop"')
        # Six stride-2 stages (P6 included) must divide the input evenly.
        if self.IMAGE_RESIZE_MODE == "square" and self.IMAGE_MAX_DIM % SIZE_MULTIPLE:
            fail("IMAGE_MAX_DIM", f'must be divisible by {SIZE_MULTIPLE} in "square" mode '
                 '(e.g. 256, 320, 512, 1024)')
        if self.IMAGE_RESIZE_MODE == "crop" and (self.IMAGE_MIN_DIM or 0) % SIZE_MULTIPLE:
            fail("IMAGE_MIN_DIM", f'must be divisible by {SIZE_MULTIPLE} in "crop" mode')
        if self.IMAGE_MIN_DIM and self.IMAGE_MIN_DIM > self.IMAGE_MAX_DIM and self.IMAGE_RESIZE_MODE != "crop":
            fail("IMAGE_MIN_DIM", "must not exceed IMAGE_MAX_DIM")
        if len(self.BACKBONE_STRIDES) != 5:
            fail("BACKBONE_STRIDES", "needs one stride for each of P2..P6")
        if len(self.RPN_ANCHOR_SCALES) != len(self.BACKBONE_STRIDES):
            fail("RPN_ANCHOR_SCALES", "needs one scale per pyramid level (5)")
        if len(self.RPN_ANCHOR_RATIOS) < 1 or min(self.RPN_ANCHOR_RATIOS) <= 0:
            fail("RPN_ANCHOR_RATIOS", "must be positive numbers")
        if len(self.MEAN_PIXEL) != self.IMAGE_CHANNEL_COUNT:
            fail("MEAN_PIXEL", f"needs one value per channel (IMAGE_CHANNEL_COUNT = {self.IMAGE_CHANNEL_COUNT})")
        if not 0 < self.ROI_POSITIVE_RATIO <= 1:
            fail("ROI_POSITIVE_RATIO", "must be in (0, 1]")
        for attr in ("RPN_NMS_THRESHOLD", "DETECTION_NMS_THRESHOLD", "DETECTION_MIN_CONFIDENCE"):
            if not 0 <= getattr(self, attr) <= 1:
                fail(attr, "must be in [0, 1]")
        if tuple(self.MASK_SHAPE) != (2 * self.MASK_POOL_SIZE, 2 * self.MASK_POOL_SIZE):
            fail("MASK_SHAPE", f"must be twice MASK_POOL_SIZE ({self.MASK_POOL_SIZE}): the mask head upsamples once")
        if len(self.RPN_BBOX_STD_DEV) != 4 or len(self.BBOX_STD_DEV) != 4:
            fail("BBOX_STD_DEV", "RPN_BBOX_STD_DEV and BBOX_STD_DEV need 4 values")
        unknown = set(self.LOSS_WEIGHTS) - set(LOSS_NAMES)
        if unknown:
            fail("LOSS_WEIGHTS", f"unknown loss names {sorted(unknown)}")
        if self.USE_RPN_ROIS is not True:
            fail("USE_RPN_ROIS", "training on externally given ROIs is not supported; keep True")
        if self.TRAIN_ROIS_PER_IMAGE > self.POST_NMS_ROIS_TRAINING:
            fail("TRAIN_ROIS_PER_IMAGE", f"cannot exceed POST_NMS_ROIS_TRAINING ({self.POST_NMS_ROIS_TRAINING})")

    def _validate_backbone(self, fail):
        """BACKBONE, BACKBONE_STRIDES and BACKBONE_NORM against the backbone registry."""
        if self.BACKBONE_NORM not in ("batch", "group"):
            fail("BACKBONE_NORM", 'must be "batch" or "group"')
        if callable(self.BACKBONE):
            if self.COMPUTE_BACKBONE_SHAPE is not None and not callable(self.COMPUTE_BACKBONE_SHAPE):
                fail("COMPUTE_BACKBONE_SHAPE", "must be None or a function image_shape -> shapes")
            return
        try:
            spec = backbones.get(self.BACKBONE)
        except ValueError as err:
            fail("BACKBONE", str(err))
        if tuple(self.BACKBONE_STRIDES) != tuple(spec.strides):
            fail("BACKBONE_STRIDES", f"backbone {spec.name!r} has strides {list(spec.strides)}")
        if self.BACKBONE_NORM not in spec.norms:
            fail("BACKBONE_NORM", f"backbone {spec.name!r} supports {list(spec.norms)}")

    def _validate_schedule(self, fail):
        if self.LR_SCHEDULE not in ("constant", "step", "cosine"):
            fail("LR_SCHEDULE", 'must be "constant", "step" or "cosine"')
        steps = self.LR_STEPS
        if (not isinstance(steps, (list, tuple))
                or any(not isinstance(e, (int, np.integer)) or e < 1 for e in steps)
                or list(steps) != sorted(steps)):
            fail("LR_STEPS", "must be a sorted list of positive epoch numbers")
        if not 0 < self.LR_DROP <= 1:
            fail("LR_DROP", "must be in (0, 1]")
        warmup = self.LEARNING_RATE_WARMUP_STEPS
        if not isinstance(warmup, (int, np.integer)) or warmup < 0:
            fail("LEARNING_RATE_WARMUP_STEPS", "must be an integer >= 0")
        if not 0 <= self.LEARNING_RATE_WARMUP_FACTOR <= 1:
            fail("LEARNING_RATE_WARMUP_FACTOR", "must be in [0, 1]")

    def to_dict(self):
        """All upper-case attributes, derived ones included."""
        return {a: getattr(self, a) for a in sorted(dir(self))
                if a.isupper() and not a.startswith("_") and not callable(getattr(self, a))}

    def display(self):
        """Print every setting, one per line."""
        print("\nConfigurations:")
        for key, value in self.to_dict().items():
            print(f"{key:30} {value}")
        print()

    def __repr__(self):
        return f"<{type(self).__name__} NAME={self.NAME!r}>"

