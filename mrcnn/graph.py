"""The Mask R-CNN graph: the one module that turns a `Config` into layer arguments.

The graph is built from the pieces in `mrcnn.layers` in pipeline order:

    image -> backbone -> FPN -> RPN -> proposals -> ROI Align -> box/class head
                                                             -> mask head

The backbone is whatever `mrcnn.backbones` builds for `Config.BACKBONE`.

In training mode the graph also samples ROIs and builds their targets
(`DetectionTargetLayer`) and returns a `training.TrainingGraph`, whose
`compute_loss` turns the outputs into the five losses, so Keras' own train step
(gradients, the optimizer's gradient clipping) drives training on any backend.
"""

import keras

from mrcnn import backbones
from mrcnn import network_io
from mrcnn.layers.backbone import fpn_graph
from mrcnn.layers.detection import DetectionLayer
from mrcnn.layers.detection_targets import DetectionTargetLayer, PositiveRows, max_positive_rois
from mrcnn.layers.heads import build_rpn_model, classifier_head, mask_head
from mrcnn.layers.proposal import ProposalLayer
from mrcnn.layers.roi_align import PyramidROIAlign
from mrcnn.layers.wiring import (DetectionBoxes, NormalizeBoxes, NormalizeWindow, PadRows,
                                 ParseImageMeta, PyramidAnchors)
from mrcnn.layout import SIZE_MULTIPLE
from mrcnn.training import TrainingGraph

__all__ = ["build"]


def build(mode, config):
    """The Keras graph of `mode` ("training" or "inference") for `config`.

    The training graph makes its anchors from the config (`PyramidAnchors`: a
    constant of the graph); inference takes them as an input.
    """
    h, w = config.IMAGE_SHAPE[:2]
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        raise ValueError(f"IMAGE_SHAPE {tuple(config.IMAGE_SHAPE[:2])} must be divisible by "
                         f"{SIZE_MULTIPLE} (P2..P6 halve the image six times)")
    channels = int(config.IMAGE_CHANNEL_COUNT)
    input_image = keras.Input(shape=(None, None, channels), name="input_image")
    input_image_meta = keras.Input(shape=(config.IMAGE_META_SIZE,), name="input_image_meta")

    _, C2, C3, C4, C5 = backbones.build(config.BACKBONE, input_image, train_bn=config.TRAIN_BN,
                                        norm=config.BACKBONE_NORM,
                                        groups=config.BACKBONE_NORM_GROUPS)
    P2, P3, P4, P5, P6 = fpn_graph(C2, C3, C4, C5, config.TOP_DOWN_PYRAMID_SIZE)
    mrcnn_feature_maps = [P2, P3, P4, P5]
    rpn_outputs = _rpn(config, [P2, P3, P4, P5, P6])
    meta = ParseImageMeta(name="parse_image_meta")(input_image_meta)

    # The meta is parsed once, here; the layers get the parts they need.
    if mode == "training":
        return _build_training(config, input_image, input_image_meta, meta,
                               mrcnn_feature_maps, rpn_outputs)
    return _build_inference(config, input_image, input_image_meta, meta, mrcnn_feature_maps,
                            rpn_outputs)


def _rpn(config, rpn_feature_maps):
    """The shared RPN over every pyramid level, concatenated over levels:
    [rpn_class_logits, rpn_class, rpn_bbox]."""
    rpn = build_rpn_model(config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS),
                          config.TOP_DOWN_PYRAMID_SIZE, config.RPN_CONV_CHANNELS)
    per_level = [rpn(p) for p in rpn_feature_maps]
    names = ["rpn_class_logits", "rpn_class", "rpn_bbox"]
    # float32: the RPN's outputs feed top-k, NMS and the losses under any precision.
    return [keras.layers.Concatenate(axis=1, name=name, dtype="float32")(
                [level[i] for level in per_level])
            for i, name in enumerate(names)]


def _heads(config, rois, image_shape, feature_maps):
    """ROI Align + box/class head on `rois` [B, N, 4] normalized."""
    pooled = PyramidROIAlign((config.POOL_SIZE, config.POOL_SIZE), aligned=config.ROI_ALIGN_ALIGNED,
                             name="roi_align_classifier")([rois, image_shape] + feature_maps)
    class_logits, class_probs, bbox = classifier_head(
        pooled, config.NUM_CLASSES, train_bn=config.TRAIN_BN,
        fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE)
    return class_logits, class_probs, bbox


