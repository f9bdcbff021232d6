"""Train Mask R-CNN on the synthetic shapes data within a CPU time budget and
report mask mAP@0.5 on held-out images (issue 4's benchmark).

    .venv/bin/python benchmarks/train_shapes.py --minutes 30

ResNet-50 from random initialisation (no pretrained file is available offline)
with GroupNorm in the backbone (BACKBONE_NORM="group") and trained BatchNorm in
the heads, 128x128 images, all layers trained with SGD. The budget covers building the
graph and training (the clock starts before the model is built); evaluation is
timed separately. Prints a table and writes JSON (default
benchmarks/train_shapes_results.json).
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mrcnn.data import load_image_gt  # noqa: E402
from mrcnn.metrics import compute_ap  # noqa: E402
from mrcnn.model import MaskRCNN  # noqa: E402
from samples.shapes import ShapesConfig, ShapesDataset  # noqa: E402


class TrainConfig(ShapesConfig):
    """Matterport's shapes settings (128 px, small anchors, 32 ROIs), sized for 2 cores."""
    NAME = "shapes_bench"
    IMAGES_PER_GPU = 2
    STEPS_PER_EPOCH = 100
    VALIDATION_STEPS = 0          # held-out mAP at the end instead
    PRE_NMS_LIMIT = 2000          # 128 px images have 4092 anchors
    POST_NMS_ROIS_TRAINING = 500
    POST_NMS_ROIS_INFERENCE = 200
    MAX_GT_INSTANCES = 8          # shapes has at most 4
    LEARNING_RATE = 0.01


class EvalConfig(TrainConfig):
    IMAGES_PER_GPU = 1


class Budget(keras.callbacks.Callback):
    """Stop when the wall-clock budget is spent; divide the LR by 10 at `drop_at`
    of the budget (a single step schedule, as in Matterport's samples)."""

    def __init__(self, start, seconds, drop_at, learning_rate):
        super().__init__()
        self.start, self.seconds, self.drop_at, self.lr = start, seconds, drop_at, learning_rate
        self.dropped = False
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        elapsed = time.time() - self.start
        if not self.dropped and elapsed > self.drop_at * self.seconds:
            self.model.optimizer.learning_rate.assign(self.lr / 10.0)
            self.dropped = True
            print(f"\n[budget] step {self.steps}: LR -> {self.lr / 10.0} at {elapsed:.0f} s", flush=True)
        if elapsed > self.seconds:
            self.model.stop_training = True


def evaluate(model, dataset, config):
    """Per-image mask AP@0.5 (Matterport's compute_ap), mean over images."""
    aps, times = [], []
    for image_id in dataset.image_ids:
        image, _, gt_class_ids, gt_boxes, gt_masks = load_image_gt(
            dataset, config, image_id, use_mini_mask=False)
        start = time.perf_counter()
        r = model.detect([image])[0]
        times.append(time.perf_counter() - start)
        ap, *_ = compute_ap(gt_boxes, gt_class_ids, gt_masks, r["rois"], r["class_ids"],
                            r["scores"], r["masks"], iou_threshold=0.5)
        aps.append(ap)
    return float(np.mean(aps)), aps, float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--train-images", type=int, default=1000)
    parser.add_argument("--eval-images", type=int, default=100)
    parser.add_argument("--lr", type=float, default=TrainConfig.LEARNING_RATE)
    parser.add_argument("--drop-at", type=float, default=0.8,
                        help="share of the budget after which the LR is divided by 10")
    parser.add_argument("--model-dir", default=os.path.join(ROOT, "logs"))
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__),
                                                       "train_shapes_results.json"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--norm", choices=("group", "batch"), default="group",
                        help="BACKBONE_NORM (default group: GroupNorm, the from-scratch recipe; "
                             "batch: BatchNorm, see RESULTS.md for what it does from scratch)")
    parser.add_argument("--frozen-bn", action="store_true",
                        help="keep BatchNorm frozen (Config default TRAIN_BN=False) instead of "
                             "training it. From random init that leaves identity statistics in "
                             "every BN layer and the network collapses (RESULTS.md)")
    parser.add_argument("--min-confidence", type=float, nargs="+", default=[0.7, 0.05],
                        help="DETECTION_MIN_CONFIDENCE values to evaluate at (0.7: Config "
                             "default; 0.05: the usual evaluation threshold of torchvision "
                             "and Detectron2)")
    args = parser.parse_args()

    start = time.time()
    keras.utils.set_random_seed(args.seed)
    TrainConfig.TRAIN_BN = not args.frozen_bn  # EvalConfig inherits these
    TrainConfig.BACKBONE_NORM = args.norm
    config = TrainConfig()
    size = int(config.IMAGE_SHAPE[0])
    train_set = ShapesDataset()
    train_set.load_shapes(args.train_images, size, size, seed=1)
    train_set.prepare()
    held_out = ShapesDataset()
    held_out.load_shapes(args.eval_images, size, size, seed=12345)  # disjoint stream
    held_out.prepare()

    model = MaskRCNN("training", config, args.model_dir)
    budget = Budget(start, 60.0 * args.minutes, args.drop_at, args.lr)
    history = model.train(train_set, None, learning_rate=args.lr, epochs=10_000, layers="all",
                custom_callbacks=[budget], verbose=2)
    train_s = time.time() - start

    by_confidence = {}
    for confidence in args.min_confidence:
        eval_config = EvalConfig()
        eval_config.DETECTION_MIN_CONFIDENCE = confidence
        inference = MaskRCNN("inference", eval_config, args.model_dir)
        for layer in inference.keras_model.layers:
            if layer.weights:
                layer.set_weights(model.keras_model.get_layer(layer.name).get_weights())
        eval_start = time.time()
        m_ap, aps, detect_s = evaluate(inference, held_out, eval_config)
        by_confidence[confidence] = {"mAP@0.5": m_ap, "per_image_ap": aps,
                                     "eval_wall_s": time.time() - eval_start,
                                     "detect_s_per_image_median": detect_s}
    first = by_confidence[args.min_confidence[0]]
    m_ap, aps, detect_s, eval_s = (first["mAP@0.5"], first["per_image_ap"],
                                   first["detect_s_per_image_median"], first["eval_wall_s"])

    result = {
        "mAP@0.5": m_ap, "held_out_images": len(aps), "train_images": args.train_images,
        "train_wall_s": train_s, "train_steps": budget.steps, "images_per_step": config.BATCH_SIZE,
        "budget_minutes": args.minutes, "train_bn": config.TRAIN_BN, "backbone_norm": config.BACKBONE_NORM, "learning_rate": args.lr, "lr_drop_at": args.drop_at,
        "eval_wall_s": eval_s, "detect_s_per_image_median": detect_s,
        "per_image_ap": aps, "load_average_end": os.getloadavg()[0],
        "by_min_confidence": {str(k): v for k, v in by_confidence.items()},
        "epoch_mean_loss": [float(v) for v in history.history.get("loss", [])],
        "config": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                   for k, v in config.to_dict().items() if isinstance(v, (int, float, str, list, tuple, np.ndarray))},
    }
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    print("\n| figure | value |\n|---|---|")
    for key in ("mAP@0.5", "held_out_images", "train_steps", "images_per_step", "train_wall_s",
                "eval_wall_s", "detect_s_per_image_median"):
        value = result[key]
        print(f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |")
    for confidence, figures in by_confidence.items():
        print(f"| mAP@0.5 at DETECTION_MIN_CONFIDENCE={confidence} | {figures['mAP@0.5']:.3f} |")


if __name__ == "__main__":
    main()
