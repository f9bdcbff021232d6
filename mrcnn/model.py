"""`MaskRCNN`: Matterport's user-facing wrapper, on Keras 3: build (`mrcnn.graph`),
train (`mrcnn.training`), detect (`mrcnn.inference_io` molds inputs and unmolds
detections) and weights (`mrcnn.weights`).
"""

import logging
import os

import numpy as np

from mrcnn import boxes as box_utils
from mrcnn import distribute
from mrcnn import graph
from mrcnn import images as image_utils
from mrcnn import network_io
from mrcnn import schedules, training
from mrcnn import precision, pretrained
from mrcnn import weights as weights_io

# Matterport's model.py defined these; keep `from mrcnn.model import X` working.
from mrcnn.config import LOSS_NAMES  # noqa: F401
from mrcnn.layers.backbone import fpn_graph, resnet_graph  # noqa: F401
from mrcnn.layers.detection import DetectionLayer  # noqa: F401
from mrcnn.layers.detection_targets import DetectionTargetLayer, PositiveRows  # noqa: F401
from mrcnn.layers.proposal import ProposalLayer  # noqa: F401
from mrcnn.layers.roi_align import PyramidROIAlign  # noqa: F401
from mrcnn.layers.wiring import BatchConstant, NormalizeBoxes  # noqa: F401
from mrcnn.training import TrainingGraph  # noqa: F401
# Matterport's module-level names (modellib.log, load_image_gt, mold_image, ...).
from mrcnn.model_compat import (DataGenerator, MatterportCompat, data_generator,  # noqa: F401
                                load_image_gt, log, mold_image)

__all__ = ["MaskRCNN", "LOSS_NAMES", "fpn_graph", "resnet_graph", "DetectionLayer",
           "DetectionTargetLayer", "PositiveRows", "ProposalLayer", "PyramidROIAlign",
           "BatchConstant", "NormalizeBoxes", "TrainingGraph", "MatterportCompat",
           "data_generator", "DataGenerator", "load_image_gt", "log", "mold_image"]

logger = logging.getLogger("mrcnn")


