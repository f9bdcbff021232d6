"""Layouts shared by the host code and the graph (level 0: no imports).

- The image meta: Matterport's flat float vector describing one molded image.
  ``IMAGE_META_FIELDS`` is its one field table; ``config``, ``images``
  (compose/parse on the host) and ``layers/box_ops`` (parse in the graph) all
  read it.
- ``SIZE_MULTIPLE``: molded image sides must be multiples of it.
- The detection row: Matterport's ``[y1, x1, y2, x2, class_id, score]``, what
  ``DetectionLayer`` writes and ``network_io``, ``export`` and the graph's wiring read.
"""

# (name, width) in order; active_class_ids (one flag per class) follows them.
IMAGE_META_FIELDS = (
    ("image_id", 1),
    ("original_image_shape", 3),   # [H, W, C] before resizing
    ("image_shape", 3),            # [H, W, C] after resizing and padding
    ("window", 4),                 # (y1, x1, y2, x2) pixels of the image inside the padding
    ("scale", 1),                  # resize factor
)
ACTIVE_CLASS_IDS = "active_class_ids"


def _meta_index():
    index, start = {}, 0
    for name, width in IMAGE_META_FIELDS:
        # Width-1 fields are read as [B] vectors, the others as [B, width].
        index[name] = start if width == 1 else slice(start, start + width)
        start += width
    index[ACTIVE_CLASS_IDS] = slice(start, None)
    return index, start


# {field: column index or slice of the meta vector}; IMAGE_META_FIXED_SIZE = 12.
IMAGE_META_INDEX, IMAGE_META_FIXED_SIZE = _meta_index()


def image_meta_size(num_classes):
    """Length of the meta vector for `num_classes` classes (12 + NUM_CLASSES)."""
    return IMAGE_META_FIXED_SIZE + int(num_classes)


# Every FPN level halves the size and P6 is 2**6 = 64 times smaller than the input:
# sides divisible by 64 keep every down- and up-sampling of the pyramid exact.
SIZE_MULTIPLE = 64


# A row of DetectionLayer's output: the normalized box (y1, x1, y2, x2), the class id
# (0 marks a padding row) and the score, all float32.
DETECTION_BOX = slice(0, 4)
DETECTION_CLASS_ID = 4
DETECTION_SCORE = 5
DETECTION_ROW_SIZE = 6
