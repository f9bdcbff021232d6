"""Training plumbing that is not the network: which layers train, where runs are
logged, how checkpoints are named, written and found again.

Log folders and checkpoint names follow Matterport, so `find_last()` and
`--weights=last` also work on folders written by Matterport's code:
``<model_dir>/<name><YYYYmmddTHHMM>/mask_rcnn_<name>_<epoch:04d>.h5``.
"""

import datetime
import importlib.util
import inspect
import logging
import os
import re

import keras
import numpy as np
from keras import ops

from mrcnn import backbones, fileio, graph_ops, losses
from mrcnn.config import LOSS_NAMES, TRAINING_INPUT_NAMES, Config
from mrcnn import weights as weights_io

log = logging.getLogger("mrcnn")

_HEADS = r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)"

# Named layer groups for MaskRCNN.train(layers=...); anything else is a regex.
# "3+", "4+", "5+" add the backbone's own stage regexes (mrcnn.backbones).
LAYER_PRESETS = {
    "heads": _HEADS,
    "3+": None,
    "4+": None,
    "5+": None,
    "all": ".*",
}

# Matterport's resume pattern: .../<name>YYYYmmddTHHMM/mask_rcnn_<name>_<epoch>.h5
_CHECKPOINT_RE = re.compile(
    r".*[/\\][\w-]+(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})[/\\]mask\_rcnn\_[\w-]+(\d{4})\.h5$")


def layer_regex(layers, backbone=Config.BACKBONE):
    """The regex for a preset name ("heads", "3+", "4+", "5+", "all") or a regex.

    backbone: Config.BACKBONE, whose stage regexes the "N+" presets use.
    """
    if isinstance(layers, str) and LAYER_PRESETS.get(layers, "") is None:
        return backbones.stage_regex(backbone, layers) + "|" + _HEADS
    regex = LAYER_PRESETS.get(layers, layers)
    try:
        re.compile(regex)
    except (re.error, TypeError) as err:
        raise ValueError(f"layers={layers!r} is neither a preset {sorted(LAYER_PRESETS)} "
                         f"nor a valid regex: {err}") from None
    return regex


