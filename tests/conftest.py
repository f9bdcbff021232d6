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
