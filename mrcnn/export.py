"""Export an inference model for serving.

- ``export_model(model, path, "saved_model")``: a TensorFlow SavedModel whose
  ``serving_default`` signature takes ONE uint8 image ``[H, W, C]`` of any size
  (C = 3 RGB; 1 gray, 2 gray + alpha and 4 RGBA are converted as
  ``images.to_rgb`` does for detect()) and returns what ``MaskRCNN.detect()`` returns for it (``rois`` int32 [N, 4] in
  original pixels, ``class_ids`` int32 [N], ``scores`` float32 [N], ``masks`` bool
  [H, W, N]). Resizing, molding, the image meta, the anchors and the mask pasting
  all happen inside the graph, so it loads with ``tf.saved_model.load`` in a
  process that never imports ``mrcnn`` (or in TF Serving). ``serving_batch``
  takes uint8 ``[B, H, W, C]`` (B images of one size), runs them as one network
  batch and returns each image's results padded to M = DETECTION_MAX_INSTANCES:
  ``rois`` [B, M, 4], ``class_ids`` [B, M] (0 marks padding), ``scores`` [B, M],
  ``masks`` [B, H, W, M] and ``count`` [B] (real detections come first).
  ``class_names`` returns the class names (index = class id). The model's
  ``Config.PRECISION`` is kept; the signatures' dtypes do not depend on it.
- ``export_model(model, path, "tflite")``: ``serving_default`` traced with
  ``graph_ops.portable()`` and float32 pre/post-processing, converted by
  ``tf.lite.TFLiteConverter`` to TFLite builtin ops only (no Flex delegate needed);
  float32 models only.
- ``export_model(model, path, "onnx")``: ``serving_default``'s graph converted by
  tf2onnx (an optional dependency), for ONNX Runtime; float32 models only.

This is the one module besides ``graph_ops`` that calls ``tf.*``: SavedModel and
TFLite are TensorFlow formats, so there is nothing backend-neutral to write.
TensorFlow is imported lazily, inside the functions, so importing ``mrcnn`` never
needs it. The in-graph pre/post-processing mirrors ``network_io`` (host side)
step by step; ``tests/test_export.py`` checks the two against each other.
"""
import contextlib
import os
import shutil
import tempfile

import numpy as np

from mrcnn import boxes as box_utils
from mrcnn import network_io
from mrcnn.errors import ConfigError, OutputPathError
from mrcnn.layout import DETECTION_BOX, DETECTION_CLASS_ID, DETECTION_SCORE

__all__ = ["FORMATS", "export_model", "build_serving_archive", "convert_to_tflite",
           "convert_to_onnx"]

FORMATS = ("saved_model", "tflite", "onnx")


def export_model(model, path, format="saved_model", class_names=None):
    """Write `model` (a ``MaskRCNN`` in inference mode) to `path` for serving.

    format: "saved_model" (a folder), "tflite" or "onnx" (one file).
    class_names: names indexed by class id (default "BG", "class_1", ...).
    Returns `path`. The output appears atomically: written next to `path`
    under a temporary name, then renamed.
    """
    if format not in FORMATS:
        raise ValueError(f"export format must be one of {FORMATS}, not {format!r}")
    if model.mode != "inference":
        raise RuntimeError(f"export() needs a model built in 'inference' mode, this one is {model.mode!r}")
    config = model.config
    _check_exportable(config, format)
    names = list(class_names) if class_names is not None else (
        ["BG"] + [f"class_{i}" for i in range(1, config.NUM_CLASSES)])
    if len(names) != config.NUM_CLASSES:
        raise ConfigError(f"export: {len(names)} class names for NUM_CLASSES={config.NUM_CLASSES}")
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise OutputPathError(f"export: output folder {parent} does not exist")
    _check_replaceable(path, format)
    work = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        if format == "onnx":
            result = convert_to_onnx(model.keras_model, config, names,
                                     os.path.join(work, "model.onnx"))
        else:
            result = os.path.join(work, "saved_model")
            _write_saved_model(model.keras_model, config, names, result,
                               builtins_only=format == "tflite")
        if format == "tflite":
            result = convert_to_tflite(result, os.path.join(work, "model.tflite"))
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        os.replace(result, path)
    except OSError as err:
        raise OutputPathError(f"export: cannot write {path}: {err}") from err
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def _check_replaceable(path, format):
    """An existing `path` is replaced only if it is an earlier export of the same kind."""
    if not os.path.exists(path):
        return
    earlier_export = (os.path.isfile(os.path.join(path, "saved_model.pb")) if format == "saved_model"
                      else os.path.isfile(path))
    if not earlier_export:
        raise OutputPathError(f"export: {path} exists and is not a {format} export; "
                              f"give a new path")


