"""Shared test setup: quiet TensorFlow, headless matplotlib, repo root importable."""
import errno
import os
import sys
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
    shared by the precision and backend comparisons, so it is trained once per run."""
    from samples import precision_agreement as agreement

    folder = tmp_path_factory.mktemp("agreement")
    train_set, held_out = agreement.write_data(str(folder / "data"))
    model_dir = str(folder / "logs")
    checkpoint = agreement.train_float32(agreement.make_config(STEPS_PER_EPOCH=960),
                                         train_set, model_dir, seed=0)
    return checkpoint, held_out, model_dir
