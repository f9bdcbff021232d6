"""Per-image latency of the exported SavedModel (serving_default, and serving_batch
on a batch of same-size images), TFLite (where its interpreter runs) and ONNX (where
tf2onnx and onnxruntime are installed) next to MaskRCNN.detect(), on the same model
and images (issue 14).

    python benchmarks/export_latency.py [--image-size 512] [--runs 5]

Random weights with DETECTION_MIN_CONFIDENCE=0, so every image yields exactly
DETECTION_MAX_INSTANCES detections (equal work for every path). Images: up to 3 of
../shared/data/tinyvoc/test_images, else synthetic; the batch is those of the first
image's size, repeated up to 3. Median and min per image over the timed runs after
one warm-up call; prints a table and the file sizes.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mrcnn.config import Config  # noqa: E402
from mrcnn.images import read_image  # noqa: E402
from mrcnn.model import MaskRCNN  # noqa: E402

# ../shared next to the checkout (or next to its parent, for a git worktree under it).
TEST_IMAGES = next(
    (path for path in (os.path.join(os.path.dirname(__file__), *[".."] * up, "shared", "data",
                                    "tinyvoc", "test_images") for up in (2, 3))
     if os.path.isdir(path)), "")


def timed(fn, images, runs):
    fn(images[0])  # warm-up: traces / allocates
    times = []
    for _ in range(runs):
        for image in images:
            start = time.perf_counter()
            fn(image)
            times.append(time.perf_counter() - start)
    return np.median(times), np.min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
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
    model = MaskRCNN("inference", BenchConfig(), work)
    names = sorted(os.listdir(TEST_IMAGES))[:3] if os.path.isdir(TEST_IMAGES) else []
    images = [read_image(os.path.join(TEST_IMAGES, n)) for n in names] or [
        np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)]
    rows = [("detect()", *timed(lambda im: model.detect([im]), images, args.runs))]
    saved = model.export(os.path.join(work, "saved_model"))
    loaded = tf.saved_model.load(saved)
    serve = loaded.signatures["serving_default"]
    rows.append(("SavedModel serving_default",
                 *timed(lambda im: serve(image=tf.constant(im)), images, args.runs)))
    same_size = [im for im in images if im.shape == images[0].shape]
    batch = tf.constant(np.stack((same_size * 3)[:3]))
    median, best = timed(lambda b: loaded.signatures["serving_batch"](images=b), [batch], args.runs)
    rows.append((f"SavedModel serving_batch, {batch.shape[0]} images per call",
                 median / batch.shape[0], best / batch.shape[0]))
    tflite = model.export(os.path.join(work, "model.tflite"), format="tflite")
    runner = tf.lite.Interpreter(model_path=tflite).get_signature_runner("serving_default")
    try:
        rows.append(("TFLite (TF-Select)", *timed(lambda im: runner(image=im), images, args.runs)))
    except RuntimeError as err:
        print(f"TFLite interpreter cannot run the file: {str(err)[:200]}")
    onnx = _onnx_row(model, work, images, args.runs, rows)
    print(f"{args.image_size}px, ResNet-50, {BenchConfig.NUM_CLASSES} classes, "
          f"{BenchConfig.DETECTION_MAX_INSTANCES} detections, {len(images)} images x {args.runs} runs")
    print("| path | median s/image | min s/image |\n|---|---|---|")
    for name, median, best in rows:
        print(f"| {name} | {median:.3f} | {best:.3f} |")
    print(f"TFLite file: {os.path.getsize(tflite) / 2**20:.1f} MiB; "
          f"SavedModel folder: {_folder_size(saved) / 2**20:.1f} MiB"
          + (f"; ONNX file: {os.path.getsize(onnx) / 2**20:.1f} MiB" if onnx else ""))


def _onnx_row(model, work, images, runs, rows):
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
    rows.append((f"ONNX Runtime {onnxruntime.__version__} (CPU)",
                 *timed(lambda im: session.run(None, {"image": im}), images, runs)))
    return path


def _folder_size(folder):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder)
               for f in files)


if __name__ == "__main__":
    main()
