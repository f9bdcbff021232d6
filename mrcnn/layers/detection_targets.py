"""DetectionTargetLayer: sample training ROIs and build their class/box/mask targets."""
import keras
from keras import ops

from mrcnn import graph_ops
from mrcnn.layers import box_ops

__all__ = ["DetectionTargetLayer", "PositiveRows", "max_positive_rois"]

# Matterport's threshold (not a Config attribute there either).
POSITIVE_IOU = 0.5


def max_positive_rois(train_rois_per_image, roi_positive_ratio):
    """Most positive ROIs an image contributes (Matterport's ``int(T * ratio)``)."""
    return int(train_rois_per_image * roi_positive_ratio)


def _nonzero_rows(boxes):
    """Matterport's ``trim_zeros_graph`` as a mask: rows that are not all zero."""
    return ops.sum(ops.abs(boxes), axis=-1) > 0


def _first_k_order(candidates, keys):
    """Indices ``[B, N]`` listing the ``candidates`` in random order first.

    Sorting i.i.d. uniform keys is a uniform random permutation, the same
    distribution as Matterport's ``tf.random_shuffle`` of the candidate list.
    """
    keys = ops.where(candidates, keys, -1.0)
    return ops.top_k(keys, ops.shape(keys)[1] if keys.shape[1] is None else keys.shape[1],
                     sorted=True)[1]


def _split_invariant_uniform(shape, seed_generator):
    """Uniform keys ``[B, N]`` for this replica's images.

    Under ``tf.distribute`` every replica draws the keys of the whole global
    batch (the seed state is mirrored) and keeps its own rows, so an image samples
    the same ROIs however the global batch is split over replicas.
    """
    replicas = graph_ops.replicas_in_sync()
    if replicas == 1:
        return keras.random.uniform(shape, seed=seed_generator)
    batch, width = shape[0], shape[1]
    keys = keras.random.uniform((batch * replicas, width), seed=seed_generator)
    return ops.slice(keys, (graph_ops.replica_id() * batch, 0), (batch, width))


