"""Evaluation during training (level L5: it runs ``mrcnn.evaluate``, which ``model``
must not import; ``training.LearningRateLogger`` is the other logging callback).

- ``CocoMAPCallback``: COCO bbox and segm AP on a validation set after each epoch,
  as ``val_bbox_AP``, ``val_segm_AP50``, ... in the logs, optionally keeping the best
  checkpoint.

``MaskRCNN.train`` runs its callbacks before TensorBoard and the CSV logger, so
what these add to the logs lands in ``training_log.csv`` and in TensorBoard
(``val_*`` keys in its validation run).
"""
import logging
import os

import keras
import numpy as np

from mrcnn import weights as weights_io

log = logging.getLogger("mrcnn")

__all__ = ["CocoMAPCallback", "copy_weights"]

# Stats of evaluate_coco put in the logs, per eval type.
LOGGED_STATS = ("AP", "AP50", "AP75")


def copy_weights(source, target):
    """Copies the weights of `source`'s top-level layers into `target`'s layers of the
    same names (the training and inference graphs of one config share them).

    Returns the number of layers copied; raises ValueError when none matches.
    """
    by_name = {layer.name: layer for layer in source.layers if layer.weights}
    copied = 0
    for layer in target.layers:
        if layer.weights and layer.name in by_name:
            layer.set_weights(by_name[layer.name].get_weights())
            copied += 1
    if not copied:
        raise ValueError(f"copy_weights: no layer of {target.name!r} has a namesake in {source.name!r}")
    return copied


class CocoMAPCallback(keras.callbacks.Callback):
    """COCO bbox and segm AP on `dataset` after each epoch.

    Args:
        training_model: the training ``MaskRCNN`` (its ``log_dir`` and ``config.NAME``
            name the best checkpoint).
        inference_model: a ``MaskRCNN`` in inference mode of the same architecture
            (a config with IMAGES_PER_GPU 1 and a low DETECTION_MIN_CONFIDENCE, e.g.
            0.05, scores like the final evaluation). The training weights are copied
            into it before each evaluation.
        dataset: a prepared validation ``CocoDataset`` (anything ``evaluate_coco`` takes).
        limit: evaluate the first `limit` images only (0: all). Evaluation costs about
            one inference per image; keep it small for frequent epochs.
        every: evaluate every `every` epochs (others log NaN, so the CSV keeps its columns).
        keep_best: write ``mask_rcnn_<name>_best.h5`` (atomically) in the run folder
            whenever `monitor` improves.
        monitor: the log key that decides "best", e.g. "val_segm_AP" or "val_bbox_AP50".

    Adds ``val_<type>_<stat>`` for type in bbox, segm and stat in AP, AP50, AP75.
    """

    # Under tf.distribute only the chief evaluates and writes (training.worker_callbacks).
    chief_only = True

    def __init__(self, training_model, inference_model, dataset, limit=20, every=1,
                 keep_best=False, monitor="val_segm_AP"):
        super().__init__()
        if getattr(inference_model, "mode", None) != "inference":
            raise ValueError("CocoMAPCallback: inference_model must be a MaskRCNN in inference mode")
        if every < 1:
            raise ValueError(f"CocoMAPCallback: every must be >= 1, got {every}")
        self.keys = [f"val_{t}_{s}" for t in ("bbox", "segm") for s in LOGGED_STATS]
        if monitor not in self.keys:
            raise ValueError(f"CocoMAPCallback: monitor must be one of {self.keys}, got {monitor!r}")
        self.training_model = training_model
        self.inference_model = inference_model
        self.dataset = dataset
        self.limit = int(limit)
        self.every = int(every)
        self.keep_best = keep_best
        self.monitor = monitor
        self.best = -np.inf
        self.history = []

    @property
    def best_path(self):
        name = self.training_model.config.NAME.lower()
        return os.path.join(self.training_model.log_dir, f"mask_rcnn_{name}_best.h5")

    def evaluate(self):
        """{log key: value} of the current training weights."""
        from mrcnn.evaluate import evaluate_coco  # pycocotools; only when used

        copy_weights(self.model, self.inference_model.keras_model)
        stats = evaluate_coco(self.inference_model, self.dataset, None, eval_type=("bbox", "segm"),
                              limit=self.limit, progress=False, verbose=False)
        # COCOeval reports -1 where a stat has no ground truth; no AP is 0 here.
        return {f"val_{t}_{s}": max(0.0, stats[t][s]) for t in ("bbox", "segm") for s in LOGGED_STATS}

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            values = dict.fromkeys(self.keys, float("nan"))
        else:
            values = self.evaluate()
            self.history.append((epoch + 1, values))
            log.info("epoch %d: %s", epoch + 1,
                     ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
            if self.keep_best and values[self.monitor] > self.best:
                self.best = values[self.monitor]
                weights_io.save_weights(self.training_model.keras_model, self.best_path)
                log.info("%s improved to %.4f: saved %s", self.monitor, self.best, self.best_path)
        if logs is not None:
            logs.update(values)