class MaskRCNN(MatterportCompat):
    """Mask R-CNN with Matterport's API.

    Args:
        mode: "training" or "inference".
        config: a `mrcnn.config.Config` subclass instance.
        model_dir: folder for training logs and checkpoints.
        strategy: training only, any ``tf.distribute.Strategy``; None chooses one
            from TF_CONFIG and GPU_COUNT (``mrcnn.distribute.choose_strategy``).
            ``self.config`` then has BATCH_SIZE = IMAGES_PER_GPU x replicas in sync.
            Inference models are built outside any strategy, on one device.
    """

    def __init__(self, mode, config, model_dir, strategy=None):
        if mode not in ("training", "inference"):
            raise ValueError(f'mode must be "training" or "inference", not {mode!r}')
        self.mode = mode
        self.strategy = (distribute.choose_strategy(config, strategy) if mode == "training"
                         else distribute.default_strategy())
        config = distribute.config_for_strategy(config, self.strategy)
        self.config = config
        self.model_dir = model_dir
        self._anchor_cache = {}
        self.set_log_dir()
        with self.strategy.scope(), precision.policy_scope(config.PRECISION):  # this model's layers only
            self.keras_model = self.build(mode, config)

    # === Graph ===

    def build(self, mode, config):
        """Build the Keras graph of `mode` (see `mrcnn.graph`)."""
        if mode == "training":
            self.get_anchors(config.IMAGE_SHAPE)  # sets Matterport's `self.anchors`
        return graph.build(mode, config)

    # === Anchors and input molding ===

    def get_anchors(self, image_shape):
        """Normalized pyramid anchors [A, 4] for a molded image shape (cached).

        The pixel anchors of the last call stay in `self.anchors`, as in Matterport.
        """
        key = tuple(int(d) for d in image_shape[:2])
        if key not in self._anchor_cache:
            pixel = network_io.anchors_for_shape(self.config, key)
            self._anchor_cache[key] = (pixel, box_utils.norm_boxes(pixel, key).astype("float32"))
        self.anchors = self._anchor_cache[key][0]
        return self._anchor_cache[key][1]

    def mold_inputs(self, images):
        """Matterport's method; see `network_io.mold_inputs`."""
        return network_io.mold_inputs(images, self.config)

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape, window):
        """Matterport's method; see `network_io.unmold_detections`."""
        return network_io.unmold_detections(detections, mrcnn_mask, original_image_shape,
                                            image_shape, window)

    # === Inference ===

    def _check_mode(self, mode, what):
        if self.mode != mode:
            raise RuntimeError(f"{what} needs a model built in {mode!r} mode, this one is {self.mode!r}")

    def detect(self, images, verbose=0):
        """Detect instances in a list of images of any sizes and any count, each with
        IMAGE_CHANNEL_COUNT channels (gray, RGB and RGBA convert as `images.to_channels`).

        Returns one dict per image: rois [N, (y1, x1, y2, x2)] in original pixels,
        class_ids [N], scores [N], masks [H, W, N] bool at the original size.
        """
        self._check_mode("inference", "detect()")
        images = [image_utils.to_channels(image, self.config.IMAGE_CHANNEL_COUNT, f"detect() image {i}")
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
                padded_ids = network_io.pad_to_batch(chunk_ids, batch)
                chunk = np.stack([molded_images[i] for i in padded_ids])
                metas = np.stack([image_metas[i] for i in padded_ids])
                anchors = self.get_anchors(chunk.shape[1:3])
                anchors = np.ascontiguousarray(np.broadcast_to(anchors[None], (batch,) + anchors.shape))
                detections, _, _, mrcnn_mask, _, _, _ = self.keras_model.predict_on_batch(
                    [chunk, metas, anchors])
                for k, index in enumerate(chunk_ids):
                    out[index] = (np.asarray(detections[k]), np.asarray(mrcnn_mask[k]))
        return out

    def export(self, path, format="saved_model", class_names=None):
        """Write this inference model for serving: a TF SavedModel folder whose
        `serving_default` maps one uint8 image [H, W, C] (C in 1-4) to detect()'s dict, or a
        TFLite file (format="tflite"). See `mrcnn.export`."""
        self._check_mode("inference", "export()")
        from mrcnn import export as exporter  # TensorFlow-only; keep the import lazy

        return exporter.export_model(self, path, format=format, class_names=class_names)

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
        with self.strategy.scope():
            optimizer = training.SGDWithL2(l2=self.config.WEIGHT_DECAY, learning_rate=learning_rate,
                                           momentum=momentum,
                                           global_clipnorm=self.config.GRADIENT_CLIP_NORM)
            self.keras_model.compile(optimizer=optimizer)
            # Its slot variables now, not in the first step's trace: TensorFlow traces a
            # function that creates variables a second time (the first step of a small
            # 128-px model took 12.8 s instead of 7.3). Keras builds the optimizer early
            # only under a non-default strategy. After compile, which may wrap it in a
            # LossScaleOptimizer.
            self.keras_model.optimizer.build(self.keras_model.trainable_variables)

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
              augmentation=None, custom_callbacks=None, no_augmentation_sources=None,
              workers=None, verbose=1, seed=None):
        """Train until `epochs` epochs are done in total (Matterport semantics:
        a second call, or a run resumed from a checkpoint, continues the count).

        layers: "heads", "3+", "4+", "5+", "all" or a regex of layer names.
        augmentation: an albumentations transform applied to image and masks.
        learning_rate: the base rate; config.LR_SCHEDULE and LEARNING_RATE_WARMUP_STEPS
            shape it (``mrcnn.schedules``).
        seed: an int makes data order, augmentation, ROI sampling and the TensorFlow
            kernels reproducible (``training.seed_run``); None: random. The initial
            weights are drawn when the model is built: for a run that repeats from its
            start, call ``keras.utils.set_random_seed`` before ``MaskRCNN(...)`` too.
        """
        self._check_mode("training", "train()")
        # Not modellib.DataGenerator (the TF2 ports' list batches). mrcnn.data imports
        # albumentations: imported here, to keep `import mrcnn.model` light.
        from mrcnn.data import DataGenerator as TrainingBatches

        config = self.config
        regex = training.layer_regex(layers, config.BACKBONE)
        if self.epoch >= epochs:
            logger.info("Already trained %d epochs (asked for %d in total); nothing to do.", self.epoch, epochs)
            return None
        workers = workers if workers is not None else max(1, min(4, (os.cpu_count() or 1)))
        # On TensorFlow fit reads `distribute.batches_for_fit`'s tf.data pipeline, which
        # loads `workers` parts at a time; the PyDataset queue settings below apply
        # where fit reads the generator itself (other backends).
        loader = dict(workers=workers, use_multiprocessing=False, max_queue_size=max(2, 2 * workers),
                      seed=None if seed is None else training.seed_run(self.keras_model, seed, self.epoch))
        if seed is None:  # several workers must still shuffle alike
            loader["seed"] = distribute.shared_seed(self.strategy)
        skip_empty = not config.TRAIN_IMAGES_WITHOUT_INSTANCES
        train_gen = TrainingBatches(train_dataset, config, shuffle=True, augmentation=augmentation,
                                    no_augmentation_sources=no_augmentation_sources,
                                    skip_empty=skip_empty, steps=config.STEPS_PER_EPOCH, **loader)
        val_gen = (TrainingBatches(val_dataset, config, shuffle=True, steps=config.VALIDATION_STEPS,
                                   skip_empty=skip_empty, **loader)
                   if val_dataset is not None and config.VALIDATION_STEPS else None)

        # Under MultiWorkerMirroredStrategy only the chief writes into the run folder.
        chief = distribute.is_chief(self.strategy)
        if chief:
            os.makedirs(self.log_dir, exist_ok=True)
        logger.info("Starting at epoch %d, LR=%s; checkpoints in %s", self.epoch, learning_rate, self.log_dir)
        trainable = self.set_trainable(regex, verbose=0)
        if not trainable:
            raise ValueError(f"layers={layers!r} matches no weighted layer")
        self.compile(schedules.schedule_from_config(config, learning_rate, self.epoch, epochs),
                     config.LEARNING_MOMENTUM)
        with distribute.stop_on_lost_worker(self.strategy, self.log_dir), \
                distribute.original_loading_errors(train_gen, val_gen):
            history = self.keras_model.fit(
                distribute.batches_for_fit(self.strategy, train_gen, workers),
                shuffle=False,  # the generator shuffles; the workers must agree on the order
                initial_epoch=self.epoch,
                epochs=epochs,
                steps_per_epoch=len(train_gen),
                validation_data=(distribute.batches_for_fit(self.strategy, val_gen, workers)
                                 if val_gen is not None else None),
                validation_steps=len(val_gen) if val_gen is not None else None,
                callbacks=(training.training_callbacks(self.log_dir, config.NAME, self.keras_model,
                                                       custom_callbacks) if chief
                           else training.worker_callbacks(custom_callbacks)),
                verbose=verbose,
            )
        self.epoch = max(self.epoch, epochs)
        return history

    # === Weights ===

    def load_weights(self, filepath, by_name=True, exclude=None, allow_partial=False):
        """Load Keras-2 HDF5 weights (Matterport's files or our checkpoints).

        by_name defaults to True (Matterport: False): Keras 3 orders the weighted
        layers of the training and inference graphs differently, so pairing layers
        by position only works between graphs of the same mode. by_name=False keeps
        Keras 2's positional pairing for files saved from the same graph.

        exclude: layer names to leave untouched (implies by_name). Loading one
        of our checkpoints also resumes its run folder and epoch count. A file
        whose conv1 has another input channel count than IMAGE_CHANNEL_COUNT
        (3-channel ImageNet/COCO weights) loads without conv1, with a warning.
        allow_partial: accept a file that matches only part of the model (e.g. a
        backbone); otherwise matching under half of it raises `WeightsError`.
        Keras-applications ResNet layer names are mapped onto Matterport's.
        """
        exclude = self.exclude_mismatched_conv1(filepath, exclude)
        if exclude:
            by_name = True
        report = weights_io.load_weights(
            self.keras_model, filepath, by_name=by_name, exclude=exclude,
            name_map=pretrained.keras_resnet_layer_name if by_name else None,
            allow_partial=allow_partial)
        self.set_log_dir(filepath)
        return report

    def load_named_weights(self, weights, verbose=1):
        """Resolve a `--weights` value and load it; returns the file used.

        weights: "imagenet" (the backbone's ImageNet file; for ResNet-101, Keras'
        ResNet-101 file mapped onto our names, so the whole backbone starts
        pretrained), "coco" (Matterport's mask_rcnn_coco.h5; its class-specific
        layers are skipped unless NUM_CLASSES == 81), "last" (newest checkpoint of
        this config under model_dir), "none" (keep the random initialisation) or a
        path. Offline, a missing download raises `pretrained.WeightsNotAvailable`
        naming the URL, the file and the folder to put it in; a damaged cached
        copy raises `WeightsError` saying which file to delete.
        """
        if weights == "none":
            return None
        exclude, source = None, None
        if weights == "imagenet":
            source = pretrained.imagenet_source(self.config.BACKBONE)
        elif weights == "coco":
            source = pretrained.COCO_WEIGHTS
            if self.config.NUM_CLASSES != 81:
                exclude = list(pretrained.COCO_CLASS_SPECIFIC_LAYERS)
        if source is not None:
            path = source.fetch()
        elif weights == "last":
            path = self.find_last()
        else:
            path = weights
            if not os.path.isfile(path):
                raise FileNotFoundError(f"weights file not found: {os.path.abspath(path)}")
        try:
            # The ImageNet files hold only the backbone.
            report = self.load_weights(path, by_name=True, exclude=exclude,
                                       allow_partial=weights == "imagenet")
        except weights_io.UnreadableWeightsFile as err:
            if source is None:
                raise
            raise source.damaged_cache_error(path, err) from None
        if verbose:
            print(report.summary())
        return path

    def save_weights(self, filepath):
        weights_io.save_weights(self.keras_model, filepath)

    def get_imagenet_weights(self):
        return pretrained.get_imagenet_weights(self.config.BACKBONE)
