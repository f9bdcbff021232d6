"""The same weight file on Keras' TensorFlow and JAX backends: the same detections,
and a file saved under one loads under the other (issue 17).

The JAX side runs in a subprocess (a process has one Keras backend); skipped when
JAX is not installed (``pip install -e .[jax]``).
"""
import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from mrcnn import weights as weights_io
from mrcnn.model import MaskRCNN
from samples.shapes import ShapesDataset
from tests.backend_parity_worker import parity_config
from tests.reference import mask_iou

HERE = os.path.dirname(os.path.abspath(__file__))



@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="compares the TensorFlow backend (this process) with JAX")
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_jax_reproduces_tensorflow_detections_and_weight_files(agreement_checkpoint, tmp_path):
    checkpoint, held_out, _ = agreement_checkpoint
    pictures = {f"image{i}": held_out.load_image(i) for i in held_out.image_ids[:8]}
    np.savez(tmp_path / "images.npz", **pictures)

    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    run = subprocess.run(
        [sys.executable, os.path.join(HERE, "backend_parity_worker.py"), checkpoint,
         str(tmp_path / "images.npz"), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    jax_results = np.load(tmp_path / "detections.npz")

    config = parity_config()
    reference = MaskRCNN("inference", config, str(tmp_path))
    reference.load_weights(checkpoint, by_name=True)
    detections = 0
    # Scores this close to the confidence threshold may fall on either side of it.
    def firm(result):
        return np.abs(result["scores"] - config.DETECTION_MIN_CONFIDENCE) > 1e-3

    for key, picture in pictures.items():
        want = reference.detect([picture])[0]
        got = {name: jax_results[f"{key}/{name}"] for name in want}
        assert firm(got).sum() == firm(want).sum(), (key, got["scores"], want["scores"])
        # Matched as sets: detections with equal scores may come in either order.
        unmatched = set(range(len(got["class_ids"])))
        for k in np.flatnonzero(firm(want)):
            candidates = [j for j in unmatched
                          if got["class_ids"][j] == want["class_ids"][k]
                          and np.abs(got["rois"][j] - want["rois"][k]).max() <= 1
                          and abs(got["scores"][j] - want["scores"][k]) <= 1e-3]
            if not candidates:
                nearest = int(np.argmin(np.abs(got["rois"] - want["rois"][k]).sum(axis=1)))
                raise AssertionError(
                    f"{key}: TensorFlow detection {k} (class {want['class_ids'][k]}, box "
                    f"{want['rois'][k]}, score {want['scores'][k]:.6f}) has no JAX twin; nearest: "
                    f"class {got['class_ids'][nearest]}, box {got['rois'][nearest]}, "
                    f"score {got['scores'][nearest]:.6f}")
            j = min(candidates, key=lambda j: np.abs(got["rois"][j] - want["rois"][k]).sum())
            unmatched.discard(j)
            assert mask_iou(got["masks"][..., j], want["masks"][..., k]) >= 0.98, (key, k)
            detections += 1
    assert detections >= 8  # not vacuous: the trained model finds shapes

    # The file JAX wrote loads here and holds the same weights.
    reloaded = MaskRCNN("inference", config, str(tmp_path))
    weights_io.load_weights(reloaded.keras_model, str(tmp_path / "saved_under_jax.h5"), by_name=True)
    for ours, theirs in zip(reference.keras_model.weights, reloaded.keras_model.weights):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs), err_msg=ours.path)


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="the smoke test of another backend")
def test_train_and_detect_smoke_on_this_backend(tmp_path):
    """Under KERAS_BACKEND=jax: a few jit-compiled training steps with finite losses,
    a Keras-2 checkpoint, and detect() from it with Matterport's result contract."""
    from tests.configs import ShapesTrainConfig, never_background

    class SmokeConfig(ShapesTrainConfig):
        STEPS_PER_EPOCH = 3
        VALIDATION_STEPS = 1

    keras.utils.set_random_seed(0)
    train_set, val_set = ShapesDataset(), ShapesDataset()
    train_set.load_shapes(8, 128, 128, seed=1)
    val_set.load_shapes(2, 128, 128, seed=2)
    train_set.prepare()
    val_set.prepare()
    model = MaskRCNN("training", SmokeConfig(), str(tmp_path))
    history = model.train(train_set, val_set, learning_rate=0.01, epochs=2, layers="all",
                          verbose=0).history
    assert model.keras_model.jit_compile  # every layer compiles under XLA
    for name in ("loss", "rpn_class_loss", "mrcnn_mask_loss", "val_loss"):
        assert len(history[name]) == 2 and np.all(np.isfinite(history[name])), (name, history)
    checkpoint = model.find_last()
    assert checkpoint.endswith("mask_rcnn_shapes_0002.h5")

    class SmokeInference(SmokeConfig):
        IMAGES_PER_GPU = 1
        DETECTION_MIN_CONFIDENCE = 0.0

    inference = MaskRCNN("inference", SmokeInference(), str(tmp_path))
    inference.load_weights(checkpoint, by_name=True)
    # Six steps may teach the class head to call every ROI background (0 detections once,
    # run after other test files on a pytest-xdist worker).
    never_background(inference)
    image = val_set.load_image(0)
    result = inference.detect([image])[0]
    n = len(result["class_ids"])
    assert n > 0  # DETECTION_MIN_CONFIDENCE 0 and background never wins
    assert result["rois"].shape == (n, 4) and result["rois"].dtype == np.int32
    assert result["masks"].shape == image.shape[:2] + (n,) and result["masks"].dtype == bool
    assert np.all(np.diff(result["scores"]) <= 1e-6)
