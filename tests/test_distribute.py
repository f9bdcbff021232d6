"""Training under tf.distribute (mrcnn.distribute): strategy choice, the
one-device equivalence of MirroredStrategy over two logical CPU devices, and
MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1 (each run in
subprocesses, so this process' TensorFlow devices stay as they are)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from mrcnn import distribute, training
from mrcnn.config import Config
from mrcnn.data import DataGenerator
from mrcnn.errors import ConfigError
from mrcnn.model import MaskRCNN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class OneGPU(Config):
    NAME = "dist"
    NUM_CLASSES = 2


class ManyGPUs(OneGPU):
    GPU_COUNT = 64


def test_default_strategy_for_one_device():
    strategy = distribute.choose_strategy(OneGPU(), environ={})
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert distribute.is_chief(strategy)
    config = OneGPU()
    assert distribute.config_for_strategy(config, strategy) is config


def test_gpu_count_beyond_visible_gpus_is_a_config_error():
    visible = len(tf.config.list_logical_devices("GPU"))
    with pytest.raises(ConfigError, match=rf"GPU_COUNT = 64, but TensorFlow sees {visible} GPU"):
        distribute.choose_strategy(ManyGPUs(), environ={})


def test_explicit_strategy_must_be_a_strategy():
    strategy = tf.distribute.get_strategy()
    assert distribute.choose_strategy(ManyGPUs(), strategy, environ={}) is strategy
    with pytest.raises(TypeError, match="tf.distribute.Strategy"):
        distribute.choose_strategy(OneGPU(), "mirrored", environ={})


TWO_WORKERS = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}


def test_gpu_count_under_tf_config_counts_gpus_per_worker():
    """With TF_CONFIG each worker trains on its first GPU_COUNT GPUs; more than it
    has is a ConfigError before any server starts (a CPU-only worker: GPU_COUNT 1)."""
    gpus = len(tf.config.list_physical_devices("GPU"))
    config = type("WorkerGPUs", (OneGPU,), {"GPU_COUNT": gpus + 2})()
    with pytest.raises(ConfigError, match=rf"GPU_COUNT = {gpus + 2}, but TensorFlow sees {gpus} "
                                          rf"GPU\(s\) on this worker") as error:
        distribute.choose_strategy(config, environ={"TF_CONFIG": json.dumps(TWO_WORKERS)})
    if not gpus:
        assert "set GPU_COUNT = 1 (a worker without GPUs trains on its CPU" in str(error.value)
    no_task = {"cluster": TWO_WORKERS["cluster"]}
    with pytest.raises(ConfigError, match="TF_CONFIG needs a task"):
        distribute.choose_strategy(OneGPU(), environ={"TF_CONFIG": json.dumps(no_task)})


def test_batch_size_is_images_per_gpu_times_replicas_in_sync():
    # Two workers with 2 GPUs each: 4 replicas in sync (a real MultiWorkerMirroredStrategy
    # needs a cluster; the two-worker test below checks one: 2 replicas, batch 2).
    class FourReplicas:
        num_replicas_in_sync = 4

    config = type("TwoImages", (OneGPU,), {"IMAGES_PER_GPU": 2, "GPU_COUNT": 2})()
    assert config.BATCH_SIZE == 4
    global_config = distribute.config_for_strategy(config, FourReplicas())
    assert global_config.BATCH_SIZE == 8 and global_config.IMAGES_PER_GPU == 2
    assert config.BATCH_SIZE == 4  # the caller's config is left alone


def test_tf_config_workers_and_errors():
    cluster = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
               "task": {"type": "worker", "index": 0}}
    assert distribute.worker_count({"TF_CONFIG": json.dumps(cluster)}) == 2
    assert distribute.worker_count({}) == 0
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        distribute.worker_count({"TF_CONFIG": "{cluster"})


@pytest.fixture(scope="module")
def mirrored_report():
    """tests/distribute_mirrored_check.py's report. It runs in its own process: the
    CPU must be split before TensorFlow initialises its devices."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "distribute_mirrored_check.py")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_two_replicas_train_as_one_device_with_the_global_batch(mirrored_report):
    """Two logical CPUs under MirroredStrategy with 1 image each vs one device with
    2 images (frozen BatchNorm, ROI sampling from the same seed state, clipping
    active): same first-step losses and the same updated weights."""
    report = mirrored_report
    assert report["replicas"] == 2 and report["mirrored_batch_size"] == 2
    single, mirrored = report["single"], report["mirrored"]
    assert set(single) == set(mirrored) and "mrcnn_mask_loss" in single
    for name, value in single.items():
        assert value > 0, name
        assert abs(mirrored[name] - value) <= 1e-4 * abs(value), (name, value, mirrored[name])
    # The step moved the weights far more than the tolerance, so a gradient
    # summed twice, an L2 term added per replica or per-replica clipping shows.
    assert report["weights_moved"] > 1e-4
    assert report["weight_diff"] <= 1e-5
    assert report["replica_copies_diff"] == 0.0