@keras.saving.register_keras_serializable(package="mrcnn")
class SGDWithL2(keras.optimizers.SGD):
    """SGD that adds the gradient of Matterport's L2 regulariser (``losses.l2_weight_decay``)
    to each weight's gradient before clipping: the same update as differentiating the
    regulariser through the loss. The training graph reports the regulariser in the loss
    but stops its gradient. Why: backprop through the loss would produce all of these
    gradients at its very start (they depend on the loss scalar only) and keep a copy of
    every weight alive through the whole backward pass (~290 MB more peak memory for a
    ResNet-50 step at 512 px, measured); here each weight is read after its own gradient
    exists (``graph_ops.read_after``).

    Args:
        l2: ``WEIGHT_DECAY`` (0 disables it).
        **kwargs: passed to ``keras.optimizers.SGD``.
    """

    def __init__(self, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        if l2 < 0:
            raise ValueError(f"SGDWithL2: l2 must be >= 0, got {l2}")
        self.l2 = float(l2)

    def apply(self, grads, trainable_variables=None):
        # Under tf.distribute, sum the replicas' gradients first, so the L2 term is
        # added once and clipping sees the global norm; Keras would clip each
        # replica's part and all-reduce afterwards (skipped: see below).
        grads = _sum_over_replicas(list(grads))
        if self.l2:
            variables = (trainable_variables if trainable_variables is not None
                         else self._trainable_variables)
            for i, (grad, variable) in enumerate(zip(grads, variables)):
                factor = None if grad is None else losses.l2_weight_decay_factor(variable, self.l2)
                if factor is not None:
                    weight = graph_ops.read_after(variable, grad)
                    grads[i] = grad + factor * keras.ops.cast(weight, grad.dtype)
        return super().apply(grads, trainable_variables)

    def _clip_gradients(self, grads):
        # Keras' clip_by_global_norm (same scale, NaN for a non-finite norm), with the
        # norm from graph_ops.squared_global_norm: Keras squares each gradient into a
        # temporary as large as the gradient (49 MiB for mrcnn_class_conv1's, written
        # at the peak of the backward pass), with three graph nodes a weight where this has one.
        if not (self.global_clipnorm and self.global_clipnorm > 0):
            return super()._clip_gradients(grads)
        norm = ops.sqrt(graph_ops.squared_global_norm([grad for grad in grads if grad is not None]))
        scale = self.global_clipnorm * ops.minimum(1.0 / norm, 1.0 / self.global_clipnorm)
        scale = scale + (norm - norm)
        return [None if grad is None else grad * scale for grad in grads]

    def update_step(self, gradient, variable, learning_rate):
        # Keras' SGD step, m <- momentum * m - lr * g and w <- w + m, with m read only
        # once g exists (graph_ops.momentum_step). Keras reads m at once: under
        # TensorFlow every momentum * m then runs at the start of the step and waits
        # for its gradient, a copy of all momentum buffers at the peak of the backward
        # pass (172 MiB of the 1.13 GB tensor peak of a ResNet-50 step at 512 px, TF's
        # memory profile).
        if self.momentum == 0 or self.nesterov:
            return super().update_step(gradient, variable, learning_rate)
        momentum = self.momentums[self._get_variable_index(variable)]
        graph_ops.momentum_step(variable, momentum, ops.cast(gradient, variable.dtype),
                                learning_rate, self.momentum)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        # Keras' TensorFlow optimizer all-reduces here, after clipping; apply()
        # has already summed the gradients over the replicas.
        return list(grads_and_vars)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


def _logs_for_worker_reduction(logs):
    """Keras 3 averages each log over MultiWorkerMirroredStrategy's workers along
    axis 0, which a scalar lacks (tensorflow/tensorflow#72388): give scalars that
    axis there; the mean over it is the scalar again."""
    if not graph_ops.replicas_span_workers():
        return logs
    return {name: ops.reshape(value, (1,)) if len(ops.shape(value)) == 0 else value
            for name, value in logs.items()}


def _sum_over_replicas(grads):
    """``grads`` summed over the replicas in sync (None entries kept)."""
    present = [i for i, grad in enumerate(grads) if grad is not None]
    if graph_ops.replicas_in_sync() == 1 or not present:
        return grads
    summed = graph_ops.replica_sum([grads[i] for i in present])
    for i, grad in zip(present, summed):
        grads[i] = grad
    return grads


def _keyed_batch(data):
    """A batch ``(x, y, ...)`` whose x is a list or tuple of the training inputs in
    Matterport's order, with x as the graph's dict; any other batch as it is."""
    if isinstance(data, (list, tuple)) and data:
        x = data[0]
        if isinstance(x, (list, tuple)) and len(x) == len(TRAINING_INPUT_NAMES):
            return (dict(zip(TRAINING_INPUT_NAMES, x)), *data[1:])
    return data


def _without_empty_targets(item):
    """``(inputs, [])``, the item of Matterport's and the TF2 ports' generators, as
    ``(tuple(inputs),)``: Keras 3 cannot make a tf.data signature for the empty list
    that tf.keras 2 accepted, nor for a list of inputs (tf.data reads a list as one
    tensor). Any other item as it is."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], list) and not item[1]:
        inputs = item[0]
        return (tuple(inputs) if isinstance(inputs, list) else inputs,)
    return item


class _PlainItems(keras.utils.PyDataset):
    """A PyDataset's items through `_without_empty_targets`, loaded with its settings
    or those in `loading` (workers, use_multiprocessing, max_queue_size)."""

    def __init__(self, batches, loading):
        settings = {name: getattr(batches, name)
                    for name in ("workers", "use_multiprocessing", "max_queue_size")}
        settings.update({name: value for name, value in loading.items() if value is not None})
        super().__init__(**settings)
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    @property
    def num_batches(self):
        return self.batches.num_batches

    def __getitem__(self, index):
        return _without_empty_targets(self.batches[index])

    def on_epoch_end(self):
        self.batches.on_epoch_end()


def _plain_items(data, loading=None):
    """`data` for Keras 3's fit/evaluate: a PyDataset (e.g. the ports' ``DataGenerator``)
    or a Python generator (Matterport's ``data_generator``) yielding ``(inputs, [])``
    items gives ``(inputs,)`` ones; anything else (arrays, dicts, tf.data) is unchanged.
    `loading`: Keras 2's fit arguments workers/use_multiprocessing/max_queue_size, which
    Keras 3 reads from a PyDataset; a generator is read in one thread whatever they say."""
    if isinstance(data, keras.utils.PyDataset):
        return _PlainItems(data, loading or {})
    if inspect.isgenerator(data):
        return (_without_empty_targets(item) for item in data)
    return data


@keras.saving.register_keras_serializable(package="mrcnn")
class TrainingGraph(keras.Model):
    """The training graph plus its loss: the weighted sum of the five Mask R-CNN
    losses and L2 weight decay. Each loss is tracked as its own metric, so the
    progress bar, the CSV log and TensorBoard show all five. The L2 term is in the
    reported loss, but its gradient comes from the optimizer, so compile with
    ``training.SGDWithL2(l2=weight_decay, ...)`` (``MaskRCNN.compile`` does)."""

    def __init__(self, *args, loss_weights=None, weight_decay=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_weights_by_name = dict(loss_weights or {})
        self.weight_decay = weight_decay
        self.loss_trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES}

    @property
    def metrics(self):
        return super().metrics + list(self.loss_trackers.values())

    # (self, data) under TensorFlow, (self, state, data) under JAX, whose result
    # is (logs, state) and never spans workers.
    # Matterport's generators (and the TF2 ports') give its positional input list,
    # ``(inputs, [])``, to fit and train_on_batch; Keras would match a list to the
    # dict's sorted names, so it is keyed by Matterport's order first.
    def train_step(self, *args):
        *state, data = args
        return _logs_for_worker_reduction(super().train_step(*state, _keyed_batch(data)))

    def test_step(self, *args):
        *state, data = args
        return _logs_for_worker_reduction(super().test_step(*state, _keyed_batch(data)))

    # Matterport's and the TF2 ports' loop: keras_model.fit(generator, ...,
    # validation_data=..., max_queue_size=100, workers=workers, use_multiprocessing=False)
    # with modellib.data_generator(...) or modellib.DataGenerator(...); Matterport called
    # it fit_generator.
    def fit(self, x=None, *args, workers=None, use_multiprocessing=None, max_queue_size=None,
            **kwargs):
        loading = {"workers": workers, "use_multiprocessing": use_multiprocessing,
                   "max_queue_size": max_queue_size}
        if "validation_data" in kwargs:
            kwargs["validation_data"] = _plain_items(kwargs["validation_data"], loading)
        return super().fit(_plain_items(x, loading), *args, **kwargs)

    fit_generator = fit

    def evaluate(self, x=None, *args, **kwargs):
        return super().evaluate(_plain_items(x), *args, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under tf.distribute, Keras' TensorFlow trainer averages the replicas' first
        # batch only to read its shapes, which fails on the bool gt masks. This graph
        # is built when made and compiled without Keras losses or metrics, so no
        # batch is needed: only the optimizer is left to build.
        needs_batch = self._compile_loss is not None or self._compile_metrics is not None
        if iterator is not None and data_batch is None and self.built and not needs_batch:
            iterator, data_batch = None, ()
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def get_config(self):
        return {**super().get_config(), "loss_weights": self.loss_weights_by_name,
                "weight_decay": self.weight_decay}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Keras rebuilds a functional model from its graph with (inputs, outputs,
        # name) only; the loss settings are set on it afterwards.
        config = dict(config)
        loss_weights = config.pop("loss_weights", None)
        weight_decay = config.pop("weight_decay", 0.0)
        model = super().from_config(config, custom_objects=custom_objects)
        model.loss_weights_by_name = dict(loss_weights or {})
        model.weight_decay = weight_decay
        return model

    def mask_rcnn_losses(self, x, y_pred):
        return {
            "rpn_class_loss": losses.rpn_class_loss(x["input_rpn_match"], y_pred["rpn_class_logits"]),
            "rpn_bbox_loss": losses.rpn_bbox_loss(x["input_rpn_bbox"], x["input_rpn_match"],
                                                  y_pred["rpn_bbox"]),
            "mrcnn_class_loss": losses.mrcnn_class_loss(y_pred["target_class_ids"],
                                                        y_pred["mrcnn_class_logits"],
                                                        y_pred["active_class_ids"]),
            "mrcnn_bbox_loss": losses.mrcnn_bbox_loss(y_pred["target_bbox"], y_pred["target_class_ids"],
                                                      y_pred["mrcnn_bbox"]),
            "mrcnn_mask_loss": losses.mrcnn_mask_loss(y_pred["target_mask"], y_pred["mask_class_ids"],
                                                      y_pred["mrcnn_mask"]),
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # Under tf.distribute each loss is this replica's share of the global mean
        # (losses._masked_mean) and the replicas' values add up, which is the
        # scaling Keras expects of compute_loss; the trackers average over the
        # replicas, so they get the share times the replica count.
        replicas = graph_ops.replicas_in_sync()
        parts = self.mask_rcnn_losses(x, y_pred)
        total = 0.0
        for name, value in parts.items():
            self.loss_trackers[name].update_state(value * replicas)
            total = total + self.loss_weights_by_name.get(name, 1.0) * value
        if self.weight_decay:
            # Reported only: its gradient is added by the optimizer (training.SGDWithL2).
            total = total + ops.stop_gradient(
                losses.l2_weight_decay(self.trainable_weights, self.weight_decay)) / replicas
        return total


def set_trainable(model, regex, verbose=0, _depth=0):
    """Make layers whose full name matches `regex` trainable, freeze the others.

    Nested models (the shared `rpn_model`) are entered so their inner layers
    (`rpn_conv_shared`, ...) are matched by their own names. Returns the names
    of the trainable weighted layers.
    """
    trainable = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            # A container's flag propagates to its children: open it, then
            # decide per child, and close it only when no child trains.
            layer.trainable = True
            inner = set_trainable(layer, regex, verbose, _depth + 1)
            if not inner:
                layer.trainable = False
            trainable += inner
            continue
        if not layer.weights:
            continue
        on = re.fullmatch(regex, layer.name) is not None
        layer.trainable = on
        if on:
            trainable.append(layer.name)
            if verbose > 0:
                print(f"{'  ' * _depth}{layer.name:30} ({type(layer).__name__})")
    return trainable


def seed_run(keras_model, seed, initial_epoch):
    """Makes a ``train()`` call reproducible; returns the seed for its data generators.

    Seeds the global generators and turns on deterministic kernels
    (``graph_ops.make_deterministic``), and restarts every ``keras.random.SeedGenerator``
    of the model's layers (``DetectionTargetLayer``'s ROI sampling) from a state derived
    from `seed`. `initial_epoch` enters the derived seeds, so the second call of a
    heads-then-all run does not replay the first call's draws.
    """
    graph_seed, data_seed = (int(v) for v in
                             np.random.SeedSequence([int(seed), int(initial_epoch)]).generate_state(2))
    graph_ops.make_deterministic(graph_seed)
    for k, generator in enumerate(_seed_generators(keras_model)):
        generator.state.assign(np.array([graph_seed, k], dtype=generator.state.dtype))
    return data_seed


def _seed_generators(model):
    """The ``keras.random.SeedGenerator`` attributes of `model`'s layers, nested ones too."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += _seed_generators(layer)
        found += [v for v in vars(layer).values() if isinstance(v, keras.random.SeedGenerator)]
    return found


