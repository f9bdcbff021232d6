"""One measurement through Matterport's public API, of our package or of Matterport's own.

    python benchmarks/worker_matterport_api.py --task infer|train --data DATA.npz [--batch B]

The same user code (``Config``, ``MaskRCNN(mode, config, model_dir)``, ``detect``,
``set_trainable``, ``compile``, ``keras_model.train_on_batch`` on the TF2 ports'
``mrcnn.model.DataGenerator`` batches, ``utils.Dataset``) runs
against ``mrcnn`` from $MATTERPORT_DIR when it is set (a checkout of a Matterport TF2
port, run with tf-keras: ``TF_USE_LEGACY_KERAS=1``), else against ours. Settings are
Matterport's defaults but for the image size (512x512), the backbone (ResNet-50), the
class count (21 for inference, 4 for shapes training) and the score threshold (0, so both sides return exactly 100 detections).
Prints one ``RESULT {json}`` line (see benchmarks/common.py).
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("MATTERPORT_DIR") or os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, SOURCE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import common  # noqa: E402

VOC_CLASSES = 21  # background + PASCAL VOC's 20, as in the measurement

tf.config.threading.set_intra_op_parallelism_threads(common.THREADS)
tf.config.threading.set_inter_op_parallelism_threads(common.THREADS)

from mrcnn import model as modellib  # noqa: E402
from mrcnn import utils  # noqa: E402
from mrcnn.config import Config  # noqa: E402

MATTERPORT = bool(os.environ.get("MATTERPORT_DIR"))
if MATTERPORT:
    # What Matterport's code needs to run on today's libraries, and nothing more:
    # graph-mode (TF1-style) training needs tf-keras' legacy optimizers, and
    # scikit-image >= 0.19 refuses to interpolate the bool masks minimize_mask passes.
    modellib.keras.optimizers.SGD = modellib.keras.optimizers.legacy.SGD
    _resize = utils.resize
    utils.resize = lambda image, *args, **kwargs: _resize(
        image.astype(np.float32) if image.dtype == bool else image, *args, **kwargs)


class ShapesArrays(common.ShapesSamples, utils.Dataset):
    """The orchestrator's shapes samples as the package's Dataset."""


def make_config(batch, num_classes):
    attributes = {"NAME": "bench", "GPU_COUNT": 1, "IMAGES_PER_GPU": batch,
                  "NUM_CLASSES": num_classes, "BACKBONE": "resnet50",
                  "IMAGE_MIN_DIM": common.IMAGE_SIZE, "IMAGE_MAX_DIM": common.IMAGE_SIZE,
                  "DETECTION_MIN_CONFIDENCE": 0.0}
    return type("BenchConfig", (Config,), attributes)()


def infer(voc, runs, warmup):
    config = make_config(1, VOC_CLASSES)
    start = time.perf_counter()
    model = modellib.MaskRCNN(mode="inference", config=config, model_dir="/tmp/mrcnn_bench_logs")
    build = time.perf_counter() - start
    counts = []

    def step(i):
        counts.append(len(model.detect([voc[i % len(voc)]], verbose=0)[0]["class_ids"]))

    start = time.perf_counter()
    step(0)
    first = time.perf_counter() - start
    times = common.timed(lambda i: step(i + 1), runs, warmup)
    return {"times": times, "build_s": build, "first_call_s": first, "detections": counts[-runs:]}


def train(shapes, batch, runs, warmup):
    config = make_config(batch, common.NUM_CLASSES_TRAIN)
    dataset = ShapesArrays()
    dataset.load(shapes)
    dataset.prepare()
    start = time.perf_counter()
    model = modellib.MaskRCNN(mode="training", config=config, model_dir="/tmp/mrcnn_bench_logs")
    model.set_trainable(".*", verbose=0)  # layers="all", BatchNorm scale and offset included
    model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    build = time.perf_counter() - start
    generator = modellib.DataGenerator(dataset, config, shuffle=False)
    batches = [generator[i % len(generator)] for i in range(runs + warmup + 1)]
    losses = []

    def step(i):
        inputs, outputs = batches[i]
        losses.append(float(np.ravel(model.keras_model.train_on_batch(inputs, outputs))[0]))

    start = time.perf_counter()
    step(0)
    first = time.perf_counter() - start
    times = common.timed(lambda i: step(i + 1), runs, warmup)
    return {"times": times, "build_s": build, "first_call_s": first, "losses": losses[-runs:]}


def main():
    args = common.worker_arguments(__doc__, ("infer", "train"))
    if ((args.precision, args.device, args.image_size, args.min_confidence)
            != ("float32", "cpu", common.IMAGE_SIZE, 0.0)):
        sys.exit("worker_matterport_api: Matterport's code runs float32 on the CPU at "
                 f"{common.IMAGE_SIZE} px with exactly {common.DETECTIONS} detections only "
                 "(no --precision, --device, --image-size or --min-confidence)")
    voc, shapes = common.load_data(args.data)
    result = (infer(voc, args.runs, args.warmup) if args.task == "infer"
              else train(shapes, args.batch, args.runs, args.warmup))
    result.update({"side": "matterport" if MATTERPORT else "ours", "task": args.task,
                   "batch": args.batch, "source": SOURCE})
    common.report(result)


if __name__ == "__main__":
    main()
