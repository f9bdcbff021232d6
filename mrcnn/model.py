"""`MaskRCNN`: Matterport's user-facing wrapper, on Keras 3.

This is the one module that turns a `Config` into layer arguments. The graph is
built from the pieces in `mrcnn.layers` in pipeline order:

    image -> ResNet -> FPN -> RPN -> proposals -> ROI Align -> box/class head
                                                            -> mask head

In training mode the graph also samples ROIs and builds their targets
(`DetectionTargetLayer`); the five losses are computed from the graph's outputs
in `TrainingGraph.compute_loss`, so Keras' own train step (gradients, the
optimizer's gradient clipping) drives training on any backend.
"""

import logging
import os

import keras
import numpy as np
from keras import ops

from mrcnn import anchors as anchor_utils
from mrcnn import boxes as box_utils
from mrcnn import images as image_utils
from mrcnn import losses
from mrcnn import masks as mask_utils
from mrcnn import precision
from mrcnn import training
from mrcnn import weights as weights_io
from mrcnn.layers import box_ops
from mrcnn.layers.backbone import fpn_graph, resnet_graph
from mrcnn.layers.detection import DetectionLayer
from mrcnn.layers.detection_targets import DetectionTargetLayer
from mrcnn.layers.heads import build_rpn_model, classifier_head, mask_head
from mrcnn.layers.proposal import ProposalLayer
from mrcnn.layers.roi_align import PyramidROIAlign

log = logging.getLogger("mrcnn")

LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
              "mrcnn_mask_loss")


class BatchConstant(keras.layers.Layer):
    """Repeats a constant array along a batch dimension taken from `reference`.

    Holds the training anchors: they depend only on IMAGE_SHAPE, so they are a
    constant of the graph rather than an input (and not a weight, so they stay
    out of weight files).
    """

    def __init__(self, value, **kwargs):
        kwargs.setdefault("dtype", precision.FLOAT32)  # anchors: float32 under any policy
        super().__init__(**kwargs)
        self.value = np.asarray(value, dtype="float32")

    def call(self, reference):
        batch = ops.shape(reference)[0]
        value = ops.convert_to_tensor(self.value)
        return ops.broadcast_to(value[None], (batch,) + self.value.shape)

    def compute_output_shape(self, reference_shape):
        return (reference_shape[0],) + self.value.shape

    def get_config(self):
        return {**super().get_config(), "value": self.value.tolist()}


class NormalizeBoxes(keras.layers.Layer):
    """Pixel boxes -> normalized boxes of the image they belong to (float32 under any policy)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", precision.FLOAT32)
        super().__init__(**kwargs)

    def call(self, boxes, image):
        shape = ops.shape(image)[1:3]
        return box_ops.norm_boxes(boxes, shape)


class PositiveRows(keras.layers.Layer):
    """`[class_ids [B, T], rois [B, T, 4], masks [B, T, h, w]]` -> the same three cut
    to their first n rows, n = max over the batch of the positive count (>= 1).

    Relies on `DetectionTargetLayer`'s row order (positives first), so every
    positive of every image is kept. n is dynamic.

    Why: the mask loss only counts positive ROIs, and the mask head (~1 GFLOP per
    ROI at 14x14) is most of a training step's work, so running it on these rows
    saves up to (T - n) / T of it. With frozen BatchNorm (the default) each ROI's
    mask is computed independently and loss and gradients are unchanged. With
    trainable BatchNorm the mask head's batch statistics come from these rows
    (mostly positives) instead of all T rows with negatives and zero padding, as in
    Matterport: at inference the mask head only sees detected objects, so these
    statistics are the closer match.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", precision.FLOAT32)  # ROI boxes: float32 under any policy
        super().__init__(**kwargs)

    def call(self, inputs):
        class_ids, rois, masks = inputs
        positives = ops.sum(ops.cast(class_ids > 0, "int32"), axis=1)
        n = ops.maximum(ops.max(positives), 1)
        return [rois[:, :n], class_ids[:, :n], masks[:, :n]]

    def compute_output_spec(self, inputs):
        class_ids, rois, masks = inputs
        return [keras.KerasTensor((rois.shape[0], None) + tuple(rois.shape[2:]), rois.dtype),
                keras.KerasTensor((class_ids.shape[0], None), class_ids.dtype),
                keras.KerasTensor((masks.shape[0], None) + tuple(masks.shape[2:]), masks.dtype)]


