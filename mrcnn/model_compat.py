"""Matterport's public names that are not part of the graph: debugging helpers of
``MaskRCNN`` (``run_graph``, ``ancestor``, ``find_trainable_layer``,
``get_trainable_layers``, as the ``MatterportCompat`` mixin), the module helpers
of Matterport's ``model.py`` (``log``, ``load_image_gt``, ``mold_image``,
``data_generator``, and the TF2 ports' ``DataGenerator``) and
``utils.download_trained_weights``.

Where Keras 3 cannot do what Matterport did, the call raises an error that says
what to call instead. The conv1 check of ``MatterportCompat`` lets 3-channel
(ImageNet/COCO) weight files load into a model of any ``IMAGE_CHANNEL_COUNT``.

keras, ``mrcnn.data`` and the weights code are imported where used, so that
``mrcnn.utils`` can re-export ``download_trained_weights`` without TensorFlow.
"""

import copy
import logging
import os
import re
import shutil
import tempfile

import numpy as np

from mrcnn.errors import OutputPathError
from mrcnn.images import mold_image  # noqa: F401  (Matterport's modellib.mold_image(images, config))

logger = logging.getLogger("mrcnn")

__all__ = ["MatterportCompat", "log", "load_image_gt", "mold_image", "data_generator", "DataGenerator",
           "download_trained_weights", "conv1_input_channels"]

# The first convolution: the only weights whose shape depends on IMAGE_CHANNEL_COUNT.
# Keras' own ResNet files call it conv1_conv (load_weights maps it to conv1).
CONV1_NAMES = ("conv1", "conv1_conv")


def log(text, array=None):
    """Print a text and, for an array, its shape, min, max and dtype in aligned columns
    (Matterport's ``modellib.log``, used throughout its notebooks)."""
    if array is not None:
        array = np.asarray(array)
        text = text.ljust(25)
        text += f"shape: {str(array.shape):20}  "
        if array.size:
            text += f"min: {array.min():10.5f}  max: {array.max():10.5f}"
        else:
            text += f"min: {'':10}  max: {'':10}"
        text += f"  {array.dtype}"
    print(text)


