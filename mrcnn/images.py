"""Host-side (numpy) image helpers: decoding, resizing, molding, image meta, channel fixes.

Conventions (see docs/DESIGN.md):
- Images are ``[H, W, C]`` arrays, RGB when C == 3.
- Windows are pixel boxes ``(y1, x1, y2, x2)`` with y2/x2 exclusive.
- Image meta is Matterport's flat vector of length ``12 + NUM_CLASSES``:
  ``[image_id, original_image_shape(3), image_shape(3), window(4), scale,
  active_class_ids(NUM_CLASSES)]``.
"""
import numpy as np
import skimage.util
from PIL import Image, UnidentifiedImageError

from mrcnn.errors import DatasetError

from mrcnn.layout import IMAGE_META_FIELDS, IMAGE_META_FIXED_SIZE, IMAGE_META_INDEX, SIZE_MULTIPLE
from mrcnn.resize import bilinear_resize

__all__ = [
    "read_image",
    "resize_image",
    "mold_image",
    "unmold_image",
    "compose_image_meta",
    "parse_image_meta",
    "to_rgb",
    "to_channels",
    "to_uint8",
    "RESIZE_MODES",
]

RESIZE_MODES = ("none", "square", "pad64", "crop")



############################################################
#  Resizing
############################################################

def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square", *, rng=None):
    """Resizes an image keeping its aspect ratio, then pads or crops it (Matterport's modes).

    image: [H, W, C] array of any dtype; the result has the same dtype (integer
        images are rounded, not truncated, after interpolation).
    min_dim: scale up (never down) so that the short side is at least ``min_dim``.
    max_dim: in "square" mode, cap the scale so the long side fits in ``max_dim``.
    min_scale: scale up by at least this factor, even if ``min_dim`` doesn't require it.
    mode:
        "none":   return the image unchanged.
        "square": scale, then zero-pad (centred) to ``[max_dim, max_dim]``.
        "pad64":  scale (min_dim/min_scale only), then zero-pad each side to a
                  multiple of 64. ``max_dim`` is ignored.
        "crop":   scale (min_dim/min_scale only), then take a random
                  ``[min_dim, min_dim]`` crop. For training only.
    rng: optional ``np.random.Generator`` for the "crop" position; by default the
        global ``np.random`` state is used (so ``np.random.seed`` controls it).

    Returns:
        image: the resized image.
        window: (y1, x1, y2, x2) of the image content inside the result (pixels,
            y2/x2 exclusive); excludes the padding.
        scale: the factor applied to the original image (float; 1 if unchanged).
        padding: [(top, bottom), (left, right), (0, 0)] padding added.
        crop: (y, x, h, w) of the crop in the scaled image, or None.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_image: unknown mode {mode!r}; expected one of {RESIZE_MODES}")
    image = np.asarray(image)
    if image.ndim != 3 or image.size == 0:
        raise ValueError(f"resize_image: image must be a non-empty [H, W, C] array, got shape {image.shape}")
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1.0
    padding = [(0, 0), (0, 0), (0, 0)]
    if mode == "none":
        return image, window, scale, padding, None
    if mode == "square" and not max_dim:
        raise ValueError('resize_image: mode "square" needs max_dim')
    if mode == "crop" and not min_dim:
        raise ValueError('resize_image: mode "crop" needs min_dim')

    scale = _choose_scale(h, w, min_dim, max_dim if mode == "square" else None, min_scale)
    if scale != 1:
        image = _resize_keep_dtype(image, (round(h * scale), round(w * scale)))
    h, w = image.shape[:2]

    if mode == "square":
        padding = [_centred_pad(h, max_dim), _centred_pad(w, max_dim), (0, 0)]
    elif mode == "pad64":
        padding = [_centred_pad(h, _round_up(h, SIZE_MULTIPLE)),
                   _centred_pad(w, _round_up(w, SIZE_MULTIPLE)), (0, 0)]
    else:  # crop
        return _random_crop(image, min_dim, scale, rng)
    image = np.pad(image, padding, mode="constant", constant_values=0)
    window = (padding[0][0], padding[1][0], padding[0][0] + h, padding[1][0] + w)
    return image, window, scale, padding, None


def _choose_scale(h, w, min_dim, max_dim, min_scale):
    """Matterport's scale rule: up to min_dim (never down), at least min_scale, capped by max_dim."""
    scale = 1.0
    if min_dim:
        scale = max(1.0, min_dim / min(h, w))
    if min_scale and scale < min_scale:
        scale = float(min_scale)
    # The cap compares the *rounded* size, as Matterport does, so a long side that
    # would round to max_dim is accepted.
    if max_dim and round(max(h, w) * scale) > max_dim:
        scale = max_dim / max(h, w)
    return scale


