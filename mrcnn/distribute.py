"""Which ``tf.distribute`` strategy trains a model, and which process writes the run folder.

With TensorFlow's graph ops (``graph_ops``), the package's one other
backend-specific module: another backend would choose its devices here only.

Semantics (``MaskRCNN(..., strategy=...)``): ``IMAGES_PER_GPU`` images per replica,
``BATCH_SIZE = IMAGES_PER_GPU * replicas in sync`` (the data generator yields global
batches, Keras splits them over the replicas); the losses are means over the global
batch (``losses._masked_mean``), the gradients are summed over the replicas before
L2 and clipping (``training.SGDWithL2``); trained BatchNorm normalises per replica;
the learning rate is not rescaled. Only the chief writes checkpoints and logs.
"""

import contextlib
import copy
import json
import logging
import os
import re

import keras
import numpy as np

from mrcnn import graph_ops
from mrcnn.errors import ConfigError

__all__ = ["choose_strategy", "default_strategy", "config_for_strategy", "is_chief", "worker_count",
           "spans_workers", "shared_seed", "stop_on_lost_worker", "WorkerLostError", "COLLECTIVE_TIMEOUT_S"]

log = logging.getLogger("mrcnn")

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf
else:  # other backends train on one device, without TensorFlow (see OneDevice)
    tf = None

# A collective (gradient all-reduce) that waits longer than this for a peer fails,
# so a lost worker stops the others in bounded time instead of a hang.
COLLECTIVE_TIMEOUT_S = 60


def _tf_config(environ=None):
    """The parsed ``TF_CONFIG`` (empty dict when unset)."""
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({err}): {text[:200]!r}") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"TF_CONFIG must be a JSON object with 'cluster' and 'task', got {text[:200]!r}")
    return parsed


def worker_count(environ=None):
    """Processes named by ``TF_CONFIG``'s cluster (chief + workers); 0 without TF_CONFIG."""
    cluster = _tf_config(environ).get("cluster", {})
    return sum(len(cluster.get(job, [])) for job in ("chief", "worker"))


def choose_strategy(config, strategy=None, environ=None):
    """The strategy that trains a model of `config`.

    An explicit `strategy` (any ``tf.distribute.Strategy``) wins; then a ``TF_CONFIG``
    with more than one worker -> ``MultiWorkerMirroredStrategy``; then
    ``GPU_COUNT > 1`` -> ``MirroredStrategy`` over the first ``GPU_COUNT`` visible
    GPUs (``ConfigError`` when there are fewer); else the default strategy (one
    device).
    """
    if tf is None:
        return OneDevice.for_backend(config, strategy)
    if strategy is not None:
        if not isinstance(strategy, tf.distribute.Strategy):
            raise TypeError(f"strategy must be a tf.distribute.Strategy, got {type(strategy).__name__}")
        return strategy
    if worker_count(environ) > 1:
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_S)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    wanted = int(config.GPU_COUNT)
    if wanted <= 1:
        return default_strategy()
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    if len(gpus) < wanted:
        raise ConfigError(
            f"{type(config).__name__}.GPU_COUNT = {wanted}, but TensorFlow sees "
            f"{len(gpus)} GPU(s){': ' + ', '.join(gpus) if gpus else ''}; lower GPU_COUNT "
            f"(or --gpus) or check CUDA_VISIBLE_DEVICES")
    return tf.distribute.MirroredStrategy(gpus[:wanted])


def default_strategy():
    """The default strategy: one device, no distribution."""
    return tf.distribute.get_strategy() if tf is not None else OneDevice()


class OneDevice:
    """What a backend other than TensorFlow trains on: one device, one process
    (the parts of a ``tf.distribute.Strategy`` this package uses)."""
    num_replicas_in_sync = 1

    class extended:  # noqa: N801 (mirrors tf.distribute.StrategyExtended)
        should_checkpoint = True

    def scope(self):
        return contextlib.nullcontext()

    @classmethod
    def for_backend(cls, config, strategy=None):
        backend = keras.backend.backend()
        if strategy is not None:
            raise ConfigError(f"strategy={type(strategy).__name__}: tf.distribute strategies need "
                              f"KERAS_BACKEND=tensorflow (this is {backend})")
        if int(config.GPU_COUNT) > 1:
            raise ConfigError(f"{type(config).__name__}.GPU_COUNT = {config.GPU_COUNT}: training on "
                              f"several devices needs KERAS_BACKEND=tensorflow (this is {backend})")
        return cls()


def config_for_strategy(config, strategy):
    """`config`, or a copy of it whose ``BATCH_SIZE`` is ``IMAGES_PER_GPU`` times
    the strategy's replicas in sync (the global batch)."""
    batch = int(config.IMAGES_PER_GPU) * int(strategy.num_replicas_in_sync)
    if config.BATCH_SIZE == batch:
        return config
    log.info("%s replicas in sync: BATCH_SIZE %d = IMAGES_PER_GPU %d x %d",
             strategy.num_replicas_in_sync, batch, config.IMAGES_PER_GPU,
             strategy.num_replicas_in_sync)
    config = copy.copy(config)
    config.BATCH_SIZE = batch
    return config


def is_chief(strategy):
    """True for the one process that writes checkpoints and logs (always, on one machine)."""
    return bool(strategy.extended.should_checkpoint)


def spans_workers(strategy):
    """True when `strategy`'s replicas live in several processes."""
    return graph_ops.replicas_span_workers(strategy)


def shared_seed(strategy):
    """A fresh random seed that every process of a multi-worker `strategy` gets
    alike (the chief's draw, through one all-reduce), so their data generators
    shuffle alike and each worker's share of a global batch holds other images;
    None when `strategy` runs in one process."""
    if not spans_workers(strategy):
        return None
    draw = int(np.random.SeedSequence().entropy % 2**40) if is_chief(strategy) else 0

    @tf.function
    def agree():
        per_replica = strategy.run(lambda: tf.constant(draw, tf.int64))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return int(agree().numpy())


class WorkerLostError(RuntimeError):
    """Another process of a multi-worker run stopped, so this one cannot go on."""


# What a collective raises when a peer stops sending heartbeats or times out.
_PEER_ERRORS = ((tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                 tf.errors.CancelledError) if tf is not None else ())


@contextlib.contextmanager
def stop_on_lost_worker(strategy, log_dir):
    """Turn a multi-worker collective failure into a `WorkerLostError` naming the
    lost task(s) and the folder whose last checkpoint resumes the run."""
    try:
        yield
    except _PEER_ERRORS as err:
        if not spans_workers(strategy):
            raise
        text = str(err)
        tasks = sorted(set(re.findall(r"/job:\w+/replica:\d+/task:\d+", text))
                       or set(re.findall(r"/job:\w+/task:\d+", text)))
        raise WorkerLostError(
            f"training stopped: lost contact with worker {', '.join(tasks) or '(task not named)'} "
            f"({type(err).__name__}). The last checkpoint in {log_dir} is complete; restart "
            f"every worker with --weights=last to resume.") from err
