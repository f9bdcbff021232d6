"""The ``Dataset`` base class, with Matterport's API.

Subclass it, register classes and images in a ``load_*`` method, override
``load_mask`` (and ``image_reference``), then call ``prepare()``::

    class BalloonDataset(Dataset):
        def load_balloon(self, folder):
            self.add_class("balloon", 1, "balloon")
            for path in ...:
                self.add_image("balloon", image_id=name, path=path, polygons=...)

        def load_mask(self, image_id):
            ...  # bool [H, W, N], int32 [N]

Ids: ``add_class``/``add_image`` take the *source* ids (whatever the source uses);
after ``prepare()`` every class and image also has an internal id: its index in
``class_info`` / ``image_info``. Internal class 0 is always the background.
"""
import inspect
import os
import warnings

import numpy as np

from mrcnn.errors import DatasetError
from mrcnn.images import read_image, to_channels

__all__ = ["Dataset", "load_image_with_channels"]

# Attributes that only exist after prepare(); a clear message beats a bare AttributeError.
_PREPARED_ATTRIBUTES = frozenset({
    "num_classes", "class_ids", "class_names", "num_images", "_image_ids", "image_ids",
    "class_from_source_map", "image_from_source_map", "sources",
})


class Dataset:
    """Base class for datasets (Matterport's ``utils.Dataset``).

    Attributes after ``prepare()``:
        num_classes, class_ids ([num_classes] int), class_names (list of str),
        num_images, image_ids ([num_images] int),
        class_from_source_map / image_from_source_map ({"source.id": internal id}),
        sources (sorted list of source names; "" is the background's),
        source_class_ids ({source: [internal class ids, background included]}).
    """

    def __init__(self, class_map=None):
        self.image_info = []
        # Background is always internal class 0.
        self.class_info = [{"source": "", "id": 0, "name": "BG"}]
        self.source_class_ids = {}
        self._check_class_map(class_map)

    def __getattr__(self, name):
        # Only called for missing attributes.
        if name in _PREPARED_ATTRIBUTES:
            raise AttributeError(
                f"{type(self).__name__}.{name.lstrip('_')} is not set: call prepare() after "
                f"adding classes and images")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @staticmethod
    def _check_class_map(class_map):
        if class_map is not None:
            raise NotImplementedError(
                "class_map is not supported (it was a TODO in Matterport too); register the "
                "classes you want with add_class and map ids in load_mask")

    ############################################################
    #  Registration
    ############################################################

    def add_class(self, source, class_id, class_name):
        """Registers a class; a (source, class_id) pair already present is skipped.

        source: dataset name, e.g. "coco"; must not contain "." (it separates source
            and id in the "source.id" keys).
        class_id: the id the source uses for the class.
        class_name: display name.
        """
        if not isinstance(source, str) or "." in source:
            raise ValueError(f"add_class: source {source!r} must be a string without '.'")
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return
        self.class_info.append({"source": source, "id": class_id, "name": class_name})

    def add_image(self, source, image_id, path, **kwargs):
        """Registers an image.

        source: dataset name (no ".").
        image_id: the id the source uses for the image.
        path: file path (or None for generated images); used by ``load_image``.
        kwargs: anything else ``load_mask``/``load_image`` need (stored in image_info).
        """
        if not isinstance(source, str) or "." in source:
            raise ValueError(f"add_image: source {source!r} must be a string without '.'")
        info = {"id": image_id, "source": source, "path": path}
        info.update(kwargs)
        self.image_info.append(info)

    def image_reference(self, image_id):
        """Text that helps a person find the image (override: URL, file name...).

        The default is the image's path (Matterport returned ""), so that error
        messages name the file.
        """
        info = self.image_info[image_id]
        return str(info.get("path") or f"{info['source']}.{info['id']}")

    ############################################################
    #  Preparation and id maps
    ############################################################

    def prepare(self, class_map=None):
        """Builds the internal ids and the source maps. Call after all add_* calls."""
        self._check_class_map(class_map)
        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        # COCO names like "person, human" are shortened to their first part.
        self.class_names = [str(c["name"]).split(",")[0] for c in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)

        self.class_from_source_map = {
            f"{info['source']}.{info['id']}": internal
            for internal, info in enumerate(self.class_info)}
        self.image_from_source_map = {
            f"{info['source']}.{info['id']}": internal
            for internal, info in enumerate(self.image_info)}

        self.sources = sorted({info["source"] for info in self.class_info})
        # Every source's list includes the background (internal id 0).
        self.source_class_ids = {
            source: [i for i, info in enumerate(self.class_info) if i == 0 or info["source"] == source]
            for source in self.sources}

    @property
    def image_ids(self):
        """[num_images] internal image ids (0..num_images-1)."""
        return self._image_ids

    def map_source_class_id(self, source_class_id):
        """Internal class id of a "source.id" key, e.g. ``map_source_class_id("coco.12")``."""
        try:
            return self.class_from_source_map[source_class_id]
        except KeyError:
            raise KeyError(f"map_source_class_id: unknown class {source_class_id!r}; "
                           f"registered: {sorted(self.class_from_source_map)}") from None

    def get_source_class_id(self, class_id, source):
        """The source's own id of internal class ``class_id``."""
        info = self.class_info[class_id]
        if info["source"] != source:
            raise ValueError(f"get_source_class_id: class {class_id} ({info['name']!r}) belongs to "
                             f"source {info['source']!r}, not {source!r}")
        return info["id"]

    def source_image_link(self, image_id):
        """Path or URL of the image (override to return a URL)."""
        return self.image_info[image_id]["path"]

    ############################################################
    #  Loading
    ############################################################

    def load_image(self, image_id, channels=3):
        """Reads the image file as uint8 [H, W, channels] (``mrcnn.images.read_image``);
        the default is RGB.

        channels: ``IMAGE_CHANNEL_COUNT`` (training and evaluation pass the config's):
            1 gray, 3 RGB, 4 RGBA. Every PIL mode is converted alike: CMYK and palette
            to RGB as PIL does, gray replicated, a dropped alpha not blended, a missing
            one opaque, 16-bit rescaled to uint8. Other counts need an override of
            this method. A missing file raises FileNotFoundError, an undecodable or
            truncated one DatasetError, both naming the image and its path.
        """
        path = self.image_info[image_id]["path"]
        if path is None or not os.path.isfile(path):
            raise FileNotFoundError(
                f"load_image: image {image_id} ({self.image_reference(image_id)}): no file at {path!r}")
        try:
            if channels not in (1, 3, 4):  # read_image's counts; to_channels explains the rest
                return to_channels(read_image(path, 4), channels, source=path)
            return read_image(path, channels)
        except DatasetError as err:
            raise DatasetError(f"load_image: cannot read image {image_id}: {err}") from err

    def load_mask(self, image_id):
        """Instance masks of an image. Override for your dataset.

        Returns:
            masks: bool [H, W, N], one mask per instance.
            class_ids: int32 [N] internal class ids (negative for crowd regions).

        The default warns and returns no instances (an empty [0, 0, 0] mask), as
        Matterport's did.
        """
        warnings.warn(
            f"{type(self).__name__}.load_mask is not overridden: image {image_id} gets no instances",
            stacklevel=2)
        return np.empty([0, 0, 0], dtype=bool), np.empty([0], dtype=np.int32)


def load_image_with_channels(dataset, image_id, channels):
    """``dataset.load_image(image_id)`` with ``channels`` channels (``IMAGE_CHANNEL_COUNT``).

    A ``load_image`` that takes a ``channels`` argument (the base class's does)
    is asked for that count; one overridden without it (Matterport's signature)
    must return it itself. Raises ValueError naming the image otherwise.
    """
    load = dataset.load_image
    if "channels" in inspect.signature(load).parameters:
        image = np.asarray(load(image_id, channels=channels))
    else:
        image = np.asarray(load(image_id))
    if image.ndim != 3 or image.shape[2] != channels:
        raise ValueError(
            f"image {image_id} ({dataset.image_reference(image_id)}): "
            f"{type(dataset).__name__}.load_image returned shape {image.shape}; expected "
            f"[H, W, {channels}] (IMAGE_CHANNEL_COUNT). Return that many channels, or give "
            f"load_image a `channels` argument and convert with mrcnn.images.to_channels")
    return image