def _check_exportable(config, format):
    if format == "tflite" and config.PRECISION != "float32":
        raise ConfigError(f"export: PRECISION={config.PRECISION!r}; TFLite's builtin kernels "
                          f"have no bfloat16 (float16 only in a few), so the TFLite export is "
                          f"float32 only: build the model with PRECISION='float32' (the same "
                          f"weights load) or export a SavedModel")
    if format == "onnx":
        if config.PRECISION != "float32":
            raise ConfigError(f"export: PRECISION={config.PRECISION!r}; the ONNX export is "
                              f"float32 only (as Keras' own ONNX export)")
        _import_tf2onnx()  # fail before any work when the converter is missing
    if config.IMAGE_RESIZE_MODE != "square":
        raise ConfigError(f"export: IMAGE_RESIZE_MODE={config.IMAGE_RESIZE_MODE!r}; the serving "
                          f"graph implements 'square' only (fixed input size, fixed anchors)")
    if int(config.IMAGE_CHANNEL_COUNT) != 3:
        raise ConfigError(f"export: IMAGE_CHANNEL_COUNT={config.IMAGE_CHANNEL_COUNT}; the serving "
                          f"signature takes RGB images [H, W, 3]")


def _write_saved_model(keras_model, config, class_names, path, builtins_only=False):
    """The serving archive written to `path`. builtins_only: traced for TFLite's
    builtin ops, i.e. with ``graph_ops.portable()`` (NMS and ROI Align in keras.ops,
    static shapes) and float32 pre/post-processing."""
    from mrcnn import graph_ops

    tracing = graph_ops.portable() if builtins_only else contextlib.nullcontext()
    with tracing:
        archive = build_serving_archive(keras_model, config, class_names,
                                        float_dtype="float32" if builtins_only else "float64")
        archive.write_out(path, verbose=False)


def convert_to_tflite(saved_model_dir, tflite_path):
    """Convert the ``serving_default`` signature of a SavedModel written with
    ``_write_saved_model(..., builtins_only=True)`` into a TFLite file of builtin
    ops only, so any TFLite/LiteRT interpreter runs it (no Flex delegate)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with open(tflite_path, "wb") as f:
        f.write(converter.convert())
    return tflite_path


def _import_tf2onnx():
    try:
        import tf2onnx
    except ImportError as err:
        raise ImportError("export format 'onnx' needs the tf2onnx package "
                          "(pip install tf2onnx onnxruntime)") from err
    return tf2onnx


def convert_to_onnx(keras_model, config, class_names, onnx_path):
    """``serving_default``'s graph (one uint8 image ``image`` [H, W, C] in; ``rois``,
    ``class_ids``, ``scores``, ``masks`` out) as an ONNX model, opset 18, by tf2onnx.
    The class names travel as the model's metadata ``class_names`` (a JSON list)."""
    import json

    import tensorflow as tf

    constants = _ServingConstants(config)
    signature = _image_signature()
    serve = tf.function(lambda image: _detect_one(keras_model, constants, image),
                        input_signature=signature)
    model_proto = _function_to_onnx(serve, signature)
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = "class_names", json.dumps(list(class_names))
    with open(onnx_path, "wb") as f:
        f.write(model_proto.SerializeToString())
    return onnx_path


def _function_to_onnx(function, signature):
    """tf2onnx's ONNX model (opset 18) of a ``tf.function``. tf2onnx's Python API logs
    an op it cannot convert and leaves it in the graph, so the result is checked:
    RuntimeError if an op is not ONNX."""
    import onnx
    tf2onnx = _import_tf2onnx()

    model_proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=18)
    try:
        onnx.checker.check_model(model_proto)
    except onnx.checker.ValidationError as err:
        raise RuntimeError(f"ONNX export: tf2onnx could not convert the graph (see its log "
                           f"above): {str(err).strip().splitlines()[0]}") from err
    return model_proto


def build_serving_archive(keras_model, config, class_names, float_dtype="float64"):
    """A ``keras.export.ExportArchive`` holding the model's variables and the
    ``serving_default``, ``serving_batch`` and ``class_names`` endpoints.
    float_dtype: of the pre/post-processing arithmetic (see ``_ServingConstants``)."""
    import keras
    import tensorflow as tf

    constants = _ServingConstants(config, float_dtype)
    names = tf.constant(list(class_names))

    def serve(image):
        return _detect_one(keras_model, constants, image)

    archive = keras.export.ExportArchive()
    archive.track(keras_model)
    archive.add_endpoint("serving_default", serve,
                         input_signature=_image_signature())
    archive.add_endpoint("serving_batch", lambda images: _detect_batch(keras_model, constants, images),
                         input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8,
                                                        name="images")])
    archive.add_endpoint("class_names", lambda: {"class_names": names}, input_signature=[])
    return archive


