"""Side-by-side benchmark of our Mask R-CNN and torchvision's maskrcnn_resnet50_fpn.

    bash benchmarks/run.sh            # or: .venv/bin/python benchmarks/compare_torchvision.py

Every figure comes from a fresh worker process (peak RSS is per process), 2
threads each; ours runs in .venv, torchvision in .venv-bench. The two sides are
interleaved measurement by measurement (and the order alternates between
rounds), so the machine's drift hits both alike; ratios are taken within a round.
Writes benchmarks/results.json and benchmarks/RESULTS.md and prints the table.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import common  # noqa: E402

OURS_PY = os.path.join(ROOT, ".venv", "bin", "python")
TORCH_PY = os.path.join(ROOT, ".venv-bench", "bin", "python")
WORKERS = {"ours": (OURS_PY, os.path.join(HERE, "worker_ours.py")),
           "torchvision": (TORCH_PY, os.path.join(HERE, "worker_torchvision.py"))}
VOC_DIR = os.path.join(ROOT, "..", "shared", "data", "tinyvoc", "test_images")
# glibc: never serve allocations by mmap, never trim the heap back to the kernel.
ALLOCATORS = {
    "glibc-default": {},
    "no-mmap-no-trim": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(64 << 30)},
}


def prepare_data(path, voc_count, shapes_count):
    """Write the inputs both sides use: VOC test images and shapes samples."""
    import skimage.io

    from samples.shapes import ShapesDataset

    names = sorted(f for f in os.listdir(VOC_DIR) if f.lower().endswith((".jpg", ".png")))
    arrays = {}
    for i, name in enumerate(names[:voc_count]):
        image = skimage.io.imread(os.path.join(VOC_DIR, name))
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        arrays[f"voc_{i}"] = image[..., :3].astype(np.uint8)
    dataset = ShapesDataset()
    size = common.IMAGE_SIZE
    dataset.load_shapes(shapes_count, size, size, seed=8)
    dataset.prepare()
    images = np.zeros((shapes_count, size, size, 3), np.uint8)
    masks = np.zeros((shapes_count, size, size, 4), bool)
    class_ids = np.zeros((shapes_count, 4), np.int32)
    counts = np.zeros(shapes_count, np.int32)
    for i in dataset.image_ids:
        m, c = dataset.load_mask(i)
        images[i], masks[i, :, :, :c.size], class_ids[i, :c.size], counts[i] = (
            dataset.load_image(i), m, c, c.size)
    np.savez(path, voc_count=min(voc_count, len(names)), shapes_count=shapes_count,
             shapes_images=images, shapes_masks=masks, shapes_class_ids=class_ids,
             shapes_counts=counts, **arrays)


def load_average():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def run_worker(side, task, data, batch, runs, warmup, allocator, timeout, extra_args=(),
               extra_env=None, worker=None):
    """One fresh worker process; its RESULT dict (or an "error" dict). worker: its
    (python, script), default ``WORKERS[side]``."""
    python, script = worker or WORKERS[side]
    cmd = [python, script, "--task", task, "--runs", str(runs), "--warmup", str(warmup),
           "--batch", str(batch)] + (["--data", data] if data else []) + list(extra_args)
    env = {**os.environ, **ALLOCATORS[allocator], "PYTHONHASHSEED": "0", **(extra_env or {})}
    for key in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"):
        if key not in ALLOCATORS[allocator]:
            env.pop(key, None)
    load_before = load_average()
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"side": side, "task": task, "batch": batch, "error": f"timeout after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
            result.update({"allocator": allocator, "wall_s": time.perf_counter() - start,
                           "load_before": load_before, "load_after": load_average()})
            return result
    return {"side": side, "task": task, "batch": batch, "allocator": allocator, "args": list(extra_args),
            "error": f"exit {proc.returncode}: {proc.stderr[-2000:]}"}


def summary(times):
    return {"median_s": statistics.median(times), "min_s": min(times), "n": len(times)}


MEASUREMENTS = (("infer", 1), ("train", 1), ("train", 2))
ROW_NAMES = {("infer", 1): "inference s/image", ("train", 1): "train step s, batch 1",
             ("train", 2): "train step s, batch 2"}


def benchmark(args, data):
    """All rounds; returns the list of raw worker results."""
    raw = []
    sides = ["ours", "torchvision"]
    for rnd in range(args.rounds):
        for (task, batch) in MEASUREMENTS:
            if task not in args.tasks:
                continue
            for allocator in args.allocators:
                order = sides if (rnd + len(raw)) % 2 == 0 else sides[::-1]
                for side in order:
                    runs = args.infer_runs if task == "infer" else args.train_runs
                    result = run_worker(side, task, data, batch, runs, args.warmup, allocator,
                                        args.timeout)
                    result["round"] = rnd
                    raw.append(result)
                    brief = (f"median {summary(result['times'])['median_s']:.3f}s "
                             f"rss {result['peak_rss_mib']:.0f}MiB" if "times" in result
                             else result["error"][:300])
                    print(f"[round {rnd}] {side:11} {task} b{batch} {allocator:16} {brief}",
                          flush=True)
    return raw


def aggregate(raw):
    """Per (task, batch, allocator): each side's pooled times and RSS; ratios per round."""
    rows = []
    for (task, batch) in MEASUREMENTS:
        for allocator in ALLOCATORS:
            cell = {}
            for side in ("ours", "torchvision"):
                results = [r for r in raw if r.get("task") == task and r.get("batch") == batch
                           and r.get("allocator") == allocator and r.get("side") == side
                           and "times" in r]
                if results:
                    times = [t for r in results for t in r["times"]]
                    cell[side] = {**summary(times),
                                  "peak_rss_mib": max(r["peak_rss_mib"] for r in results)}
            if len(cell) < 2:
                continue
            # Ratios of medians taken within each round (same drift on both sides).
            ratios = []
            for rnd in sorted({r["round"] for r in raw}):
                med = {}
                for side in ("ours", "torchvision"):
                    t = [x for r in raw if r.get("round") == rnd and r.get("side") == side
                         and r.get("task") == task and r.get("batch") == batch
                         and r.get("allocator") == allocator and "times" in r for x in r["times"]]
                    if t:
                        med[side] = statistics.median(t)
                if len(med) == 2:
                    ratios.append(med["ours"] / med["torchvision"])
            rows.append({"task": task, "batch": batch, "allocator": allocator, **cell,
                         "time_ratio_per_round": ratios,
                         "time_ratio": statistics.median(ratios) if ratios else None,
                         "rss_ratio": cell["ours"]["peak_rss_mib"] / cell["torchvision"]["peak_rss_mib"]})
    return rows