def test_two_replicas_train_a_step_in_mixed_bfloat16(mirrored_report):
    """Config.PRECISION = "mixed_bfloat16" under the same MirroredStrategy: the
    convolutions compute in bfloat16, the step's losses are finite and positive
    and it moves the (float32) weights to finite values."""
    mixed = mirrored_report["mixed_bfloat16"]
    assert mixed["compute_dtype"] == "bfloat16"
    assert set(mixed["losses"]) == set(mirrored_report["mirrored"])
    for name, value in mixed["losses"].items():
        assert np.isfinite(value) and value > 0, (name, value)
    assert mixed["weights_finite"] and mixed["weights_moved"] > 1e-4


def test_sharded_batches_in_one_process_are_the_generator_batches_across_epochs():
    """One process, one replica: step s of `sharded_batches` is batch s % steps of
    epoch s // steps of the generator (three steps cross an epoch boundary); it is
    what fit gets in one process as well."""
    from samples.shapes import ShapesDataset

    worker = _worker_module()
    dataset = worker.shapes(ShapesDataset())
    config = type("TwoImages", (worker.WorkerConfig,), {"IMAGES_PER_GPU": 2})()
    strategy = tf.distribute.get_strategy()
    batches = iter(distribute.sharded_batches(strategy, DataGenerator(dataset, config, seed=9, steps=2)))
    reference = DataGenerator(dataset, config, seed=9, steps=2)
    for step in range(3):
        if step == 2:
            reference.on_epoch_end()
        expected, got = reference[step % 2], next(batches)
        for name, rows in expected.items():
            np.testing.assert_array_equal(got[name].numpy(), rows, err_msg=f"{name}, step {step}")
    # fit gets this dataset in one process too, each input with its static batch shape.
    fed = distribute.batches_for_fit(None, reference, 1)
    assert ({name: tuple(spec.shape) for name, spec in fed.element_spec.items()}
            == {name: shape for name, (shape, _) in reference.batch_signature(2).items()})


def test_sharded_batches_load_parts_in_parallel_in_a_seeded_run():
    """A seeded train() turns on op determinism (``training.seed_run``), under which
    tf.data runs a stateful map one element at a time: `parallel_loads` must hold there
    too. Each load waits a little, so two parallel loads overlap."""
    from tensorflow.python.framework import config as tf_config  # no public switch-off
    from samples.shapes import ShapesDataset

    worker = _worker_module()
    lock, loading, most = threading.Lock(), [0], [0]

    class CountingGenerator(DataGenerator):
        def part(self, *args, **kwargs):
            with lock:
                loading[0] += 1
                most[0] = max(most[0], loading[0])
            try:
                time.sleep(0.2)
                return super().part(*args, **kwargs)
            finally:
                with lock:
                    loading[0] -= 1

    generator = CountingGenerator(worker.shapes(ShapesDataset()), worker.WorkerConfig(), seed=1, steps=4)
    was_on = tf_config.is_op_determinism_enabled()
    tf_config.enable_op_determinism()
    try:
        batches = iter(distribute.sharded_batches(tf.distribute.get_strategy(), generator, parallel_loads=2))
        for _ in range(4):
            next(batches)
    finally:
        if not was_on:
            tf_config.disable_op_determinism()
    assert most[0] == 2


