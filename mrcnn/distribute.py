"""Which ``tf.distribute`` strategy trains a model, who reads which images, and
which process writes the run folder.

With TensorFlow's graph ops (``graph_ops``), the package's one other
backend-specific module: another backend would choose its devices here only.

Semantics (``MaskRCNN(..., strategy=...)``): ``IMAGES_PER_GPU`` images per replica,
``BATCH_SIZE = IMAGES_PER_GPU * replicas in sync`` (replicas: ``GPU_COUNT`` per
worker, times the workers of ``TF_CONFIG``); the losses are means over the global
batch (``losses._masked_mean``), the gradients are summed over the replicas before
L2 and clipping (``training.SGDWithL2``); trained BatchNorm normalises per replica;
the learning rate is not rescaled. Only the chief writes checkpoints and logs.

Data: every process's ``DataGenerator`` visits the images in the same order (one
seed, `shared_seed`), so a step's global batch is the same set of images in all
of them. Replica r (over all workers) of a step gets images ``r*k .. r*k + k - 1``
of the global batch, k = ``BATCH_SIZE / replicas in sync``, and each process reads
only its own replicas' images (`sharded_batches`, also in one process); an image
the generator replaces (unreadable, or empty with ``skip_empty``) is replaced by
the next of the epoch order.
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
           "spans_workers", "shared_seed", "batches_for_fit", "sharded_batches",
           "original_loading_errors", "stop_on_lost_worker", "WorkerLostError", "COLLECTIVE_TIMEOUT_S"]

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
    with more than one worker -> ``MultiWorkerMirroredStrategy`` over the first
    ``GPU_COUNT`` GPUs of each worker (its CPU, one replica, on a worker without
    GPUs: then GPU_COUNT must be 1); then ``GPU_COUNT > 1`` -> ``MirroredStrategy``
    over the first ``GPU_COUNT`` visible GPUs; else the default strategy (one
    device). ``ConfigError`` when GPU_COUNT asks for more GPUs than TensorFlow sees.
    """
    if tf is None:
        return OneDevice.for_backend(config, strategy)
    if strategy is not None:
        if not isinstance(strategy, tf.distribute.Strategy):
            raise TypeError(f"strategy must be a tf.distribute.Strategy, got {type(strategy).__name__}")
        return strategy
    wanted = int(config.GPU_COUNT)
    if worker_count(environ) > 1:
        gpus = _visible_gpus(config, wanted, on_each_worker=True)
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_S)
        return tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=_cluster_resolver(_tf_config(environ), len(gpus[:wanted])),
            communication_options=options)
    if wanted <= 1:
        return default_strategy()
    return tf.distribute.MirroredStrategy(_visible_gpus(config, wanted)[:wanted])


def _visible_gpus(config, wanted, on_each_worker=False):
    """The GPUs TensorFlow sees; ``ConfigError`` when `wanted` (GPU_COUNT) is more.
    A worker of a multi-worker run without GPUs trains on its CPU: GPU_COUNT 1."""
    # A worker lists physical devices: listing logical ones would start TensorFlow's
    # runtime before MultiWorkerMirroredStrategy has set up its collectives.
    gpus = [device.name for device in (tf.config.list_physical_devices("GPU") if on_each_worker
                                       else tf.config.list_logical_devices("GPU"))]
    if len(gpus) >= wanted or (on_each_worker and not gpus and wanted == 1):
        return gpus
    where = " on this worker" if on_each_worker else ""
    fix = ("set GPU_COUNT = 1 (a worker without GPUs trains on its CPU, one replica)"
           if on_each_worker and not gpus else "lower GPU_COUNT (or --gpus)")
    raise ConfigError(
        f"{type(config).__name__}.GPU_COUNT = {wanted}, but TensorFlow sees "
        f"{len(gpus)} GPU(s){where}{': ' + ', '.join(gpus) if gpus else ''}; {fix} "
        f"or check CUDA_VISIBLE_DEVICES")


