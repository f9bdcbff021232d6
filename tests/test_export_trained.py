"""Issue 14 on a trained model: the confident precision-agreement model (tests/conftest.py)
exported as a SavedModel and as a TFLite file, both served in a process that cannot import
mrcnn, on held-out synthetic images and up to 3 real ones. The SavedModel gives detect()'s
detections (boxes equal, scores within 1e-4, mask IoU >= 0.99); TFLite reproduces at least
95 % of them (equal box and class, score within 1e-3, mask IoU >= 0.99)."""
import os

import numpy as np
import pytest

from mrcnn.images import read_image
from mrcnn.model import MaskRCNN
from samples import precision_agreement as agreement
from tests.test_export import TEST_IMAGES, assert_same_detections, count_reproduced, run_python

HELD_OUT_IMAGES = 8


@pytest.fixture(scope="module")
def exported(agreement_checkpoint, tmp_path_factory):
    """(detect() results, served results {format: [dict per image]}, images)."""
    checkpoint, held_out, model_dir = agreement_checkpoint
    model = MaskRCNN("inference", agreement.make_config(inference=True), model_dir)
    model.load_weights(checkpoint, by_name=True)
    names = sorted(os.listdir(TEST_IMAGES))[:3] if os.path.isdir(TEST_IMAGES) else []
    images = ([held_out.load_image(i) for i in held_out.image_ids[:HELD_OUT_IMAGES]]
              + [read_image(os.path.join(TEST_IMAGES, name)) for name in names])
    work = tmp_path_factory.mktemp("trained_export")
    saved_model = model.export(str(work / "saved_model"))
    tflite = model.export(str(work / "model.tflite"), format="tflite")
    np.savez(str(work / "images.npz"), *images)
    outputs = str(work / "outputs.npz")
    run_python(f"""
import warnings
import numpy as np, tensorflow as tf
warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
images = np.load({str(work / "images.npz")!r})
serve = tf.saved_model.load({saved_model!r}).signatures["serving_default"]
run_tflite = tf.lite.Interpreter(model_path={tflite!r}).get_signature_runner("serving_default")
out = {{}}
for i in range(len(images.files)):
    image = images[f"arr_{{i}}"]
    for key, value in serve(image=tf.constant(image)).items():
        out[f"saved_model/{{i}}/{{key}}"] = value.numpy()
    for key, value in run_tflite(image=image).items():
        out[f"tflite/{{i}}/{{key}}"] = value
np.savez({outputs!r}, **out)
""", isolated=True)
    served = np.load(outputs)
    keys = ("rois", "class_ids", "scores", "masks")
    results = {kind: [{key: served[f"{kind}/{i}/{key}"] for key in keys}
                      for i in range(len(images))] for kind in ("saved_model", "tflite")}
    return model.detect(images), results, images


def test_the_exported_model_is_trained(exported):
    detected, _, _ = exported
    confident = [r for r in detected[:HELD_OUT_IMAGES] if len(r["scores"])]
    # DETECTION_MIN_CONFIDENCE is 0.7: an untrained model would find nothing.
    assert len(confident) == HELD_OUT_IMAGES


def test_trained_saved_model_serves_detects_detections(exported):
    detected, served, _ = exported
    for expected, result in zip(detected, served["saved_model"]):
        assert_same_detections(expected, result)


def test_trained_tflite_reproduces_95_percent_of_detect(exported):
    detected, served, _ = exported
    matched, total = count_reproduced(detected, served["tflite"])
    print(f"TFLite reproduced {matched} of {total} detections of the trained model")
    assert total and matched >= 0.95 * total, f"{matched} of {total}"