# --- MultiWorkerMirroredStrategy: two processes on 127.0.0.1 -------------------------

WORKER = os.path.join(ROOT, "tests", "distribute_worker.py")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _worker_module():
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    try:
        import distribute_worker
    finally:
        sys.path.pop(0)
    return distribute_worker


def _start_workers(model_dir, tmp_path, epochs, weights="none", shards=False):
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    workers = []
    for index in range(2):
        tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(tf_config))
        log = open(tmp_path / f"worker{index}.log", "w")
        workers.append((subprocess.Popen(
            [sys.executable, WORKER, str(model_dir), str(tmp_path / f"weights{index}.npz"), str(epochs),
             weights] + ([str(tmp_path / f"shards{index}.json")] if shards else []),
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    return workers


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, names in os.walk(folder) for f in names)


def _run_workers(model_dir, tmp_path, epochs, weights="none", shards=False):
    """Both workers to the end; returns their final weights."""
    workers = _start_workers(model_dir, tmp_path, epochs, weights, shards)
    for index, (process, log) in enumerate(workers):
        process.wait(timeout=900)
        log.close()
        assert process.returncode == 0, (tmp_path / f"worker{index}.log").read_text()[-3000:]
    first, second = np.load(tmp_path / "weights0.npz"), np.load(tmp_path / "weights1.npz")
    assert len(first.files) > 100
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key])
    return [first[key] for key in first.files]


def test_two_workers_train_in_step_and_only_the_chief_writes(tmp_path):
    model_dir = tmp_path / "logs"
    model_dir.mkdir()
    trained = _run_workers(model_dir, tmp_path, epochs=3, shards=True)
    assert "replicas=2 batch=2 start_epoch=0" in (tmp_path / "worker1.log").read_text()
    # The data generators of both workers shuffle from the same seed.
    seeds = [re.search(r"shared_seed=(\d+)", (tmp_path / f"worker{i}.log").read_text())
             for i in (0, 1)]
    assert all(seeds) and seeds[0].group(1) == seeds[1].group(1)
    _assert_each_worker_reads_only_its_share(tmp_path, int(seeds[0].group(1)))
    files = _files(model_dir)
    runs = {path.split(os.sep)[0] for path in files}
    assert len(runs) == 1, files
    run = runs.pop()
    checkpoints = [f for f in files if f.endswith(".h5")]
    assert checkpoints == [os.path.join(run, f"mask_rcnn_mwms_000{i}.h5") for i in (1, 2, 3)]
    assert len([f for f in files if "tfevents" in f]) == 1
    assert len([f for f in files if f.endswith("training_log.csv")]) == 1

    # --weights=last: every worker resumes after epoch 3, in the same run folder.
    resumed = _run_workers(model_dir, tmp_path, epochs=4, weights="last")
    for index in (0, 1):
        assert "start_epoch=3" in (tmp_path / f"worker{index}.log").read_text()
    files = _files(model_dir)
    assert [f for f in files if f.endswith(".h5")] == checkpoints + [
        os.path.join(run, "mask_rcnn_mwms_0004.h5")]
    assert any(not np.array_equal(a, b) for a, b in zip(trained, resumed))