def _image_signature():
    """serving_default's input: one uint8 image [H, W, C] of any size."""
    import tensorflow as tf

    return [tf.TensorSpec([None, None, None], tf.uint8, name="image")]


class _ServingConstants:
    """The config values the serving graph needs, as plain numbers/arrays.

    In "square" mode every molded image is IMAGE_MAX_DIM square, so the anchors
    are one fixed array: a constant of the exported graph (not a layer config).
    """

    def __init__(self, config, float_dtype="float64"):
        # float64 mirrors the host code's Python/numpy floats; TFLite has no float64
        # arithmetic, so its graph computes the same steps in float32.
        self.float = float_dtype
        self.min_dim = config.IMAGE_MIN_DIM or 0
        self.max_dim = int(config.IMAGE_MAX_DIM)
        self.min_scale = config.IMAGE_MIN_SCALE or 0
        self.mean_pixel = np.asarray(config.MEAN_PIXEL, dtype=np.float32)
        self.num_classes = int(config.NUM_CLASSES)
        self.max_instances = int(config.DETECTION_MAX_INSTANCES)
        shape = (self.max_dim, self.max_dim)
        pixel_anchors = network_io.anchors_for_shape(config, shape)
        self.anchors = box_utils.norm_boxes(pixel_anchors, shape).astype(np.float32)


def _network_inputs(image, constants):
    """uint8 [H, W, C] -> the network's molded image [S, S, 3], image meta [META]
    (``images.compose_image_meta``, image id 0) and window, plus the RGB image's shape."""
    import tensorflow as tf

    image = _to_rgb(image)
    original_shape = tf.shape(image)
    molded, window, scale = _mold(image, constants)
    size = constants.max_dim
    real = constants.float
    meta = tf.concat([
        tf.zeros([1], real), tf.cast(original_shape, real),
        tf.constant([size, size, 3], real), tf.cast(window, real), scale[None],
        tf.zeros([constants.num_classes], real)], axis=0)
    return molded, tf.cast(meta, tf.float32), window, original_shape


def _run_network(keras_model, constants, molded, metas):
    """The inference graph on a batch: detections [B, M, 6] and masks [B, M, h, w, classes]."""
    import tensorflow as tf

    anchors = tf.tile(tf.constant(constants.anchors)[None], [tf.shape(molded)[0], 1, 1])
    outputs = keras_model([molded, metas, anchors], training=False)
    return outputs[0], outputs[3]


def _detect_one(keras_model, constants, image):
    """uint8 [H, W, C] -> detect()'s dict for that image, all in-graph."""
    molded, meta, window, original_shape = _network_inputs(image, constants)
    detections, mrcnn_mask = _run_network(keras_model, constants, molded[None], meta[None])
    return _unmold(detections[0], mrcnn_mask[0], original_shape, window, constants)


def _detect_batch(keras_model, constants, images):
    """uint8 [B, H, W, C] (one size) -> detect()'s results for each image, run as one
    network batch and padded to M = DETECTION_MAX_INSTANCES: ``rois`` [B, M, 4],
    ``class_ids`` [B, M] (0 = padding), ``scores`` [B, M], ``masks`` [B, H, W, M] and
    ``count`` [B], the number of real detections (first in each row)."""
    import tensorflow as tf

    molded, metas, windows, shapes = tf.map_fn(
        lambda image: _network_inputs(image, constants), images,
        fn_output_signature=(tf.float32, tf.float32, tf.int32, tf.int32))
    detections, mrcnn_mask = _run_network(keras_model, constants, molded, metas)
    limit = constants.max_instances

    def unmold_padded(args):
        result = _unmold(*args, constants)
        pad = limit - tf.shape(result["scores"])[0]
        return {"rois": tf.pad(result["rois"], [[0, pad], [0, 0]]),
                "class_ids": tf.pad(result["class_ids"], [[0, pad]]),
                "scores": tf.pad(result["scores"], [[0, pad]]),
                "masks": tf.pad(result["masks"], [[0, 0], [0, 0], [0, pad]]),
                "count": limit - pad}

    signature = {"rois": tf.TensorSpec([limit, 4], tf.int32),
                 "class_ids": tf.TensorSpec([limit], tf.int32),
                 "scores": tf.TensorSpec([limit], tf.float32),
                 "masks": tf.TensorSpec([None, None, limit], tf.bool),
                 "count": tf.TensorSpec([], tf.int32)}
    return tf.map_fn(unmold_padded, (detections, mrcnn_mask, shapes, windows),
                     fn_output_signature=signature)