def markdown(rows, extra):
    lines = ["| measurement | allocator | ours median (min) | torchvision median (min) | "
             "ours / tv time | ours RSS MiB | tv RSS MiB | ours / tv RSS |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        o, t = r["ours"], r["torchvision"]
        lines.append(
            f"| {ROW_NAMES[(r['task'], r['batch'])]} | {r['allocator']} | "
            f"{o['median_s']:.3f} ({o['min_s']:.3f}) | {t['median_s']:.3f} ({t['min_s']:.3f}) | "
            f"**{r['time_ratio']:.2f}** | {o['peak_rss_mib']:.0f} | {t['peak_rss_mib']:.0f} | "
            f"**{r['rss_ratio']:.2f}** |")
    lines.append("")
    for key, value in extra.items():
        lines.append(f"- {key}: {value}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--infer-runs", type=int, default=6)
    parser.add_argument("--train-runs", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tasks", nargs="+", default=["infer", "train"])
    parser.add_argument("--allocators", nargs="+", default=list(ALLOCATORS), choices=list(ALLOCATORS))
    parser.add_argument("--voc-images", type=int, default=12)
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--json", default=os.path.join(HERE, "results.json"))
    parser.add_argument("--markdown", default=os.path.join(HERE, "RESULTS.md"))
    parser.add_argument("--merge", nargs="+", metavar="RESULTS_JSON",
                        help="measure nothing: pool the rounds of earlier results files "
                             "and print their table")
    args = parser.parse_args()
    if args.merge:
        raw = []
        for i, path in enumerate(args.merge):
            with open(path) as f:
                for r in json.load(f)["raw"]:
                    raw.append({**r, "round": f"{i}.{r['round']}"})
        print(markdown(aggregate(raw), {"pooled from": ", ".join(args.merge)}))
        return
    for side, (python, _) in WORKERS.items():
        if not os.path.exists(python):
            sys.exit(f"missing {python}: run benchmarks/run.sh, which creates it")

    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.npz")
        prepare_data(data, args.voc_images, shapes_count=8)
        started = time.time()
        matmul = {side: run_worker(side, "matmul", None, 1, 10, 3, "glibc-default", 600)
                  for side in ("ours", "torchvision")}
        print("matmul", {s: min(m.get("times", [0])) for s, m in matmul.items()}, flush=True)
        flops = run_worker("ours", "flops", None, 1, 1, 0, "glibc-default", 1200)
        print("flops", flops.get("flops", flops.get("error")), flush=True)
        raw = benchmark(args, data)
    rows = aggregate(raw)

    # Best of the runs: the machine's capacity, least disturbed by other load.
    peak = {side: m["flop_per_call"] / min(m["times"])
            for side, m in matmul.items() if "times" in m}
    extra = {}
    if "flops" in flops:
        extra["our FLOPs per 512x512 inference (TF profiler + analytic heads)"] = f"{flops['flops'] / 1e9:.1f} GFLOP"
    for side, rate in peak.items():
        extra[f"float32 3072^3 matmul, 2 threads, best of 10 ({side})"] = f"{rate / 1e9:.0f} GFLOP/s"
    infer_rows = [r for r in rows if r["task"] == "infer"]
    if "flops" in flops and "ours" in peak and infer_rows:
        best = min(r["ours"]["median_s"] for r in infer_rows)
        achieved = flops["flops"] / best
        extra["our achieved inference throughput"] = (
            f"{achieved / 1e9:.0f} GFLOP/s = {100 * achieved / peak['ours']:.0f} % of TF's matmul rate")
    extra["load average during the run (1 min, min..max)"] = "{:.1f}..{:.1f}".format(
        min(r.get("load_before") or 0 for r in raw), max(r.get("load_after") or 0 for r in raw))
    table = markdown(rows, extra)
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "host": platform.node(), "cpus": os.cpu_count(), "wall_s": time.time() - started,
              "settings": {k: getattr(common, k) for k in dir(common) if k.isupper()},
              "rows": rows, "matmul": matmul, "flops": flops, "raw": raw, "extra": extra}
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    with open(args.markdown + ".table", "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
