"""Ours against Matterport's own TF2 code, through the same Matterport-API script (issue 13).

    .venv/bin/python benchmarks/compare_matterport.py --matterport-dir DIR [--rounds 2]

DIR is a checkout of a TF2 port of Matterport's Mask R-CNN (its ``mrcnn/`` package),
e.g. akTwelve/Mask_RCNN (measured: d9f01dc). It runs on tf-keras (Keras 2) in
``.venv-matterport``: made on first use, a venv that sees the main ``.venv``'s packages
plus ``tf-keras`` of the same version as TensorFlow. ``worker_matterport_api.py``
runs both sides at Matterport's default settings (ResNet-50, 512x512, 512-wide RPN,
1000 proposals, exactly 100 detections; training: 200 ROIs per image, all layers).
Each figure comes from a fresh process with 2 threads; the sides alternate within a
round and the order flips between rounds; ratios are taken within a round, then the
median over rounds. Prints a table naming the CPU and writes
benchmarks/matterport_results.json.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402
import compare_torchvision as ct  # noqa: E402  (sets sys.path to the repo root)

MATTERPORT_VENV = os.path.join(ct.ROOT, ".venv-matterport")
WORKER = os.path.join(HERE, "worker_matterport_api.py")


def matterport_python():
    """``.venv-matterport``'s python, making the venv first if it is missing."""
    python = os.path.join(MATTERPORT_VENV, "bin", "python")
    if os.path.exists(python):
        return python
    site_packages = subprocess.run(
        [ct.OURS_PY, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    tf_version = subprocess.run(
        [ct.OURS_PY, "-c", "import importlib.metadata as m; print(m.version('tensorflow'))"],
        capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "venv", MATTERPORT_VENV], check=True)
    own = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(own, "main_venv.pth"), "w") as f:
        f.write(site_packages + "\n")  # TensorFlow, numpy, scikit-image... of the main venv
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", f"tf-keras=={tf_version}"],
                   check=True)
    return python


def measure(args, data):
    workers = {"ours": (ct.OURS_PY, WORKER), "matterport": (matterport_python(), WORKER)}
    environments = {"ours": {}, "matterport": {"MATTERPORT_DIR": os.path.abspath(args.matterport_dir),
                                               "TF_USE_LEGACY_KERAS": "1"}}
    rows = (([("infer", 1)] if "infer" in args.tasks else [])
            + ([("train", batch) for batch in args.train_batches] if "train" in args.tasks else []))
    raw = []
    for rnd in range(args.rounds):
        for task, batch in rows:
            sides = ["ours", "matterport"] if rnd % 2 == 0 else ["matterport", "ours"]
            for side in sides:
                runs = args.runs if task == "infer" else args.train_runs
                result = ct.run_worker(side, task, data, batch, runs, 1, "glibc-default",
                                       args.timeout, extra_env=environments[side],
                                       worker=workers[side])
                result["round"] = rnd
                raw.append(result)
                shown = ("error: " + result["error"][-300:] if "error" in result
                         else f"median {statistics.median(result['times']):.3f} s")
                print(f"round {rnd + 1} {task} b{batch} {side}: {shown}", flush=True)
    return rows, raw


def table(rows, raw):
    def results(side, task, batch):
        return {r["round"]: r for r in raw
                if r["side"] == side and r["task"] == task and r["batch"] == batch and "error" not in r}

    measures = (("median s", lambda r: statistics.median(r["times"])),
                ("first call incl. build, s", lambda r: r["build_s"] + r["first_call_s"]),
                ("peak RSS MiB", lambda r: r["peak_rss_mib"]))
    lines = [f"CPU: {common.cpu_model()}, 2 threads per worker",
             "| measurement | ours | Matterport's own | ours / Matterport |", "|---|---|---|---|"]
    for task, batch in rows:
        ours, theirs = results("ours", task, batch), results("matterport", task, batch)
        rounds = sorted(set(ours) & set(theirs))
        if not rounds:
            lines.append(f"| {task} batch {batch} | no pair of results | | |")
            continue
        name = "inference, one image" if task == "infer" else f"training step, batch {batch}"
        for unit, value in measures:
            a = [value(ours[i]) for i in rounds]
            b = [value(theirs[i]) for i in rounds]
            ratio = statistics.median(x / y for x, y in zip(a, b))
            lines.append(f"| {name}, {unit} | {_number(statistics.median(a))} "
                         f"| {_number(statistics.median(b))} | {ratio:.2f} |")
    return "\n".join(lines)


def _number(value):
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matterport-dir", required=True,
                        help="checkout of a Matterport TF2 port (holds mrcnn/model.py)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tasks", nargs="+", default=["infer", "train"], choices=["infer", "train"])
    parser.add_argument("--train-batches", nargs="+", type=int, default=[1])
    parser.add_argument("--runs", type=int, default=6, help="timed detect() calls per worker")
    parser.add_argument("--train-runs", type=int, default=3, help="timed training steps per worker")
    parser.add_argument("--voc-images", type=int, default=8)
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--json", default=os.path.join(HERE, "matterport_results.json"))
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.matterport_dir, "mrcnn", "model.py")):
        sys.exit(f"compare_matterport: {args.matterport_dir}/mrcnn/model.py not found; pass "
                 "--matterport-dir a checkout of a Matterport TF2 port, e.g. akTwelve/Mask_RCNN")
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.npz")
        ct.prepare_data(data, args.voc_images, shapes_count=8)
        rows, raw = measure(args, data)
    text = table(rows, raw)
    print(text)
    with open(args.json + ".tmp", "w") as f:
        json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": common.cpu_model(),
                   "matterport_dir": os.path.abspath(args.matterport_dir), "table": text,
                   "wall_s": time.time() - started, "raw": raw}, f, indent=1)
    os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
