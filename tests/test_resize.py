"""mrcnn.resize.bilinear_resize against skimage.transform.resize (Matterport's resize),
value for value, and the mask pasting that uses it."""
import numpy as np
import pytest
import skimage.transform

from mrcnn.masks import unmold_mask, unmold_masks
from mrcnn.resize import bilinear_resize


def skimage_resize(image, shape):
    """Matterport's call."""
    return skimage.transform.resize(image, shape, order=1, mode="constant",
                                    preserve_range=True, anti_aliasing=False)


def test_hand_computed_values_blend_the_border_with_zero_then_clip_to_the_input_range():
    # 2 -> 4 samples at -0.25, 0.25, 0.75, 1.25: 0.75*10 (border with 0) = 7.5 is clipped
    # up to the input's minimum 10; 0.25*20 + 0.75*0 ... at 1.25 gives 0.75*20 = 15.
    out = bilinear_resize(np.array([[10.0], [20.0]]), (4, 1))
    np.testing.assert_array_equal(out[:, 0], [10.0, 12.5, 17.5, 15.0])
    # 10 -> 4 samples at 0.75, 3.25, 5.75, 8.25 of 0, 10, ..., 90.
    out = bilinear_resize(np.arange(10.0)[:, None] * 10, (4, 1))
    np.testing.assert_allclose(out[:, 0], [7.5, 32.5, 57.5, 82.5], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["uint8 rgb", "float32 probabilities", "float32 binary",
                                  "float64 two channels", "uint16 gray"])
def test_equals_skimage_value_for_value_on_random_images(kind):
    rng = np.random.default_rng(sum(map(ord, kind)))  # a fixed seed per kind
    for _ in range(300):
        h, w = rng.integers(1, 40, 2)
        shape = tuple(int(v) for v in rng.integers(1, 90, 2))
        image = {"uint8 rgb": lambda: rng.integers(0, 256, (h, w, 3)).astype(np.uint8),
                 "float32 probabilities": lambda: rng.random((h, w)).astype(np.float32),
                 "float32 binary": lambda: (rng.random((h, w)) > 0.5).astype(np.float32),
                 "float64 two channels": lambda: rng.normal(size=(h, w, 2)),
                 "uint16 gray": lambda: rng.integers(0, 65536, (h, w, 1)).astype(np.uint16)}[kind]()
        want, got = skimage_resize(image, shape), bilinear_resize(image, shape)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want, err_msg=f"{image.shape} -> {shape}")


def test_equals_skimage_at_the_model_sizes():
    # A VOC-like 375x500 photo-sized input to Matterport's 512 and 1024 squares and back down.
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (375, 500, 3)).astype(np.uint8)
    for shape in [(384, 512), (768, 1024), (96, 128), (375, 500)]:
        np.testing.assert_array_equal(bilinear_resize(image, shape), skimage_resize(image, shape))


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="positive size"):
        bilinear_resize(np.zeros((4, 4)), (0, 3))
    with pytest.raises(ValueError, match=r"\[H, W\(, C\)\]"):
        bilinear_resize(np.zeros(4), (2, 2))


def test_unmold_masks_equals_unmold_mask_per_detection():
    rng = np.random.default_rng(5)
    image_shape = (37, 53, 3)
    masks = rng.random((9, 28, 28)).astype(np.float32)
    boxes = np.array([[0, 0, 37, 53], [5, 6, 20, 30], [-4, -7, 10, 12], [30, 45, 50, 70],
                      [10, 10, 10, 20], [40, 0, 50, 10], [3, 3, 4, 4], [1, 50, 36, 60],
                      [-10, -10, -2, -2]])
    got = unmold_masks(masks, boxes, image_shape)
    assert got.shape == (37, 53, 9) and got.dtype == bool
    for i in range(len(boxes)):
        np.testing.assert_array_equal(got[..., i], unmold_mask(masks[i], boxes[i], image_shape),
                                      err_msg=f"detection {i}, box {boxes[i]}")
    assert got[..., :4].any() and not got[..., 4].any() and not got[..., 8].any()
    assert unmold_masks(masks[:0], boxes[:0], image_shape).shape == (37, 53, 0)
