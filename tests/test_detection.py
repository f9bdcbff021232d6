"""DetectionLayer against a numpy refine + per-class greedy NMS reference."""
import keras
import numpy as np
import pytest

from mrcnn.layers.detection import DetectionLayer
from tests import reference as ref
from tests.serialization import assert_serialization_round_trip

STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)


def _windows(windows_px, image=128):
    """Pixel windows of an image x image molded image -> normalized [B, 4] float32."""
    return np.array([ref.norm_box(w, image, image) for w in windows_px], np.float32)


def _one_hot_probs(classes, scores, num_classes=4):
    """Rows whose argmax is ``classes`` with probability ``scores``."""
    probs = np.zeros((len(classes), num_classes), np.float32)
    for i, (c, s) in enumerate(zip(classes, scores)):
        probs[i] = (1 - s) / (num_classes - 1)
        probs[i, c] = s
    return probs


def test_hand_case_per_class_nms_confidence_background_padding():
    rois = np.array([[0.10, 0.10, 0.50, 0.50],   # class 1, 0.95
                     [0.12, 0.12, 0.52, 0.52],   # class 2, 0.90: overlaps row 0, other class
                     [0.11, 0.11, 0.51, 0.51],   # class 1, 0.85: suppressed by row 0
                     [0.60, 0.60, 0.90, 0.90],   # class 1, 0.70: exactly min_confidence
                     [0.60, 0.10, 0.90, 0.40],   # class 3, 0.69: below min_confidence
                     [0.20, 0.60, 0.40, 0.80]],  # background, 0.99
                    np.float32)
    probs = _one_hot_probs([1, 2, 1, 1, 3, 0], [0.95, 0.90, 0.85, 0.70, 0.69, 0.99])
    bbox = np.zeros((6, 4, 4), np.float32)
    windows = _windows([[0, 0, 128, 128]])
    layer = DetectionLayer(max_instances=5, min_confidence=0.7, nms_threshold=0.3,
                           bbox_std_dev=STD)
    got = np.asarray(layer([rois[None], probs[None], bbox[None], windows]))[0]
    want = np.zeros((5, 6), np.float32)
    want[0] = [*rois[0], 1, 0.95]
    want[1] = [*rois[1], 2, 0.90]
    want[2] = [*rois[3], 1, 0.70]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_refines_with_class_deltas_times_std_and_clips_to_window():
    rois = np.array([[0.2, 0.2, 0.4, 0.4], [0.5, 0.5, 0.7, 0.7]], np.float32)
    probs = _one_hot_probs([2, 1], [0.9, 0.8])
    bbox = np.zeros((2, 4, 4), np.float32)
    bbox[0, 2] = [1.0, 0.0, 0.0, 0.0]   # class-2 delta: dy = 1 * 0.1 of height 0.2
    bbox[0, 1] = [5.0, 5.0, 5.0, 5.0]   # another class's delta: must be ignored
    bbox[1, 1] = [0.0, 0.0, 2.5, 0.0]   # log(dh) = 0.5: height 0.2 * e^0.5 = 0.33
    windows = _windows([[0, 0, 80, 128]])      # window rows 0..79 -> y in [0, 79/127]
    got = np.asarray(DetectionLayer(4, 0.5, 0.3, STD)([rois[None], probs[None], bbox[None], windows]))
    np.testing.assert_allclose(got[0, 0], [0.22, 0.2, 0.42, 0.4, 2, 0.9], atol=1e-6)
    half = 0.1 * np.exp(0.5)
    np.testing.assert_allclose(got[0, 1], [0.6 - half, 0.5, 79 / 127, 0.7, 1, 0.8], atol=1e-6)