def _gather_rows(x, index):
    """``x [B, N, ...]``, ``index int [B, T]`` -> ``[B, T, ...]``."""
    extra = len(x.shape) - 2
    index = ops.reshape(index, (*ops.shape(index), *([1] * extra)))
    return ops.take_along_axis(x, index, axis=1)


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionTargetLayer(keras.layers.Layer):
    """Subsample proposals into positive/negative training ROIs with targets.

    Per image, as Matterport's ``detection_targets_graph``:

    * zero rows of ``proposals`` and ``gt_boxes`` are padding; ground truth with a
      negative class id is a crowd, with class id 0 it is ignored;
    * a proposal is positive when its best IoU with a non-crowd box is >= 0.5,
      negative when that IoU is < 0.5 and its IoU with every crowd box is
      < ``crowd_iou`` (``Config.CROWD_IOU``);
    * at most ``int(train_rois_per_image * roi_positive_ratio)`` positives are
      drawn at random, then ``int(P / roi_positive_ratio) - P`` negatives (fewer
      if there are not enough);
    * an image without (non-crowd) ground truth gets the negatives an image
      with the full positive share would get (P = the positive cap above), so
      images without objects teach the heads background. Matterport drew none
      for them (0 positives -> 0 negatives), which made such images useless;
    * each positive gets the class, the box deltas ``box_refinement(roi, gt) /
      bbox_std_dev`` and the rounded ``crop_and_resize`` of the mask of the
      ground-truth box it overlaps most (ties: the first one). With
      ``use_mini_mask`` the masks are the ground-truth boxes' mini masks, so the
      ROI is first expressed in its ground-truth box's frame;
    * output rows are positives, then negatives, then zero padding up to
      ``T = train_rois_per_image``; negatives and padding have class 0, zero
      deltas and zero masks.

    Call: ``[proposals [B, N, 4], gt_class_ids int [B, G], gt_boxes [B, G, 4],
    gt_masks [B, h, w, G] (bool or float)]``, boxes normalized ->
    ``[rois [B, T, 4], target_class_ids int32 [B, T], target_deltas [B, T, 4],
    target_masks [B, T, mask_h, mask_w]]``. Outputs carry no gradient.
    """

    def __init__(self, train_rois_per_image, roi_positive_ratio, mask_shape,
                 use_mini_mask, bbox_std_dev, crowd_iou, seed=None, **kwargs):
        # IoU, delta targets and mask crops need float32 under any mixed policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        # TensorFlow's NMS/crop kernels are not XLA-compilable; the portable ops are.
        self.supports_jit = not graph_ops.uses_tensorflow_kernels()
        if int(train_rois_per_image) < 1:
            raise ValueError(f"DetectionTargetLayer: train_rois_per_image must be >= 1, "
                             f"got {train_rois_per_image!r}")
        if not 0.0 < float(roi_positive_ratio) <= 1.0:
            raise ValueError(f"DetectionTargetLayer: roi_positive_ratio must be in (0, 1], "
                             f"got {roi_positive_ratio!r}")
        mask_shape = tuple(int(s) for s in mask_shape)
        if len(mask_shape) != 2 or min(mask_shape) < 1:
            raise ValueError(f"DetectionTargetLayer: mask_shape must be (height, width), "
                             f"got {mask_shape!r}")
        self.train_rois_per_image = int(train_rois_per_image)
        self.roi_positive_ratio = float(roi_positive_ratio)
        self.mask_shape = mask_shape
        self.use_mini_mask = bool(use_mini_mask)
        self.bbox_std_dev = box_ops.as_std_dev(bbox_std_dev, "DetectionTargetLayer.bbox_std_dev")
        if not 0.0 <= float(crowd_iou) <= 1.0:
            raise ValueError(f"DetectionTargetLayer: crowd_iou must be in [0, 1], got {crowd_iou!r}")
        self.crowd_iou = float(crowd_iou)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        proposals, gt_class_ids, gt_boxes, gt_masks = inputs
        proposals = ops.stop_gradient(ops.cast(proposals, "float32"))
        gt_boxes = ops.cast(gt_boxes, "float32")
        gt_class_ids = ops.cast(gt_class_ids, "int32")

        gt_valid = _nonzero_rows(gt_boxes)
        is_gt = gt_valid & (gt_class_ids > 0)
        is_crowd = gt_valid & (gt_class_ids < 0)
        iou = box_ops.overlaps(proposals, gt_boxes)
        # -1 marks "no such box"; max(initial=-1) also covers G == 0.
        gt_iou = ops.where(is_gt[:, None, :], iou, -1.0)
        crowd_iou = ops.where(is_crowd[:, None, :], iou, -1.0)
        roi_iou_max = ops.max(gt_iou, axis=-1, initial=-1.0)
        no_crowd = ops.max(crowd_iou, axis=-1, initial=-1.0) < self.crowd_iou

        proposal_valid = _nonzero_rows(proposals)
        positive = proposal_valid & (roi_iou_max >= POSITIVE_IOU)
        negative = proposal_valid & (roi_iou_max < POSITIVE_IOU) & no_crowd

        has_gt = ops.any(is_gt, axis=-1)
        slot_src, is_pos, is_neg = self._sample(positive, negative, has_gt)
        rois = _gather_rows(proposals, slot_src)
        rois = ops.where((is_pos | is_neg)[..., None], rois, 0.0)

        assignment = _gather_rows(ops.argmax(gt_iou, axis=-1), slot_src)
        roi_gt_boxes = _gather_rows(gt_boxes, assignment)
        class_ids = ops.where(is_pos, _gather_rows(gt_class_ids, assignment), 0)

        # Rows that are not positive get a unit box so no log(0) or 0/0 appears.
        unit = ops.convert_to_tensor([0.0, 0.0, 1.0, 1.0], "float32")
        safe_rois = ops.where(is_pos[..., None], rois, unit)
        safe_gt = ops.where(is_pos[..., None], roi_gt_boxes, unit)
        std = ops.convert_to_tensor(self.bbox_std_dev, "float32")
        deltas = ops.where(is_pos[..., None], box_ops.box_refinement(safe_rois, safe_gt) / std, 0.0)

        masks = self._mask_targets(gt_masks, assignment, safe_rois, safe_gt)
        masks = ops.where(is_pos[..., None, None], masks, 0.0)
        return [ops.stop_gradient(t) for t in (rois, class_ids, deltas, masks)]

    def _sample(self, positive, negative, has_gt):
        """Choose the rows: ``slot_src int [B, T]`` plus positive/negative slot masks.

        ``has_gt [B]``: the image has non-crowd ground truth; without any, its
        negative quota is that of an image with ``positive_cap`` positives.
        """
        T = self.train_rois_per_image
        keys = _split_invariant_uniform(ops.shape(positive), self.seed_generator)
        pos_order = _first_k_order(positive, keys)
        neg_order = _first_k_order(negative, keys)

        positive_cap = max_positive_rois(T, self.roi_positive_ratio)
        num_pos = ops.minimum(ops.sum(ops.cast(positive, "int32"), axis=1), positive_cap)
        # float32 like Matterport: int(r * P) - P with r = 1 / ratio.
        r = 1.0 / self.roi_positive_ratio
        quota_base = ops.where(has_gt, num_pos, positive_cap)
        neg_quota = ops.cast(r * ops.cast(quota_base, "float32"), "int32") - quota_base
        num_neg = ops.minimum(ops.sum(ops.cast(negative, "int32"), axis=1), neg_quota)
        num_neg = ops.minimum(num_neg, T - num_pos)

        slot = ops.arange(T, dtype="int32")[None, :]
        num_pos, num_neg = num_pos[:, None], num_neg[:, None]
        is_pos = slot < num_pos
        is_neg = (slot >= num_pos) & (slot < num_pos + num_neg)
        last = ops.shape(pos_order)[1] - 1
        pos_src = _gather_rows(pos_order, ops.minimum(slot, last) + ops.zeros_like(num_pos))
        neg_src = _gather_rows(neg_order, ops.clip(slot - num_pos, 0, last))
        slot_src = ops.where(is_pos, pos_src, ops.where(is_neg, neg_src, 0))
        return slot_src, is_pos, is_neg

    def _mask_targets(self, gt_masks, assignment, rois, roi_gt_boxes):
        """Crop each row's assigned gt mask to its ROI: float ``[B, T, mh, mw]`` of 0/1."""
        if self.use_mini_mask:
            # Mini masks cover their gt box, so express the ROI in that box's frame.
            gt_y1, gt_x1, gt_y2, gt_x2 = box_ops.coordinates(roi_gt_boxes)
            y1, x1, y2, x2 = box_ops.coordinates(rois)
            gt_h = gt_y2 - gt_y1
            gt_w = gt_x2 - gt_x1
            rois = ops.stack([(y1 - gt_y1) / gt_h, (x1 - gt_x1) / gt_w,
                              (y2 - gt_y1) / gt_h, (x2 - gt_x1) / gt_w], axis=-1)
        num_gt = ops.shape(gt_masks)[3]
        # [B, h, w, G] -> [B * G, h, w, 1]: one "image" per gt mask.
        mask_images = ops.reshape(ops.transpose(ops.cast(gt_masks, "float32"), (0, 3, 1, 2)),
                                  (-1, ops.shape(gt_masks)[1], ops.shape(gt_masks)[2], 1))
        batch_ix = ops.expand_dims(ops.arange(ops.shape(assignment)[0], dtype="int32"), -1)
        mask_ix = batch_ix * num_gt + ops.cast(assignment, "int32")
        crops = graph_ops.crop_and_resize(
            mask_images, ops.reshape(rois, (-1, 4)), ops.reshape(mask_ix, (-1,)), self.mask_shape)
        crops = ops.reshape(crops, (-1, self.train_rois_per_image, *self.mask_shape))
        return ops.round(crops)

    def compute_output_spec(self, inputs):
        batch = inputs[0].shape[0]
        T = self.train_rois_per_image
        return [
            keras.KerasTensor((batch, T, 4), dtype="float32"),
            keras.KerasTensor((batch, T), dtype="int32"),
            keras.KerasTensor((batch, T, 4), dtype="float32"),
            keras.KerasTensor((batch, T, *self.mask_shape), dtype="float32"),
        ]

    def get_config(self):
        config = super().get_config()
        config.update({
            "train_rois_per_image": self.train_rois_per_image,
            "roi_positive_ratio": self.roi_positive_ratio,
            "mask_shape": list(self.mask_shape),
            "use_mini_mask": self.use_mini_mask,
            "bbox_std_dev": list(self.bbox_std_dev),
            "crowd_iou": self.crowd_iou,
            "seed": self.seed,
        })
        return config


