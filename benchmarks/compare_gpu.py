"""Ours (Keras 3 on JAX) against torchvision on one GPU, in float32, bfloat16 and float16
(issues 13 and 17).

On a machine with a CPU, the VOC images and the main .venv, write the inputs once:

    .venv/bin/python benchmarks/compare_gpu.py --prepare .gpu/data.npz

On the GPU machine (JAX and torch there, no TensorFlow; keras, optree, namex and
pycocotools carried as wheels: see benchmarks/README.md), in one Python for both sides:

    python3 benchmarks/compare_gpu.py --data .gpu/data.npz --json OUT.json --budget-s 420

Each figure comes from a fresh worker process (benchmarks/worker_ours.py under
KERAS_BACKEND=jax, benchmarks/worker_torchvision.py on "cuda"), run one after another
on the one GPU. Ours runs its `Config.PRECISION` (Keras' dtype policy); torchvision
the same precision through `torch.autocast("cuda", dtype)`, with loss scaling in
float16 on both sides. Both keep their frameworks' GPU defaults: float32
convolutions may use TF32 on both. The most important measurements come first;
once --budget-s has passed no new worker starts, and the JSON is rewritten after
every result, so a run cut short keeps what it measured. Prints a table naming the GPU.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402
import compare_torchvision as ct  # noqa: E402

SIDES = {"ours": os.path.join(HERE, "worker_ours.py"),
         "torchvision": os.path.join(HERE, "worker_torchvision.py")}
SHORT = common.PRECISION_NAMES
MATMUL_ROW = "matmul TFLOP/s (torch; GPU: 8192^3)"
# (row, task, batch, extra worker arguments)
ROWS = (
    ("inference s/image (equal work, 256-wide RPN)", "infer", 1, []),
    ("train step s, batch 2", "train", 2, []),
    ("train step s, batch 1", "train", 1, []),
    ("inference s/image (our defaults, 512-wide RPN)", "infer", 1, ["--rpn-conv-channels", "512"]),
)
VARIANTS = [(side, p) for side in ("torchvision", "ours") for p in common.PRECISIONS]
# What runs, most wanted first: (row index, precisions); each for both sides, ours first,
# except that torchvision has no "our defaults" row (its RPN conv is 256 wide).
PRIORITY = ((0, ("float32", "mixed_bfloat16")), (1, ("float32", "mixed_bfloat16")),
            (0, ("mixed_float16",)), (1, ("mixed_float16",)), (2, common.PRECISIONS),
            (3, common.PRECISIONS))


def gpu_name():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def plan():
    """(row, side, precision, task, batch, extra) in the order they run."""
    jobs = [(MATMUL_ROW, "torchvision", p, "matmul", 1, []) for p in common.PRECISIONS]
    for index, precisions in PRIORITY:
        row, task, batch, extra = ROWS[index]
        for precision in precisions:
            for side in ("ours", "torchvision"):
                if not (side == "torchvision" and extra):
                    jobs.append((row, side, precision, task, batch, extra))
    return jobs


def run(args, job):
    row, side, precision, task, batch, extra = job
    worker = (args.torch_python if side == "torchvision" else sys.executable, SIDES[side])
    env = {"KERAS_BACKEND": "jax"} if side == "ours" else {}
    data = None if task == "matmul" else args.data
    extra = list(extra) + ["--precision", precision, "--device", args.device,
                           "--image-size", str(args.image_size)]
    result = ct.run_worker(side, task, data, batch, args.runs, args.warmup, "glibc-default",
                           args.timeout, extra_args=extra, extra_env=env, worker=worker)
    result.update({"row": row, "side": side, "precision": precision})
    return result


def value(result):
    """The row's figure: the median time, or for matmul the TFLOP/s of the median call."""
    if "error" in result:
        return None
    median = statistics.median(result["times"])
    return result["flop_per_call"] / median / 1e12 if result["task"] == "matmul" else median


def table(results, gpu, args):
    columns = VARIANTS
    header = "| measurement | " + " | ".join(f"{s} {SHORT[p]}" for s, p in columns) + " |"
    keras_version = next((r["keras"] for r in results if "keras" in r), "?")
    torch_version = next((r["versions"]["torch"] for r in results if "versions" in r), "?")
    lines = [f"GPU: {gpu}; {args.image_size}x{args.image_size} inputs; ours on Keras "
             f"{keras_version} / JAX, torchvision on torch {torch_version}",
             "", header, "|---" * (len(columns) + 1) + "|"]
    by_key = {(r["row"], r["side"], r["precision"]): r for r in results}

    def line(label, row, figure):
        """One table line: `figure(result)` of each column's result of `row`."""
        cells = []
        for side, precision in columns:
            r = by_key.get((row, side, precision))
            if r is not None and "error" in r:
                cells.append("error")
                continue
            v = None if r is None else figure(r)
            cells.append("-" if v is None else f"{v:.4g}")
        return f"| {label} | " + " | ".join(cells) + " |"

    lines += [line(row, row, value) for row in [MATMUL_ROW] + [row for row, *_ in ROWS]]
    for field, label in (("first_call_s", "first call s (compile)"), ("gpu_peak_mib", "GPU peak MiB")):
        lines += [line(f"{label}, {row.split(' (')[0]}", row, lambda r: r.get(field))
                  for row, *_ in ROWS[:2]]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", metavar="NPZ", help="write the inputs (VOC images, shapes) and exit")
    parser.add_argument("--data", help="the inputs --prepare wrote")
    parser.add_argument("--image-size", type=int, default=1024, help="COCO-size square inputs")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per worker")
    parser.add_argument("--budget-s", type=float, default=420,
                        help="start no new worker after this many seconds")
    parser.add_argument("--json", default=os.path.join(HERE, "gpu_results.json"))
    parser.add_argument("--device", default="cuda", choices=common.DEVICES,
                        help="cpu: a dry run of the same plan on this machine's CPU")
    parser.add_argument("--torch-python", default=sys.executable,
                        help="the Python with torch and torchvision (default: this one)")
    args = parser.parse_args()
    if args.prepare:
        os.makedirs(os.path.dirname(os.path.abspath(args.prepare)), exist_ok=True)
        ct.prepare_data(args.prepare, voc_count=4, shapes_count=8)
        print(f"wrote {args.prepare} ({os.path.getsize(args.prepare) / 2 ** 20:.1f} MiB)")
        return
    if not args.data:
        parser.error("--data NPZ is needed (write it with --prepare)")
    gpu, start, results = gpu_name(), time.time(), []
    record = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "gpu": gpu, "cpu": common.cpu_model(), "image_size": args.image_size,
              "runs": args.runs, "warmup": args.warmup, "results": results, "skipped": []}
    for job in plan():
        if time.time() - start > args.budget_s:
            record["skipped"].append(job[:5])
            continue
        result = run(args, job)
        results.append(result)
        shown = value(result)
        print(f"[{time.time() - start:5.0f} s] {job[0]} | {job[1]} {SHORT[job[2]]}: "
              + (f"{shown:.4g}" if shown is not None else result["error"][-600:]), flush=True)
        record["total_s"] = time.time() - start
        with open(args.json + ".tmp", "w") as f:
            json.dump(record, f, indent=1)
        os.replace(args.json + ".tmp", args.json)
    print("\n" + table(results, gpu, args))
    if record["skipped"]:
        print(f"\nnot run (--budget-s {args.budget_s:.0f} spent): {len(record['skipped'])} workers")
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
