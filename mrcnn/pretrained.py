"""What Mask R-CNN knows about published weight files.

`mrcnn.weights` reads and writes the Keras-2 HDF5 layout for any Keras model; this
module holds the Mask R-CNN specific knowledge on top of it:

- where Matterport's COCO file and the ImageNet backbone files come from and where
  they are cached (`WeightsSource`, `get_imagenet_weights`, `get_coco_weights`);
- which layers depend on the number of classes (`COCO_CLASS_SPECIFIC_LAYERS`);
- how keras-applications ResNet layer names map onto Matterport's
  (`keras_resnet_layer_name`, passed to `weights.load_weights` as ``name_map``);
- what a checkpoint holds (`describe_checkpoint`: backbone, normalization, classes),
  read with `weights.read_layout`, the package's one HDF5 reader.
"""

import dataclasses
import os
import re
import socket

import keras

from mrcnn import weights as weights_io
from mrcnn.errors import UserInputError, WeightsError

# --- Weight sources -----------------------------------------------------------

COCO_WEIGHTS_URL = (
    "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5")
RESNET50_IMAGENET_NOTOP_URL = (
    "https://github.com/fchollet/deep-learning-models/releases/download/v0.2/"
    "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
RESNET101_KERAS_IMAGENET_NOTOP_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
    "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5")

COCO_WEIGHTS_FILE = "mask_rcnn_coco.h5"
RESNET50_IMAGENET_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
RESNET101_KERAS_IMAGENET_NOTOP_FILE = "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5"

# keras.applications keeps its downloads in <keras home>/models; so do we.
DEFAULT_CACHE_SUBDIR = "models"

# Layers whose shapes depend on NUM_CLASSES (skip them unless it is 81).
COCO_CLASS_SPECIFIC_LAYERS = ("mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask")


class WeightsNotAvailable(UserInputError, FileNotFoundError, RuntimeError):
    """A weights file is not in the cache and cannot be downloaded.

    The message names the URL, the file name and the folder to put the file in;
    command-line tools print it without a traceback.
    """


def keras_cache_dir():
    """The Keras cache root: $KERAS_HOME, else ~/.keras (as keras.utils.get_file)."""
    home = os.environ.get("KERAS_HOME")
    if home:
        return os.path.expanduser(home)
    base = os.path.expanduser("~")
    return os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")


def get_file(url, fname, cache_subdir=DEFAULT_CACHE_SUBDIR, file_hash=None, timeout=30.0):
    """Path of a cached weights file, downloading it with keras.utils.get_file if needed.

    Args:
        url: where to download from.
        fname: file name in the cache.
        cache_subdir: folder under the Keras cache root (`keras_cache_dir`).
        file_hash: optional sha256/md5 of the file, checked by Keras.
        timeout: seconds a network operation may stall before it counts as failed.

    Raises:
        WeightsNotAvailable: not cached and the download failed; the message
            names the URL, the file name and the folder to put the file in.
    """
    folder = os.path.join(keras_cache_dir(), cache_subdir)
    target = os.path.join(folder, fname)
    if os.path.isfile(target) and os.path.getsize(target) > 0 and file_hash is None:
        return target
    previous_timeout = socket.getdefaulttimeout()
    try:
        # urlretrieve has no timeout argument of its own.
        socket.setdefaulttimeout(timeout)
        return keras.utils.get_file(fname, origin=url, cache_subdir=cache_subdir,
                                    cache_dir=keras_cache_dir(), file_hash=file_hash)
    except Exception as err:  # keras re-raises URL errors as bare Exception
        reason = str(err) or type(err).__name__
        raise WeightsNotAvailable(
            f"Cannot download {url} ({reason}). Download it by other means and save it as "
            f"{fname} in {folder}/") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)


@dataclasses.dataclass(frozen=True)
class WeightsSource:
    """A published weights file: where it comes from and how to load it."""

    url: str
    fname: str
    description: str
    cache_subdir: str = DEFAULT_CACHE_SUBDIR

    def fetch(self):
        """Local path (cache or download); raises WeightsNotAvailable."""
        return get_file(self.url, self.fname, self.cache_subdir)

    def damaged_cache_error(self, path, err):
        """A WeightsError for a cached copy that cannot be read (an interrupted download):
        what is wrong, the file to delete and where a good copy goes."""
        return WeightsError(
            f"{err}\nThe cached copy of {self.description} is damaged. Delete {path} and run "
            f"again to download it from {self.url}, or save a good copy as {self.fname} in "
            f"{os.path.dirname(path)}/")


COCO_WEIGHTS = WeightsSource(COCO_WEIGHTS_URL, COCO_WEIGHTS_FILE,
                             "Matterport's Mask R-CNN COCO weights (ResNet-101, 81 classes)")
RESNET50_IMAGENET = WeightsSource(RESNET50_IMAGENET_NOTOP_URL, RESNET50_IMAGENET_NOTOP_FILE,
                                  "keras-applications ResNet-50 ImageNet weights (no top)")
RESNET101_IMAGENET = WeightsSource(
    RESNET101_KERAS_IMAGENET_NOTOP_URL, RESNET101_KERAS_IMAGENET_NOTOP_FILE,
    "Keras' ResNet-101 ImageNet weights (no top), layer names mapped onto Matterport's")


