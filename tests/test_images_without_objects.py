"""Images without objects train the heads (issue 16): a whole-graph training step on
an image with no ground truth samples background ROIs, the class loss counts them,
the box and mask losses are zero and every gradient is finite (as torchvision's
negative-samples test). The RPN targets of such an image are all sampled negatives."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn.data import DataGenerator
from mrcnn.dataset import Dataset
from mrcnn.model import MaskRCNN
from tests.test_model import SmallConfig


class EmptyConfig(SmallConfig):
    NAME = "empty"
    IMAGES_PER_GPU = 1


class NoObjectsDataset(Dataset):
    """Random-noise images with no instances at all."""

    def __init__(self, count, size=128, channels=3):
        super().__init__()
        for name in ("a", "b", "c"):
            self.add_class("blank", len(self.class_info), name)
        for i in range(count):
            self.add_image("blank", i, None)
        self.size, self.channels = size, channels
        self.prepare()

    def load_image(self, image_id):
        rng = np.random.default_rng(image_id)
        return rng.integers(0, 256, (self.size, self.size, self.channels), dtype=np.uint8)

    def load_mask(self, image_id):
        return np.zeros((self.size, self.size, 0), bool), np.zeros([0], np.int32)


@pytest.fixture(scope="module")
def step(tmp_path_factory):
    """(batch, outputs, losses, gradients) of one training step on an empty image."""
    import keras

    keras.utils.set_random_seed(0)
    config = EmptyConfig()
    model = MaskRCNN("training", config, str(tmp_path_factory.mktemp("logs")))
    batch = DataGenerator(NoObjectsDataset(1), config, shuffle=False, skip_empty=False)[0]
    keras_model = model.keras_model
    with tf.GradientTape() as tape:
        outputs = keras_model(batch, training=True)
        losses = keras_model.mask_rcnn_losses(batch, outputs)
        total = sum(losses.values())
    grads = tape.gradient(total, keras_model.trainable_weights)
    return config, batch, outputs, losses, grads, keras_model.trainable_weights


def test_rpn_targets_of_an_image_without_objects_are_sampled_negatives(step):
    config, batch, *_ = step
    assert not batch["input_gt_class_ids"].any()
    rpn_match = batch["input_rpn_match"][0, :, 0]
    assert not (rpn_match == 1).any()
    # All anchors are background; the RPN budget is filled with sampled negatives.
    assert (rpn_match == -1).sum() == config.RPN_TRAIN_ANCHORS_PER_IMAGE
    assert not batch["input_rpn_bbox"].any()


def test_background_rois_are_sampled_and_only_the_class_losses_count(step):
    config, _, outputs, losses, _, _ = step
    rois = np.asarray(outputs["rois"])[0]
    sampled = np.abs(rois).sum(axis=1) > 0
    # T = 32, ratio 0.33: cap 10, negatives int(10 / 0.33) - 10 = 20.
    assert sampled.sum() == 20
    assert not np.asarray(outputs["target_class_ids"]).any()
    assert not np.asarray(outputs["target_bbox"]).any()
    values = {name: float(value) for name, value in losses.items()}
    assert all(np.isfinite(v) for v in values.values()), values
    assert values["mrcnn_bbox_loss"] == 0.0 and values["mrcnn_mask_loss"] == 0.0
    assert values["rpn_bbox_loss"] == 0.0
    assert values["mrcnn_class_loss"] > 0.0 and values["rpn_class_loss"] > 0.0
    # The class loss is the background cross-entropy of the heads' logits.
    logits = np.asarray(outputs["mrcnn_class_logits"], np.float64)[0]
    log_probs = logits - logits.max(axis=1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(values["mrcnn_class_loss"], -log_probs[:, 0].mean(), rtol=1e-4)


def test_gradients_are_finite_and_reach_the_classifier(step):
    *_, grads, weights = step
    for grad, weight in zip(grads, weights):
        if grad is not None:
            assert np.isfinite(np.asarray(grad)).all(), weight.path
    by_name = {w.path: g for g, w in zip(grads, weights)}
    classifier = [g for name, g in by_name.items() if name.startswith("mrcnn_class_logits/")]
    assert classifier and any(np.abs(np.asarray(g)).sum() > 0 for g in classifier)


def test_train_uses_or_skips_images_without_objects_by_config(tmp_path):
    class SkipConfig(EmptyConfig):
        STEPS_PER_EPOCH = 1
        VALIDATION_STEPS = 0
        TRAIN_IMAGES_WITHOUT_INSTANCES = False

    assert EmptyConfig().TRAIN_IMAGES_WITHOUT_INSTANCES is True  # default: used
    model = MaskRCNN("training", SkipConfig(), str(tmp_path))
    # Skipping: a dataset of empty images has nothing to train on.
    with pytest.raises(ValueError, match="none of the 2 images has any instance"):
        model.train(NoObjectsDataset(2), None, 0.001, epochs=1, layers="heads", verbose=0, workers=1)
