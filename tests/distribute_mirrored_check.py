"""Run by tests/test_distribute.py in its own process (TensorFlow's devices must be
split before anything initialises them): one training step of a tiny Mask R-CNN on
one device with a global batch of 2 images, and under MirroredStrategy over two
logical CPU devices with 1 image each; then the mirrored step again in
mixed_bfloat16. Prints a JSON line of the runs' losses and weight differences."""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
# Deterministic kernels: without them, threaded gradient accumulations once left the two
# runs' weights 1.7e-5 apart (a full CI run, 2026-12-02; 6e-8 to 1.2e-7 with them), which
# is kernel noise, not what this check is about (how the global batch is split and summed).
tf.config.experimental.enable_op_determinism()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mrcnn.config import Config  # noqa: E402
from mrcnn.data import DataGenerator  # noqa: E402
from mrcnn.model import MaskRCNN  # noqa: E402
from samples.shapes import ShapesDataset  # noqa: E402


class TinyConfig(Config):
    NAME = "dist"
    NUM_CLASSES = 4
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    PRE_NMS_LIMIT = 500
    POST_NMS_ROIS_TRAINING = 64
    TRAIN_ROIS_PER_IMAGE = 16
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 4
    MINI_MASK_SHAPE = (28, 28)
    TRAIN_BN = False
    # Small enough that clipping is active: it must see the global gradient's norm.
    GRADIENT_CLIP_NORM = 0.5


def one_step(images_per_gpu, strategy, batch, precision="float32"):
    config = type("Config", (TinyConfig,), {"IMAGES_PER_GPU": images_per_gpu, "PRECISION": precision})()
    keras.utils.set_random_seed(0)  # same initial weights and ROI-sampling seed state
    model = MaskRCNN("training", config, "/nonexistent", strategy=strategy)
    model.set_trainable(".*", verbose=0)
    model.compile(0.2, 0.9)
    initial = [np.asarray(w) for w in model.keras_model.get_weights()]
    history = model.keras_model.fit(batch, batch_size=2, epochs=1, shuffle=False, verbose=0)
    losses = {name: float(values[-1]) for name, values in history.history.items()}
    return model, losses, initial


def main():
    dataset = ShapesDataset()
    dataset.load_shapes(2, 128, 128, seed=3)
    dataset.prepare()
    generator_config = type("Config", (TinyConfig,), {"IMAGES_PER_GPU": 2})()
    np.random.seed(0)
    batch = DataGenerator(dataset, generator_config, shuffle=False)[0]

    single, single_losses, initial = one_step(2, None, batch)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    mirrored, mirrored_losses, _ = one_step(1, strategy, batch)
    weight_diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                      for a, b in zip(single.keras_model.get_weights(),
                                      mirrored.keras_model.get_weights()))
    moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(single.keras_model.get_weights(), initial))
    # Each replica updates its own copy of every weight and momentum buffer; a step
    # that wrote one replica's copy from another's would leave the copies apart.
    copies = list(mirrored.keras_model.weights) + list(mirrored.keras_model.optimizer.momentums)
    copies_diff = max(float(np.max(np.abs(np.asarray(v.value.values[0]) - np.asarray(v.value.values[1]))))
                      for v in copies)
    mixed, mixed_losses, mixed_initial = one_step(1, strategy, batch, "mixed_bfloat16")
    mixed_weights = [np.asarray(w) for w in mixed.keras_model.get_weights()]
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "mirrored_batch_size": mirrored.config.BATCH_SIZE,
        "single": single_losses, "mirrored": mirrored_losses,
        "weight_diff": weight_diff, "weights_moved": moved, "replica_copies_diff": copies_diff,
        "mixed_bfloat16": {
            "losses": mixed_losses,
            "compute_dtype": mixed.keras_model.get_layer("conv1").compute_dtype,
            "weights_finite": all(bool(np.isfinite(w).all()) for w in mixed_weights),
            "weights_moved": max(float(np.max(np.abs(w - np.asarray(b))))
                                 for w, b in zip(mixed_weights, mixed_initial)),
        },
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
