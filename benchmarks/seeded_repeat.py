"""Do seeded training runs repeat across processes on this machine?

    .venv/bin/python benchmarks/seeded_repeat.py [--runs 4] [--stop 5] [--data DIR]

Trains scripts/demo.sh's model with its training options (128 px, GroupNorm ResNet-50
from random weights, one 120-step epoch, cosine schedule, --train-seed 0) in ``--runs``
fresh processes, one after the other, for ``--stop`` steps each, and hashes every
weight after every step. Prints, per step, how many distinct sets of weights the
processes ended with (1 everywhere: the runs repeat) and writes
``benchmarks/seeded_repeat.json``. Within one process every call repeats
(tests/test_training_features.py); across processes, on an AVX-512 AMD EPYC, a fused
oneDNN kernel did not, until seeded runs turned off Grappler's remapper
(``tf_ops.make_deterministic``; RESULTS.md, "Seeded runs repeat again"). There the
first 5 steps showed it: step 3, the first with a mask loss, split the runs in two.
Other graphs with the same math split there again with the remapper off (RESULTS.md,
"Gathers without integer transposes"), so run this after changing the graph.

``--keep-fusion`` turns the remapper back on once training starts, to see whether a
machine (or a new TensorFlow) still needs it off. ``--data`` is a tinyvoc-layout folder;
without it the demo's synthetic dataset is written to a temporary folder
(``tinyvoc.py synth --train 300 --test 4``).
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import common  # noqa: E402

# scripts/demo.sh's training command, less the folders and with one epoch instead of
# three (the cosine schedule then spans 120 steps, not 360; a probe stops long before).
DEMO_TRAIN_ARGS = ["--weights", "none", "--backbone-norm", "group", "--image-size", "128",
                   "--heads-epochs", "0", "--all-epochs", "1", "--steps", "120",
                   "--val-steps", "0", "--all-lr", "0.02", "--warmup-steps", "40",
                   "--lr-schedule", "cosine", "--train-rois", "32", "--no-augment",
                   "--train-seed", "0", "--val-fraction", "0.1", "--seed", "0"]


def worker(data, logs, stop, out_path, keep_fusion):
    """One process: the demo's training for `stop` steps; a JSON line of weight
    hashes after each step."""
    import keras
    import numpy as np

    from samples import tinyvoc
    from mrcnn.model import MaskRCNN

    args = tinyvoc.build_parser().parse_args(
        ["train", "--dataset", data, "--logs", logs] + DEMO_TRAIN_ARGS)
    train = tinyvoc.load_subset(args.dataset, "train", args.val_fraction, args.seed)
    weights = tinyvoc.resolve_weights(args)
    config = tinyvoc.make_config(args, False, weights, train_images=train.num_images, val_images=0)
    tinyvoc.seed_initial_weights(args)
    model = MaskRCNN("training", config, logs)

    class HashWeights(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            if keep_fusion:  # after train(seed=...) turned it off, before the first step
                import tensorflow as tf
                tf.config.optimizer.set_experimental_options({"remapping": True})

        def on_train_batch_end(self, batch, logs=None):
            digest = {w.path: hashlib.md5(np.asarray(w.numpy()).tobytes()).hexdigest()
                      for w in self.model.weights}
            with open(out_path, "a") as f:
                f.write(json.dumps({"step": batch, "loss": float(logs["loss"]),
                                    "weights": digest}) + "\n")
            if batch + 1 >= stop:
                self.model.stop_training = True

    model.train(train, None, learning_rate=args.all_lr, epochs=1, layers="all",
                custom_callbacks=[HashWeights()], verbose=0, seed=args.train_seed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--stop", type=int, default=5, help="steps per process")
    parser.add_argument("--data", help="tinyvoc-layout folder (default: the demo's synthetic set)")
    parser.add_argument("--keep-fusion", action="store_true",
                        help="turn Grappler's remapper back on in the seeded runs")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "seeded_repeat.json"))
    parser.add_argument("--worker", nargs=3, metavar=("DATA", "LOGS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker[:2], args.stop, args.worker[2], args.keep_fusion)

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = os.path.join(tmp, "data")
            subprocess.run([sys.executable, os.path.join(ROOT, "samples", "tinyvoc.py"), "synth",
                            data, "--train", "300", "--test", "4"], check=True,
                           stdout=subprocess.DEVNULL)
        runs, started = [], time.time()
        for run in range(args.runs):
            out = os.path.join(tmp, f"run{run}.jsonl")
            t0 = time.time()
            subprocess.run([sys.executable, os.path.abspath(__file__), "--stop", str(args.stop),
                            "--worker", data, os.path.join(tmp, f"logs{run}"), out]
                           + (["--keep-fusion"] if args.keep_fusion else []),
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with open(out) as f:
                rows = [json.loads(line) for line in f]
            runs.append(rows)
            print(f"run {run + 1}/{args.runs}: {len(rows)} steps in {time.time() - t0:.0f} s", flush=True)

    steps = min(len(rows) for rows in runs)
    table = []
    for step in range(steps):
        outcomes = {json.dumps(rows[step]["weights"], sort_keys=True) for rows in runs}
        differing = sorted({name for rows in runs for name, value in rows[step]["weights"].items()
                            if value != runs[0][step]["weights"][name]})
        table.append({"step": step, "outcomes": len(outcomes),
                      "losses": sorted({rows[step]["loss"] for rows in runs}),
                      "weights_differing_from_run_1": len(differing)})
    fusion = "on (--keep-fusion)" if args.keep_fusion else "off (as train(seed=...) sets it)"
    print(f"\nCPU: {common.cpu_model()}; {args.runs} processes, seed 0, the demo's training, "
          f"Grappler's remapper {fusion}")
    print("| step | distinct weight sets | weights differing from run 1 | distinct losses |")
    print("|---|---|---|---|")
    for row in table:
        print(f"| {row['step']} | {row['outcomes']} | {row['weights_differing_from_run_1']} "
              f"| {len(row['losses'])} |")
    repeats = all(row["outcomes"] == 1 for row in table)
    print("\nThe runs repeat." if repeats else "\nThe runs do NOT repeat.")
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu": common.cpu_model(),
              "runs": args.runs, "keep_fusion": args.keep_fusion, "stop": args.stop,
              "repeat": repeats, "wall_s": time.time() - started, "steps": table}
    tmp_out = args.out + ".tmp"
    with open(tmp_out, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp_out, args.out)
    return 0 if repeats else 1


if __name__ == "__main__":
    sys.exit(main())