@keras.saving.register_keras_serializable(package="mrcnn")
class PositiveRows(keras.layers.Layer):
    """`[class_ids [B, T], rois [B, T, 4], masks [B, T, h, w]]` -> `[rois, class_ids,
    masks]` cut to their first n rows, n = max over the batch of the positive count
    (>= 1).

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

    def __init__(self, max_rows=None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # ROI boxes: float32 under any mixed policy
        super().__init__(**kwargs)
        if max_rows is not None and int(max_rows) < 1:
            raise ValueError(f"PositiveRows: max_rows must be >= 1 or None, got {max_rows!r}")
        self.max_rows = None if max_rows is None else int(max_rows)

    def call(self, inputs):
        class_ids, rois, masks = inputs
        static_rows = rois.shape[1] if self.max_rows is None else min(self.max_rows, rois.shape[1])
        n = graph_ops.leading_rows(class_ids, static_rows)
        return [rois[:, :n], class_ids[:, :n], masks[:, :n]]

    def get_config(self):
        return {**super().get_config(), "max_rows": self.max_rows}

    def compute_output_spec(self, inputs):
        class_ids, rois, masks = inputs
        return [keras.KerasTensor((rois.shape[0], None) + tuple(rois.shape[2:]), rois.dtype),
                keras.KerasTensor((class_ids.shape[0], None), class_ids.dtype),
                keras.KerasTensor((masks.shape[0], None) + tuple(masks.shape[2:]), masks.dtype)]
