"""Tests for mrcnn.images: decoding, resize modes, molding, image meta, channel fixes."""
import numpy as np
import pytest
import skimage.transform
from PIL import Image

from mrcnn.errors import DatasetError
from mrcnn.images import (
    compose_image_meta,
    mold_image,
    parse_image_meta,
    read_image,
    resize_image,
    to_rgb,
    to_uint8,
    unmold_image,
)


def _random_image(h, w, seed=0, dtype=np.uint8):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(dtype)


def _reference_resize(image, shape):
    """skimage bilinear resize, rounded back to uint8 (the documented behaviour)."""
    out = skimage.transform.resize(image, shape, order=1, mode="constant",
                                   preserve_range=True, anti_aliasing=False)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _box_image(h, w, box):
    """A black image with one white filled box (y1, x1, y2, x2 exclusive)."""
    image = np.zeros((h, w, 3), dtype=np.uint8)
    y1, x1, y2, x2 = box
    image[y1:y2, x1:x2] = 255
    return image


def _bright_box(image):
    """Tight box around pixels > 127 (the resized white box)."""
    ys, xs = np.nonzero(image[:, :, 0] > 127)
    return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])


# ---------------------------------------------------------------- resize modes

def test_none_mode_returns_image_unchanged():
    image = _random_image(37, 51)
    out, window, scale, padding, crop = resize_image(image, min_dim=64, max_dim=128, mode="none")
    assert out is image
    assert window == (0, 0, 37, 51)
    assert scale == 1
    assert padding == [(0, 0), (0, 0), (0, 0)]
    assert crop is None


@pytest.mark.parametrize("shape, min_dim, max_dim, expected_scale, expected_resized", [
    # Upscaled by min_dim: 60 -> 64, long side 100 -> 107 still fits in 128.
    ((60, 100), 64, 128, 64 / 60, (64, 107)),
    # The long side caps the scale: 300 -> 128.
    ((300, 200), 64, 128, 128 / 300, (128, 85)),
    # min_dim only scales up, never down.
    ((100, 120), 64, 128, 1.0, (100, 120)),
])
def test_square_mode_scales_pads_and_centres(shape, min_dim, max_dim, expected_scale, expected_resized):
    image = _random_image(*shape)
    out, window, scale, padding, crop = resize_image(image, min_dim=min_dim, max_dim=max_dim, mode="square")
    assert out.shape == (max_dim, max_dim, 3) and out.dtype == np.uint8
    assert scale == pytest.approx(expected_scale)
    rh, rw = expected_resized
    top, left = (max_dim - rh) // 2, (max_dim - rw) // 2
    assert window == (top, left, top + rh, left + rw)
    assert padding == [(top, max_dim - rh - top), (left, max_dim - rw - left), (0, 0)]
    assert crop is None
    y1, x1, y2, x2 = window
    expected = image if scale == 1 else _reference_resize(image, (rh, rw))
    np.testing.assert_array_equal(out[y1:y2, x1:x2], expected)
    # Everything outside the window is zero padding.
    outside = np.ones(out.shape[:2], bool)
    outside[y1:y2, x1:x2] = False
    assert not out[outside].any()


def test_pad64_mode_pads_each_side_to_multiple_of_64_and_ignores_max_dim():
    image = _random_image(100, 130)
    out, window, scale, padding, _ = resize_image(image, max_dim=64, mode="pad64")
    assert out.shape == (128, 192, 3)
    assert scale == 1
    assert padding == [(14, 14), (31, 31), (0, 0)]
    assert window == (14, 31, 114, 161)
    np.testing.assert_array_equal(out[14:114, 31:161], image)


def test_pad64_mode_scales_up_with_min_scale():
    image = _random_image(64, 40)
    out, window, scale, _, _ = resize_image(image, min_scale=2, mode="pad64")
    assert scale == 2
    assert out.shape == (128, 128, 3)
    assert window == (0, 24, 128, 104)


def test_crop_mode_returns_random_crop_of_scaled_image():
    image = _random_image(100, 150)
    out, window, scale, padding, crop = resize_image(
        image, min_dim=64, mode="crop", rng=np.random.default_rng(5))
    assert out.shape == (64, 64, 3)
    assert window == (0, 0, 64, 64) and scale == 1 and padding == [(0, 0), (0, 0), (0, 0)]
    y, x, h, w = crop
    assert (h, w) == (64, 64) and 0 <= y <= 36 and 0 <= x <= 86
    np.testing.assert_array_equal(out, image[y:y + 64, x:x + 64])
    # The same generator state gives the same crop.
    again = resize_image(image, min_dim=64, mode="crop", rng=np.random.default_rng(5))
    assert again[4] == crop


