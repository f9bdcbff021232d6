"""Training under tf.distribute (mrcnn.distribute): strategy choice and the
one-device equivalence of MirroredStrategy over two logical CPU devices."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from mrcnn import distribute
from mrcnn.config import Config
from mrcnn.errors import ConfigError

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


def test_tf_config_workers_and_errors():
    cluster = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
               "task": {"type": "worker", "index": 0}}
    assert distribute.worker_count({"TF_CONFIG": json.dumps(cluster)}) == 2
    assert distribute.worker_count({}) == 0
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        distribute.worker_count({"TF_CONFIG": "{cluster"})


def test_two_replicas_train_as_one_device_with_the_global_batch():
    """Two logical CPUs under MirroredStrategy with 1 image each vs one device with
    2 images (frozen BatchNorm, ROI sampling from the same seed state, clipping
    active): same first-step losses and the same updated weights. Runs in its own
    process: the CPU must be split before TensorFlow initialises its devices."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "distribute_mirrored_check.py")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
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