class TrainingGraph(keras.Model):
    """The training graph plus its loss: the weighted sum of the five Mask R-CNN
    losses and L2 weight decay. Each loss is tracked as its own metric, so the
    progress bar, the CSV log and TensorBoard show all five. The L2 term is in the
    reported loss, but its gradient comes from the optimizer, so compile with
    ``training.SGDWithL2(l2=weight_decay, ...)`` (``MaskRCNN.compile`` does)."""

    def __init__(self, *args, loss_weights=None, weight_decay=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_weights_by_name = dict(loss_weights or {})
        self.weight_decay = weight_decay
        self.loss_trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES}

    @property
    def metrics(self):
        return super().metrics + list(self.loss_trackers.values())

    def mask_rcnn_losses(self, x, y_pred):
        return {
            "rpn_class_loss": losses.rpn_class_loss(x["input_rpn_match"], y_pred["rpn_class_logits"]),
            "rpn_bbox_loss": losses.rpn_bbox_loss(x["input_rpn_bbox"], x["input_rpn_match"],
                                                  y_pred["rpn_bbox"]),
            "mrcnn_class_loss": losses.mrcnn_class_loss(y_pred["target_class_ids"],
                                                        y_pred["mrcnn_class_logits"],
                                                        y_pred["active_class_ids"]),
            "mrcnn_bbox_loss": losses.mrcnn_bbox_loss(y_pred["target_bbox"], y_pred["target_class_ids"],
                                                      y_pred["mrcnn_bbox"]),
            "mrcnn_mask_loss": losses.mrcnn_mask_loss(y_pred["target_mask"], y_pred["mask_class_ids"],
                                                      y_pred["mrcnn_mask"]),
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        parts = self.mask_rcnn_losses(x, y_pred)
        total = 0.0
        for name, value in parts.items():
            self.loss_trackers[name].update_state(value)
            total = total + self.loss_weights_by_name.get(name, 1.0) * value
        if self.weight_decay:
            # Reported only: its gradient is added by the optimizer (training.SGDWithL2).
            total = total + ops.stop_gradient(
                losses.l2_weight_decay(self.trainable_weights, self.weight_decay))
        return total


class MaskRCNN:
    """Mask R-CNN with Matterport's API.

    Args:
        mode: "training" or "inference".
        config: a `mrcnn.config.Config` subclass instance.
        model_dir: folder for training logs and checkpoints.
    """

    def __init__(self, mode, config, model_dir):
        if mode not in ("training", "inference"):
            raise ValueError(f'mode must be "training" or "inference", not {mode!r}')
        self.mode = mode
        self.config = config
        self.model_dir = model_dir
        self._anchor_cache = {}
        self.set_log_dir()
        with precision.policy_scope(config.PRECISION):  # this model's layers only
            self.keras_model = self.build(mode, config)

    # === Graph ===

    def build(self, mode, config):
        """Build the Keras graph of `mode` (see module docstring)."""
        h, w = config.IMAGE_SHAPE[:2]
        if h % 64 or w % 64:
            raise ValueError(f"IMAGE_SHAPE {tuple(config.IMAGE_SHAPE[:2])} must be divisible by 64 "
                             "(P2..P6 halve the image six times)")
        channels = int(config.IMAGE_CHANNEL_COUNT)
        input_image = keras.Input(shape=(None, None, channels), name="input_image")
        input_image_meta = keras.Input(shape=(config.IMAGE_META_SIZE,), name="input_image_meta")

        _, C2, C3, C4, C5 = resnet_graph(input_image, config.BACKBONE, stage5=True,
                                         train_bn=config.TRAIN_BN, norm=config.BACKBONE_NORM,
                                         groups=config.BACKBONE_NORM_GROUPS)
        P2, P3, P4, P5, P6 = fpn_graph(C2, C3, C4, C5, config.TOP_DOWN_PYRAMID_SIZE)
        mrcnn_feature_maps = [P2, P3, P4, P5]
        rpn_class_logits, rpn_class, rpn_bbox = self._rpn(config, [P2, P3, P4, P5, P6])
        meta = keras.layers.Lambda(box_ops.parse_image_meta, name="parse_image_meta",
                                  dtype=precision.FLOAT32)(input_image_meta)

        if mode == "training":
            return self._build_training(config, input_image, input_image_meta, meta,
                                        mrcnn_feature_maps, rpn_class_logits, rpn_class, rpn_bbox)
        return self._build_inference(config, input_image, input_image_meta,
                                     mrcnn_feature_maps, rpn_class_logits, rpn_class, rpn_bbox)

    def _rpn(self, config, rpn_feature_maps):
        """The shared RPN over every pyramid level, concatenated over levels."""
        rpn = build_rpn_model(config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS),
                              config.TOP_DOWN_PYRAMID_SIZE, config.RPN_CONV_CHANNELS)
        per_level = [rpn(p) for p in rpn_feature_maps]
        names = ["rpn_class_logits", "rpn_class", "rpn_bbox"]
        return [keras.layers.Concatenate(axis=1, name=name, dtype=precision.FLOAT32)(
                    [level[i] for level in per_level])
                for i, name in enumerate(names)]

    def _heads(self, config, rois, input_image_meta, feature_maps):
        """ROI Align + box/class head on `rois` [B, N, 4] normalized."""
        pooled = PyramidROIAlign((config.POOL_SIZE, config.POOL_SIZE), aligned=config.ROI_ALIGN_ALIGNED,
                                 name="roi_align_classifier")([rois, input_image_meta] + feature_maps)
        class_logits, class_probs, bbox = classifier_head(
            pooled, config.NUM_CLASSES, train_bn=config.TRAIN_BN,
            fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE)
        return class_logits, class_probs, bbox

    def _mask(self, config, rois, input_image_meta, feature_maps):
        """ROI Align + mask head on `rois` [B, N, 4] normalized."""
        pooled = PyramidROIAlign((config.MASK_POOL_SIZE, config.MASK_POOL_SIZE),
                                 aligned=config.ROI_ALIGN_ALIGNED, name="roi_align_mask")([rois, input_image_meta] + feature_maps)
        return mask_head(pooled, config.NUM_CLASSES, train_bn=config.TRAIN_BN)

    def _build_training(self, config, input_image, input_image_meta, meta, feature_maps,
                        rpn_class_logits, rpn_class, rpn_bbox):
        mask_shape = (tuple(config.MINI_MASK_SHAPE) if config.USE_MINI_MASK
                      else tuple(int(d) for d in config.IMAGE_SHAPE[:2]))
        inputs = {
            "input_image": input_image,
            "input_image_meta": input_image_meta,
            "input_rpn_match": keras.Input(shape=(None, 1), dtype="int32", name="input_rpn_match"),
            "input_rpn_bbox": keras.Input(shape=(None, 4), name="input_rpn_bbox"),
            "input_gt_class_ids": keras.Input(shape=(None,), dtype="int32", name="input_gt_class_ids"),
            "input_gt_boxes": keras.Input(shape=(None, 4), name="input_gt_boxes"),
            "input_gt_masks": keras.Input(shape=mask_shape + (None,), dtype="bool",
                                          name="input_gt_masks"),
        }
        gt_boxes = NormalizeBoxes(name="normalize_gt_boxes")(inputs["input_gt_boxes"], input_image)
        anchors = BatchConstant(self.get_anchors(config.IMAGE_SHAPE), name="anchors")(input_image)
        rpn_rois = ProposalLayer(config.POST_NMS_ROIS_TRAINING, config.RPN_NMS_THRESHOLD,
                                 config.PRE_NMS_LIMIT, config.RPN_BBOX_STD_DEV,
                                 name="ROI")([rpn_class, rpn_bbox, anchors])
        rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(
            config.TRAIN_ROIS_PER_IMAGE, config.ROI_POSITIVE_RATIO, config.MASK_SHAPE,
            config.USE_MINI_MASK, config.BBOX_STD_DEV, name="proposal_targets",
        )([rpn_rois, inputs["input_gt_class_ids"], gt_boxes, inputs["input_gt_masks"]])
        class_logits, class_probs, bbox = self._heads(config, rois, input_image_meta, feature_maps)
        mask_rois, mask_class_ids, target_mask = PositiveRows(name="mask_rows")(
            [target_class_ids, rois, target_mask])
        mrcnn_mask = self._mask(config, mask_rois, input_image_meta, feature_maps)
        outputs = {
            "rpn_class_logits": rpn_class_logits, "rpn_class": rpn_class, "rpn_bbox": rpn_bbox,
            "rpn_rois": rpn_rois, "rois": rois,
            "target_class_ids": target_class_ids, "target_bbox": target_bbox,
            "mask_class_ids": mask_class_ids,
            "target_mask": target_mask, "active_class_ids": meta["active_class_ids"],
            "mrcnn_class_logits": class_logits, "mrcnn_class": class_probs,
            "mrcnn_bbox": bbox, "mrcnn_mask": mrcnn_mask,
        }
        return TrainingGraph(inputs=inputs, outputs=outputs, name="mask_rcnn",
                             loss_weights=config.LOSS_WEIGHTS, weight_decay=config.WEIGHT_DECAY)

    def _build_inference(self, config, input_image, input_image_meta, feature_maps,
                         rpn_class_logits, rpn_class, rpn_bbox):
        input_anchors = keras.Input(shape=(None, 4), name="input_anchors")
        rpn_rois = ProposalLayer(config.POST_NMS_ROIS_INFERENCE, config.RPN_NMS_THRESHOLD,
                                 config.PRE_NMS_LIMIT, config.RPN_BBOX_STD_DEV,
                                 name="ROI")([rpn_class, rpn_bbox, input_anchors])
        _, class_probs, bbox = self._heads(config, rpn_rois, input_image_meta, feature_maps)
        detections = DetectionLayer(config.DETECTION_MAX_INSTANCES, config.DETECTION_MIN_CONFIDENCE,
                                    config.DETECTION_NMS_THRESHOLD, config.BBOX_STD_DEV,
                                    name="mrcnn_detection")([rpn_rois, class_probs, bbox,
                                                             input_image_meta])
        detection_boxes = keras.layers.Lambda(lambda d: d[..., :4], name="detection_boxes",
                                              dtype=precision.FLOAT32)(detections)
        mrcnn_mask = self._mask(config, detection_boxes, input_image_meta, feature_maps)
        outputs = [detections, class_probs, bbox, mrcnn_mask, rpn_rois, rpn_class, rpn_bbox]
        return keras.Model([input_image, input_image_meta, input_anchors], outputs, name="mask_rcnn")

    # === Anchors and input molding ===

    def get_anchors(self, image_shape):
        """Normalized pyramid anchors [A, 4] for a molded image shape (cached).

        The pixel anchors of the last call stay in `self.anchors`, as in Matterport.
        """
        key = tuple(int(d) for d in image_shape[:2])
        if key not in self._anchor_cache:
            config = self.config
            feature_shapes = anchor_utils.compute_backbone_shapes(key, config.BACKBONE_STRIDES)
            pixel = anchor_utils.generate_pyramid_anchors(
                config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, feature_shapes,
                config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)
            self._anchor_cache[key] = (pixel, box_utils.norm_boxes(pixel, key).astype("float32"))
        self.anchors = self._anchor_cache[key][0]
        return self._anchor_cache[key][1]

    def mold_inputs(self, images):
        """Resize, mean-subtract and describe images for the network.

        Returns molded_images [N, H, W, C] float32 (a list of [H, W, C] arrays
        when "pad64"/"none" mode gives the images different shapes), image_metas
        [N, META] and windows [N, (y1, x1, y2, x2)]: the image area inside the padding.
        """
        config = self.config
        molded, metas, windows = [], [], []
        for image in images:
            resized, window, scale, _, _ = image_utils.resize_image(
                image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
                max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
            molded.append(image_utils.mold_image(resized, config.MEAN_PIXEL))
            metas.append(image_utils.compose_image_meta(
                0, image.shape, resized.shape, window, scale, np.zeros(config.NUM_CLASSES, np.int32)))
            windows.append(window)
        metas = np.stack(metas).astype("float32")
        windows = np.stack(windows)
        if len({m.shape for m in molded}) > 1:
            return [m.astype("float32") for m in molded], metas, windows
        return np.stack(molded).astype("float32"), metas, windows

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape, window):
        """One image's network output -> boxes, class ids, scores and masks in
        original-image pixels (Matterport's contract).

        detections: [N, (y1, x1, y2, x2, class_id, score)] normalized, zero-padded.
        mrcnn_mask: [N, h, w, num_classes] mask probabilities.
        Returns boxes [n, (y1, x1, y2, x2)] int32, class_ids [n] int32, scores [n]
        float32, masks [H, W, n] bool.
        """
        zero_ix = np.where(detections[:, 4] == 0)[0]
        n = zero_ix[0] if zero_ix.shape[0] > 0 else detections.shape[0]
        boxes = detections[:n, :4]
        class_ids = detections[:n, 4].astype(np.int32)
        scores = detections[:n, 5].astype(np.float32)
        masks = mrcnn_mask[np.arange(n), :, :, class_ids]

        # Normalized image-space boxes -> normalized window-space -> original pixels.
        window = box_utils.norm_boxes(np.asarray(window)[None], image_shape[:2])[0]
        wy1, wx1, wy2, wx2 = window
        shift = np.array([wy1, wx1, wy1, wx1])
        scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
        boxes = np.divide(boxes - shift, scale)
        boxes = box_utils.denorm_boxes(boxes, original_image_shape[:2])

        keep = np.where((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0)[0]
        boxes, class_ids, scores, masks = boxes[keep], class_ids[keep], scores[keep], masks[keep]

        full_masks = [mask_utils.unmold_mask(masks[i], boxes[i], original_image_shape)
                      for i in range(boxes.shape[0])]
        full_masks = (np.stack(full_masks, axis=-1) if full_masks
                      else np.zeros(tuple(original_image_shape[:2]) + (0,), dtype=bool))
        return boxes.astype(np.int32), class_ids, scores, full_masks

    # === Inference ===

    def _check_mode(self, mode, what):
        if self.mode != mode:
            raise RuntimeError(f"{what} needs a model built in {mode!r} mode, this one is {self.mode!r}")

    def detect(self, images, verbose=0):
        """Detect instances in a list of RGB images of any sizes and any count.

        Returns one dict per image: rois [N, (y1, x1, y2, x2)] in original pixels,
        class_ids [N], scores [N], masks [H, W, N] bool at the original size.
        """
        self._check_mode("inference", "detect()")
        images = [image_utils.to_rgb(np.asarray(image), f"detect() image {i}")
                  for i, image in enumerate(images)]
        if verbose:
            print(f"Processing {len(images)} images")
        molded, metas, windows = self.mold_inputs(images)
        raw = self._run_inference(molded, metas)
        results = []
        for image, molded_image, window, (detections, mrcnn_mask) in zip(images, molded, windows, raw):
            rois, class_ids, scores, masks = self.unmold_detections(
                detections, mrcnn_mask, image.shape, molded_image.shape, window)
            results.append({"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks})
        return results

    def detect_molded(self, molded_images, image_metas, verbose=0):
        """Detect on images already molded by `mold_inputs` (Matterport's API).

        Results are in molded-image pixels: rois, class_ids, scores and masks
        [H, W, N] of the molded image.
        """
        self._check_mode("inference", "detect_molded()")
        if verbose:
            print(f"Processing {len(molded_images)} images")
        results = []
        for image, (detections, mrcnn_mask) in zip(molded_images,
                                                   self._run_inference(molded_images, image_metas)):
            full_window = (0, 0) + tuple(image.shape[:2])
            rois, class_ids, scores, masks = self.unmold_detections(
                detections, mrcnn_mask, image.shape, image.shape, full_window)
            results.append({"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks})
        return results

    def _run_inference(self, molded_images, image_metas):
        """Raw (detections, mrcnn_mask) per image, in input order.

        Images are grouped by molded shape ("pad64"/"none" modes give several) and
        run in batches of config.BATCH_SIZE; a short last batch is padded with
        copies so the compiled predict function is reused rather than retraced.
        """
        batch = self.config.BATCH_SIZE
        by_shape = {}
        for index, image in enumerate(molded_images):
            by_shape.setdefault(tuple(image.shape), []).append(index)
        out = [None] * len(molded_images)
        for indices in by_shape.values():
            for start in range(0, len(indices), batch):
                chunk_ids = indices[start:start + batch]
                padded_ids = chunk_ids + [chunk_ids[-1]] * (batch - len(chunk_ids))
                chunk = np.stack([molded_images[i] for i in padded_ids])
                metas = np.stack([image_metas[i] for i in padded_ids])
                anchors = self.get_anchors(chunk.shape[1:3])
                anchors = np.ascontiguousarray(np.broadcast_to(anchors[None], (batch,) + anchors.shape))
                detections, _, _, mrcnn_mask, _, _, _ = self.keras_model.predict_on_batch(
                    [chunk, metas, anchors])
                for k, index in enumerate(chunk_ids):
                    out[index] = (np.asarray(detections[k]), np.asarray(mrcnn_mask[k]))
        return out

    # === Training ===

    def set_log_dir(self, model_path=None):
        """Choose the run folder and starting epoch.

        A checkpoint path of ours (…/<name>YYYYmmddTHHMM/mask_rcnn_<name>_NNNN.h5)
        resumes: the same folder, starting after epoch NNNN. Anything else
        starts a new run at epoch 0.
        """
        parsed = training.parse_checkpoint_path(model_path) if model_path else None
        if parsed:
            self.log_dir, self.epoch = parsed
        else:
            self.epoch = 0
            self.log_dir = training.new_log_dir(self.model_dir, self.config.NAME)
        # Matterport's attribute: the checkpoint pattern of this run.
        self.checkpoint_path = os.path.join(self.log_dir, f"mask_rcnn_{self.config.NAME.lower()}_*epoch*.h5")

    def find_last(self):
        """Path of the newest checkpoint of this config's NAME under model_dir."""
        return training.find_last(self.model_dir, self.config.NAME)

    def set_trainable(self, layer_regex, verbose=1):
        return training.set_trainable(self.keras_model, layer_regex, verbose=verbose)

    def compile(self, learning_rate, momentum):
        # Keras 2's clipnorm (Matterport's) scaled all gradients by their joint
        # norm; in Keras 3 that is global_clipnorm (clipnorm clips each tensor).
        optimizer = training.SGDWithL2(l2=self.config.WEIGHT_DECAY, learning_rate=learning_rate,
                                       momentum=momentum,
                                       global_clipnorm=self.config.GRADIENT_CLIP_NORM)
        self.keras_model.compile(optimizer=optimizer)

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
              augmentation=None, custom_callbacks=None, no_augmentation_sources=None,
              workers=None, verbose=1):
        """Train until `epochs` epochs are done in total (Matterport semantics:
        a second call, or a run resumed from a checkpoint, continues the count).

        layers: "heads", "3+", "4+", "5+", "all" or a regex of layer names.
        augmentation: an albumentations transform applied to image and masks.
        """
        self._check_mode("training", "train()")
        from mrcnn.data import DataGenerator  # data imports albumentations; keep import light

        config = self.config
        regex = training.layer_regex(layers)
        if self.epoch >= epochs:
            log.info("Already trained %d epochs (asked for %d in total); nothing to do.", self.epoch, epochs)
            return None
        workers = workers if workers is not None else max(1, min(4, (os.cpu_count() or 1)))
        loader = dict(workers=workers, use_multiprocessing=False, max_queue_size=max(2, 2 * workers))
        train_gen = DataGenerator(train_dataset, config, shuffle=True, augmentation=augmentation,
                                  no_augmentation_sources=no_augmentation_sources,
                                  steps=config.STEPS_PER_EPOCH, **loader)
        val_gen = (DataGenerator(val_dataset, config, shuffle=True, steps=config.VALIDATION_STEPS,
                                 **loader)
                   if val_dataset is not None and config.VALIDATION_STEPS else None)

        os.makedirs(self.log_dir, exist_ok=True)
        log.info("Starting at epoch %d, LR=%s; checkpoints in %s", self.epoch, learning_rate, self.log_dir)
        trainable = self.set_trainable(regex, verbose=0)
        if not trainable:
            raise ValueError(f"layers={layers!r} matches no weighted layer")
        self.compile(learning_rate, config.LEARNING_MOMENTUM)
        history = self.keras_model.fit(
            train_gen,
            initial_epoch=self.epoch,
            epochs=epochs,
            steps_per_epoch=config.STEPS_PER_EPOCH,
            validation_data=val_gen,
            validation_steps=config.VALIDATION_STEPS if val_gen is not None else None,
            callbacks=training.training_callbacks(self.log_dir, config.NAME, self.keras_model,
                                                  custom_callbacks),
            verbose=verbose,
        )
        self.epoch = max(self.epoch, epochs)
        return history

    # === Weights ===

    def load_weights(self, filepath, by_name=True, exclude=None):
        """Load Keras-2 HDF5 weights (Matterport's files or our checkpoints).

        by_name defaults to True (Matterport: False): Keras 3 orders the weighted
        layers of the training and inference graphs differently, so pairing layers
        by position only works between graphs of the same mode. by_name=False keeps
        Keras 2's positional pairing for files saved from the same graph.

        exclude: layer names to leave untouched (implies by_name). Loading one
        of our checkpoints also resumes its run folder and epoch count.
        """
        if exclude:
            by_name = True
        report = weights_io.load_weights(self.keras_model, filepath, by_name=by_name, exclude=exclude)
        self.set_log_dir(filepath)
        return report

    def load_named_weights(self, weights, verbose=1):
        """Resolve a `--weights` value and load it; returns the file used.

        weights: "imagenet" (the backbone's ImageNet file; for ResNet-101, Keras'
        ResNet-101 file mapped onto our names, so the whole backbone starts
        pretrained), "coco" (Matterport's mask_rcnn_coco.h5; its class-specific
        layers are skipped unless NUM_CLASSES == 81), "last" (newest checkpoint of
        this config under model_dir), "none" (keep the random initialisation) or a
        path. Offline, a missing download raises `weights.WeightsNotAvailable`
        naming the URL, the file and the folder to put it in.
        """
        if weights == "none":
            return None
        exclude = None
        if weights == "imagenet":
            path = weights_io.get_imagenet_weights(self.config.BACKBONE)
        elif weights == "coco":
            path = weights_io.get_coco_weights()
            if self.config.NUM_CLASSES != 81:
                exclude = list(weights_io.COCO_CLASS_SPECIFIC_LAYERS)
        elif weights == "last":
            path = self.find_last()
        else:
            path = weights
            if not os.path.isfile(path):
                raise FileNotFoundError(f"weights file not found: {os.path.abspath(path)}")
        report = self.load_weights(path, by_name=True, exclude=exclude)
        if verbose:
            print(report.summary())
        return path

    def save_weights(self, filepath):
        weights_io.save_weights(self.keras_model, filepath)

    def get_imagenet_weights(self):
        return weights_io.get_imagenet_weights(self.config.BACKBONE)