def test_crop_mode_upscales_small_image_before_cropping():
    image = _random_image(32, 48)
    out, _, scale, _, crop = resize_image(image, min_dim=64, mode="crop", rng=np.random.default_rng(0))
    assert scale == 2 and out.shape == (64, 64, 3)
    assert crop[0] == 0 and 0 <= crop[1] <= 32


@pytest.mark.parametrize("mode, kwargs", [
    ("square", dict(min_dim=64, max_dim=128)),
    ("square", dict(max_dim=96)),
    ("pad64", dict(min_dim=90)),
    ("crop", dict(min_dim=128)),
])
def test_boxes_map_back_to_original_within_one_pixel(mode, kwargs):
    original_box = np.array([23, 31, 61, 88])
    image = _box_image(80, 120, original_box)
    out, window, scale, _, crop = resize_image(image, mode=mode, rng=np.random.default_rng(1), **kwargs)
    box = _bright_box(out)
    if crop is not None:
        # The box must be inside the crop for this check; rng(1) keeps it there.
        box = box + [crop[0], crop[1], crop[0], crop[1]]
    else:
        box = box - [window[0], window[1], window[0], window[1]]
    mapped = box / scale
    np.testing.assert_allclose(mapped, original_box, atol=1.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_resize_keeps_dtype(dtype):
    image = _random_image(30, 40, dtype=dtype)
    out = resize_image(image, min_dim=64, max_dim=64, mode="square")[0]
    assert out.dtype == dtype
    assert out.shape == (64, 64, 3)


def test_resize_rejects_bad_arguments():
    image = _random_image(30, 40)
    with pytest.raises(ValueError, match="unknown mode"):
        resize_image(image, max_dim=64, mode="bogus")
    with pytest.raises(ValueError, match="max_dim"):
        resize_image(image, mode="square")
    with pytest.raises(ValueError, match="min_dim"):
        resize_image(image, mode="crop")
    with pytest.raises(ValueError, match=r"\[H, W, C\]"):
        resize_image(image[:, :, 0], max_dim=64)


# ---------------------------------------------------------------- to_rgb / to_uint8

def test_to_rgb_gray_2d_becomes_three_equal_channels():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = to_rgb(gray)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], gray)


def test_to_rgb_single_channel_and_gray_alpha():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(to_rgb(gray[:, :, None]), np.stack([gray] * 3, axis=-1))
    gray_alpha = np.stack([gray, np.full_like(gray, 7)], axis=-1)
    np.testing.assert_array_equal(to_rgb(gray_alpha), np.stack([gray] * 3, axis=-1))


def test_to_rgb_drops_alpha_and_keeps_rgb():
    rgba = _random_image(5, 6)
    rgba = np.concatenate([rgba, np.full((5, 6, 1), 9, np.uint8)], axis=-1)
    np.testing.assert_array_equal(to_rgb(rgba), rgba[:, :, :3])
    rgb = _random_image(5, 6)
    np.testing.assert_array_equal(to_rgb(rgb), rgb)


def test_to_rgb_errors_name_the_source():
    with pytest.raises(ValueError, match=r"scan\.tif.*5 channels"):
        to_rgb(np.zeros((4, 4, 5), np.uint8), source="scan.tif")
    with pytest.raises(ValueError, match=r"empty\.png.*empty"):
        to_rgb(np.zeros((0, 4), np.uint8), source="empty.png")
    with pytest.raises(ValueError, match="volume"):
        to_rgb(np.zeros((2, 3, 4, 3), np.uint8), source="volume")


def test_to_uint8_rescales_other_dtypes():
    np.testing.assert_array_equal(to_uint8(np.array([[0, 65535]], np.uint16)), [[0, 255]])
    np.testing.assert_array_equal(to_uint8(np.array([[False, True]])), [[0, 255]])
    np.testing.assert_array_equal(to_uint8(np.array([[0.0, 1.0]], np.float32)), [[0, 255]])
    with pytest.raises(ValueError, match="hdr.exr"):
        to_uint8(np.array([[0.0, 300.0]]), source="hdr.exr")


# ---------------------------------------------------------------- molding and meta

def test_mold_unmold_round_trip():
    mean = np.array([123.7, 116.8, 103.9])
    images = _random_image(4, 5)[None].repeat(2, axis=0)
    molded = mold_image(images, mean)
    assert molded.dtype == np.float32
    np.testing.assert_allclose(molded, images.astype(np.float64) - mean, atol=1e-4)
    np.testing.assert_array_equal(unmold_image(molded, mean), images)