class MatterportCompat:
    """Matterport's debugging methods of ``MaskRCNN`` (``self.keras_model``,
    ``self.mode``, ``self.config``, ``mold_inputs`` and ``get_anchors`` come from it)."""

    def find_trainable_layer(self, layer):
        """The layer holding the weights: a wrapper's (``TimeDistributed``) inner layer."""
        inner = getattr(layer, "layer", None)
        if inner is not None and hasattr(inner, "weights"):
            return self.find_trainable_layer(inner)
        return layer

    def get_trainable_layers(self):
        """The layers that have weights (nested models such as ``rpn_model`` as one)."""
        found = [self.find_trainable_layer(layer) for layer in self.keras_model.layers]
        return [layer for layer in found if layer.weights]

    def ancestor(self, tensor, name, checked=None):
        """The graph tensor upstream of ``tensor`` whose producing layer's name fully
        matches ``name`` (a regex; a TensorFlow-style ``":0"`` suffix is allowed), or
        None, as Matterport's.

        Keras 3 graphs have no tensors *inside* a layer: Matterport's names such as
        ``"ROI/pre_nms_anchors:0"`` find nothing (None); ask for a layer's output
        (``keras_model.get_layer(name).output``) instead.
        """
        pattern = re.compile(name)
        seen = set() if checked is None else checked
        for parent in _upstream(_parents(tensor), seen):
            layer_name = parent._keras_history.operation.name
            if pattern.fullmatch(layer_name) or pattern.fullmatch(f"{layer_name}:0"):
                return parent
        return None

    def run_graph(self, images, outputs, image_metas=None):
        """Run the inference graph on ``images`` and return the values of ``outputs``.

        images: list of images (molded here), or molded images when ``image_metas``
            is given. Equal molded shapes are needed (any "square" mode config).
        outputs: list of (name, graph tensor) pairs, e.g.
            ``("rpn_class", model.keras_model.get_layer("rpn_class").output)``.

        Returns: dict name -> numpy array, in the order given; each is printed
        with ``log`` as Matterport did. The per-ROI layers inside the heads run with
        the ROI axis folded into the batch axis (``[B*N, ...]``); their values come back
        as ``[B, N, ...]``, the shape of Matterport's ``TimeDistributed`` layers, so its
        notebooks' ``masks[0, i, :, :, class_id]`` indexing works unchanged.
        """
        import keras

        if self.mode != "inference":
            raise RuntimeError("run_graph() runs the inference graph; build MaskRCNN(mode="
                               "'inference'). For training-graph tensors call "
                               "model.keras_model(batch) on a mrcnn.data.DataGenerator batch.")
        outputs = list(outputs)
        for name, tensor in outputs:
            if tensor is None:
                raise ValueError(
                    f"run_graph: output {name!r} is None. Keras 3 graphs only hold layer "
                    "outputs (no tensors inside a layer, e.g. 'ROI/pre_nms_anchors'): pass "
                    "model.keras_model.get_layer(<layer name>).output instead")
        if image_metas is None:
            molded, image_metas, _ = self.mold_inputs(images)
        else:
            molded = images
        if isinstance(molded, list):
            raise ValueError("run_graph: the images mold to different shapes "
                             f"(IMAGE_RESIZE_MODE {self.config.IMAGE_RESIZE_MODE!r}); run them one by one")
        molded = np.asarray(molded, dtype=np.float32)
        anchors = self.get_anchors(molded.shape[1:3])
        anchors = np.ascontiguousarray(np.broadcast_to(anchors, (molded.shape[0],) + anchors.shape))
        probe = keras.Model(self.keras_model.inputs, [tensor for _, tensor in outputs])
        values = probe.predict_on_batch([molded, np.asarray(image_metas, np.float32), anchors])
        values = values if isinstance(values, (list, tuple)) else [values]
        result = {}
        for (name, tensor), value in zip(outputs, values):
            value = np.asarray(value)
            if _roi_axis_folded(tensor):
                value = value.reshape((molded.shape[0], -1) + value.shape[1:])
            result[name] = value
        for name, value in result.items():
            log(name, value)
        return result

    def exclude_mismatched_conv1(self, filepath, exclude):
        """``exclude`` plus ``conv1`` when the file's conv1 was trained on another
        channel count than this model's (3-channel ImageNet/COCO weights into an
        IMAGE_CHANNEL_COUNT != 3 model), with a message saying so."""
        try:
            model_kernel = self.keras_model.get_layer("conv1").kernel
        except (ValueError, AttributeError):  # a backbone without Matterport's conv1
            return exclude
        file_channels = conv1_input_channels(filepath)
        model_channels = int(model_kernel.shape[2])
        if file_channels is None or file_channels == model_channels:
            return exclude
        logger.warning("%s: conv1 was trained on %d-channel images and this model has "
                       "IMAGE_CHANNEL_COUNT = %d, so conv1 is not loaded (it keeps its random "
                       "initialisation; train it, e.g. layers='all').",
                       filepath, file_channels, model_channels)
        exclude = [] if exclude is None else [exclude] if isinstance(exclude, str) else list(exclude)
        return exclude + ["conv1"]


def _parents(tensor):
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        raise TypeError(f"ancestor: {tensor!r} is not a tensor of a Keras functional graph "
                        "(use keras_model.get_layer(name).output)")
    node = history.operation._inbound_nodes[history.node_index]
    return list(node.input_tensors)


def _upstream(tensors, seen, stop=None):
    """``tensors`` and the graph tensors upstream of them, depth first, each once
    (``seen``: ids already visited, updated); not beyond a tensor for which
    ``stop(tensor)`` is true."""
    stack = list(tensors)
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if stop is None or not stop(current):
            stack.extend(_parents(current))


def _roi_axis_folded(tensor):
    """True for a tensor computed between a ``MergeRoiDim`` and its ``SplitRoiDim``:
    per-ROI rows whose ROI axis is folded into the batch axis."""
    from mrcnn.layers.heads import MergeRoiDim, SplitRoiDim

    def layer(t):
        return t._keras_history.operation

    return any(isinstance(layer(t), MergeRoiDim)
               for t in _upstream([tensor], set(), stop=lambda t: isinstance(layer(t), SplitRoiDim)))


def conv1_input_channels(filepath):
    """Input channels of the first convolution in a Keras-2 HDF5 weights file, or None
    when the file has no conv1 (or cannot be read: loading reports that itself)."""
    import h5py

    try:
        h5file = h5py.File(os.fspath(filepath), "r")
    except (OSError, ValueError):
        return None
    with h5file:
        root = h5file["model_weights"] if "model_weights" in h5file else h5file
        for name in CONV1_NAMES:
            if name not in root:
                continue
            kernels = []
            root[name].visititems(lambda path, item: kernels.append(item)
                                  if isinstance(item, h5py.Dataset) and len(item.shape) == 4 else None)
            if kernels:
                return int(kernels[0].shape[2])
    return None