def _cluster_resolver(tf_config, gpus_per_worker):
    """TF_CONFIG's cluster and task, with `gpus_per_worker` local GPUs (0: the CPU).
    ``TFConfigClusterResolver`` itself would take every visible GPU."""
    task = tf_config.get("task", {})
    if "type" not in task or "index" not in task:
        raise ConfigError(f"TF_CONFIG needs a task with 'type' and 'index', got {task!r}")
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(tf_config["cluster"]), task_type=task["type"], task_id=int(task["index"]),
        num_accelerators={"GPU": gpus_per_worker} if gpus_per_worker else None,
        rpc_layer=tf_config.get("rpc_layer", "grpc"))


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


def batches_for_fit(strategy, generator, parallel_loads):
    """What ``keras.Model.fit`` gets for `generator` (a ``data.DataGenerator``
    of global batches) under `strategy` (None: the current one).

    On TensorFlow: the `sharded_batches` dataset, in one process as across workers.
    Why not the generator itself: a training step fed by Keras's PyDataset adapter
    took 1.7x as long (310 vs 180 ms per step of the 128-px agreement model on a
    2-core EPYC, 2026-12-04), and not because of the shapes (the batch dimension left
    unknown measured as fast as static). Other backends get the generator itself.
    """
    if tf is None:
        return generator
    return sharded_batches(strategy or tf.distribute.get_strategy(), generator, parallel_loads)


def sharded_batches(strategy, generator, parallel_loads=1):
    """Each worker's share of `generator`'s global batches, as a dataset that
    ``strategy.distribute_datasets_from_function`` hands to the replicas as is.

    Every worker visits the same image order (the generators share their seed:
    `shared_seed`), so the global batch of a step is the same set of images on
    all workers. Replica r (over all workers) of step s gets images
    ``r*k .. r*k + k - 1`` of that batch, k = ``BATCH_SIZE / replicas in sync``;
    a worker loads only its replicas' images, up to `parallel_loads` parts at a
    time, in order. The dataset does not end: ``fit`` counts the steps of an
    epoch (``len(generator)``), and the element count gives the epoch.
    """
    steps = len(generator)
    per_replica = generator.config.BATCH_SIZE // strategy.num_replicas_in_sync
    signature = generator.batch_signature(per_replica)
    dtypes = [tf.as_dtype(dtype) for _, dtype in signature.values()]

    def dataset_fn(context):
        local = context.num_replicas_in_sync // context.num_input_pipelines
        first_replica = context.input_pipeline_id * local

        def load(element):
            step, replica = divmod(int(element), local)
            epoch, idx = divmod(step, steps)
            part = generator.part(epoch, idx, (first_replica + replica) * per_replica, per_replica)
            return [part[name] for name in signature]

        def load_part(element):
            # `load` is a function of `element` alone (``DataGenerator.part``), so it is
            # declared stateless: under op determinism (a seeded train()) tf.data runs a
            # stateful map serially, ignoring `parallel_loads`, and logs a NodeDef error.
            arrays = tf.numpy_function(load, [element], dtypes, stateful=False)
            return {name: tf.ensure_shape(array, shape)
                    for (name, (shape, _)), array in zip(signature.items(), arrays)}

        return (tf.data.Dataset.counter()
                .map(load_part, num_parallel_calls=max(1, int(parallel_loads)), deterministic=True)
                .prefetch(local))

    return strategy.distribute_datasets_from_function(dataset_fn)


@contextlib.contextmanager
def original_loading_errors(*generators):
    """Re-raise the exception that one of `generators` raised while loading a batch
    for `sharded_batches`: TensorFlow turns it into an OpError that keeps only its
    text, and callers (the CLI, tests) need its type, e.g. the ValueError naming
    the image (``DataGenerator.loading_error``). None generators are ignored."""
    try:
        yield
    except Exception as err:
        original = next((g.loading_error for g in generators
                         if g is not None and g.loading_error is not None), None)
        if tf is None or not isinstance(err, tf.errors.OpError) or original is None:
            raise
        raise original.with_traceback(original.__traceback__) from None


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
