"""Matterport-era calls run unchanged (issue 16): the idioms of its notebooks and
scripts, written as they were (``modellib.*``, ``utils.*``, ``model.run_graph``...),
each checked against an independent computation."""

import os

import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn import utils
from samples.shapes import ShapesDataset
from tests.test_model import SmallConfig


class InferenceConfig(SmallConfig):
    NAME = "compat"
    IMAGES_PER_GPU = 1


@pytest.fixture(scope="module")
def config():
    return InferenceConfig()


@pytest.fixture(scope="module")
def dataset():
    ds = ShapesDataset()
    ds.load_shapes(3, 128, 128, seed=4)
    ds.prepare()
    return ds


@pytest.fixture(scope="module")
def model(config, tmp_path_factory):
    import keras

    keras.utils.set_random_seed(1)
    return modellib.MaskRCNN(mode="inference", config=config,
                             model_dir=str(tmp_path_factory.mktemp("logs")))


# --- modellib.log ---------------------------------------------------------------------

def test_log_prints_shape_min_max_dtype_as_matterport(capsys):
    modellib.log("image", np.array([[0, 5, 2]], np.uint8))
    modellib.log("no values", np.zeros((0, 4), np.float32))
    modellib.log("just text")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("image                    shape: (1, 3)                "
                        "min:    0.00000  max:    5.00000  uint8")
    assert lines[1] == ("no values                shape: (0, 4)                "
                        "min:" + " " * 11 + "  max:" + " " * 13 + "float32")
    assert lines[2] == "just text"


def test_module_logging_still_works(caplog):
    import logging

    assert isinstance(modellib.logger, logging.Logger) and modellib.logger.name == "mrcnn"
    with caplog.at_level(logging.INFO, logger="mrcnn"):
        modellib.logger.info("hello")
    assert "hello" in caplog.text


# --- Data helpers of modellib ---------------------------------------------------------

def test_load_image_gt_matterport_signature(dataset, config):
    from mrcnn import data

    image, image_meta, gt_class_id, gt_bbox, gt_mask = modellib.load_image_gt(
        dataset, config, 0, use_mini_mask=False)
    # Matterport's default: full-size masks, whatever USE_MINI_MASK says.
    assert gt_mask.shape[:2] == image.shape[:2] == (128, 128)
    ours = data.load_image_gt(dataset, config, 0, use_mini_mask=False)
    for theirs, mine in zip((image, image_meta, gt_class_id, gt_bbox, gt_mask), ours):
        np.testing.assert_array_equal(theirs, mine)
    # The boxes enclose the masks exactly (independent of load_image_gt).
    for i in range(gt_mask.shape[-1]):
        ys, xs = np.nonzero(gt_mask[:, :, i])
        np.testing.assert_array_equal(gt_bbox[i], [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])
    # Matterport's deprecated augment=True: a random left-right flip.
    flipped = {modellib.load_image_gt(dataset, config, 0, augment=True)[0].tobytes()
               for _ in range(12)}
    assert flipped <= {image.tobytes(), image[:, ::-1].tobytes()} and len(flipped) == 2
    mini = modellib.load_image_gt(dataset, config, 0, use_mini_mask=True)[4]
    assert mini.shape[:2] == tuple(config.MINI_MASK_SHAPE)


def test_mold_image_takes_the_config(config):
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    molded = modellib.mold_image(images, config)
    np.testing.assert_allclose(molded, images.astype(np.float64) - np.array(config.MEAN_PIXEL), atol=1e-4)
    assert molded.dtype == np.float32


def _assert_matterport_inputs(inputs, batch_size, config):
    images, metas, rpn_match, rpn_bbox, gt_class_ids, gt_boxes, gt_masks = inputs
    assert images.shape == (batch_size, 128, 128, 3) and metas.shape == (batch_size, config.IMAGE_META_SIZE)
    assert rpn_match.shape[0] == batch_size
    assert rpn_bbox.shape == (batch_size, config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4)
    assert gt_class_ids.shape == gt_boxes.shape[:2] == (batch_size, config.MAX_GT_INSTANCES)
    assert gt_masks.shape[-1] == config.MAX_GT_INSTANCES and gt_masks.dtype == bool


def test_data_generator_yields_matterport_input_lists(dataset, config):
    generator = modellib.data_generator(dataset, config, shuffle=True, batch_size=2)
    for _ in range(3):  # crosses an epoch end (3 images, batches of 2)
        inputs, outputs = next(generator)
    assert outputs == []
    _assert_matterport_inputs(inputs, 2, config)
    with pytest.raises(ValueError, match="training graph samples ROIs"):
        next(modellib.data_generator(dataset, config, random_rois=2000, detection_targets=True))