def test_mold_image_accepts_a_config_like_object():
    class Cfg:
        MEAN_PIXEL = np.array([10.0, 20.0, 30.0])
    image = np.full((2, 2, 3), 50, np.uint8)
    np.testing.assert_allclose(mold_image(image, Cfg())[0, 0], [40, 30, 20])


def test_image_meta_round_trip():
    active = np.array([1, 1, 0, 1])
    meta = compose_image_meta(7, (480, 640, 3), (1024, 1024, 3), (128, 0, 896, 1024), 1.6, active)
    assert meta.shape == (12 + 4,)
    parsed = parse_image_meta(np.stack([meta, meta]))
    assert parsed["image_id"].tolist() == [7, 7]
    np.testing.assert_array_equal(parsed["original_image_shape"][0], [480, 640, 3])
    np.testing.assert_array_equal(parsed["image_shape"][1], [1024, 1024, 3])
    np.testing.assert_array_equal(parsed["window"][0], [128, 0, 896, 1024])
    np.testing.assert_allclose(parsed["scale"], [1.6, 1.6], rtol=1e-6)
    np.testing.assert_array_equal(parsed["active_class_ids"][1], active)
    assert parsed["image_id"].dtype == np.int32 and parsed["scale"].dtype == np.float32
    single = parse_image_meta(meta)
    assert single["image_id"] == 7 and single["window"].shape == (4,)


def test_compose_image_meta_validates_lengths():
    with pytest.raises(ValueError, match="window"):
        compose_image_meta(0, (4, 4, 3), (4, 4, 3), (0, 0, 4), 1.0, [1, 1])
    with pytest.raises(ValueError, match="12 \\+ NUM_CLASSES"):
        parse_image_meta(np.zeros((1, 12)))


############################################################
#  read_image: one decoder for every PIL mode
############################################################

def _rgb(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_read_image_cmyk_jpeg_has_the_pixels_of_pil_convert_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(_rgb()).convert("CMYK").save(path, quality=95)
    with Image.open(path) as image:
        assert image.mode == "CMYK"
        expected = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(read_image(path), expected)
    # Not the raw ink channels (the bug this replaces read those as RGB).
    with Image.open(path) as image:
        assert not np.array_equal(read_image(path), np.asarray(image)[:, :, :3])


@pytest.mark.parametrize("mode", ["P", "L", "1", "LA", "RGBA", "RGB"])
def test_read_image_8_bit_modes_match_pil_conversion(tmp_path, mode):
    path = tmp_path / f"image_{mode}.png"
    Image.fromarray(_rgb(seed=1)).convert(mode).save(path)
    with Image.open(path) as image:
        assert image.mode == mode
        rgb, gray = np.asarray(image.convert("RGB")), np.asarray(image.convert("L"))
        rgba = np.asarray(image.convert("RGBA"))
    np.testing.assert_array_equal(read_image(path), rgb)
    np.testing.assert_array_equal(read_image(path, channels=1), gray[:, :, np.newaxis])
    np.testing.assert_array_equal(read_image(path, channels=4), rgba)
    if mode in ("L", "LA", "1"):  # gray is replicated, as to_rgb does
        np.testing.assert_array_equal(read_image(path), np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "RGBA":  # alpha dropped, not blended
        np.testing.assert_array_equal(read_image(path), rgba[:, :, :3])


def test_read_image_16_bit_gray_is_rescaled_like_to_uint8(tmp_path):
    values = np.random.default_rng(2).integers(0, 65536, (10, 12), dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    expected = to_uint8(values)
    assert expected.dtype == np.uint8 and expected.max() > 200
    image = read_image(path)
    assert image.shape == (10, 12, 3) and image.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(image[:, :, c], expected)
    rgba = read_image(path, channels=4)
    np.testing.assert_array_equal(rgba[:, :, 3], 255)
    np.testing.assert_array_equal(read_image(path, channels=1)[:, :, 0], expected)


def test_read_image_does_not_apply_exif_rotation(tmp_path):
    pixels = _rgb(20, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif.tobytes())
    assert read_image(path).shape == (20, 40, 3)   # file order, as annotations expect


def test_read_image_truncated_or_non_image_is_a_dataset_error_naming_the_file(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(_rgb(64, 64)).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    with Image.open(truncated) as image:
        assert image.size == (64, 64)   # the header is fine: only decoding fails
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    for path in (truncated, text):
        with pytest.raises(DatasetError, match=path.name):
            read_image(path)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="channels"):
        read_image(good, channels=2)
