"""Ours in float32 vs ours in mixed_bfloat16 (Config.PRECISION), side by side (issue 13),
and with --jax the same on Keras' JAX backend (issue 17).

    .venv/bin/python benchmarks/compare_precision.py [--rounds 1] [--torchvision] [--jax]

One interleaved run: per round and measurement, a fresh worker process for each
precision (the order alternates), so the machine's drift hits both; ratios are
taken within a round, then the median over rounds. Measures inference s/image at
the equal-work settings (256-wide RPN) and at our defaults (Matterport's 512-wide
RPN), the training step at batch 1 (and 2 with --train-batches 1 2), the first
detect call (graph build + trace), and the float32 and bfloat16 matmul rates in the
same run, against which the achieved inference FLOP/s are set. With --torchvision
(needs .venv-bench, see README) torchvision runs in float32 and under
torch.autocast("cpu", dtype=torch.bfloat16) in the same rounds.

Ours' TensorFlow workers hide JAX (see worker_ours.py): the dev .venv has it for the
tests, the main install does not, and `import tensorflow` loads it when importable.

Prints a table naming the CPU and writes benchmarks/precision_results.json.
Every result records the load average before and after it: on a shared machine
read the ratios, not the absolute times.
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402
import compare_torchvision as ct  # noqa: E402  (sets sys.path to the repo root)

# (label, worker side, worker arguments[, worker environment])
VARIANTS = {
    "ours float32": ("ours", ["--precision", "float32"]),
    "ours bfloat16": ("ours", ["--precision", "mixed_bfloat16"]),
    "ours JAX float32": ("ours", ["--precision", "float32"], {"KERAS_BACKEND": "jax"}),
    "ours JAX bfloat16": ("ours", ["--precision", "mixed_bfloat16"], {"KERAS_BACKEND": "jax"}),
    "torchvision float32": ("torchvision", ["--precision", "float32"]),
    "torchvision bfloat16 autocast": ("torchvision", ["--precision", "mixed_bfloat16"]),
}
# (row name, task, batch, extra worker arguments)
MEASUREMENTS = {
    "inference s/image (equal work, 256-wide RPN)": ("infer", 1, []),
    "inference s/image (our defaults, 512-wide RPN)": ("infer", 1, ["--rpn-conv-channels", "512"]),
    "train step s, batch 1": ("train", 1, []),
    "train step s, batch 2": ("train", 2, []),
}


def measure(args, data):
    raw = []
    rows = [name for name in MEASUREMENTS
            if MEASUREMENTS[name][0] in args.tasks
            and (MEASUREMENTS[name][0] != "train" or MEASUREMENTS[name][1] in args.train_batches)]
    for rnd in range(args.rounds):
        for row in rows:
            task, batch, extra = MEASUREMENTS[row]
            variants = list(args.variants)
            if (rnd + len(raw)) % 2:
                variants.reverse()
            for label in variants:
                side, variant_args, *env = VARIANTS[label]
                if side == "torchvision" and "--rpn-conv-channels" in extra:
                    continue  # torchvision's RPN conv is 256 wide
                runs = args.infer_runs if task == "infer" else args.train_runs
                jax_flag = ["--jax-importable"] if side == "ours" and args.jax_importable else []
                result = ct.run_worker(side, task, data, batch, runs, args.warmup, "glibc-default",
                                       args.timeout, variant_args + extra + jax_flag, *env)
                result.update({"round": rnd, "row": row, "variant": label})
                raw.append(result)
                brief = (f"median {statistics.median(result['times']):.3f}s first "
                         f"{result.get('build_s', 0) + result['first_call_s']:.1f}s load "
                         f"{result['load_before']:.1f}/{result['load_after']:.1f}"
                         if "times" in result else result["error"][:300])
                print(f"[round {rnd}] {row} | {label}: {brief}", flush=True)
    return raw


def _round_ratio(raw, num_row, num, den_row, den):
    """Median over rounds of (median time of `num` in `num_row`) / (that of `den` in `den_row`)."""
    per_round = {}
    for r in raw:
        for key, (row, variant) in (("num", (num_row, num)), ("den", (den_row, den))):
            if r.get("row") == row and r.get("variant") == variant and "times" in r:
                per_round.setdefault(r["round"], {})[key] = statistics.median(r["times"])
    ratios = [m["num"] / m["den"] for m in per_round.values() if "num" in m and "den" in m]
    return statistics.median(ratios) if ratios else None


def table(raw, variants, rates, flops):
    """Markdown: per row, each variant's median (min) and its ratio to ours float32."""
    head = "| measurement | " + " | ".join(variants) + " | bf16 / f32 (ours, per-round median) |"
    lines = [head, "|" + "---|" * (len(variants) + 2)]
    summary = {}
    for row in MEASUREMENTS:
        cells, per_round = [], {}
        for label in variants:
            results = [r for r in raw if r.get("row") == row and r.get("variant") == label
                       and "times" in r]
            times = [t for r in results for t in r["times"]]
            cells.append(f"{statistics.median(times):.3f} ({min(times):.3f})" if times else "-")
            for r in results:
                per_round.setdefault(r["round"], {})[label] = statistics.median(r["times"])
        ratios = [m["ours bfloat16"] / m["ours float32"] for m in per_round.values()
                  if "ours bfloat16" in m and "ours float32" in m]
        if not any(c != "-" for c in cells):
            continue
        ratio = statistics.median(ratios) if ratios else None
        summary[row] = {"bf16_over_f32": ratio, "per_round": ratios}
        lines.append(f"| {row} | " + " | ".join(cells) + " | "
                     + (f"**{ratio:.2f}**" if ratio else "-") + " |")
    lines.append("")
    equal_work_infer = next(iter(MEASUREMENTS))
    for row, (_, _, extra) in MEASUREMENTS.items():
        # torchvision runs its own (256-wide) RPN only: our defaults are set against that row.
        torchvision_row = equal_work_infer if "--rpn-conv-channels" in extra else row
        for num, den, den_row in (("ours float32", "torchvision float32", torchvision_row),
                                  ("ours bfloat16", "torchvision bfloat16 autocast", torchvision_row),
                                  ("ours JAX float32", "ours float32", row),
                                  ("ours JAX bfloat16", "ours bfloat16", row),
                                  ("ours JAX bfloat16", "ours JAX float32", row)):
            ratio = _round_ratio(raw, row, num, den_row, den)
            if ratio is not None:
                lines.append(f"- {row}: {num} / {den} = **{ratio:.2f}**")
                summary.setdefault(row, {})[f"{num} / {den}"] = ratio
    for row in MEASUREMENTS:
        peaks = []
        for label in variants:
            values = [r["peak_rss_mib"] for r in raw if r.get("row") == row
                      and r.get("variant") == label and "peak_rss_mib" in r]
            if values:
                peaks.append(f"{label} {statistics.median(values):.0f}")
        if peaks:
            lines.append(f"- peak RSS MiB, {row}: " + ", ".join(peaks))
    firsts = {}
    for label in variants:
        for r in raw:
            if r.get("variant") == label and "times" in r and r["task"] == "infer" \
                    and "build_s" in r and "512" not in r["row"]:
                firsts.setdefault(label, []).append(r["build_s"] + r["first_call_s"])
    for label, values in firsts.items():
        lines.append(f"- first detect call incl. graph build, {label}: "
                     f"{statistics.median(values):.1f} s (runs: {', '.join(f'{v:.1f}' for v in values)})")
    for name, rate in rates.items():
        lines.append(f"- 3072^3 matmul, 2 threads, best of 10, {name}: {rate / 1e9:.0f} GFLOP/s")
    for row, fl in flops.items():
        for label, precision in (("ours float32", "float32"), ("ours bfloat16", "bfloat16")):
            times = [t for r in raw if r.get("row") == row and r.get("variant") == label
                     and "times" in r for t in r["times"]]
            rate = rates.get(f"ours {precision}")
            if times and rate:
                achieved = fl / statistics.median(times)
                lines.append(f"- {row}, {label}: {fl / 1e9:.1f} GFLOP per image, achieved "
                             f"{achieved / 1e12:.3f} TFLOP/s = {100 * achieved / rate:.0f} % of "
                             f"its {precision} matmul rate")
    jax_loaded = {r["jax_loaded"] for r in raw if r.get("side") == "ours"
                  and r.get("backend") == "tensorflow" and "jax_loaded" in r}
    if jax_loaded:
        lines.append("- JAX loaded in ours' TensorFlow workers: "
                     + ("yes (--jax-importable)" if jax_loaded == {True} else
                        "no (hidden, as in the main install)" if jax_loaded == {False} else "mixed"))
    loads = [x for r in raw for x in (r.get("load_before"), r.get("load_after")) if x is not None]
    if loads:
        lines.append(f"- load average (1 min) around the workers: {min(loads):.1f}..{max(loads):.1f}")
    return "\n".join(lines), summary


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--infer-runs", type=int, default=6)
    parser.add_argument("--train-runs", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--tasks", nargs="+", default=["infer", "train"])
    parser.add_argument("--train-batches", nargs="+", type=int, default=[1])
    parser.add_argument("--torchvision", action="store_true")
    parser.add_argument("--jax", action="store_true", help="also ours under KERAS_BACKEND=jax")
    parser.add_argument("--jax-importable", action="store_true",
                        help="passed to ours' workers (see worker_ours.py --help)")
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"],
                        help="e.g. float32 alone on a CPU without bfloat16 units, where "
                             "bfloat16 is emulated")
    parser.add_argument("--voc-images", type=int, default=8)
    parser.add_argument("--voc-dir", default=ct.VOC_DIR, help="VOC test images (default %(default)s)")
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--json", default=os.path.join(HERE, "precision_results.json"))
    args = parser.parse_args()
    args.variants = [v for v in VARIANTS
                     if (args.torchvision or VARIANTS[v][0] == "ours") and (args.jax or "JAX" not in v)
                     and VARIANTS[v][1][1] in args.precisions]
    if args.torchvision and not os.path.exists(ct.TORCH_PY):
        sys.exit(f"missing {ct.TORCH_PY}: see benchmarks/README.md")

    ct.VOC_DIR = args.voc_dir
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.npz")
        ct.prepare_data(data, args.voc_images, shapes_count=8)
        rates, matmul = {}, {}
        for label in args.variants:
            side, variant_args, *env = VARIANTS[label]
            if env:
                continue  # the matmul rates are TensorFlow's
            name = f"{side} {'bfloat16' if 'mixed_bfloat16' in variant_args else 'float32'}"
            matmul[name] = ct.run_worker(side, "matmul", None, 1, 10, 3, "glibc-default", 600,
                                         variant_args)
            if "times" in matmul[name]:
                rates[name] = matmul[name]["flop_per_call"] / min(matmul[name]["times"])
        flops = {}
        for row, (task, _, extra) in MEASUREMENTS.items():
            if task == "infer" and "infer" in args.tasks:
                result = ct.run_worker("ours", "flops", None, 1, 1, 0, "glibc-default", 1200, extra)
                if "flops" in result:
                    flops[row] = result["flops"]
        raw = measure(args, data)
    text, summary = table(raw, args.variants, rates, flops)
    text = f"CPU: {common.cpu_model()}, {os.cpu_count()} CPUs, workers use 2 threads\n\n" + text
    with open(args.json, "w") as f:
        json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"),
                   "cpu": common.cpu_model(), "wall_s": time.time() - started, "rates": rates,
                   "matmul": matmul, "flops": flops, "summary": summary, "raw": raw,
                   "table": text}, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
