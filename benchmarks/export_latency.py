"""Per-image latency of the exported SavedModel (serving_default, and serving_batch
on a batch of same-size images), TFLite and ONNX (where tf2onnx and onnxruntime are
installed) next to MaskRCNN.detect(), on the same model and images (issue 14), and
how many of detect()'s detections each export reproduces (same box and class).

    python benchmarks/export_latency.py [--image-size 512] [--runs 5] [--json PATH]

Seeded random weights (--seed) with DETECTION_MIN_CONFIDENCE=0, so every image yields exactly
DETECTION_MAX_INSTANCES detections (equal work for every path). Images: up to 3 of
../shared/data/tinyvoc/test_images, else synthetic; the batch is those of the first
image's size, repeated up to 3. Median and min per image over the timed runs after
one warm-up call. Prints a table naming the CPU and the file sizes, and writes
benchmarks/export_latency.json.
"""
import argparse
import datetime
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from common import cpu_model  # noqa: E402
from mrcnn.config import Config  # noqa: E402
from mrcnn.images import read_image  # noqa: E402
from mrcnn.model import MaskRCNN  # noqa: E402

# ../shared next to the checkout (or next to its parent, for a git worktree under it).
TEST_IMAGES = next(
    (path for path in (os.path.join(os.path.dirname(__file__), *[".."] * up, "shared", "data",
                                    "tinyvoc", "test_images") for up in (2, 3))
     if os.path.isdir(path)), "")


def timed(fn, images, runs):
    """(median s, min s, the last outputs per image) of fn(image) over `runs` rounds."""
    fn(images[0])  # warm-up: traces / allocates
    times, outputs = [], [None] * len(images)
    for _ in range(runs):
        for i, image in enumerate(images):
            start = time.perf_counter()
            outputs[i] = fn(image)
            times.append(time.perf_counter() - start)
    return float(np.median(times)), float(np.min(times)), outputs


def reproduced(expected, got):
    """(found, total): detect()'s detections with an equal box and class in `got`."""
    found = total = 0
    for want, have in zip(expected, got):
        boxes, classes = np.asarray(have["rois"]), np.asarray(have["class_ids"])
        total += len(want["class_ids"])
        found += sum(bool(((boxes == box).all(axis=1) & (classes == class_id)).any())
                     for box, class_id in zip(want["rois"], want["class_ids"]))
    return found, total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seeds the random weights")
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__),
                                                       "export_latency.json"))
    args = parser.parse_args()
    import tensorflow as tf

    class BenchConfig(Config):
        NAME = "export_bench"
        NUM_CLASSES = 21
        BACKBONE = "resnet50"
        IMAGES_PER_GPU = 1
        IMAGE_MIN_DIM = IMAGE_MAX_DIM = args.image_size
        DETECTION_MIN_CONFIDENCE = 0.0

    work = tempfile.mkdtemp(prefix="export_bench_")
    # One seeded random model, so runs (e.g. two commits side by side) compare the same weights.
    import keras

    keras.utils.set_random_seed(args.seed)
    model = MaskRCNN("inference", BenchConfig(), work)
    names = sorted(os.listdir(TEST_IMAGES))[:3] if os.path.isdir(TEST_IMAGES) else []
    images = [read_image(os.path.join(TEST_IMAGES, n)) for n in names] or [
        np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)]
    median, best, detected = timed(lambda im: model.detect([im])[0], images, args.runs)
    rows = [("detect()", median, best, None)]

    def add_row(name, fn):
        median, best, outputs = timed(fn, images, args.runs)
        rows.append((name, median, best, reproduced(detected, outputs)))

    saved = model.export(os.path.join(work, "saved_model"))
    loaded = tf.saved_model.load(saved)
    serve = loaded.signatures["serving_default"]
    add_row("SavedModel serving_default",
            lambda im: {k: v.numpy() for k, v in serve(image=tf.constant(im)).items()})
    same_size = [im for im in images if im.shape == images[0].shape]
    batch = tf.constant(np.stack((same_size * 3)[:3]))
    median, best, _ = timed(lambda b: loaded.signatures["serving_batch"](images=b), [batch],
                            args.runs)
    rows.append((f"SavedModel serving_batch, {batch.shape[0]} images per call",
                 median / batch.shape[0], best / batch.shape[0], None))
    tflite = model.export(os.path.join(work, "model.tflite"), format="tflite")
    interpreter = tf.lite.Interpreter(model_path=tflite, num_threads=os.cpu_count())
    run_tflite = interpreter.get_signature_runner("serving_default")
    add_row("TFLite (builtin ops, tf.lite.Interpreter)", lambda im: run_tflite(image=im))
    onnx = _onnx_row(model, work, images, add_row)
    sizes = {"tflite_mib": os.path.getsize(tflite) / 2**20,
             "saved_model_mib": _folder_size(saved) / 2**20,
             "onnx_mib": os.path.getsize(onnx) / 2**20 if onnx else None}
    header = (f"CPU: {cpu_model()}, {os.cpu_count()} CPUs. {args.image_size}px, ResNet-50, "
              f"{BenchConfig.NUM_CLASSES} classes, {BenchConfig.DETECTION_MAX_INSTANCES} "
              f"detections, {len(images)} images x {args.runs} runs")
    print(header)
    print("| path | median s/image | min s/image | detect()'s detections reproduced |\n"
          "|---|---|---|---|")
    for name, median, best, found in rows:
        share = f"{found[0]} of {found[1]}" if found else ""
        print(f"| {name} | {median:.3f} | {best:.3f} | {share} |")
    print("; ".join(f"{key}: {value:.1f}" for key, value in sizes.items() if value))
    with open(args.json, "w") as f:
        json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"),
                   "cpu": cpu_model(), "setting": header, "sizes": sizes,
                   "rows": [{"path": name, "median_s": median, "min_s": best,
                             "reproduced": found} for name, median, best, found in rows]},
                  f, indent=1)


def _onnx_row(model, work, images, add_row):
    """Adds ONNX Runtime's row (CPU provider) and returns the file, or None without
    tf2onnx / onnxruntime."""
    try:
        import onnxruntime
        import tf2onnx  # noqa: F401
    except ImportError as err:
        print(f"ONNX skipped: {err}")
        return None
    path = model.export(os.path.join(work, "model.onnx"), format="onnx")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    output_names = [output.name for output in session.get_outputs()]
    add_row(f"ONNX Runtime {onnxruntime.__version__} (CPU)",
            lambda im: dict(zip(output_names, session.run(None, {"image": im}))))
    return path


def _folder_size(folder):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder)
               for f in files)


if __name__ == "__main__":
    main()