def new_log_dir(model_dir, name, now=None):
    now = now or datetime.datetime.now()
    return os.path.join(model_dir, f"{name.lower()}{now:%Y%m%dT%H%M}")


def checkpoint_path(log_dir, name, epoch):
    """Checkpoint file of `epoch` (1-based: the number of epochs completed)."""
    return os.path.join(log_dir, f"mask_rcnn_{name.lower()}_{epoch:04d}.h5")


def parse_checkpoint_path(path):
    """(log_dir, epoch) if `path` is one of our checkpoints, else None."""
    match = _CHECKPOINT_RE.match(os.path.abspath(path))
    if not match:
        return None
    return os.path.dirname(os.path.abspath(path)), int(match.group(6))


def find_last(model_dir, name):
    """Path of the newest checkpoint of the newest run of `name` under `model_dir`.

    Run folders and files must carry exactly this name (a run of "shapes_bench"
    is not a run of "shapes"). Unlike Matterport, a newer run folder without
    checkpoints (a run killed before its first epoch ended) does not hide older
    checkpoints; half-written temporary files are ignored.
    """
    prefix = name.lower()
    run_re = re.compile(re.escape(prefix) + r"\d{8}T\d{4}")
    file_re = re.compile(r"mask_rcnn_" + re.escape(prefix) + r"_\d{4}\.h5")
    runs = sorted(d for d in (os.listdir(model_dir) if os.path.isdir(model_dir) else [])
                  if run_re.fullmatch(d) and os.path.isdir(os.path.join(model_dir, d)))
    for run in reversed(runs):
        folder = os.path.join(model_dir, run)
        checkpoints = sorted(f for f in os.listdir(folder) if file_re.fullmatch(f))
        if checkpoints:
            return os.path.join(folder, checkpoints[-1])
    raise FileNotFoundError(
        f"No checkpoint of '{prefix}' under {os.path.abspath(model_dir)}: expected "
        f"{prefix}YYYYmmddTHHMM/mask_rcnn_{prefix}_NNNN.h5. Train first, or pass a weights path.")


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save weights in Matterport's Keras-2 HDF5 layout after every epoch.

    The file is written to a temporary name and renamed, so a run killed while
    saving leaves the previous checkpoints intact; the temporary file such a run
    leaves behind is removed when training (re)starts in the folder.
    """

    def __init__(self, log_dir, name, keras_model):
        super().__init__()
        self.log_dir, self.name, self.keras_model = log_dir, name, keras_model

    def on_train_begin(self, logs=None):
        checkpoint_names = re.escape(f"mask_rcnn_{self.name.lower()}_") + r"\d{4}\.h5"
        for path in fileio.remove_stale_temp_files(self.log_dir, checkpoint_names):
            log.info("removed %s, left by a run killed while saving", path)

    def on_epoch_end(self, epoch, logs=None):
        path = checkpoint_path(self.log_dir, self.name, epoch + 1)
        weights_io.save_weights(self.keras_model, path)
        log.info("saved %s", path)


class LearningRateLogger(keras.callbacks.Callback):
    """Adds ``learning_rate`` to each epoch's logs (so the CSV log has it): the
    optimizer's rate after the epoch's last step, the value TensorBoard also shows."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def training_callbacks(log_dir, name, keras_model, extra=None):
    """Checkpoints, the learning rate, the caller's callbacks, TensorBoard, a plain-text
    CSV log and a NaN stop. The caller's callbacks run before TensorBoard and the CSV
    log, so values they add to an epoch's logs (``callbacks.CocoMAPCallback``'s AP) are
    recorded by both."""
    # Keras writes TensorBoard logs with TensorFlow's summary writer, on any backend;
    # a JAX-only install keeps the CSV log.
    tensorboard = ([keras.callbacks.TensorBoard(log_dir=log_dir, histogram_freq=0, write_graph=False)]
                   if importlib.util.find_spec("tensorflow") is not None else [])
    return [
        AtomicCheckpoint(log_dir, name, keras_model),
        LearningRateLogger(),
    ] + list(extra or []) + tensorboard + [
        keras.callbacks.CSVLogger(os.path.join(log_dir, "training_log.csv"), append=True),
        keras.callbacks.TerminateOnNaN(),
    ]


def worker_callbacks(extra=None):
    """The callbacks of a worker that is not the chief: nothing that writes files
    (the caller's callbacks less those marked ``chief_only``)."""
    return [keras.callbacks.TerminateOnNaN()] + [
        callback for callback in extra or [] if not getattr(callback, "chief_only", False)]
