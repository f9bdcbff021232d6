"""ProposalLayer against a numpy decode + greedy NMS reference."""
import keras
import numpy as np
import pytest

from mrcnn.layers.proposal import ProposalLayer
from tests import reference as ref
from tests.serialization import assert_serialization_round_trip

STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)


def _rpn_inputs(rng, batch, num_anchors):
    centres = rng.uniform(0.1, 0.9, size=(batch, num_anchors, 2))
    half = rng.uniform(0.03, 0.2, size=(batch, num_anchors, 2))
    anchors = np.concatenate([centres - half, centres + half], -1).astype(np.float32)
    fg = rng.random((batch, num_anchors)).astype(np.float32)
    probs = np.stack([1 - fg, fg], -1)
    deltas = rng.normal(scale=1.0, size=(batch, num_anchors, 4)).astype(np.float32)
    return probs, deltas, anchors


def _reference(probs, deltas, anchors, count, threshold, limit):
    return np.stack([ref.proposals(p, d, a, count, threshold, limit, STD)
                     for p, d, a in zip(probs, deltas, anchors)])


def test_matches_numpy_decode_and_greedy_nms():
    probs, deltas, anchors = _rpn_inputs(np.random.default_rng(0), 2, 80)
    layer = ProposalLayer(proposal_count=40, nms_threshold=0.3, pre_nms_limit=50,
                          rpn_bbox_std_dev=STD)
    got = np.asarray(layer([probs, deltas, anchors]))
    want = _reference(probs, deltas, anchors, 40, 0.3, 50)
    assert got.shape == (2, 40, 4)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # Clipping happened and NMS left fewer than proposal_count (zero-padded rows).
    assert (got == 1.0).any() and (got == 0.0).all(axis=-1).any()


def test_too_few_anchors_are_zero_padded():
    probs, deltas, anchors = _rpn_inputs(np.random.default_rng(1), 2, 6)
    got = np.asarray(ProposalLayer(10, 0.9, 100, STD)([probs, deltas, anchors]))
    want = _reference(probs, deltas, anchors, 10, 0.9, 100)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not got[:, 6:].any()


def test_functional_model_with_unknown_batch_and_anchor_count():
    probs, deltas, anchors = _rpn_inputs(np.random.default_rng(2), 2, 60)
    layer = ProposalLayer(20, 0.7, 40, STD)
    got = ref.functional_predict(layer, [probs, deltas, anchors],
                                 dynamic_axes={(0, 1), (1, 1), (2, 1)})
    np.testing.assert_allclose(got, _reference(probs, deltas, anchors, 20, 0.7, 40), atol=1e-5)


def test_config_round_trip():
    layer = ProposalLayer(20, 0.7, 40, rpn_bbox_std_dev=[0.1, 0.1, 0.25, 0.25], name="ROI")
    clone = ProposalLayer.from_config(layer.get_config())
    assert_serialization_round_trip(layer)
    assert clone.get_config() == layer.get_config()
    assert (clone.name, clone.proposal_count, clone.nms_threshold, clone.pre_nms_limit,
            clone.rpn_bbox_std_dev) == ("ROI", 20, 0.7, 40, [0.1, 0.1, 0.25, 0.25])
    assert clone.supports_jit == (keras.backend.backend() != "tensorflow")


@pytest.mark.parametrize("kwargs", [
    {"proposal_count": 0, "nms_threshold": 0.7, "pre_nms_limit": 6000, "rpn_bbox_std_dev": STD},
    {"proposal_count": 5, "nms_threshold": 1.5, "pre_nms_limit": 6000, "rpn_bbox_std_dev": STD},
    {"proposal_count": 5, "nms_threshold": 0.7, "pre_nms_limit": 0, "rpn_bbox_std_dev": STD},
    {"proposal_count": 5, "nms_threshold": 0.7, "pre_nms_limit": 6000, "rpn_bbox_std_dev": [0.1]},
])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="ProposalLayer"):
        ProposalLayer(**kwargs)
