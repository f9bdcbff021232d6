"""Latency of the model's two NMS ops, compiled as the model compiles them: the portable
ops (JAX, TFLite exports) and, under TensorFlow, TensorFlow's own kernels.

    python benchmarks/nms_latency.py [--runs 20] [--json PATH]
    KERAS_BACKEND=jax python benchmarks/nms_latency.py     # jax.jit; on a GPU where JAX sees one

Cases: the proposal NMS (6,000 scored boxes -> 1,000 at inference, -> 2,000 in training,
IoU 0.7) and the detection layer's per-class NMS (1,000 ROIs of 20 classes -> 100, IoU 0.3)
with every ROI a candidate (score floor 0, as the benchmarks force) and with ~30 above the
floor (0.97; a trained model at Matterport's 0.7 keeps a few dozen). Boxes are seeded random
clusters, so NMS has real work. Under TensorFlow each op runs as a ``tf.function`` graph (a
loop of the portable ops then runs op by op, as in TFLite); median of ``--runs`` calls after
3 warm-ups, in ms. Prints a table naming the CPU and writes JSON.
"""
import argparse
import json
import os
import statistics
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402

import common  # noqa: E402
from mrcnn import portable_ops  # noqa: E402

BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(common.THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(common.THREADS)
    from mrcnn import tf_ops
elif BACKEND == "jax":
    import jax


def clustered_boxes(rng, n, clusters):
    """``[n, 4]`` normalized boxes around ``clusters`` centres."""
    centres = rng.uniform(0.1, 0.9, size=(clusters, 2))[rng.integers(0, clusters, n)]
    half = rng.uniform(0.02, 0.12, size=(n, 2))
    return np.concatenate([centres - half, centres + half], axis=1).astype(np.float32)


def cases(rng):
    """(name, function of the arrays, arrays): one image each."""
    proposals = clustered_boxes(rng, 6000, 60)
    objectness = rng.random(6000).astype(np.float32)
    rois = clustered_boxes(rng, 1000, 40)[None]
    classes = rng.integers(1, 21, (1, 1000)).astype(np.int32)
    scores = rng.random((1, 1000)).astype(np.float32)

    def proposal_nms(count):
        return lambda ops_module, b, s: ops_module.non_max_suppression_padded(b, s, count, 0.7)

    def detection_nms(floor):
        return lambda ops_module, b, s, c: ops_module.per_class_non_max_suppression(
            b, s, c, 21, 100, 0.3, floor)

    return [("proposals 6000 -> 1000 (inference)", proposal_nms(1000), (proposals, objectness)),
            ("proposals 6000 -> 2000 (training)", proposal_nms(2000), (proposals, objectness)),
            ("per-class 1000 -> 100, all candidates", detection_nms(0.0), (rois, scores, classes)),
            ("per-class 1000 -> 100, ~30 candidates", detection_nms(0.97),
             (rois, scores, classes))]


def compiled(fn, ops_module):
    call = lambda *arrays: fn(ops_module, *arrays)  # noqa: E731
    if BACKEND == "jax":
        return jax.jit(call)
    if BACKEND == "tensorflow":
        return tf.function(call)
    return call


def median_ms(fn, arrays, runs):
    """(median ms of ``runs`` calls after 3 warm-ups, rows kept by the last call)."""
    outputs = []

    def once(_):
        outputs.append(fn(*arrays))
        np.asarray(outputs[-1][-1])  # waits for the result

    times = common.timed(once, runs, warmup=3)
    return statistics.median(times) * 1e3, int(np.asarray(outputs[-1][-1]).ravel()[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", default=os.path.join(HERE, f"nms_latency_{BACKEND}.json"))
    args = parser.parse_args()
    implementations = [("portable_ops", portable_ops)]
    if BACKEND == "tensorflow":
        implementations.append(("TensorFlow kernels", tf_ops))
    rows = []
    for name, fn, arrays in cases(np.random.default_rng(0)):
        for impl_name, ops_module in implementations:
            ms, kept = median_ms(compiled(fn, ops_module), arrays, args.runs)
            rows.append({"case": name, "implementation": impl_name, "median_ms": ms, "kept": kept})
            print(f"{name} | {impl_name} | {ms:.2f} ms | kept {kept}", flush=True)
    device = str(jax.devices()[0]) if BACKEND == "jax" else "cpu"
    print(f"\nCPU: {common.cpu_model()}; Keras {keras.__version__} on {BACKEND} ({device}), "
          f"median of {args.runs} calls")
    print("| case | implementation | median ms | kept |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['case']} | {row['implementation']} | {row['median_ms']:.2f} | {row['kept']} |")
    with open(args.json + ".tmp", "w") as f:
        json.dump({"cpu": common.cpu_model(), "backend": BACKEND, "device": device,
                   "keras": keras.__version__, "runs": args.runs, "rows": rows}, f, indent=1)
    os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