def _to_rgb(image):
    """``images.to_rgb`` in-graph: 1 (gray) or 2 (gray + alpha) channels -> gray
    repeated three times; 3 (RGB) or 4 (RGBA) -> the first three. Other counts fail
    with an InvalidArgument error."""
    import tensorflow as tf

    channels = tf.shape(image)[2]
    tf.debugging.assert_less_equal(channels, 4, message="image must have 1, 2, 3 or 4 channels")
    # Channels (0, 0, 0) or (0, 1, 2): a gather, not a tf.cond. TFLite's interpreter
    # crashed (SIGSEGV in a WHILE op's Prepare) on the third image of a 3-, 1-, then
    # 3-channel sequence when the choice was an IF op (TF 2.21, 2026-12-04).
    rgb = tf.gather(image, tf.range(3) * tf.cast(channels >= 3, tf.int32), axis=2)
    # A reshape, not tf.ensure_shape (no TFLite builtin), states the 3 channels.
    return tf.reshape(rgb, tf.stack([tf.shape(rgb)[0], tf.shape(rgb)[1], 3]))


def _mold(image, constants):
    """Matterport's "square" resize (skimage's bilinear, rounded to uint8; an
    identity when the scale is 1), centred zero padding to IMAGE_MAX_DIM, minus MEAN_PIXEL.

    Returns molded float32 [S, S, 3], window int32 (y1, x1, y2, x2), scale (constants.float).
    """
    import tensorflow as tf

    real = constants.float
    h = tf.cast(tf.shape(image)[0], real)
    w = tf.cast(tf.shape(image)[1], real)
    # images._choose_scale (Python floats there).
    scale = tf.maximum(tf.constant(1.0, real), constants.min_dim / tf.minimum(h, w))
    scale = tf.maximum(scale, tf.constant(float(constants.min_scale), real))
    long_side = tf.maximum(h, w)
    scale = tf.where(tf.round(long_side * scale) > constants.max_dim,
                     constants.max_dim / long_side, scale)
    new_h = tf.cast(tf.round(h * scale), tf.int32)
    new_w = tf.cast(tf.round(w * scale), tf.int32)
    resized = _resize_bilinear(tf.cast(image, real), new_h, new_w)
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.float32)
    top = (constants.max_dim - new_h) // 2
    left = (constants.max_dim - new_w) // 2
    padded = tf.pad(resized, [[top, constants.max_dim - new_h - top],
                              [left, constants.max_dim - new_w - left], [0, 0]])
    molded = tf.reshape(padded - constants.mean_pixel, [constants.max_dim, constants.max_dim, 3])
    window = tf.stack([top, left, top + new_h, left + new_w])
    return molded, window, scale


def _interpolation_matrix(positions, valid, in_size):
    """Bilinear weights [..., out, in_size] sampling a signal of `in_size` samples
    at float `positions` [..., out]; taps outside the signal count as zero (skimage's
    mode="constant", i.e. scipy's "grid-constant"). Rows where `valid` is False are zero.
    """
    import tensorflow as tf

    low = tf.floor(positions)
    frac = positions - low
    low = tf.cast(low, tf.int32)
    taps = tf.range(in_size)

    # tf.expand_dims, not x[..., None]: TFLite's StridedSlice has no new axes.
    def last_axis(x):
        return tf.expand_dims(x, -1)

    def one_hot(index):
        # tf.one_hot as a comparison: tf2onnx converts OneHot only with a constant
        # depth and 1-D indices, and here the depth is the image size, the indices 2-D.
        return tf.cast(tf.equal(last_axis(index), taps), positions.dtype)

    weights = one_hot(low) * last_axis(1.0 - frac) + one_hot(low + 1) * last_axis(frac)
    return weights * last_axis(tf.cast(valid, positions.dtype))


def _grid_positions(out_size, in_size, dtype):
    """Sample positions of skimage/scipy's grid-mode zoom: pixel centres mapped."""
    import tensorflow as tf

    out = tf.cast(tf.range(out_size), dtype)
    return (out + 0.5) * (tf.cast(in_size, dtype) / tf.cast(out_size, dtype)) - 0.5


