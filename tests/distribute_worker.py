"""One worker of a MultiWorkerMirroredStrategy run, started by tests/test_distribute.py
with TF_CONFIG set: trains a tiny Mask R-CNN on synthetic shapes for EPOCHS epochs of
one step each into MODEL_DIR and saves its final weights to OUT (.npz).

usage: distribute_worker.py MODEL_DIR OUT EPOCHS [WEIGHTS]  (WEIGHTS: e.g. "last" to resume)
"""

import sys

import numpy as np

from mrcnn import distribute
from mrcnn.config import Config
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


def main(model_dir, out, epochs, weights="none"):
    dataset = ShapesDataset()
    dataset.load_shapes(8, 128, 128, seed=3)
    dataset.prepare()
    model = MaskRCNN("training", WorkerConfig(), model_dir)  # TF_CONFIG -> MWMS
    model.load_named_weights(weights)
    print(f"shared_seed={distribute.shared_seed(model.strategy)}", flush=True)
    print(f"replicas={model.strategy.num_replicas_in_sync} batch={model.config.BATCH_SIZE} "
          f"start_epoch={model.epoch}", flush=True)
    model.train(dataset, None, learning_rate=0.01, epochs=int(epochs), layers="heads",
                workers=1, verbose=0)
    np.savez(out, *model.keras_model.get_weights())
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
