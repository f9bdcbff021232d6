"""Per-image latency of the exported SavedModel (and TFLite, where its interpreter
runs) next to MaskRCNN.detect(), on the same model and images (issue 14).

    python benchmarks/export_latency.py [--image-size 512] [--runs 5]

Random weights with DETECTION_MIN_CONFIDENCE=0, so every image yields exactly
DETECTION_MAX_INSTANCES detections (equal work for every path). Images: up to 3 of
../shared/data/tinyvoc/test_images, else synthetic. Median and min per image over
the timed runs after one warm-up call; prints a table and the TFLite file size.
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
    serve = tf.saved_model.load(saved).signatures["serving_default"]
    rows.append(("SavedModel serving_default",
                 *timed(lambda im: serve(image=tf.constant(im)), images, args.runs)))
    tflite = model.export(os.path.join(work, "model.tflite"), format="tflite")
    runner = tf.lite.Interpreter(model_path=tflite).get_signature_runner("serving_default")
    try:
        rows.append(("TFLite (TF-Select)", *timed(lambda im: runner(image=im), images, args.runs)))
    except RuntimeError as err:
        print(f"TFLite interpreter cannot run the file: {str(err)[:200]}")
    print(f"{args.image_size}px, ResNet-50, {BenchConfig.NUM_CLASSES} classes, "
          f"{BenchConfig.DETECTION_MAX_INSTANCES} detections, {len(images)} images x {args.runs} runs")
    print("| path | median s/image | min s/image |\n|---|---|---|")
    for name, median, best in rows:
        print(f"| {name} | {median:.3f} | {best:.3f} |")
    print(f"TFLite file: {os.path.getsize(tflite) / 2**20:.1f} MiB; "
          f"SavedModel variables: {_folder_size(saved) / 2**20:.1f} MiB")


def _folder_size(folder):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder)
               for f in files)


if __name__ == "__main__":
    main()
