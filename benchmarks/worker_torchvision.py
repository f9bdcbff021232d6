"""One measurement of torchvision's maskrcnn_resnet50_fpn in a fresh process.

Runs in .venv-bench (torch, torchvision; no TensorFlow):

    .venv-bench/bin/python benchmarks/worker_torchvision.py --task infer|train|matmul --data DATA.npz

``--device cuda`` runs it on the GPU (benchmarks/compare_gpu.py).

Prints one ``RESULT {json}`` line (see benchmarks/common.py).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from torchvision.models.detection import maskrcnn_resnet50_fpn  # noqa: E402
from torchvision.ops.misc import FrozenBatchNorm2d  # noqa: E402

import common  # noqa: E402

torch.set_num_threads(common.THREADS)
torch.set_num_interop_threads(common.THREADS)


def freeze_batchnorm(module):
    """BatchNorm2d -> FrozenBatchNorm2d (our TRAIN_BN=False: running statistics
    always, no statistics update, no gradient for them)."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def build(num_classes, size):
    """maskrcnn_resnet50_fpn on the equal-work settings of benchmarks/common.py,
    for square inputs of side `size`."""
    model = maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes,
        min_size=size, max_size=size,
        rpn_post_nms_top_n_test=common.RPN_POST_NMS_INFER,
        rpn_post_nms_top_n_train=common.RPN_POST_NMS_TRAIN,
        box_batch_size_per_image=common.TRAIN_ROIS,
        box_positive_fraction=common.POSITIVE_FRACTION,
        box_detections_per_img=common.DETECTIONS,
        box_score_thresh=0.0)
    # weights_backbone=None gives trainable BatchNorm2d; ours (Matterport's
    # TRAIN_BN=False default) freezes BN, so freeze it here too for equal work.
    return freeze_batchnorm(model)


def square(image, size, device):
    """uint8 [H, W, 3] -> float [3, S, S] in [0, 1] on `device`, S = `size`: longest
    side resized to S (bilinear), zero padding centred, as our square molding does;
    torchvision's own transform then keeps the size (min_size = max_size = S)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).float().div_(255.0)
    h, w = x.shape[1:]
    scale = size / max(h, w)
    nh, nw = round(h * scale), round(w * scale)
    x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
    top, left = (size - nh) // 2, (size - nw) // 2
    return F.pad(x, (left, size - nw - left, top, size - nh - top))


# Config.PRECISION -> the dtype torch.autocast computes in (float32: autocast off).
AUTOCAST_DTYPES = {"mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}


def autocast(precision, device):
    """torch.autocast on `device` in the precision's low dtype, or a no-op for float32."""
    return torch.autocast(device, dtype=AUTOCAST_DTYPES.get(precision, torch.bfloat16),
                          enabled=precision in AUTOCAST_DTYPES)


def gpu_peak_mib(device):
    """The most GPU memory torch's allocator held at once (None on the CPU)."""
    return torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda" else None


def infer(voc, runs, warmup, precision, device, size):
    model = build(common.NUM_CLASSES_INFER, size).eval().to(device)
    counts = []

    def step(i):
        with torch.inference_mode(), autocast(precision, device):
            out = model([square(voc[i % len(voc)], size, device)])[0]
            masks = (out["masks"][:, 0] > 0.5).cpu().numpy()  # waits for the GPU
        counts.append(int(masks.shape[0]))

    start = time.perf_counter()
    step(0)
    first = time.perf_counter() - start
    times = common.timed(step, runs, warmup)
    return {"times": times, "first_call_s": first, "detections": counts[-runs:],
            "gpu_peak_mib": gpu_peak_mib(device)}


def to_target(masks, class_ids, device):
    """Our shapes sample -> torchvision's target dict (boxes x1,y1,x2,y2 exclusive)."""
    boxes = []
    for k in range(masks.shape[-1]):
        ys, xs = np.where(masks[..., k])
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4).to(device),
            "labels": torch.from_numpy(class_ids.astype(np.int64)).to(device),
            "masks": torch.from_numpy(np.ascontiguousarray(masks.transpose(2, 0, 1))).to(
                device, torch.uint8)}


def train(shapes, batch, runs, warmup, precision, device, size):
    model = build(common.NUM_CLASSES_TRAIN, size).train().to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    rss_built = common.peak_rss_mib()  # runtime + model, before any step
    optimizer = torch.optim.SGD(params, lr=common.LEARNING_RATE, momentum=common.MOMENTUM,
                                weight_decay=common.WEIGHT_DECAY)
    # float16 needs loss scaling (as ours: Keras' LossScaleOptimizer); a no-op otherwise.
    scaler = torch.amp.GradScaler(device, enabled=precision == "mixed_float16")
    samples = [(torch.from_numpy(image).to(device).permute(2, 0, 1).float().div_(255.0),
                to_target(m, c, device)) for image, m, c in shapes]
    losses = []

    def step(i):
        chosen = [samples[(i * batch + k) % len(samples)] for k in range(batch)]
        with autocast(precision, device):
            loss_dict = model([s[0] for s in chosen], [s[1] for s in chosen])
            loss = sum(loss_dict.values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, common.CLIP_NORM)
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss))  # waits for the GPU

    start = time.perf_counter()
    step(0)
    first = time.perf_counter() - start
    times = common.timed(step, runs, warmup)
    return {"times": times, "first_call_s": first, "losses": losses[-runs:],
            "rss_after_build_mib": rss_built, "gpu_peak_mib": gpu_peak_mib(device)}


def matmul(runs, warmup, precision, device, n=3072):
    """The rate of an n x n matmul in the precision's low dtype (float32: float32) on
    `device`; on the GPU, 8192 x 8192 and 10 products a call, so launches do not count."""
    dtype = AUTOCAST_DTYPES.get(precision, torch.float32)
    n, repeat = (8192, 10) if device == "cuda" else (n, 1)
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))

    def products(i):
        for _ in range(repeat):
            torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()

    times = common.timed(products, runs, warmup)
    return {"times": times, "flop_per_call": 2.0 * n ** 3 * repeat,
            "tf32": device == "cuda" and torch.backends.cuda.matmul.allow_tf32}


def main():
    args = common.worker_arguments(__doc__, ("infer", "train", "matmul"))
    if args.min_confidence:
        sys.exit("worker_torchvision: --min-confidence is ours only (torchvision's side "
                 f"always forces {common.DETECTIONS} detections)")
    torch.manual_seed(0)
    if args.task == "matmul":
        result = matmul(args.runs, args.warmup, args.precision, args.device)
    else:
        voc, shapes = common.load_data(args.data)
        result = (infer(voc, args.runs, args.warmup, args.precision, args.device, args.image_size)
                  if args.task == "infer" else
                  train(shapes, args.batch, args.runs, args.warmup, args.precision, args.device,
                        args.image_size))
    result.update({"side": "torchvision", "task": args.task, "batch": args.batch,
                   "precision": args.precision, "device": args.device,
                   "image_size": args.image_size,
                   "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
                   # torch's defaults, kept: float32 convolutions run in TF32 on the GPU
                   "cudnn_tf32": args.device == "cuda" and torch.backends.cudnn.allow_tf32,
                   "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__}})
    common.report(result)


if __name__ == "__main__":
    main()