def test_tf2_ports_data_generator_is_a_sequence_of_input_lists(dataset, config):
    """The TF2 ports' modellib.DataGenerator(dataset, config, shuffle, augmentation):
    item i is ([the 7 inputs in Matterport's order], []), the arrays of our keyed batch."""
    from mrcnn import data

    generator = modellib.DataGenerator(dataset, config, shuffle=False)
    assert len(generator) == -(-dataset.num_images // config.BATCH_SIZE)
    inputs, outputs = generator[0]
    assert outputs == []
    _assert_matterport_inputs(inputs, config.BATCH_SIZE, config)
    # With one seed (the ports' signature has none), the same arrays as our keyed batch.
    listed, _ = data.MatterportBatches(dataset, config, shuffle=False, seed=3)[0]
    keyed = data.DataGenerator(dataset, config, shuffle=False, seed=3)[0]
    for name, array in zip(("input_image", "input_image_meta", "input_rpn_match", "input_rpn_bbox",
                            "input_gt_class_ids", "input_gt_boxes", "input_gt_masks"), listed):
        np.testing.assert_array_equal(array, keyed[name], err_msg=name)
    with pytest.raises(ValueError, match="DataGenerator: random_rois/detection_targets"):
        modellib.DataGenerator(dataset, config, random_rois=200)


def test_training_graph_takes_matterport_input_lists_in_train_on_batch(dataset, config, tmp_path):
    """The ports' custom loop, keras_model.train_on_batch(*generator[i]), trains; the
    list means what the keyed dict means (same losses from the same ROI draws)."""
    from mrcnn import training

    class TrainingConfig(SmallConfig):
        IMAGES_PER_GPU = 1

    model = modellib.MaskRCNN("training", TrainingConfig(), str(tmp_path))
    model.set_trainable(".*", verbose=0)
    model.compile(0.001, 0.9)
    inputs, outputs = modellib.DataGenerator(dataset, TrainingConfig(), shuffle=False)[0]
    keyed = dict(zip(modellib.DataGenerator(dataset, config).batch_signature(1), inputs))
    losses = []
    for x in (inputs, keyed, tuple(inputs)):
        training.seed_run(model.keras_model, 0, 0)  # the same ROI sampling each time
        losses.append(model.keras_model.test_on_batch(x, outputs))
    assert losses[0] == losses[1] == losses[2] and np.all(np.isfinite(losses[0]))
    before = model.keras_model.get_layer("mrcnn_class_logits").get_weights()[0].copy()
    assert np.all(np.isfinite(model.keras_model.train_on_batch(inputs, outputs)))
    assert not np.array_equal(before, model.keras_model.get_layer("mrcnn_class_logits").get_weights()[0])


def test_matterport_fit_generator_and_the_ports_fit_train_unchanged(dataset, config, tmp_path):
    """Matterport's keras_model.fit_generator(data_generator(...), workers=...,
    use_multiprocessing=True) and the TF2 ports' keras_model.fit(DataGenerator(...),
    max_queue_size=100, workers=...): Keras 3 itself takes neither their (inputs, [])
    items nor these loading arguments."""
    from mrcnn import training

    class TrainingConfig(SmallConfig):
        IMAGES_PER_GPU = 1

    model = modellib.MaskRCNN("training", TrainingConfig(), str(tmp_path))
    model.set_trainable(".*", verbose=0)
    model.compile(0.001, 0.9)
    before = model.keras_model.get_layer("mrcnn_class_logits").get_weights()[0].copy()
    history = model.keras_model.fit(
        modellib.DataGenerator(dataset, TrainingConfig(), shuffle=True), initial_epoch=0, epochs=1,
        steps_per_epoch=2, validation_data=modellib.DataGenerator(dataset, TrainingConfig()),
        validation_steps=1, max_queue_size=100, workers=2, use_multiprocessing=False, verbose=0).history
    assert len(history["loss"]) == len(history["val_loss"]) == 1
    assert np.all(np.isfinite(history["loss"] + history["val_loss"])), history
    assert not np.array_equal(before, model.keras_model.get_layer("mrcnn_class_logits").get_weights()[0])
    history = model.keras_model.fit_generator(
        modellib.data_generator(dataset, config, shuffle=True, batch_size=1), initial_epoch=1,
        epochs=2, steps_per_epoch=1, validation_data=modellib.data_generator(dataset, config, batch_size=1),
        validation_steps=1, max_queue_size=100, workers=0, use_multiprocessing=True, verbose=0).history
    assert np.all(np.isfinite(history["loss"] + history["val_loss"])), history
    # The loading arguments reach the PyDataset Keras 3 reads; the items lose their [].
    plain = training._plain_items(modellib.DataGenerator(dataset, config), {"workers": 3})
    assert plain.workers == 3 and len(plain[0]) == 1 and len(plain[0][0]) == 7


# --- MaskRCNN debugging methods -------------------------------------------------------

@pytest.fixture
def detecting_model(model):
    """The module's untrained model with its classifier biased to class 1, so that it
    has detections (untrained, every ROI is background); restored afterwards."""
    logits = model.keras_model.get_layer("mrcnn_class_logits")
    saved = logits.bias.numpy()
    biased = np.zeros_like(saved)
    biased[1] = 10.0
    logits.bias.assign(biased)
    yield model
    logits.bias.assign(saved)


def test_run_graph_returns_named_layer_outputs(detecting_model, dataset, capsys):
    model = detecting_model
    image = dataset.load_image(1)
    keras_model = model.keras_model
    outputs = model.run_graph([image], [
        ("rpn_class", keras_model.get_layer("rpn_class").output),
        ("proposals", keras_model.get_layer("ROI").output),
        ("probs", keras_model.get_layer("mrcnn_class").output),
        ("deltas", keras_model.get_layer("mrcnn_bbox").output),
        ("detections", keras_model.get_layer("mrcnn_detection").output),
        ("res2c_out", keras_model.get_layer("res2c_out").output),
        ("masks", keras_model.get_layer("mrcnn_mask").output),
        ("mask_conv1", keras_model.get_layer("mrcnn_mask_conv1").output),
    ])
    assert list(outputs) == ["rpn_class", "proposals", "probs", "deltas", "detections", "res2c_out",
                             "masks", "mask_conv1"]
    printed = capsys.readouterr().out
    assert all(name in printed and "shape:" in printed for name in outputs)
    # The same values as the whole graph's own outputs on the same inputs.
    molded, metas, _ = model.mold_inputs([image])
    anchors = model.get_anchors(molded.shape[1:3])[None]
    detections, probs, deltas, masks, rois, rpn_class, _ = keras_model.predict_on_batch(
        [molded, metas, anchors])
    for name, want in (("detections", detections), ("probs", probs), ("deltas", deltas),
                       ("proposals", rois), ("rpn_class", rpn_class)):
        np.testing.assert_allclose(outputs[name], np.asarray(want), atol=1e-5, err_msg=name)
    assert outputs["res2c_out"].shape == (1, 32, 32, 256)
    # The heads' per-ROI layers come back [B, N, ...], as Matterport's TimeDistributed
    # layers were, so its notebook's indexing runs unchanged. The mask head runs on the
    # detections only (at least one row): the graph's output pads zero rows after them.
    class_ids = outputs["detections"][0, :, 4].astype(np.int32)
    det_count = int(np.count_nonzero(class_ids))
    assert det_count > 0
    assert outputs["masks"].shape == (1, det_count) + np.asarray(masks).shape[2:]
    assert outputs["mask_conv1"].shape == (1, det_count, 14, 14, 256)
    np.testing.assert_allclose(outputs["masks"], np.asarray(masks)[:, :det_count], atol=1e-5)
    per_detection = np.array([outputs["masks"][0, i, :, :, c]
                              for i, c in enumerate(class_ids[:det_count])])
    np.testing.assert_array_equal(per_detection,
                                  outputs["masks"][0, np.arange(det_count), :, :, class_ids[:det_count]])


def test_ancestor_finds_upstream_layer_outputs(model):
    keras_model = model.keras_model
    pillar = keras_model.get_layer("mrcnn_detection").output
    assert model.ancestor(pillar, "ROI") is keras_model.get_layer("ROI").output
    assert model.ancestor(pillar, "ROI:0") is keras_model.get_layer("ROI").output
    assert model.ancestor(pillar, "res2c_.*") is keras_model.get_layer("res2c_out").output
    # Tensors inside a layer do not exist in Keras 3: None, as Matterport for a miss...
    nms_node = model.ancestor(keras_model.get_layer("ROI").output, "ROI/rpn_non_max_suppression:0")
    assert nms_node is None
    # ...and run_graph says what to pass instead.
    with pytest.raises(ValueError, match="get_layer"):
        model.run_graph([np.zeros((128, 128, 3), np.uint8)], [("nms", nms_node)])


def test_trainable_layers(model):
    layers = model.get_trainable_layers()
    names = [layer.name for layer in layers]
    assert {"conv1", "rpn_model", "mrcnn_class_logits", "mrcnn_mask", "fpn_p2"} <= set(names)
    assert all(layer.weights for layer in layers)
    assert len(names) == sum(1 for layer in model.keras_model.layers if layer.weights)
    for layer in model.keras_model.layers:
        assert model.find_trainable_layer(layer) is layer or hasattr(layer, "layer")


def test_find_trainable_layer_unwraps_time_distributed(model):
    import keras

    inner = keras.layers.Dense(2, name="inner_dense")
    wrapped = keras.layers.TimeDistributed(inner)
    wrapped.build((None, 3, 4))
    assert model.find_trainable_layer(wrapped) is inner


def test_run_graph_needs_an_inference_model(tmp_path, dataset):
    training_model = modellib.MaskRCNN("training", SmallConfig(), str(tmp_path))
    with pytest.raises(RuntimeError, match="inference"):
        training_model.run_graph([dataset.load_image(0)], [])


# --- utils ------------------------------------------------------------------------------

def test_utils_helpers_matterport_idioms(dataset):
    image = dataset.load_image(0)
    mask, class_ids = dataset.load_mask(0)
    bbox = utils.extract_bboxes(mask)
    assert bbox.shape == (mask.shape[-1], 4)
    # Matterport's idiom: square resize, then the same on masks.
    resized, window, scale, padding, crop = utils.resize_image(
        image, min_dim=256, max_dim=256, mode="square")
    assert resized.shape == (256, 256, 3) and scale == 2.0 and window == (0, 0, 256, 256)
    big_mask = utils.resize_mask(mask, scale, padding, crop)
    assert big_mask.shape == (256, 256, mask.shape[-1])
    # IoU of two hand-made boxes: overlap 5x10 = 50, union 100 + 100 - 50.
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]])
    np.testing.assert_allclose(utils.compute_overlaps(boxes, boxes)[0, 1], 50 / 150)
    np.testing.assert_array_equal(utils.non_max_suppression(boxes, np.array([0.9, 0.8]), 0.5), [0, 1])
    np.testing.assert_array_equal(utils.non_max_suppression(boxes, np.array([0.9, 0.8]), 0.3), [0])
    deltas = utils.box_refinement(boxes[:1].astype(float), boxes[1:].astype(float))
    np.testing.assert_allclose(utils.apply_box_deltas(boxes[:1].astype(float), deltas), boxes[1:])
    mini = utils.minimize_mask(bbox, mask, (56, 56))
    restored = utils.expand_mask(bbox, mini, image.shape)
    assert restored.shape == mask.shape
    anchors = utils.generate_pyramid_anchors((8, 16, 32, 64, 128), [0.5, 1, 2],
                                             utils.compute_backbone_shapes(np.array([128, 128]),
                                                                           [4, 8, 16, 32, 64]),
                                             [4, 8, 16, 32, 64], 1)
    assert anchors.shape == (3 * (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2), 4)
    norm = utils.norm_boxes(boxes, (20, 20))
    np.testing.assert_array_equal(utils.denorm_boxes(norm, (20, 20)), boxes)
    # A perfect detection has AP 1 (Matterport's compute_ap argument order).
    ap, precisions, recalls, overlaps = utils.compute_ap(bbox, class_ids, mask, bbox, class_ids,
                                                         np.ones(len(class_ids)), mask)
    assert ap == 1.0


def test_download_trained_weights_copies_the_coco_file(tmp_path, monkeypatch, capsys):
    # The weights cache already holds the file: no network needed.
    cache = tmp_path / "keras_home" / "models"
    cache.mkdir(parents=True)
    payload = os.urandom(1000)
    (cache / "mask_rcnn_coco.h5").write_bytes(payload)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    target = tmp_path / "project" / "mask_rcnn_coco.h5"
    target.parent.mkdir()
    utils.download_trained_weights(str(target))
    assert target.read_bytes() == payload
    assert "done" in capsys.readouterr().out
    assert os.listdir(target.parent) == ["mask_rcnn_coco.h5"]  # no temporary file left
    from mrcnn.errors import OutputPathError

    with pytest.raises(OutputPathError, match="missing_folder"):
        utils.download_trained_weights(str(tmp_path / "missing_folder" / "w.h5"), verbose=0)