def _resize_keep_dtype(image, shape):
    """Bilinear resize (Matterport's skimage settings) returning the input dtype."""
    resized = bilinear_resize(image, shape)
    if np.issubdtype(image.dtype, np.integer):
        # Within the dtype's range already: bilinear_resize clips to the input's range.
        np.rint(resized, out=resized)
    elif image.dtype == bool:
        resized = resized >= 0.5
    return resized.astype(image.dtype)


def _centred_pad(size, target):
    """(before, after) zero padding that centres ``size`` inside ``target``."""
    before = (target - size) // 2
    return before, target - size - before


def _round_up(size, multiple):
    return -(-size // multiple) * multiple


def _random_crop(image, min_dim, scale, rng):
    """A random [min_dim, min_dim] crop of an already scaled image (mode "crop")."""
    h, w = image.shape[:2]
    if h < min_dim or w < min_dim:
        raise ValueError(
            f"resize_image: crop of {min_dim}x{min_dim} does not fit in the scaled image {h}x{w}")
    randint = np.random.randint if rng is None else rng.integers
    y = int(randint(0, h - min_dim + 1))
    x = int(randint(0, w - min_dim + 1))
    crop = (y, x, min_dim, min_dim)
    image = image[y:y + min_dim, x:x + min_dim]
    return image, (0, 0, min_dim, min_dim), scale, [(0, 0), (0, 0), (0, 0)], crop


############################################################
#  Molding
############################################################

def _mean_pixel(mean_pixel):
    # Matterport's functions took the config; accept it too for ported code.
    return np.asarray(getattr(mean_pixel, "MEAN_PIXEL", mean_pixel), dtype=np.float32)


def mold_image(images, mean_pixel):
    """Converts RGB image(s) to network input: ``float32(images) - mean_pixel``.

    images: [..., H, W, C] array.
    mean_pixel: [C] per-channel mean (or a Config, whose MEAN_PIXEL is used).

    Returns: float32 array of the same shape.
    """
    return np.asarray(images).astype(np.float32) - _mean_pixel(mean_pixel)


def unmold_image(normalized_images, mean_pixel):
    """Inverse of ``mold_image``: adds the mean back, rounds and clips to uint8.

    normalized_images: [..., H, W, C] float array.
    mean_pixel: [C] per-channel mean (or a Config).

    Returns: uint8 array of the same shape.
    """
    images = np.asarray(normalized_images, dtype=np.float32) + _mean_pixel(mean_pixel)
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


############################################################
#  Image meta
############################################################

def compose_image_meta(image_id, original_image_shape, image_shape, window, scale, active_class_ids):
    """Packs an image's attributes into Matterport's flat meta vector.

    image_id: int id of the image in its Dataset.
    original_image_shape: [H, W, C] before resizing and padding.
    image_shape: [H, W, C] after resizing and padding.
    window: (y1, x1, y2, x2) pixels of the real image inside the padded one.
    scale: the resize factor.
    active_class_ids: [NUM_CLASSES] 0/1 flags of the classes of the image's source.

    Returns: float64 [12 + NUM_CLASSES] vector.
    """
    given = {"image_id": image_id, "original_image_shape": original_image_shape,
             "image_shape": image_shape, "window": window, "scale": scale}
    values = []
    for name, size in IMAGE_META_FIELDS:
        value = np.asarray(given[name], dtype=np.float64).ravel()
        if value.size != size:
            raise ValueError(f"compose_image_meta: {name} must have {size} values, got {value.size}")
        values.extend(value)
    values.extend(np.asarray(active_class_ids, dtype=np.float64).ravel())
    return np.array(values, dtype=np.float64)


def parse_image_meta(meta):
    """Splits meta vector(s) made by ``compose_image_meta`` into named parts.

    meta: [B, 12 + NUM_CLASSES] (or one [12 + NUM_CLASSES] vector, in which case the
        batch axis is dropped from every result).

    Returns: dict with int32 ``image_id`` [B], ``original_image_shape`` [B, 3],
    ``image_shape`` [B, 3], ``window`` [B, 4], ``active_class_ids`` [B, NUM_CLASSES],
    and float32 ``scale`` [B].
    """
    meta = np.asarray(meta)
    single = meta.ndim == 1
    meta = np.atleast_2d(meta)
    if meta.ndim != 2 or meta.shape[1] <= IMAGE_META_FIXED_SIZE:
        raise ValueError(
            f"parse_image_meta: meta must be [B, 12 + NUM_CLASSES] with NUM_CLASSES >= 1, "
            f"got shape {np.shape(meta)}")
    parsed = {name: meta[:, index].astype(np.float32 if name == "scale" else np.int32)
              for name, index in IMAGE_META_INDEX.items()}
    if single:
        parsed = {key: value[0] for key, value in parsed.items()}
    return parsed


############################################################
#  Channels and dtype
############################################################

def to_rgb(image, source=""):
    """Gives an image exactly 3 channels (RGB), keeping its dtype.

    image: [H, W] gray, [H, W, 1] gray, [H, W, 2] gray + alpha, [H, W, 3] RGB or
        [H, W, 4] RGBA. Alpha is dropped (not blended).
    source: a name for error messages (e.g. the file path).

    Returns: [H, W, 3] array. Raises ValueError for empty images and any other layout.
    """
    image = np.asarray(image)
    where = f" ({source})" if source else ""
    if image.size == 0:
        raise ValueError(f"to_rgb: image{where} is empty, shape {image.shape}")
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    if image.ndim != 3:
        raise ValueError(f"to_rgb: image{where} must be [H, W] or [H, W, C], got shape {image.shape}")
    channels = image.shape[2]
    if channels in (1, 2):
        return np.repeat(image[:, :, :1], 3, axis=2)
    if channels in (3, 4):
        return np.ascontiguousarray(image[:, :, :3])
    raise ValueError(
        f"to_rgb: image{where} has {channels} channels; expected 1 (gray), 2 (gray+alpha), "
        f"3 (RGB) or 4 (RGBA). For other channel counts override Dataset.load_image and "
        f"set IMAGE_CHANNEL_COUNT.")


# ITU-R 601-2 luma, the weights of PIL's convert("L").
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def to_channels(image, channels, source=""):
    """Gives an image exactly ``channels`` channels (``IMAGE_CHANNEL_COUNT``), keeping its dtype.

    The conversions between the usual layouts follow PIL's ``convert``:
    - 1 (gray): gray as is; gray+alpha drops alpha; RGB(A) becomes luma
      (0.299 R + 0.587 G + 0.114 B, rounded for integer images).
    - 3 (RGB): as ``to_rgb``: gray is replicated, alpha dropped.
    - 4 (RGBA): RGBA as is; RGB and gray(+alpha) get RGB by replication and an
      opaque alpha (the dtype's maximum, 1.0 for floats) unless they carry one.
    - any other count: the image must already have it.

    image: [H, W] or [H, W, C]. source: a name for error messages (e.g. the path).
    Returns: [H, W, channels]. Raises ValueError when no conversion applies.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    where = f" ({source})" if source else ""
    if image.ndim != 3 or image.size == 0:
        raise ValueError(f"to_channels: image{where} must be a non-empty [H, W] or [H, W, C] "
                         f"array, got shape {image.shape}")
    have = image.shape[2]
    if have == channels:
        return image
    if channels == 3 and have in (1, 2, 4):
        return to_rgb(image, source)
    if channels == 1 and have in (2, 3, 4):
        return image[:, :, :1] if have == 2 else _luma(image[:, :, :3])
    if channels == 4 and have in (1, 2, 3):
        rgb = to_rgb(image, source)
        alpha = image[:, :, 1:2] if have == 2 else np.full_like(image[:, :, :1], _opaque(image.dtype))
        return np.concatenate([rgb, alpha], axis=2)
    raise ValueError(
        f"to_channels: image{where} has {have} channels but {channels} are needed "
        f"(IMAGE_CHANNEL_COUNT); only gray, gray+alpha, RGB and RGBA convert into each other. "
        f"Override Dataset.load_image to return [H, W, {channels}] images.")


def _luma(rgb):
    luma = np.tensordot(rgb.astype(np.float64), _LUMA_WEIGHTS, axes=([2], [0]))[:, :, np.newaxis]
    if np.issubdtype(rgb.dtype, np.integer):
        info = np.iinfo(rgb.dtype)
        luma = np.clip(np.round(luma), info.min, info.max)
    return luma.astype(rgb.dtype)


def _opaque(dtype):
    if dtype == bool:
        return True
    return np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0


def to_uint8(image, source=""):
    """Converts an image to uint8, rescaling other ranges as skimage does.

    uint8 is returned as is; bool becomes 0/255; uint16/int images are rescaled from
    their dtype range; float images must lie in [0, 1] (or [-1, 1]).
    source: a name for error messages.
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    try:
        return skimage.util.img_as_ubyte(image)
    except ValueError as err:
        where = f" ({source})" if source else ""
        raise ValueError(f"to_uint8: cannot convert image{where} of dtype {image.dtype} to uint8: {err}") from err


############################################################
#  Decoding
############################################################

# The PIL mode to convert 8-bit images to, per requested channel count.
_PIL_MODE_OF_CHANNELS = {1: "L", 3: "RGB", 4: "RGBA"}
# PIL modes holding more than 8 bits per pixel (all single-channel).
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def read_image(path, channels=3):
    """Decodes an image file to a uint8 [H, W, channels] array: the one decoder of the
    package, so training and inference see the same pixels.

    path: the image file.
    channels: 1 (gray), 3 (RGB) or 4 (RGBA).

    Every mode PIL reads is handled alike: CMYK, YCbCr, palette ("P", "PA"), bilevel ("1"),
    gray with or without alpha and RGB(A) go through PIL's own ``convert`` (so CMYK gives
    exactly ``convert("RGB")``'s pixels, gray is replicated, a missing alpha is opaque and a
    dropped alpha is not blended); 16/32-bit gray ("I;16", "I") is rescaled from the
    uint16 range and float ("F") from [0, 1], as ``to_uint8`` does. EXIF orientation is
    not applied: pixels come in file order, as the annotations of COCO-style datasets
    expect.

    Raises FileNotFoundError for a missing file and DatasetError naming the file for one
    that cannot be decoded (not an image, truncated, corrupt).
    """
    if channels not in _PIL_MODE_OF_CHANNELS:
        raise ValueError(f"read_image: channels must be 1, 3 or 4, got {channels!r}")
    path = str(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in _WIDE_MODES:
                return _wide_to_channels(np.asarray(image), channels, path)
            pixels = np.asarray(image.convert(_PIL_MODE_OF_CHANNELS[channels]))
            return pixels.reshape(image.height, image.width, channels)
    except FileNotFoundError:
        raise FileNotFoundError(f"read_image: no image file at {path!r}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        # PIL reports a truncated file as OSError, a broken header as SyntaxError/ValueError.
        raise DatasetError(f"{path}: cannot decode the image ({err})") from err


def _wide_to_channels(gray, channels, path):
    """uint8 [H, W, channels] of a 16/32-bit or float single-channel image."""
    if np.issubdtype(gray.dtype, np.integer):
        # "I" images (e.g. 16-bit PNGs in older PIL) hold 16-bit values in int32.
        gray = np.clip(gray, 0, np.iinfo(np.uint16).max).astype(np.uint16)
    gray = to_uint8(gray, source=path)[:, :, np.newaxis]
    if channels == 4:
        return np.concatenate([np.repeat(gray, 3, axis=2), np.full_like(gray, 255)], axis=2)
    return np.repeat(gray, channels, axis=2)
