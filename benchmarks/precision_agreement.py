"""float32 against mixed_bfloat16 detections of one float32-trained model (issue 13).

    .venv/bin/python benchmarks/precision_agreement.py [--steps 600] [--small]
    python benchmarks/precision_agreement.py --small --checkpoint CKPT.h5 \
        --precisions float32 mixed_bfloat16 mixed_float16     # e.g. on a GPU under JAX

Trains a model in float32 on 128 px synthetic shapes with the demo's recipe
(samples.precision_agreement: ResNet-50 with GroupNorm and Matterport's FPN and head
widths, or with --small the CI test's small backbone and narrow heads), then runs its
checkpoint in float32 and in mixed_bfloat16 on the held-out images. Prints, naming the
CPU, per DETECTION_MIN_CONFIDENCE: the share of float32 detections bfloat16 finds again
(same class, box IoU >= 0.9), the COCO mask and box AP50 of each precision, and the
misses with their scores and the nearest bfloat16 box of their class; writes JSON
(default benchmarks/precision_agreement_results.json). With --checkpoint it skips the
training and runs that float32-trained file (trained here with the same --small and
--images: the synthetic data is rewritten from its seed); --precisions names the
precisions to compare, the first being the reference.
"""
import argparse
import datetime
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import common  # noqa: E402
from mrcnn.config import PRECISIONS  # noqa: E402
from samples import precision_agreement as agreement  # noqa: E402


SHORT = common.PRECISION_NAMES


def device_name():
    """Where Keras computes: the JAX device's kind (e.g. the GPU's name), else "CPU"."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()[0].device_kind
    return "CPU"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600, help="training steps of 2 images")
    parser.add_argument("--small", action="store_true", help="the CI test's small model")
    parser.add_argument("--images", type=int, default=330, help="synthetic images, a tenth held out")
    parser.add_argument("--min-confidence", type=float, nargs="+", default=[0.7, 0.5, 0.05])
    parser.add_argument("--work-dir", default=os.path.join(os.path.dirname(HERE), "logs", "precision_agreement"))
    parser.add_argument("--json", default=os.path.join(HERE, "precision_agreement_results.json"))
    parser.add_argument("--checkpoint", help="a float32-trained checkpoint: skip the training")
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"],
                        choices=PRECISIONS, help="the first is the reference")
    args = parser.parse_args()
    if len(args.precisions) < 2:
        parser.error("--precisions needs a reference and at least one other")
    reference, others = args.precisions[0], args.precisions[1:]

    start = time.time()
    train_set, held_out = agreement.write_data(os.path.join(args.work_dir, f"data{args.images}"), args.images)
    model_dir = os.path.join(args.work_dir, "logs")
    config = agreement.make_config(small=args.small, STEPS_PER_EPOCH=args.steps)
    checkpoint = args.checkpoint or agreement.train_float32(config, train_set, model_dir, seed=0,
                                                            verbose=2)
    train_s = 0.0 if args.checkpoint else time.time() - start
    lowest = min(args.min_confidence)
    found = {p: agreement.detect(checkpoint, agreement.make_config(
                 p, small=args.small, inference=True, DETECTION_MIN_CONFIDENCE=lowest), held_out, model_dir)
             for p in args.precisions}
    compared = {other: {str(c): agreement.compare(agreement.above(found[reference], c),
                                                  agreement.above(found[other], c), held_out)
                        for c in sorted(args.min_confidence, reverse=True)}
                for other in others}
    import keras

    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "cpu": common.cpu_model(), "backend": keras.backend.backend(), "device": device_name(),
              "model": "small" if args.small else "resnet50 (GroupNorm)",
              "steps": None if args.checkpoint else args.steps, "images_per_step": config.BATCH_SIZE,
              "held_out_images": len(held_out.image_ids), "train_s": train_s,
              "total_s": time.time() - start, "load_average_end": os.getloadavg()[0],
              "checkpoint": checkpoint, "reference": reference, "compared": compared}
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    trained = (f"trained in float32 elsewhere ({checkpoint})" if args.checkpoint else
               f"{args.steps} steps of 2 images at 128 px, trained in float32 ({train_s:.0f} s)")
    print(f"\n{result['model']}, {trained}; {result['held_out_images']} held-out images; Keras on "
          f"{result['backend']}, {result['device']}; CPU: {result['cpu']}")
    ref = SHORT[reference]
    for other, by_confidence in compared.items():
        o = SHORT[other]
        print(f"\n| DETECTION_MIN_CONFIDENCE | {ref} detections | found by {o} | agreement "
              f"| segm AP50 {ref} / {o} | bbox AP50 {ref} / {o} |\n|---|---|---|---|---|---|")
        for c, r in by_confidence.items():
            share = f"{100 * r['agreement']:.1f} %" if r["agreement"] is not None else "-"
            print(f"| {c} | {r['detections']} | {r['reproduced']} | {share} | "
                  f"{r['reference_ap50']['segm']:.3f} / {r['other_ap50']['segm']:.3f} | "
                  f"{r['reference_ap50']['bbox']:.3f} / {r['other_ap50']['bbox']:.3f} |")
        for c, r in by_confidence.items():
            for miss in r["missed"][:15]:  # all of them in the JSON
                print(f"{o} missed at {c}: " + ", ".join(
                    f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in miss.items()))
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