def _mask(config, rois, image_shape, feature_maps):
    """ROI Align + mask head on `rois` [B, N, 4] normalized."""
    pooled = PyramidROIAlign((config.MASK_POOL_SIZE, config.MASK_POOL_SIZE),
                             aligned=config.ROI_ALIGN_ALIGNED,
                             name="roi_align_mask")([rois, image_shape] + feature_maps)
    return mask_head(pooled, config.NUM_CLASSES, train_bn=config.TRAIN_BN)


def _training_inputs(config, input_image, input_image_meta):
    return {
        "input_image": input_image,
        "input_image_meta": input_image_meta,
        "input_rpn_match": keras.Input(shape=(None, 1), dtype="int32", name="input_rpn_match"),
        "input_rpn_bbox": keras.Input(shape=(None, 4), name="input_rpn_bbox"),
        "input_gt_class_ids": keras.Input(shape=(None,), dtype="int32", name="input_gt_class_ids"),
        "input_gt_boxes": keras.Input(shape=(None, 4), name="input_gt_boxes"),
        "input_gt_masks": keras.Input(shape=tuple(config.GT_MASK_SHAPE) + (None,), dtype="bool",
                                      name="input_gt_masks"),
    }


def _build_training(config, input_image, input_image_meta, meta, feature_maps, rpn_outputs):
    rpn_class_logits, rpn_class, rpn_bbox = rpn_outputs
    inputs = _training_inputs(config, input_image, input_image_meta)
    gt_boxes = NormalizeBoxes(name="normalize_gt_boxes")(inputs["input_gt_boxes"], input_image)
    anchors = PyramidAnchors(config.IMAGE_SHAPE, config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                             network_io.feature_shapes_for(config, config.IMAGE_SHAPE),
                             config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE,
                             name="anchors")(input_image)
    rpn_rois = ProposalLayer(config.POST_NMS_ROIS_TRAINING, config.RPN_NMS_THRESHOLD,
                             config.PRE_NMS_LIMIT, config.RPN_BBOX_STD_DEV,
                             name="ROI")([rpn_class, rpn_bbox, anchors])
    rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(
        config.TRAIN_ROIS_PER_IMAGE, config.ROI_POSITIVE_RATIO, config.MASK_SHAPE,
        config.USE_MINI_MASK, config.BBOX_STD_DEV, config.CROWD_IOU, name="proposal_targets",
    )([rpn_rois, inputs["input_gt_class_ids"], gt_boxes, inputs["input_gt_masks"]])
    class_logits, class_probs, bbox = _heads(config, rois, meta["image_shape"], feature_maps)
    mask_rows = max(1, max_positive_rois(config.TRAIN_ROIS_PER_IMAGE, config.ROI_POSITIVE_RATIO))
    mask_rois, mask_class_ids, target_mask = PositiveRows(mask_rows, name="mask_rows")(
        [target_class_ids, rois, target_mask])
    mrcnn_mask = _mask(config, mask_rois, meta["image_shape"], feature_maps)
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


def _build_inference(config, input_image, input_image_meta, meta, feature_maps, rpn_outputs):
    _, rpn_class, rpn_bbox = rpn_outputs
    input_anchors = keras.Input(shape=(None, 4), name="input_anchors")
    rpn_rois = ProposalLayer(config.POST_NMS_ROIS_INFERENCE, config.RPN_NMS_THRESHOLD,
                             config.PRE_NMS_LIMIT, config.RPN_BBOX_STD_DEV,
                             name="ROI")([rpn_class, rpn_bbox, input_anchors])
    _, class_probs, bbox = _heads(config, rpn_rois, meta["image_shape"], feature_maps)
    window = NormalizeWindow(name="normalized_window")(meta["window"], meta["image_shape"])
    detections = DetectionLayer(config.DETECTION_MAX_INSTANCES, config.DETECTION_MIN_CONFIDENCE,
                                config.DETECTION_NMS_THRESHOLD, config.BBOX_STD_DEV,
                                name="mrcnn_detection")([rpn_rois, class_probs, bbox, window])
    detection_boxes = DetectionBoxes(name="detection_boxes")(detections)
    mrcnn_mask = PadRows(config.DETECTION_MAX_INSTANCES, name="mrcnn_mask_rows")(
        _mask(config, detection_boxes, meta["image_shape"], feature_maps))
    outputs = [detections, class_probs, bbox, mrcnn_mask, rpn_rois, rpn_class, rpn_bbox]
    return keras.Model([input_image, input_image_meta, input_anchors], outputs, name="mask_rcnn")
