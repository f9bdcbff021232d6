"""Run by tests/test_backends.py in a process of another Keras backend: load a weight
file, detect on the given images, save the results and the weights as loaded.

Usage: KERAS_BACKEND=jax python tests/backend_parity_worker.py WEIGHTS.h5 IMAGES.npz OUT_DIR
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mrcnn.model import MaskRCNN  # noqa: E402
from samples import precision_agreement as agreement  # noqa: E402


def parity_config():
    """The inference config of tests/conftest.py's `agreement_checkpoint` (a confident
    model: a barely trained one has near-tied RPN scores, whose order rounding decides)."""
    return agreement.make_config("float32", inference=True)


def main(weights, images_path, out_dir):
    model = MaskRCNN("inference", parity_config(), out_dir)
    model.load_weights(weights, by_name=True)
    images = np.load(images_path)
    results = {}
    for key in sorted(images.files):
        for name, value in model.detect([images[key]])[0].items():
            results[f"{key}/{name}"] = value
    np.savez(os.path.join(out_dir, "detections.npz"), **results)
    model.save_weights(os.path.join(out_dir, f"saved_under_{keras.backend.backend()}.h5"))
    print(keras.backend.backend(), "ok")


if __name__ == "__main__":
    main(*sys.argv[1:4])
