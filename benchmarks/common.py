"""Shared by the benchmark workers of both sides (stdlib + numpy only: it runs in
both virtualenvs).

The equal-work settings of issue 8 live here so both sides read one definition.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

IMAGE_SIZE = 512            # both sides see 512x512 inputs
NUM_CLASSES_INFER = 81      # COCO-sized heads (background + 80) for inference
NUM_CLASSES_TRAIN = 4       # shapes: background + square, circle, triangle
RPN_POST_NMS_INFER = 1000   # proposals after NMS at inference
RPN_POST_NMS_TRAIN = 2000   # ... and in training
TRAIN_ROIS = 512            # sampled ROIs per image in training
POSITIVE_FRACTION = 0.25
DETECTIONS = 100            # forced: score threshold 0 on both sides
RPN_CONV_CHANNELS = 256     # torchvision's RPN conv width (ours defaults to Matterport's 512)
THREADS = 2
LEARNING_RATE = 0.001
MOMENTUM = 0.9
WEIGHT_DECAY = 0.0001
CLIP_NORM = 5.0
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")  # Config.PRECISION values benchmarked
# Short names of the PRECISIONS for table headings.
PRECISION_NAMES = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}
DEVICES = ("cpu", "cuda")   # cuda: ours under KERAS_BACKEND=jax on the GPU, torchvision on "cuda"


class _HiddenPackages:
    """A meta path finder under which the named top-level packages do not import."""

    def __init__(self, names):
        self.names = frozenset(names)

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the benchmark)",
                                      name=name)
        return None


def hide_packages(*names):
    """Make the named packages unimportable in this process, as where they are not installed."""
    sys.meta_path.insert(0, _HiddenPackages(names))


def peak_rss_mib():
    """Peak resident set size of this process (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_data(path):
    """The orchestrator's npz: VOC test images and shapes training samples.

    Returns (voc_images: list of uint8 [H, W, 3],
             shapes: list of (image uint8 [S, S, 3], masks bool [S, S, n], class_ids int [n])).
    """
    data = np.load(path)
    voc = [data[f"voc_{i}"] for i in range(int(data["voc_count"]))]
    # Each data[key] reads the whole array anew: read each once (a sample's slices of
    # a fresh read kept 8 full copies alive, ~100 MiB of both sides' peak RSS).
    images, masks = data["shapes_images"], data["shapes_masks"]
    class_ids, counts = data["shapes_class_ids"], data["shapes_counts"]
    shapes = [(images[i], masks[i][..., :counts[i]], class_ids[i][:counts[i]])
              for i in range(int(data["shapes_count"]))]
    return voc, shapes


class ShapesSamples:
    """A Matterport-API ``Dataset`` over `load_data`'s shapes samples; mix it into
    the ``Dataset`` class of the package under test (ours or Matterport's)."""

    def load(self, samples):
        for class_id, name in enumerate(("square", "circle", "triangle"), start=1):
            self.add_class("shapes", class_id, name)
        for i, (image, masks, class_ids) in enumerate(samples):
            self.add_image("shapes", image_id=i, path=None, image=image, masks=masks,
                           class_ids=class_ids)

    def load_image(self, image_id):
        return self.image_info[image_id]["image"]

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        return info["masks"].astype(bool), info["class_ids"].astype(np.int32)


def timed(fn, runs, warmup):
    """Call fn(i) warmup + runs times; seconds of the timed calls."""
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(runs):
        start = time.perf_counter()
        fn(warmup + i)
        times.append(time.perf_counter() - start)
    return times


def report(result):
    """The worker's answer: one JSON line on stdout, tagged for the orchestrator."""
    result["peak_rss_mib"] = peak_rss_mib()
    result["env_malloc"] = {k: os.environ[k] for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
                            if k in os.environ}
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def worker_arguments(description, tasks):
    """The command line the workers take: --task, --data, --batch, --runs, --warmup,
    --precision, --device, --image-size, and ours' --rpn-conv-channels, --min-confidence."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--task", required=True, choices=tasks)
    parser.add_argument("--data")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", default="float32", choices=PRECISIONS,
                        help="ours: Config.PRECISION; torchvision: the mixed ones run under "
                             "torch.autocast(device, dtype=torch.bfloat16 or torch.float16)")
    parser.add_argument("--device", default="cpu", choices=DEVICES,
                        help="torchvision: the torch device; ours: checked against the backend's "
                             "device (JAX picks the GPU where one is visible)")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE,
                        help="square input side of both sides (default %(default)s)")
    parser.add_argument("--rpn-conv-channels", type=int, default=RPN_CONV_CHANNELS,
                        help="ours only: RPN_CONV_CHANNELS (512 = our default, Matterport's)")
    parser.add_argument("--jax-importable", action="store_true",
                        help="ours under TensorFlow only: leave JAX importable (import tensorflow "
                             "then loads it, ~106 MiB); by default the worker hides it, as in "
                             "the main install")
    parser.add_argument("--min-confidence", type=float, default=0.0,
                        help="ours only: DETECTION_MIN_CONFIDENCE. The default 0 forces exactly "
                             "DETECTIONS detections (equal work); a floor that leaves a few "
                             "detections measures what a trained model's inference costs")
    return parser.parse_args()


def cpu_model():
    """The CPU as `lscpu` names it, with its family and bfloat16 units: the model name
    alone ("AMD EPYC") covers CPUs whose figures do not compare."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields.get("Flags", "").split())
    units = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}"
                      for flag in ("avx512f", "avx512_bf16", "amx_bf16"))
    return (f"{fields.get('Model name', 'unknown')} (family {fields.get('CPU family', '?')}, "
            f"model {fields.get('Model', '?')}; {units})")
