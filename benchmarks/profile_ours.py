"""Where our inference time goes: cumulative stage timings of one 512x512 image.

    .venv/bin/python benchmarks/profile_ours.py [--runs 5]

Builds sub-models of the inference graph that stop after each stage (the same
layers and weights, compiled the same way by predict_on_batch) and times them;
the difference between consecutive rows is the stage's cost. The last row is
the whole `detect()` call, whose extra over the full graph is host-side molding
and mask pasting. Uses the equal-work settings of the torchvision comparison.
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import worker_ours  # noqa: E402  (sets threads, sys.path)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402
from mrcnn.model import MaskRCNN  # noqa: E402

STAGES = (("backbone + FPN", ["fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5"]),
          ("+ RPN (5 levels)", ["rpn_class", "rpn_bbox"]),
          ("+ proposals (top-k, NMS)", ["ROI"]),
          ("+ ROI Align + box head (1000 ROIs)", ["mrcnn_class", "mrcnn_bbox"]),
          ("+ detection layer (per-class NMS)", ["mrcnn_detection"]),
          ("+ ROI Align + mask head (100 ROIs) = whole graph", None))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--precision", default="float32", choices=common.PRECISIONS)
    parser.add_argument("--rpn-conv-channels", type=int, default=common.RPN_CONV_CHANNELS,
                        help="512: our default (Matterport's); 256: the equal-work setting")
    args = parser.parse_args()
    config = worker_ours.make_config(1, common.NUM_CLASSES_INFER, args.precision,
                                     args.rpn_conv_channels)
    model = MaskRCNN("inference", config, "/tmp/mrcnn_bench_logs")
    km = model.keras_model
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)
    molded, metas, _ = model.mold_inputs([image])
    anchors = model.get_anchors(molded.shape[1:3])[None]
    inputs = [molded, metas, anchors]
    rows = []
    for name, outputs in STAGES:
        sub = km if outputs is None else keras.Model(
            km.inputs, [km.get_layer(o).output for o in outputs])
        sub.predict_on_batch(inputs)
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            sub.predict_on_batch(inputs)
            times.append(time.perf_counter() - start)
        rows.append((name, statistics.median(times)))
    model.detect([image])
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        model.detect([image])
        times.append(time.perf_counter() - start)
    rows.append(("+ host: mold, unmold, paste 100 masks = detect()", statistics.median(times)))
    # The host-side stages alone.
    host = {"mold_inputs": lambda: model.mold_inputs([image])}
    detections, _, _, masks, _, _, _ = km.predict_on_batch(inputs)
    host["unmold_detections (100 masks)"] = lambda: model.unmold_detections(
        detections[0], masks[0], image.shape, molded.shape[1:], model.mold_inputs([image])[2][0])
    for name, fn in host.items():
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        print(f"host {name}: {statistics.median(times):.3f} s")
    print("| stage (cumulative) | median s | stage s |\n|---|---|---|")
    previous = 0.0
    for name, t in rows:
        print(f"| {name} | {t:.3f} | {t - previous:.3f} |")
        previous = t
    print(f"\nload average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
