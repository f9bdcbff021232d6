"""Each numpy box function of mrcnn/boxes.py (and the host meta parser) pinned to its
graph twin (mrcnn/layers/box_ops.py, tf_ops, the in-graph padding test) on random
inputs: README and docs/DESIGN.md promise the two sides compute the same thing."""
import numpy as np
import pytest
from keras import ops

from mrcnn import boxes, images, tf_ops
from mrcnn.layers import box_ops
from mrcnn.layers.detection_targets import _nonzero_rows


def _boxes(rng, n, scale=1.0):
    yx = rng.uniform(0, 0.6, size=(n, 2))
    hw = rng.uniform(0.02, 0.4, size=(n, 2))
    return (np.concatenate([yx, yx + hw], axis=1) * scale).astype(np.float32)


def _pixel_boxes(rng, n, shape):
    h, w = shape
    y1 = rng.integers(0, h - 1, n)
    x1 = rng.integers(0, w - 1, n)
    return np.stack([y1, x1, rng.integers(y1 + 1, h + 1), rng.integers(x1 + 1, w + 1)],
                    1).astype(np.int32)


def _padded(rng, n):
    x = _boxes(rng, n)
    x[rng.random(n) < 0.4] = 0
    return x


def _meta(rng, n):
    return np.stack([images.compose_image_meta(
        int(rng.integers(0, 100)), (*rng.integers(10, 900, 2), 3), (512, 512, 3),
        _pixel_boxes(rng, 1, (512, 512))[0], rng.uniform(0.2, 4), rng.integers(0, 2, 5))
        for _ in range(n)]).astype(np.float32)


SHAPE = (64, 96)

# name -> (numpy function, graph function, make args from rng, compare)
TWINS = {
    "compute_overlaps/overlaps": (
        boxes.compute_overlaps, box_ops.overlaps,
        lambda rng: (_boxes(rng, 9), _boxes(rng, 6)), "close"),
    "box_refinement": (
        boxes.box_refinement, box_ops.box_refinement,
        lambda rng: (_boxes(rng, 9), _boxes(rng, 9)), "close"),
    "apply_box_deltas": (
        boxes.apply_box_deltas, box_ops.apply_box_deltas,
        lambda rng: (_boxes(rng, 9), rng.normal(scale=0.3, size=(9, 4)).astype(np.float32)),
        "close"),
    "norm_boxes": (
        boxes.norm_boxes, box_ops.norm_boxes,
        lambda rng: (_pixel_boxes(rng, 9, SHAPE), SHAPE), "close"),
    "denorm_boxes": (
        boxes.denorm_boxes, box_ops.denorm_boxes,
        lambda rng: (boxes.norm_boxes(_pixel_boxes(rng, 9, SHAPE), SHAPE), SHAPE), "equal"),
    "non_max_suppression": (
        lambda b, s, t: boxes.non_max_suppression(b, s, t),
        lambda b, s, t: tf_ops.non_max_suppression(b, s, len(b), t),
        lambda rng: (_boxes(rng, 30), rng.permutation(30).astype(np.float32), 0.3), "equal"),
    "trim_zeros/_nonzero_rows": (
        boxes.trim_zeros,
        lambda x: ops.convert_to_numpy(x)[ops.convert_to_numpy(_nonzero_rows(x))],
        lambda rng: (_padded(rng, 12),), "equal"),
    "parse_image_meta": (
        lambda m: images.parse_image_meta(m),
        lambda m: box_ops.parse_image_meta(m),
        lambda rng: (_meta(rng, 3),), "close"),
}


def _assert_same(want, got, compare):
    if isinstance(want, dict):
        assert set(want) == set(got)
        for key in want:
            _assert_same(want[key], got[key], compare)
        return
    got = ops.convert_to_numpy(got)
    assert np.shape(got) == np.shape(want)
    if compare == "equal":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(TWINS))
def test_numpy_function_equals_its_graph_twin(name, seed):
    numpy_fn, graph_fn, make_args, compare = TWINS[name]
    args = make_args(np.random.default_rng(seed))
    _assert_same(numpy_fn(*args), graph_fn(*args), compare)