def _random_case(rng, batch, n, num_classes):
    centres = rng.uniform(0.2, 0.8, size=(batch, 4, 2))[:, rng.integers(0, 4, n)]
    half = rng.uniform(0.05, 0.2, size=(batch, n, 2))
    rois = np.concatenate([centres - half, centres + half], -1).astype(np.float32)
    logits = rng.normal(scale=2.0, size=(batch, n, num_classes))
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    bbox = rng.normal(scale=0.5, size=(batch, n, num_classes, 4)).astype(np.float32)
    windows = _windows([[0, 0, 128, 128], [16, 8, 112, 120]])
    return rois, probs, bbox, windows


def _reference(rois, probs, bbox, windows, max_instances, min_conf, nms):
    out = []
    for b in range(len(rois)):
        out.append(ref.detections(rois[b], probs[b], bbox[b], windows[b], max_instances,
                                  min_conf, nms, STD))
    return np.stack(out)


def test_random_batch_matches_reference():
    rois, probs, bbox, windows = _random_case(np.random.default_rng(0), 2, 60, 5)
    layer = DetectionLayer(max_instances=12, min_confidence=0.4, nms_threshold=0.3,
                           bbox_std_dev=STD)
    got = np.asarray(layer([rois, probs, bbox, windows]))
    want = _reference(rois, probs, bbox, windows, 12, 0.4, 0.3)
    assert got.shape == (2, 12, 6)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # The case is not trivial: NMS drops boxes and the cap of 12 then cuts both images.
    uncapped = _reference(rois, probs, bbox, windows, 100, 0.4, 0.3)
    no_nms = _reference(rois, probs, bbox, windows, 100, 0.4, 1.0)
    assert ((uncapped[:, :, 5] > 0).sum(1) > 12).all()
    assert ((no_nms[:, :, 5] > 0).sum(1) > (uncapped[:, :, 5] > 0).sum(1)).all()


def test_functional_model_batch_two_and_zero_min_confidence():
    rois, probs, bbox, windows = _random_case(np.random.default_rng(1), 2, 40, 4)
    got = ref.functional_predict(DetectionLayer(30, 0.0, 0.5, STD), [rois, probs, bbox, windows])
    np.testing.assert_allclose(got, _reference(rois, probs, bbox, windows, 30, 0.0, 0.5),
                               atol=1e-5)


def test_config_round_trip():
    layer = DetectionLayer(50, 0.9, 0.4, [0.1, 0.1, 0.3, 0.3], name="mrcnn_detection")
    clone = DetectionLayer.from_config(layer.get_config())
    assert_serialization_round_trip(layer)
    assert clone.get_config() == layer.get_config()
    assert (clone.max_instances, clone.min_confidence, clone.nms_threshold,
            clone.bbox_std_dev, clone.name) == (50, 0.9, 0.4, [0.1, 0.1, 0.3, 0.3],
                                                "mrcnn_detection")
    # TensorFlow's NMS kernels keep model.compile(jit_compile="auto") off XLA; JAX compiles.
    assert clone.supports_jit == (keras.backend.backend() != "tensorflow")


def test_model_config_round_trip_uses_registered_layer():
    rois, probs, bbox, windows = _random_case(np.random.default_rng(5), 2, 20, 3)
    inputs = [keras.Input(a.shape[1:]) for a in (rois, probs, bbox, windows)]
    model = keras.Model(inputs, DetectionLayer(5, 0.3, 0.5, STD)(inputs))
    clone = keras.Model.from_config(model.get_config())
    np.testing.assert_allclose(clone.predict([rois, probs, bbox, windows], verbose=0),
                               _reference(rois, probs, bbox, windows, 5, 0.3, 0.5), atol=1e-5)


@pytest.mark.parametrize("kwargs", [
    {"max_instances": 0}, {"min_confidence": 1.5}, {"nms_threshold": -0.1},
    {"bbox_std_dev": (1, 2)},
])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="DetectionLayer"):
        DetectionLayer(**{"max_instances": 100, "min_confidence": 0.7, "nms_threshold": 0.3,
                          "bbox_std_dev": STD, **kwargs})
