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
from tests.backend_parity_worker import ParityConfig

HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = [
    pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                       reason="compares the TensorFlow backend (this process) with JAX"),
    pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed"),
]


def _mask_iou(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def test_jax_reproduces_tensorflow_detections_and_weight_files(trained, tmp_path):
    model, _, _ = trained
    checkpoint = model.find_last()
    images = ShapesDataset()
    images.load_shapes(8, 128, 128, seed=5)
    images.prepare()
    pictures = {f"image{i}": images.load_image(i) for i in images.image_ids}
    np.savez(tmp_path / "images.npz", **pictures)

    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    run = subprocess.run(
        [sys.executable, os.path.join(HERE, "backend_parity_worker.py"), checkpoint,
         str(tmp_path / "images.npz"), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    jax_results = np.load(tmp_path / "detections.npz")

    reference = MaskRCNN("inference", ParityConfig(), str(tmp_path))
    reference.load_weights(checkpoint, by_name=True)
    detections = 0
    for key, picture in pictures.items():
        want = reference.detect([picture])[0]
        got = {name: jax_results[f"{key}/{name}"] for name in want}
        assert len(got["class_ids"]) == len(want["class_ids"]), key
        np.testing.assert_array_equal(got["class_ids"], want["class_ids"], err_msg=key)
        np.testing.assert_allclose(got["rois"], want["rois"], atol=1, err_msg=key)
        np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-3, err_msg=key)
        for k in range(len(want["class_ids"])):
            assert _mask_iou(got["masks"][..., k], want["masks"][..., k]) >= 0.98, (key, k)
        detections += len(want["class_ids"])
    assert detections >= 8  # not vacuous: the trained model finds shapes

    # The file JAX wrote loads here and holds the same weights.
    reloaded = MaskRCNN("inference", ParityConfig(), str(tmp_path))
    weights_io.load_weights(reloaded.keras_model, str(tmp_path / "saved_under_jax.h5"), by_name=True)
    for ours, theirs in zip(reference.keras_model.weights, reloaded.keras_model.weights):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs), err_msg=ours.path)
