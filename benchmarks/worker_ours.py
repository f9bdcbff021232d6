"""One measurement of our Mask R-CNN in a fresh process (peak RSS is per process).

    python benchmarks/worker_ours.py --task infer|train|flops --data DATA.npz [--batch B]

``--device cuda`` (under KERAS_BACKEND=jax, where JAX sees a GPU) runs it on the GPU
(benchmarks/compare_gpu.py).

Prints one ``RESULT {json}`` line (see benchmarks/common.py).
"""
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import common  # noqa: E402

# The main install (requirements.txt) has no JAX; the .venv has the [jax] extra for the
# tests, and TensorFlow 2.21's tf.lite imports JAX whenever it is importable: ~106 MiB of
# peak RSS a main-install user does not pay. So under TensorFlow the worker measures the
# main install unless given --jax-importable (RESULTS.md, "JAX in every RSS figure").
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
JAX_IMPORTABLE = "--jax-importable" in sys.argv or os.environ["KERAS_BACKEND"] != "tensorflow"
if not JAX_IMPORTABLE:
    common.hide_packages("jax", "jaxlib")

import keras  # noqa: E402  (KERAS_BACKEND picks the backend; TensorFlow by default)

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(common.THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(common.THREADS)

from mrcnn.config import Config  # noqa: E402
from mrcnn.data import DataGenerator  # noqa: E402
from mrcnn.dataset import Dataset  # noqa: E402
from mrcnn.model import MaskRCNN  # noqa: E402


class BenchConfig(Config):
    NAME = "bench"
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = common.IMAGE_SIZE
    IMAGE_MAX_DIM = common.IMAGE_SIZE
    IMAGE_RESIZE_MODE = "square"
    POST_NMS_ROIS_INFERENCE = common.RPN_POST_NMS_INFER
    POST_NMS_ROIS_TRAINING = common.RPN_POST_NMS_TRAIN
    TRAIN_ROIS_PER_IMAGE = common.TRAIN_ROIS
    ROI_POSITIVE_RATIO = common.POSITIVE_FRACTION
    DETECTION_MAX_INSTANCES = common.DETECTIONS
    RPN_CONV_CHANNELS = common.RPN_CONV_CHANNELS
    DETECTION_MIN_CONFIDENCE = 0.0
    LEARNING_RATE = common.LEARNING_RATE
    LEARNING_MOMENTUM = common.MOMENTUM
    WEIGHT_DECAY = common.WEIGHT_DECAY
    GRADIENT_CLIP_NORM = common.CLIP_NORM


class ArrayDataset(common.ShapesSamples, Dataset):
    """The orchestrator's shapes samples as our Dataset."""


# Every weighted layer except BatchNorm (bn_conv1, bn2a_branch2a, ..., mrcnn_mask_bn4):
# torchvision's FrozenBatchNorm2d has no trainable scale/offset, so ours must not
# train them either for equal work. (`layers="all"` trains them, as Matterport did;
# keeping them fixed also saves memory: BN's scale gradient needs every conv output.)
ALL_BUT_BATCHNORM = r"(?!.*bn).*"


def make_config(batch, num_classes, precision="float32", rpn_conv_channels=None,
                image_size=common.IMAGE_SIZE, min_confidence=0.0):
    cls = type("Cfg", (BenchConfig,), {
        "IMAGES_PER_GPU": batch, "NUM_CLASSES": num_classes, "PRECISION": precision,
        "RPN_CONV_CHANNELS": rpn_conv_channels or common.RPN_CONV_CHANNELS,
        "IMAGE_MIN_DIM": image_size, "IMAGE_MAX_DIM": image_size,
        "DETECTION_MIN_CONFIDENCE": min_confidence})
    return cls()


def backend_device(device):
    """The device Keras' backend computes on, checked against --device: JAX picks the
    GPU where it sees one; TensorFlow here is the CPU build."""
    if keras.backend.backend() == "jax":
        import jax

        found = "cuda" if jax.default_backend() in ("gpu", "cuda") else "cpu"
    else:
        found = "cpu"
    if found != device:
        sys.exit(f"worker_ours: --device {device}, but Keras' {keras.backend.backend()} "
                 f"backend computes on the {found}")
    return found


def gpu_peak_mib():
    """The most GPU memory JAX's allocator held at once (None off the GPU)."""
    if keras.backend.backend() != "jax":
        return None
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2 ** 20


def infer(voc, runs, warmup, config):
    start = time.perf_counter()
    model = MaskRCNN("inference", config, "/tmp/mrcnn_bench_logs")
    build = time.perf_counter() - start
    counts = []

    def step(i):
        result = model.detect([voc[i % len(voc)]])[0]
        counts.append(int(result["class_ids"].shape[0]))

    start = time.perf_counter()
    step(0)
    first = time.perf_counter() - start
    times = common.timed(step, runs, warmup)
    return {"times": times, "build_s": build, "first_call_s": first, "detections": counts[-runs:],
            "gpu_peak_mib": gpu_peak_mib()}


def train(shapes, runs, warmup, config):
    dataset = ArrayDataset()
    dataset.load(shapes)
    dataset.prepare()
    start = time.perf_counter()
    model = MaskRCNN("training", config, "/tmp/mrcnn_bench_logs")
    build = time.perf_counter() - start
    model.set_trainable(ALL_BUT_BATCHNORM, verbose=0)
    model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    generator = DataGenerator(dataset, config, shuffle=False, seed=0)
    rss_built = common.peak_rss_mib()  # runtime + model, before any step
    start = time.perf_counter()
    batches = [generator[i % len(generator)] for i in range(runs + warmup)]
    load_s = (time.perf_counter() - start) / len(batches)
    start = time.perf_counter()
    model.keras_model.train_on_batch(batches[0])
    first = time.perf_counter() - start
    losses = []

    def step(i):
        logs = model.keras_model.train_on_batch(batches[i % len(batches)], return_dict=True)
        losses.append(float(logs["loss"]))

    times = common.timed(step, runs, warmup)
    return {"times": times, "build_s": build, "first_call_s": first, "data_s_per_batch": load_s,
            "rss_after_build_mib": rss_built, "gpu_peak_mib": gpu_peak_mib(),
            "losses": losses[-runs:]}


def head_flops(model, config):
    """Analytic FLOPs (2 per multiply-add) of the per-ROI heads at inference.

    The box/class head runs on POST_NMS_ROIS_INFERENCE ROIs, the mask head on
    DETECTION_MAX_INSTANCES detections; their ROI axis is dynamic inside the
    graph, so TF's profiler cannot count them.
    """
    rois, dets, m = (config.POST_NMS_ROIS_INFERENCE, config.DETECTION_MAX_INSTANCES,
                     config.MASK_POOL_SIZE)
    # layer name -> (ROI count, output pixels per ROI at which the kernel is applied)
    where = {"mrcnn_class_conv1": (rois, 1), "mrcnn_class_conv2": (rois, 1),
             "mrcnn_class_logits": (rois, 1), "mrcnn_bbox_fc": (rois, 1),
             "mrcnn_mask_deconv": (dets, m * m), "mrcnn_mask": (dets, 4 * m * m)}
    where.update({f"mrcnn_mask_conv{i}": (dets, m * m) for i in range(1, 5)})
    total = 0
    for name, (count, pixels) in where.items():
        kernel = model.keras_model.get_layer(name).kernel
        total += 2 * count * pixels * int(np.prod(kernel.shape))
    return total


def flops(rpn_conv_channels=None, image_size=common.IMAGE_SIZE):
    """Float operations of one inference at image_size x image_size.

    Backbone, FPN and RPN from TF's graph profiler (ops with registered FLOP
    statistics on a graph traced with static input shapes); the per-ROI heads,
    whose ROI axis the profiler cannot see, analytically (``head_flops``). NMS,
    top-k and crop-and-resize are not counted (small next to the convolutions).
    """
    import tensorflow as tf  # the FLOP count reads TensorFlow's graph

    config = make_config(1, common.NUM_CLASSES_INFER, rpn_conv_channels=rpn_conv_channels,
                         image_size=image_size)
    model = MaskRCNN("inference", config, "/tmp/mrcnn_bench_logs")
    anchors = model.get_anchors((image_size, image_size))
    fn = tf.function(lambda a, b, c: model.keras_model([a, b, c], training=False))
    concrete = fn.get_concrete_function(
        tf.TensorSpec([1, image_size, image_size, 3], tf.float32),
        tf.TensorSpec([1, config.IMAGE_META_SIZE], tf.float32),
        tf.TensorSpec([1, anchors.shape[0], 4], tf.float32))
    from tensorflow.python.framework import convert_to_constants
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    prof = tf.compat.v1.profiler.profile(graph=frozen.graph, options=opts)
    nodes = {child.name: child.total_float_ops for child in prof.children}
    heads_in_profile = sum(v for k, v in nodes.items() if "mrcnn_" in k)
    trunk = int(prof.total_float_ops) - heads_in_profile
    heads = head_flops(model, config)
    return {"flops": trunk + heads, "trunk_flops_profiler": trunk, "head_flops_analytic": heads,
            "top_nodes": sorted(nodes.items(), key=lambda kv: -kv[1])[:10]}


def matmul(runs, warmup, precision="float32", n=3072):
    """float32 (or the mixed precision's low dtype) matmul throughput of this
    process' 2 threads (FLOP/s)."""
    import tensorflow as tf

    dtype = {"mixed_bfloat16": tf.bfloat16, "mixed_float16": tf.float16}.get(precision, tf.float32)
    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    fn = tf.function(lambda x, y: tf.matmul(x, y))
    times = common.timed(lambda i: fn(a, b).numpy(), runs, warmup)
    return {"times": times, "flop_per_call": 2.0 * n ** 3}


def main():
    args = common.worker_arguments(__doc__, ("infer", "train", "flops", "matmul"))
    keras.utils.set_random_seed(0)
    device = backend_device(args.device)
    if args.task == "flops":
        result = flops(args.rpn_conv_channels, args.image_size)
    elif args.task == "matmul":
        result = matmul(args.runs, args.warmup, args.precision)
    else:
        voc, shapes = common.load_data(args.data)
        classes = common.NUM_CLASSES_INFER if args.task == "infer" else common.NUM_CLASSES_TRAIN
        config = make_config(args.batch, classes, args.precision, args.rpn_conv_channels,
                             args.image_size, args.min_confidence)
        result = (infer(voc, args.runs, args.warmup, config) if args.task == "infer"
                  else train(shapes, args.runs, args.warmup, config))
    result.update({"side": "ours", "task": args.task, "batch": args.batch,
                   "precision": args.precision, "rpn_conv_channels": args.rpn_conv_channels,
                   "min_confidence": args.min_confidence,
                   "device": device, "image_size": args.image_size,
                   "backend": keras.backend.backend(), "keras": keras.__version__,
                   "jax_loaded": "jax" in sys.modules})
    common.report(result)


if __name__ == "__main__":
    main()
