"""Shared test setup: quiet TensorFlow, headless matplotlib, repo root importable."""
import contextlib
import errno
import os
import sys
import tempfile

import pytest

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# The files that take minutes, slowest first (measured 2026-12-02). scripts/test.sh runs
# whole files on parallel workers in collection order, so starting these first keeps one
# worker from finishing alone. test_backends and test_export_trained come late: by then
# test_precision_agreement has trained the agreement_checkpoint they reuse.
SLOW_FILES_FIRST = ("test_precision_agreement.py", "test_notebooks.py", "test_model.py",
                    "test_distribute.py", "test_tinyvoc_cli.py", "test_precision.py",
                    "test_export.py", "test_tinyvoc_errors.py", "test_channels.py",
                    "test_training_features.py", "test_backends.py", "test_export_trained.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    # A stable sort: each file's tests keep their order.
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.path)), len(rank)))


@pytest.fixture
def read_only_folder(tmp_path, monkeypatch):
    """A folder nobody may write to. Root ignores chmod (and the tests may run as root),
    so for root every temporary file created in it fails as on a read-only mount (EROFS);
    mrcnn.fileio creates every output file, and its write check, that way."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and os.path.abspath(dir).startswith(str(folder)):
            raise OSError(errno.EROFS, "Read-only file system", dir)
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    yield folder


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A shapes model trained 3 x 8 steps from random init (tests.configs.ShapesTrainConfig),
    with the 4 validation images: ``(model, history dict, val_set)``. Shared by the
    test files that need trained weights, so it is trained once per run."""
    import keras

    from mrcnn.model import MaskRCNN
    from samples.shapes import ShapesDataset
    from tests.configs import ShapesTrainConfig

    keras.utils.set_random_seed(0)
    config = ShapesTrainConfig()
    train_set = ShapesDataset()
    train_set.load_shapes(32, 128, 128, seed=1)
    train_set.prepare()
    val_set = ShapesDataset()
    val_set.load_shapes(4, 128, 128, seed=2)
    val_set.prepare()
    model_dir = str(tmp_path_factory.mktemp("logs"))
    model = MaskRCNN("training", config, model_dir)
    history = model.train(train_set, val_set, learning_rate=config.LEARNING_RATE, epochs=3,
                          layers="all", verbose=0)
    return model, history.history, val_set


@pytest.fixture(scope="session")
def agreement_checkpoint(tmp_path_factory):
    """A confident model: samples.precision_agreement's small GroupNorm model trained 960
    steps in float32 on synthetic tinyvoc (see tests/test_precision_agreement.py for the
    measurements behind the step count). ``(checkpoint path, held-out dataset, model_dir)``;
    shared by the precision, backend and export comparisons, so it is trained once per
    run, also when pytest-xdist runs the files on several workers."""
    from samples import precision_agreement as agreement

    with _run_wide_folder(tmp_path_factory, "agreement") as folder:
        train_set, held_out = agreement.write_data(str(folder / "data"))
        model_dir = str(folder / "logs")
        done = folder / "checkpoint.txt"
        if not done.exists():
            checkpoint = agreement.train_float32(agreement.make_config(STEPS_PER_EPOCH=960),
                                                 train_set, model_dir, seed=0)
            done.write_text(checkpoint)
        return done.read_text(), held_out, model_dir


@contextlib.contextmanager
def _run_wide_folder(tmp_path_factory, name):
    """A folder of this test run shared by its pytest-xdist workers, held under an
    exclusive lock (the first worker fills it while the others wait); a fresh
    temporary folder without xdist or where there is no fcntl."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or fcntl is None:
        yield tmp_path_factory.mktemp(name)
        return
    # Each worker's base folder lies in the run's own one (pytest-N/popen-gwK).
    folder = tmp_path_factory.getbasetemp().parent / name
    folder.mkdir(exist_ok=True)
    with open(folder.parent / f"{name}.lock", "w") as lock:  # closing it releases the lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder
