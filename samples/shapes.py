"""Matterport's synthetic "shapes" task: squares, circles and triangles on a plain background.

Images are generated from a compact per-image spec (background colour and a list of
shapes), so no files are needed. Generation is deterministic for a given ``seed``.

    config = ShapesConfig()
    dataset = ShapesDataset()
    dataset.load_shapes(500, config.IMAGE_SHAPE[0], config.IMAGE_SHAPE[1], seed=1)
    dataset.prepare()
"""
import math

import numpy as np
import skimage.draw

from mrcnn.boxes import non_max_suppression
from mrcnn.config import Config
from mrcnn.dataset import Dataset

__all__ = ["ShapesConfig", "ShapesDataset", "SHAPE_NAMES"]

# Source class ids are 1, 2, 3 in this order.
SHAPE_NAMES = ("square", "circle", "triangle")

# Shape centres stay this far from the border and sizes (half-widths) start here.
_BUFFER = 20
# Shapes whose boxes overlap more than this are thinned out so most stay visible.
_OVERLAP_NMS_THRESHOLD = 0.3
_MAX_SHAPES = 4


class ShapesConfig(Config):
    """Configuration for the shapes task: small images, small anchors, few ROIs."""
    NAME = "shapes"

    GPU_COUNT = 1
    # Matterport used 8 on a GPU; 4 keeps a CPU step short.
    IMAGES_PER_GPU = 4

    # Background + square, circle, triangle.
    NUM_CLASSES = 1 + 3

    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128

    # Objects are 40-64 px wide, so anchors start small.
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)

    # Few objects per image: 32 ROIs still allow ~33% positives.
    TRAIN_ROIS_PER_IMAGE = 32

    # The data is simple; short epochs give frequent checkpoints.
    STEPS_PER_EPOCH = 50
    VALIDATION_STEPS = 5

    # The lighter backbone, for CPU training.
    BACKBONE = "resnet50"
    # Training from random init (no weight file) needs BACKBONE_NORM = "group" and
    # TRAIN_BN = True (see benchmarks/train_shapes.py); the BatchNorm defaults suit
    # starting from ImageNet or COCO weights.


class ShapesDataset(Dataset):
    """Generates the synthetic shapes dataset on the fly.

    image_info entries carry ``height``, ``width``, ``bg_color`` (r, g, b) and
    ``shapes``: a list of ``(name, (r, g, b), (x, y, s))`` drawn in order, later shapes
    on top. ``(x, y)`` is the centre and ``s`` the half-size in pixels.
    """

    def load_shapes(self, count, height, width, seed=None):
        """Registers the 3 classes and ``count`` random image specs.

        count: number of images.
        height, width: image size in pixels; both at least 80 (shapes need room).
        seed: seed of this dataset's own ``np.random.Generator`` (the global RNG is not
            touched); the same seed gives the same images.
        """
        if min(height, width) < 4 * _BUFFER:
            raise ValueError(
                f"load_shapes: height and width must be at least {4 * _BUFFER} px, got {height}x{width}")
        rng = np.random.default_rng(seed)
        for class_id, name in enumerate(SHAPE_NAMES, start=1):
            self.add_class("shapes", class_id, name)
        for i in range(count):
            bg_color, shapes = random_image(rng, height, width)
            self.add_image("shapes", image_id=i, path=None, width=width, height=height,
                           bg_color=bg_color, shapes=shapes)

    def load_image(self, image_id):
        """Draws the image: uint8 [height, width, 3]."""
        info = self.image_info[image_id]
        if info["source"] != "shapes":
            return super().load_image(image_id)
        height, width = info["height"], info["width"]
        image = np.empty((height, width, 3), dtype=np.uint8)
        image[:] = info["bg_color"]
        for name, color, dims in info["shapes"]:
            rows, cols = shape_pixels(name, dims, height, width)
            image[rows, cols] = color
        return image

    def load_mask(self, image_id):
        """Visible part of each shape.

        Returns: bool [height, width, N] masks and int32 [N] internal class ids. A shape
        is cut where later shapes cover it, and dropped if nothing of it stays visible.
        """
        info = self.image_info[image_id]
        if info["source"] != "shapes":
            return super().load_mask(image_id)
        height, width = info["height"], info["width"]
        shapes = info["shapes"]
        masks = np.zeros((height, width, len(shapes)), dtype=bool)
        covered = np.zeros((height, width), dtype=bool)
        # Walk from the top-most shape down so "covered" holds everything above.
        for i in range(len(shapes) - 1, -1, -1):
            name, _, dims = shapes[i]
            rows, cols = shape_pixels(name, dims, height, width)
            masks[rows, cols, i] = True
            masks[:, :, i] &= ~covered
            covered[rows, cols] = True
        visible = masks.any(axis=(0, 1))
        class_ids = np.array(
            [self.map_source_class_id(f"shapes.{SHAPE_NAMES.index(name) + 1}") for name, _, _ in shapes],
            dtype=np.int32)
        return masks[:, :, visible], class_ids[visible]

    def image_reference(self, image_id):
        """A readable description of the image's spec."""
        info = self.image_info[image_id]
        if info["source"] != "shapes":
            return super().image_reference(image_id)
        parts = [f"{name} at (x={x}, y={y}) size {s}" for name, _, (x, y, s) in info["shapes"]]
        return f"shapes image {info['id']}: " + "; ".join(parts)


def shape_pixels(name, dims, height, width):
    """Row and column indices of the pixels of one filled shape, clipped to the image.

    name: "square", "circle" or "triangle".
    dims: (x, y, s): centre and half-size in pixels.

    Returns: (rows, cols) int arrays, usable as ``image[rows, cols]``.
    """
    x, y, s = dims
    shape = (height, width)
    if name == "square":
        return skimage.draw.rectangle(start=(y - s, x - s), end=(y + s, x + s), shape=shape)
    if name == "circle":
        return skimage.draw.disk((y, x), s, shape=shape)
    if name == "triangle":
        # Equilateral-looking triangle pointing up, as in Matterport's sample.
        half_base = s / math.sin(math.radians(60))
        return skimage.draw.polygon([y - s, y + s, y + s], [x, x - half_base, x + half_base], shape=shape)
    raise ValueError(f"shape_pixels: unknown shape {name!r}; expected one of {SHAPE_NAMES}")


def random_shape(rng, height, width):
    """One random shape spec: (name, (r, g, b), (x, y, s)), fully inside the image."""
    name = SHAPE_NAMES[int(rng.integers(len(SHAPE_NAMES)))]
    color = tuple(int(c) for c in rng.integers(0, 256, size=3))
    y = int(rng.integers(_BUFFER, height - _BUFFER))
    x = int(rng.integers(_BUFFER, width - _BUFFER))
    s = int(rng.integers(_BUFFER, height // 4 + 1))
    return name, color, (x, y, s)


def random_image(rng, height, width):
    """A random image spec: background colour and 1-4 shapes that don't overlap much.

    Returns: (bg_color (r, g, b), [shape specs in drawing order]).
    """
    bg_color = tuple(int(c) for c in rng.integers(0, 256, size=3))
    count = int(rng.integers(1, _MAX_SHAPES + 1))
    shapes = [random_shape(rng, height, width) for _ in range(count)]
    boxes = np.array([[y - s, x - s, y + s, x + s] for _, _, (x, y, s) in shapes])
    # Later shapes score higher, so when two overlap the one drawn on top is kept.
    keep = set(non_max_suppression(boxes, np.arange(count), _OVERLAP_NMS_THRESHOLD).tolist())
    return bg_color, [spec for i, spec in enumerate(shapes) if i in keep]