def load_image_gt(dataset, config, image_id, augment=False, augmentation=None, use_mini_mask=False):
    """Matterport's signature of ``mrcnn.data.load_image_gt``:
    (image, image_meta, class_ids, bbox, mask), full-size masks unless use_mini_mask.

    augment: Matterport's deprecated random left-right flip (half of the calls);
        same as ``augmentation=albumentations.HorizontalFlip(p=0.5)``.
    """
    from mrcnn import data

    if augment:
        if augmentation is not None:
            raise ValueError("load_image_gt: pass augment=True or augmentation, not both "
                             "(augment is a left-right flip; add albumentations.HorizontalFlip to "
                             "your augmentation instead)")
        import albumentations

        augmentation = albumentations.HorizontalFlip(p=0.5)
    return data.load_image_gt(dataset, config, image_id, augmentation, use_mini_mask=use_mini_mask)


def data_generator(dataset, config, shuffle=True, augment=False, augmentation=None, random_rois=0,
                   batch_size=1, detection_targets=False, no_augmentation_sources=None):
    """Matterport's endless generator of ``(inputs, [])`` training batches, inputs in its
    order: [images, image_metas, rpn_match, rpn_bbox, gt_class_ids, gt_boxes, gt_masks].

    Backed by the TF2 ports' ``DataGenerator`` below (for ``train``-style code use
    ``mrcnn.data.DataGenerator``: a keras PyDataset keyed by input names).
    ``random_rois`` and ``detection_targets`` are not supported: the training graph
    samples ROIs.
    """
    _refuse_sampled_rois("data_generator", random_rois, detection_targets)
    if augment:
        if augmentation is not None:
            raise ValueError("data_generator: pass augment=True or augmentation, not both")
        import albumentations

        augmentation = albumentations.HorizontalFlip(p=0.5)
    if batch_size != config.BATCH_SIZE:
        config = copy.copy(config)
        config.BATCH_SIZE = int(batch_size)
    generator = DataGenerator(dataset, config, shuffle=shuffle, augmentation=augmentation,
                              no_augmentation_sources=no_augmentation_sources)
    while True:
        for index in range(len(generator)):
            yield generator[index]
        generator.on_epoch_end()


def DataGenerator(dataset, config, shuffle=True, augmentation=None, random_rois=0,  # noqa: N802
                  detection_targets=False, no_augmentation_sources=None):
    """The TF2 ports' ``modellib.DataGenerator`` (a keras Sequence): ``generator[idx]``
    is batch `idx` of the epoch as ``(inputs, [])``, inputs in Matterport's order
    (``mrcnn.data.MatterportBatches``). Our own training batches, keyed by input name,
    are ``mrcnn.data.DataGenerator``. ``random_rois`` and ``detection_targets`` are not
    supported: the training graph samples ROIs."""
    from mrcnn.data import MatterportBatches

    _refuse_sampled_rois("DataGenerator", random_rois, detection_targets)
    return MatterportBatches(dataset, config, shuffle=shuffle, augmentation=augmentation,
                             no_augmentation_sources=no_augmentation_sources)


def _refuse_sampled_rois(caller, random_rois, detection_targets):
    if random_rois or detection_targets:
        raise ValueError(f"{caller}: random_rois/detection_targets are not supported; the "
                         "training graph samples ROIs and builds their targets: run "
                         "model.keras_model(batch) on a mrcnn.data.DataGenerator batch and "
                         "read its 'rois', 'target_class_ids', 'target_bbox' and 'target_mask' "
                         "outputs")


def download_trained_weights(coco_model_path, verbose=1):
    """Put Matterport's COCO weights (mask_rcnn_coco.h5) at ``coco_model_path``.

    The file comes from the weights cache, downloaded there first if needed (an
    offline machine gets an error naming the URL and where to put the file). The
    copy is atomic: ``coco_model_path`` is complete or absent.
    """
    try:
        from mrcnn.pretrained import get_coco_weights
    except ImportError:
        from mrcnn.weights import get_coco_weights

    source = get_coco_weights()
    if verbose > 0:
        print(f"Copying COCO trained weights from {source} to {coco_model_path} ...")
    folder = os.path.dirname(os.path.abspath(coco_model_path))
    try:
        handle, tmp = tempfile.mkstemp(prefix=".mask_rcnn_coco.", suffix=".tmp", dir=folder)
        os.close(handle)
        try:
            shutil.copyfile(source, tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from others
            os.replace(tmp, coco_model_path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except OSError as err:
        raise OutputPathError(f"download_trained_weights: cannot write {coco_model_path}: "
                              f"{err.strerror or err}") from err
    if verbose > 0:
        print("... done copying COCO trained weights!")
