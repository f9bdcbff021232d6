"""One worker of a MultiWorkerMirroredStrategy run, started by tests/test_distribute.py
with TF_CONFIG set: trains a tiny Mask R-CNN on synthetic shapes for EPOCHS epochs of
one step each into MODEL_DIR and saves its final weights to OUT (.npz).
With SHARDS, first reads SHARD_STEPS global batches of ShardConfig through
``distribute.sharded_batches`` and writes to SHARDS (.json) the image ids this
worker read, in order, and the ids its replica received in each step.

usage: distribute_worker.py MODEL_DIR OUT EPOCHS [WEIGHTS [SHARDS]]  (WEIGHTS: e.g. "last" to resume)
"""

import json
import sys

import numpy as np

from mrcnn import distribute
from mrcnn.config import Config
from mrcnn.data import DataGenerator
from mrcnn.model import MaskRCNN
from samples.shapes import ShapesDataset


class WorkerConfig(Config):
    NAME = "mwms"
    NUM_CLASSES = 4
    BACKBONE = "resnet50"
    IMAGES_PER_GPU = 1
    IMAGE_MIN_DIM = IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    PRE_NMS_LIMIT = 500
    POST_NMS_ROIS_TRAINING = 64
    TRAIN_ROIS_PER_IMAGE = 16
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 4
    MINI_MASK_SHAPE = (28, 28)
    STEPS_PER_EPOCH = 1
    VALIDATION_STEPS = 0


class ShardConfig(WorkerConfig):
    IMAGES_PER_GPU = 2  # two images per replica: none may be read twice in a step


SHARD_STEPS = 4  # two epochs of the generator below (steps=2)


class ReadLoggingShapes(ShapesDataset):
    """Shapes that note the id of every image read."""

    def __init__(self):
        super().__init__()
        self.reads = []

    def load_image(self, image_id):
        self.reads.append(int(image_id))
        return super().load_image(image_id)


def shapes(dataset):
    dataset.load_shapes(8, 128, 128, seed=3)
    dataset.prepare()
    return dataset


def record_shards(strategy, seed, out):
    dataset = shapes(ReadLoggingShapes())
    config = distribute.config_for_strategy(ShardConfig(), strategy)
    generator = DataGenerator(dataset, config, seed=seed, steps=2)
    batches = iter(distribute.sharded_batches(strategy, generator, parallel_loads=1))
    received = []
    for _ in range(SHARD_STEPS):
        metas = strategy.experimental_local_results(next(batches)["input_image_meta"])
        received.append([int(image_id) for meta in metas for image_id in meta.numpy()[:, 0]])
    with open(out, "w") as f:
        json.dump({"batch_size": config.BATCH_SIZE, "reads": dataset.reads, "received": received}, f)


def main(model_dir, out, epochs, weights="none", shards=None):
    dataset = shapes(ShapesDataset())
    model = MaskRCNN("training", WorkerConfig(), model_dir)  # TF_CONFIG -> MWMS
    model.load_named_weights(weights)
    seed = distribute.shared_seed(model.strategy)
    print(f"shared_seed={seed}", flush=True)
    if shards:
        record_shards(model.strategy, seed, shards)
    print(f"replicas={model.strategy.num_replicas_in_sync} batch={model.config.BATCH_SIZE} "
          f"start_epoch={model.epoch}", flush=True)
    model.train(dataset, None, learning_rate=0.01, epochs=int(epochs), layers="heads",
                workers=1, verbose=0)
    np.savez(out, *model.keras_model.get_weights())
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