def imagenet_source(architecture):
    """The ImageNet WeightsSource for "resnet50" or "resnet101".

    Matterport used the ResNet-50 file for both (so ResNet-101's stage 4 blocks g..w
    started random); ResNet-101 here uses Keras' own ResNet-101 file, whose layer
    names `keras_resnet_layer_name` maps onto Matterport's.
    """
    sources = {"resnet50": RESNET50_IMAGENET, "resnet101": RESNET101_IMAGENET}
    if architecture not in sources:
        raise ValueError(f"No ImageNet weights for architecture {architecture!r}; expected "
                         f"one of {sorted(sources)}")
    return sources[architecture]


def get_imagenet_weights(architecture="resnet101"):
    """Local path of the ImageNet weights for the backbone (downloaded if needed)."""
    return imagenet_source(architecture).fetch()


def get_coco_weights():
    """Local path of Matterport's mask_rcnn_coco.h5 (downloaded if needed)."""
    return COCO_WEIGHTS.fetch()


# --- Name maps ----------------------------------------------------------------------

_KERAS_RESNET_NAME = re.compile(r"conv([2-5])_block(\d+)_([0-3])_(conv|bn)")
_KERAS_BRANCH = {"0": "branch1", "1": "branch2a", "2": "branch2b", "3": "branch2c"}


def keras_resnet_layer_name(name):
    """Keras-applications ResNet (v1) layer name -> Matterport's name, or None.

    conv1_conv -> conv1, conv1_bn -> bn_conv1, conv4_block23_3_conv ->
    res4w_branch2c, conv2_block1_0_bn -> bn2a_branch1 (block i -> letter chr(96+i),
    _0 -> branch1, _1/_2/_3 -> branch2a/2b/2c). Any other name (Matterport's own
    included) -> None, so passing this as ``name_map`` to `weights.load_weights`
    leaves Matterport-named files as they are.
    """
    if name == "conv1_conv":
        return "conv1"
    if name == "conv1_bn":
        return "bn_conv1"
    found = _KERAS_RESNET_NAME.fullmatch(name)
    if not found or not 1 <= int(found.group(2)) <= 26:
        return None
    stage, block, branch, kind = found.groups()
    prefix = "res" if kind == "conv" else "bn"
    return f"{prefix}{stage}{chr(96 + int(block))}_{_KERAS_BRANCH[branch]}"


def resnet_keras_name_map(blocks):
    """{Keras ResNet layer name: Matterport name} for stages 2-5 with ``blocks`` blocks."""
    names = ["conv1_conv", "conv1_bn"]
    for stage, count in zip(range(2, 6), blocks):
        for block in range(1, count + 1):
            branches = ("1", "2", "3", "0") if block == 1 else ("1", "2", "3")
            for branch in branches:
                names += [f"conv{stage}_block{block}_{branch}_{kind}" for kind in ("conv", "bn")]
    return {name: keras_resnet_layer_name(name) for name in names}


def resnet101_keras_name_map():
    """Keras' own ResNet101 (``keras.applications.ResNet101``) names -> Matterport's.

    Covers all 208 weighted layers. Differences the weights carry over: Keras'
    BatchNormalization epsilon is 1.001e-5 (Matterport's 1e-3) and the ImageNet
    files were trained on BGR, caffe-style inputs.
    """
    return resnet_keras_name_map((3, 4, 23, 3))


# --- What a checkpoint holds -------------------------------------------------------------

# Only ResNet-101 has stage-4 blocks up to "w" (23 blocks); ResNet-50 stops at "f".
_BACKBONE_MARKERS = (("res4w_branch2a", "resnet101"), ("res4a_branch2a", "resnet50"))
# BatchNorm stores moving statistics; GroupNorm only gamma and beta.
_NORM_PROBE_LAYER = "bn_conv1"


def describe_checkpoint(path):
    """What a Keras-2 weights file holds, as far as Mask R-CNN cares.

    Layer names of keras-applications ResNet files are mapped onto Matterport's
    first, so the ImageNet files are described like our own checkpoints.

    Returns:
        dict with
        ``path``: the file;
        ``layers``: number of layers with weights;
        ``backbone``: "resnet101", "resnet50" or None (no ResNet stage 4);
        ``backbone_norm``: "batch" (``bn_conv1`` has moving statistics), "group"
        (it has only gamma/beta) or None (no ``bn_conv1``);
        ``num_classes``: from ``mrcnn_class_logits``' kernel, or None without heads;
        ``keras_resnet_names``: True for keras-applications layer names.

    Raises:
        FileNotFoundError: no such file.
        WeightsError: not a readable Keras-2 HDF5 weights file (names the file).
    """
    raw = weights_io.read_layout(path)
    keras_names = any(keras_resnet_layer_name(name) for name in raw)
    layout = {(keras_resnet_layer_name(name) or name): weights for name, weights in raw.items()}
    backbone = next((arch for marker, arch in _BACKBONE_MARKERS if marker in layout), None)
    norm = None
    if _NORM_PROBE_LAYER in layout:
        short_names = {_short(key) for key, _ in layout[_NORM_PROBE_LAYER]}
        norm = "batch" if "moving_mean" in short_names else "group"
    return {"path": os.fspath(path), "layers": len(layout), "backbone": backbone,
            "backbone_norm": norm, "num_classes": _num_classes(layout),
            "keras_resnet_names": keras_names}


def _num_classes(layout):
    """Output width of the class logits (a Dense kernel [fc, num_classes]), or None."""
    for key, shape in layout.get("mrcnn_class_logits", ()):
        if _short(key) == "kernel" and len(shape) == 2:
            return int(shape[-1])
    return None


def _short(key):
    """'rpn_conv_shared/kernel' -> 'kernel'."""
    return key.rsplit("/", 1)[-1]