def _assert_each_worker_reads_only_its_share(tmp_path, seed):
    """The workers' reads through ``distribute.sharded_batches`` (2 workers x 1
    replica x 2 images) against the global batches that one process computes
    with the same seed: in each step, worker w read exactly images 2w, 2w + 1 of
    the global batch (so the two read disjoint sets that make up the batch, no
    image twice) and its replica received just those."""
    from samples.shapes import ShapesDataset

    worker = _worker_module()
    shards = [json.loads((tmp_path / f"shards{index}.json").read_text()) for index in (0, 1)]
    assert [shard["batch_size"] for shard in shards] == [4, 4]  # IMAGES_PER_GPU 2 x 2 replicas
    per_replica = 2
    config = type("GlobalBatch", (worker.ShardConfig,), {"IMAGES_PER_GPU": 4})()
    reference = DataGenerator(worker.shapes(ShapesDataset()), config, seed=seed, steps=2)
    for step in range(worker.SHARD_STEPS):
        if step and step % len(reference) == 0:
            reference.on_epoch_end()
        global_batch = [int(i) for i in reference[step % len(reference)]["input_image_meta"][:, 0]]
        assert len(set(global_batch)) == 4, global_batch
        reads = [shard["reads"][step * per_replica:(step + 1) * per_replica] for shard in shards]
        assert not set(reads[0]) & set(reads[1]), (step, reads)
        assert sorted(reads[0] + reads[1]) == sorted(global_batch), (step, reads, global_batch)
        for index, shard in enumerate(shards):
            share = global_batch[index * per_replica:(index + 1) * per_replica]
            assert reads[index] == share and shard["received"][step] == share, (step, index, shard)


def test_a_killed_worker_stops_the_other_with_a_clear_error(tmp_path):
    model_dir = tmp_path / "logs"
    model_dir.mkdir()
    (chief, chief_log), (other, other_log) = _start_workers(model_dir, tmp_path, epochs=500)
    try:
        deadline = time.monotonic() + 900
        while not any(f.endswith("_0002.h5") for f in _files(model_dir)):
            assert chief.poll() is None and other.poll() is None, "a worker exited early"
            assert time.monotonic() < deadline, "no checkpoint after 900 s"
            time.sleep(0.5)
        other.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        chief.wait(timeout=120)
        assert time.monotonic() - killed_at < 120
    finally:
        for process, log in ((chief, chief_log), (other, other_log)):
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    output = (tmp_path / "worker0.log").read_text()
    assert chief.returncode != 0
    assert "WorkerLostError" in output and "/job:worker/replica:0/task:1" in output, output[-3000:]
    # The checkpoints written before the loss are complete: the last one loads.
    last = training.find_last(str(model_dir), "mwms")
    model = MaskRCNN("training", _worker_module().WorkerConfig(), str(tmp_path / "reload"))
    model.load_weights(last)
    assert model.epoch >= 2


def test_tinyvoc_train_with_more_gpus_than_visible_is_one_line_error(tmp_path):
    from samples.synthetic_tinyvoc import write_synthetic_tinyvoc
    write_synthetic_tinyvoc(str(tmp_path / "data"), n_train=4, n_test=1, seed=1, with_defects=False)
    gpus = len(tf.config.list_logical_devices("GPU")) + 2
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "samples", "tinyvoc.py"), "train",
         "--dataset", str(tmp_path / "data"), "--weights", "none", "--image-size", "128",
         "--logs", str(tmp_path / "logs"), "--gpus", str(gpus)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"GPU_COUNT = {gpus}" in errors[0] and "GPU(s)" in errors[0]
    assert not os.path.exists(tmp_path / "logs") or not os.listdir(tmp_path / "logs")


def test_a_lost_peer_error_outside_multi_worker_runs_is_left_alone():
    error = tf.errors.UnavailableError(None, None, "peer gone")
    with pytest.raises(tf.errors.UnavailableError):
        with distribute.stop_on_lost_worker(tf.distribute.get_strategy(), "/logs"):
            raise error
    assert not distribute.spans_workers(tf.distribute.get_strategy())


def test_workers_other_than_the_chief_get_no_writing_callbacks():
    import keras
    from mrcnn.callbacks import CocoMAPCallback

    class Mine(keras.callbacks.Callback):
        pass

    mine = Mine()
    writer = CocoMAPCallback.__new__(CocoMAPCallback)  # only its class flag matters here
    chosen = training.worker_callbacks([mine, writer])
    assert mine in chosen and writer not in chosen
    assert not any(isinstance(c, (keras.callbacks.TensorBoard, keras.callbacks.CSVLogger,
                                  training.AtomicCheckpoint)) for c in chosen)