def _resize_bilinear(image, new_h, new_w):
    """float [H, W, C] -> [new_h, new_w, C], as ``skimage.transform.resize``
    (order=1, mode="constant", anti_aliasing=False)."""
    import tensorflow as tf

    h, w = tf.shape(image)[0], tf.shape(image)[1]
    rows = _interpolation_matrix(_grid_positions(new_h, h, image.dtype),
                                 tf.ones([new_h], tf.bool), h)
    cols = _interpolation_matrix(_grid_positions(new_w, w, image.dtype),
                                 tf.ones([new_w], tf.bool), w)
    return tf.einsum("yh,hwc,xw->yxc", rows, image, cols)


def _unmold(detections, mrcnn_mask, original_shape, window, constants):
    """``network_io.unmold_detections`` in-graph: keep the rows before the first
    zero class id, map boxes to original pixels, drop empty boxes, paste masks."""
    import tensorflow as tf

    class_ids = tf.cast(detections[:, DETECTION_CLASS_ID], tf.int32)
    rows = tf.range(tf.shape(detections)[0])
    count = tf.reduce_min(tf.where(tf.equal(class_ids, 0), rows, tf.shape(detections)[0]))
    detections = tf.cast(detections[:count], constants.float)
    class_ids = class_ids[:count]
    boxes = _window_to_original(detections[:, DETECTION_BOX], window, constants.max_dim, original_shape)
    keep = tf.where((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0)[:, 0]
    boxes = tf.gather(boxes, keep)
    class_ids = tf.gather(class_ids, keep)
    scores = tf.cast(tf.gather(detections[:, DETECTION_SCORE], keep), tf.float32)
    masks = tf.gather(mrcnn_mask[:count], keep)  # [n, h, w, num_classes]
    masks = tf.gather(tf.transpose(masks, [0, 3, 1, 2]), class_ids, axis=1, batch_dims=1)
    full = _paste_masks(tf.cast(masks, constants.float), boxes, original_shape[0], original_shape[1])
    return {"rois": tf.cast(boxes, tf.int32), "class_ids": class_ids, "scores": scores,
            "masks": tf.transpose(full, [1, 2, 0])}


def _window_to_original(boxes, window, size, original_shape):
    """``network_io.window_to_original`` (norm_boxes / denorm_boxes) in boxes' dtype."""
    import tensorflow as tf

    window = tf.cast(window, boxes.dtype)
    shift_one = tf.constant([0.0, 0.0, 1.0, 1.0], boxes.dtype)
    wy1, wx1, wy2, wx2 = tf.unstack((window - shift_one) / (size - 1.0))
    shift = tf.stack([wy1, wx1, wy1, wx1])
    extent = tf.stack([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
    hw = tf.cast(original_shape[:2], boxes.dtype)
    return tf.round((boxes - shift) / extent * (tf.tile(hw, [2]) - 1.0) + shift_one)


def _paste_masks(masks, boxes, height, width):
    """``masks.unmold_mask`` for every detection: each [h, w] mask resized to its
    pixel box (skimage bilinear, clipped to the mask's range), thresholded at 0.5,
    pasted into [n, H, W] bool."""
    import tensorflow as tf

    mask_h, mask_w = tf.shape(masks)[1], tf.shape(masks)[2]

    def axis_weights(start, stop, length, in_size):
        pixel = tf.expand_dims(tf.cast(tf.range(length), boxes.dtype), 0)  # [1, length]
        start, stop = tf.expand_dims(start, 1), tf.expand_dims(stop, 1)  # [n, 1]
        positions = (pixel - start + 0.5) * (tf.cast(in_size, boxes.dtype) / (stop - start)) - 0.5
        inside = (pixel >= start) & (pixel < stop)
        weights = _interpolation_matrix(tf.where(inside, positions, 0.0), inside, in_size)
        return weights, tf.cast(inside, boxes.dtype)

    rows, inside_rows = axis_weights(boxes[:, 0], boxes[:, 2], height, mask_h)  # [n, H, h]
    cols, inside_cols = axis_weights(boxes[:, 1], boxes[:, 3], width, mask_w)  # [n, W, w]
    # Rows/columns outside the box have zero weights, so the paste is zero there.
    resized = tf.einsum("nyh,nhw,nxw->nyx", rows, masks, cols)
    # skimage's clip=True (Matterport's resize) clips the result to the mask's own value
    # range, which lifts the zero-blended border of the box to the mask's minimum: a mask
    # that is >= 0.5 everywhere keeps its whole box. (The maximum needs no clip: the
    # weights are non-negative and sum to at most 1.)
    in_box = tf.expand_dims(inside_rows, 2) * tf.expand_dims(inside_cols, 1)  # [n, H, W]
    floor = tf.expand_dims(tf.expand_dims(tf.reduce_min(masks, axis=[1, 2]), 1), 2) * in_box
    return tf.maximum(resized, floor) >= 0.5
