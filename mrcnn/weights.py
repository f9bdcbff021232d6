"""Weights I/O in the Keras-2 HDF5 layout of Matterport's published files.

Keras 3 no longer loads Keras-2 ``.h5`` weight files by layer name in a way that
copes with Matterport's files, and it no longer writes that layout. This module
does both with h5py, for any ``keras.Model``; it knows nothing about Mask R-CNN
(it must not import ``mrcnn.model``).

The Keras-2 layout (``Model.save_weights`` of Keras 2.x, also used by Keras 1):

- root attributes ``layer_names`` (array of bytes, every top-level layer in
  topological order, weightless ones included), ``backend`` and
  ``keras_version`` (bytes). A whole saved model keeps all of this under a
  ``model_weights`` group instead of the root.
- one group per layer with the attribute ``weight_names`` (array of bytes, an
  empty array for weightless layers) and one dataset per weight at
  ``group[weight_name]``. Weight names look like ``res2a_branch2a/kernel:0``;
  a nested model (Matterport's ``rpn_model``) stores all of its inner layers'
  weights in its own group under *their* names (``rpn_conv_shared/kernel:0``);
  a wrapper such as ``TimeDistributed`` stores its inner layer's weights under
  the wrapper's name.
- Keras-1 files (keras-applications' ResNet-50 ImageNet files) use flat names
  such as ``res2a_branch2a_W_1:0`` and ``bn_conv1_running_std_1:0``; they are
  understood too (``W``/``b``/``running_mean``/``running_std`` are Keras 1's
  kernel/bias/moving_mean/moving_variance).

Loading matches each weight by its short name (``kernel``, ``bias``, ``gamma``,
``moving_mean`` ...), never by position within a layer, and checks every shape
before it assigns anything: a failed load leaves the model untouched.
"""

import dataclasses
import os
import re
import socket
from collections.abc import Mapping

import h5py
import keras
import numpy as np

from mrcnn import fileio

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

# What this writer puts into the root attribute 'backend'. Keras-2 readers only
# use it to decide whether conv kernels need Theano flipping; Keras 3 kernels have
# the TensorFlow layout on every backend, so 'tensorflow' is the truthful value.
KERAS2_BACKEND = "tensorflow"

# HDF5 object headers (where attributes live) hold at most 64 KiB; Keras 2.2+
# splits longer name lists into 'layer_names0', 'layer_names1', ...
_HDF5_ATTR_LIMIT = 64512

# Keras-1 weight names -> Keras-2 short names.
_KERAS1_ALIASES = {"W": "kernel", "b": "bias", "running_mean": "moving_mean",
                   "running_std": "moving_variance"}

# A constant tensor equal to its usual initial value is "untrained", not dead.
_INITIAL_CONSTANTS = {"bias": 0.0, "beta": 0.0, "moving_mean": 0.0,
                      "gamma": 1.0, "moving_variance": 1.0}


class WeightsNotAvailable(FileNotFoundError, RuntimeError):
    """A weights file is not in the cache and cannot be downloaded.

    The message names the URL, the file name and the folder to put the file in;
    command-line tools print it without a traceback.
    """


# --- Reports --------------------------------------------------------------------

@dataclasses.dataclass
class LoadReport:
    """What `load_weights` did.

    Attributes:
        filepath: the file read.
        loaded: model layer names whose weights were all assigned.
        skipped: model layer names present in the file but left alone (exclude).
        missing_in_model: weighted layer names of the file with no model layer.
        missing_in_file: weighted model layer names the file has no weights for
            (not counting excluded ones).
        name_map: description of the layer-name map used, or None.
    """

    filepath: str
    loaded: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    missing_in_model: list = dataclasses.field(default_factory=list)
    missing_in_file: list = dataclasses.field(default_factory=list)
    name_map: str | None = None

    def summary(self):
        """One human-readable paragraph."""
        lines = [f"Loaded {len(self.loaded)} layers from {self.filepath}"
                 + (f" (layer names mapped: {self.name_map})" if self.name_map else "")]
        for label, names in (("skipped (exclude)", self.skipped),
                             ("in the file but not in the model", self.missing_in_model),
                             ("in the model but not in the file", self.missing_in_file)):
            if names:
                shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
                lines.append(f"  {len(names)} {label}: {shown}")
        return "\n".join(lines)


@dataclasses.dataclass
class WeightStats:
    """Statistics of one weight tensor (one row of `weight_stats`).

    ``name`` is the Keras-2 weight name (``res2a_branch2a/kernel:0``); ``flags``
    holds ``"dead?"`` (constant tensor that is not an untouched initial value)
    and/or ``"overflow?"`` (some |value| > 1000), as Matterport's
    ``display_weight_stats`` marks them.
    """

    layer: str
    name: str
    shape: tuple
    min: float
    max: float
    mean: float
    std: float
    zero_share: float
    flags: tuple


# --- Model side: which variables a layer group holds, under which names ---------

def _keras2_order(layer):
    """A layer's variables in the order Keras 2 saved them: trainable first.

    (Keras 3's own legacy h5 code uses the same order.) Shared variables appear once.
    """
    seen, ordered = set(), []
    for v in list(layer.trainable_weights) + list(layer.non_trainable_weights):
        if id(v) not in seen:
            seen.add(id(v))
            ordered.append(v)
    return ordered


def _variable_owners(layer):
    """id(variable) -> name of the Keras-2 "leaf" layer that names it.

    Inside a nested model every non-model layer is a leaf (its weights are saved as
    ``leaf/kernel:0``); a wrapper (TimeDistributed) is one leaf with its inner
    layer's weights. Variables owned by no leaf belong to ``layer`` itself.
    """
    owners = {}

    def walk(model):
        for sub in model.layers:
            if isinstance(sub, keras.Model):
                walk(sub)
            else:
                for v in sub.weights:
                    owners.setdefault(id(v), sub.name)

    if isinstance(layer, keras.Model):
        walk(layer)
    return owners


def _keras2_weight_keys(layer):
    """[(key, variable)] of a top-level layer in Keras-2 order.

    The key is the Keras-2 weight name relative to the layer's group, without the
    ``:0`` suffix: ``kernel`` for a plain layer (the file says ``conv1/kernel:0``),
    ``rpn_conv_shared/kernel`` inside a nested model.
    """
    variables = _keras2_order(layer)
    owners = _variable_owners(layer)
    leaf_of = [owners.get(id(v), layer.name) for v in variables]
    keys = []
    for v, leaf in zip(variables, leaf_of):
        twins = sum(1 for w, other in zip(variables, leaf_of) if other == leaf and w.name == v.name)
        # Two variables with one short name in a leaf (a custom composite layer):
        # keep them apart with their Keras 3 path below the leaf.
        short = v.name if twins == 1 else _strip_prefix(v.path, leaf + "/")
        keys.append(short if leaf == layer.name else f"{leaf}/{short}")
    return list(zip(keys, variables))


def _strip_prefix(text, prefix):
    return text[len(prefix):] if text.startswith(prefix) else text


def _weighted_layers(model):
    """{name: layer} of the model's top-level layers that hold weights, in order."""
    return {layer.name: layer for layer in model.layers if layer.weights}


# --- File side ---------------------------------------------------------------------

@dataclasses.dataclass
class _FileLayer:
    name: str
    group: h5py.Group
    weight_names: list  # as written in the file, e.g. 'conv1/kernel:0'


def _decode(value):
    return value.decode("utf8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _read_name_list(node, attr, filepath):
    """A Keras-2 name-list attribute (whole or split into attr0, attr1 ...)."""
    if attr in node.attrs:
        return [_decode(v) for v in np.atleast_1d(node.attrs[attr])]
    names, i = [], 0
    while f"{attr}{i}" in node.attrs:
        names += [_decode(v) for v in np.atleast_1d(node.attrs[f"{attr}{i}"])]
        i += 1
    if i == 0:
        where = node.name if node.name != "/" else "the root"
        raise ValueError(f"{filepath}: {where} has no '{attr}' attribute, so this is not a "
                         "Keras-2 HDF5 weights file (a Keras 3 '.weights.h5' file is loaded "
                         "with keras.Model.load_weights instead)")
    return names


def _open_h5(filepath):
    """Open for reading; any failure becomes one clear error naming the file."""
    filepath = os.fspath(filepath)
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"Weights file not found: {filepath}")
    try:
        return h5py.File(filepath, "r")
    except (OSError, ValueError) as err:
        reason = str(err) or type(err).__name__
        raise ValueError(f"{filepath}: not a readable HDF5 weights file (corrupt, truncated "
                         f"or another format): {reason}") from None


def _weights_root(h5file, filepath):
    """The group holding 'layer_names': the root, or 'model_weights' of a saved model."""
    has_names = any(re.fullmatch(r"layer_names\d*", a) for a in h5file.attrs)
    if not has_names and "model_weights" in h5file:
        return h5file["model_weights"]
    return h5file


def _file_layers(root, filepath):
    """The file's layers that hold weights, in file order."""
    layers = []
    for name in _read_name_list(root, "layer_names", filepath):
        if name not in root:
            raise ValueError(f"{filepath}: 'layer_names' lists '{name}' but the file has "
                             "no group of that name (truncated or damaged file)")
        group = root[name]
        weight_names = _read_name_list(group, "weight_names", filepath)
        if weight_names:
            layers.append(_FileLayer(name, group, weight_names))
    return layers


def _file_weight_key(weight_name, group_name):
    """File weight name -> key comparable with `_keras2_weight_keys`.

    'conv1/kernel:0' in group 'conv1' -> 'kernel';
    'rpn_conv_shared/kernel:0' in group 'rpn_model' -> 'rpn_conv_shared/kernel';
    Keras 1's 'res2a_branch2a_W_1:0' in group 'res2a_branch2a' -> 'kernel'.
    """
    name = re.sub(r":\d+$", "", weight_name)
    if "/" in name:
        return _strip_prefix(name, group_name + "/")
    name = _strip_prefix(name, group_name + "_")
    name = re.sub(r"_\d+$", "", name)  # Keras 1's uniquifying suffix
    return _KERAS1_ALIASES.get(name, name)


def _last(key):
    return key.rsplit("/", 1)[-1]


def _match_keys(file_keys, model_keys):
    """model index -> file index: exact keys first, then unique short names."""
    matched, used = {}, set()
    for i, key in enumerate(model_keys):
        if key in file_keys and file_keys.index(key) not in used:
            matched[i] = file_keys.index(key)
            used.add(matched[i])
    rest_file = [j for j in range(len(file_keys)) if j not in used]
    for i in [i for i in range(len(model_keys)) if i not in matched]:
        hits = [j for j in rest_file if _last(file_keys[j]) == _last(model_keys[i])]
        rivals = [k for k in range(len(model_keys))
                  if k not in matched and _last(model_keys[k]) == _last(model_keys[i])]
        if len(hits) == 1 and len(rivals) == 1:
            matched[i] = hits[0]
            rest_file.remove(hits[0])
    return matched


def _shape_text(shape):
    return str(tuple(int(s) for s in shape)) if shape is not None else "absent"


def _plan_layer(file_layer, layer, filepath):
    """([(variable, dataset)], [problem messages]) for one file-layer/model-layer pair."""
    entries = _keras2_weight_keys(layer)
    model_keys = [k for k, _ in entries]
    file_keys = [_file_weight_key(w, file_layer.name) for w in file_layer.weight_names]
    matched = _match_keys(file_keys, model_keys)
    where = f"{filepath}: layer '{layer.name}'" + (
        f" (file layer '{file_layer.name}')" if file_layer.name != layer.name else "")
    plan, problems = [], []
    for i, (key, var) in enumerate(entries):
        model_shape = tuple(var.shape)
        if i not in matched:
            problems.append(
                f"{where}: weight '{key}' is missing from the file (model shape "
                f"{_shape_text(model_shape)}, file shape absent; the file has "
                f"{file_layer.weight_names})")
            continue
        weight_name = file_layer.weight_names[matched[i]]
        dataset = _dataset(file_layer, weight_name, filepath)
        if tuple(dataset.shape) != model_shape:
            problems.append(
                f"{where}: weight '{key}' ({weight_name}) has file shape "
                f"{_shape_text(dataset.shape)} but model shape {_shape_text(model_shape)}")
            continue
        plan.append((var, dataset))
    for j in sorted(set(range(len(file_keys))) - set(matched.values())):
        dataset = _dataset(file_layer, file_layer.weight_names[j], filepath)
        problems.append(
            f"{where}: the file's weight '{file_layer.weight_names[j]}' (file shape "
            f"{_shape_text(dataset.shape)}) has no counterpart in the model layer "
            f"(model shape absent; the layer has {model_keys})")
    return plan, problems


def _dataset(file_layer, weight_name, filepath):
    try:
        node = file_layer.group[weight_name]
    except (KeyError, OSError, ValueError):
        raise ValueError(f"{filepath}: layer '{file_layer.name}' lists weight '{weight_name}' "
                         "but the file has no readable dataset for it (truncated or damaged "
                         "file)") from None
    if not isinstance(node, h5py.Dataset):
        raise ValueError(f"{filepath}: layer '{file_layer.name}': '{weight_name}' is a group, "
                         "not a weight dataset")
    return node


def _read(dataset, filepath):
    try:
        return np.asarray(dataset[()])
    except (OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"{filepath}: cannot read weight '{dataset.name}' (truncated or "
                         f"damaged file): {err}") from None


# --- Name maps ----------------------------------------------------------------------

_KERAS_RESNET_NAME = re.compile(r"conv([2-5])_block(\d+)_([0-3])_(conv|bn)")
_KERAS_BRANCH = {"0": "branch1", "1": "branch2a", "2": "branch2b", "3": "branch2c"}


def keras_resnet_layer_name(name):
    """Keras-applications ResNet (v1) layer name -> Matterport's name, or None.

    conv1_conv -> conv1, conv1_bn -> bn_conv1, conv4_block23_3_conv ->
    res4w_branch2c, conv2_block1_0_bn -> bn2a_branch1 (block i -> letter chr(96+i),
    _0 -> branch1, _1/_2/_3 -> branch2a/2b/2c). Weightless or unknown names -> None.
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


def _looks_like_keras_resnet(file_names, model_names):
    return ("conv1_conv" in file_names and "conv1_conv" not in model_names
            and "conv1" in model_names)


def _resolve_name_map(name_map, file_names, model_names):
    """(callable file name -> model name, description or None)."""
    if isinstance(name_map, str):
        if name_map != "auto":
            raise ValueError(f"name_map must be a dict, a callable, None or 'auto', "
                             f"not {name_map!r}")
        if _looks_like_keras_resnet(file_names, model_names):
            return (lambda n: keras_resnet_layer_name(n) or n), "Keras ResNet -> Matterport"
        return (lambda n: n), None
    if name_map is None:
        return (lambda n: n), None
    if isinstance(name_map, Mapping):
        return (lambda n: name_map.get(n, n)), "dict"
    if callable(name_map):
        return (lambda n: name_map(n) or n), getattr(name_map, "__name__", "callable")
    raise ValueError(f"name_map must be a dict, a callable, None or 'auto', not "
                     f"{type(name_map).__name__}")


def _exclude_matcher(exclude):
    if exclude is None:
        return lambda name: False
    patterns = [exclude] if isinstance(exclude, str) else list(exclude)
    try:
        compiled = [re.compile(p) for p in patterns]
    except re.error as err:
        raise ValueError(f"exclude: {err.pattern!r} is not a valid regular expression: "
                         f"{err}") from None
    return lambda name: any(p.fullmatch(name) for p in compiled)


# --- Loading -------------------------------------------------------------------------

def load_weights(model, filepath, by_name=True, exclude=None, name_map="auto"):
    """Load a Keras-2 (or Keras-1) HDF5 weights file into a Keras 3 model.

    Args:
        model: any keras.Model. Its top-level layers are matched with the file's
            layer groups; nested models (``rpn_model``) and wrappers
            (``TimeDistributed``) are loaded as a whole from their group.
        filepath: the ``.h5`` file (weights-only, or a whole saved model with a
            ``model_weights`` group).
        by_name: True: match layers by name (after ``name_map``); layers present
            on only one side are reported, not errors. False: pair the weighted
            layers of file and model in order, as Keras 2 did; the counts must
            be equal.
        exclude: layer names not to load, each a regular expression that must
            match a whole *model* layer name (``re.fullmatch``; a plain name
            matches itself). A non-empty exclude implies by_name=True, as in
            Matterport.
        name_map: file layer name -> model layer name: a dict (names not in it
            are kept), a callable (returning None keeps the name), None (no
            mapping) or "auto" (default): use `keras_resnet_layer_name` when the
            file is a keras-applications ResNet file (it has ``conv1_conv``) and
            the model uses Matterport's names. Needs by_name=True.

    Returns:
        LoadReport.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable Keras-2 HDF5 file; layer count mismatch
            (by_name=False); a weight missing, extra or of the wrong shape in a
            layer that is not excluded (all such problems are listed, naming the
            file, layer, weight and both shapes). Nothing is assigned then.
    """
    filepath = os.fspath(filepath)
    if exclude:
        by_name = True
    explicit_map = name_map is not None and not (isinstance(name_map, str) and name_map == "auto")
    if explicit_map and not by_name:
        raise ValueError("load_weights: name_map needs by_name=True (layers are paired by "
                         "position otherwise)")
    with _open_h5(filepath) as h5file:
        root = _weights_root(h5file, filepath)
        file_layers = _file_layers(root, filepath)
        if by_name:
            pairs, report = _pair_by_name(model, file_layers, filepath, exclude, name_map)
        else:
            pairs, report = _pair_in_order(model, file_layers, filepath)
        plan, problems = [], []
        for file_layer, layer in pairs:
            layer_plan, layer_problems = _plan_layer(file_layer, layer, filepath)
            plan += layer_plan
            problems += layer_problems
        if problems:
            raise ValueError(_problems_message(problems, filepath))
        # Read everything before assigning anything: a file that breaks while
        # being read must not leave the model half loaded.
        values = [_read(dataset, filepath) for _, dataset in plan]
    for (var, _), value in zip(plan, values):
        var.assign(value.astype(var.dtype, copy=False))
    return report


def _problems_message(problems, filepath):
    shown = problems[:20]
    more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
    hint = ("\nPass exclude=[layer names] to leave such layers untouched (e.g. the class-"
            "specific heads when NUM_CLASSES differs).")
    return (f"Cannot load {filepath}: {len(problems)} weight(s) do not fit the model:\n"
            + "\n".join(shown) + more + hint)


def _pair_by_name(model, file_layers, filepath, exclude, name_map):
    model_layers = _weighted_layers(model)
    all_model_names = {layer.name for layer in model.layers}
    mapped, description = _resolve_name_map(name_map, [f.name for f in file_layers],
                                            all_model_names)
    excluded = _exclude_matcher(exclude)
    report = LoadReport(filepath=filepath, name_map=description)
    pairs, taken = [], {}
    for file_layer in file_layers:
        name = mapped(file_layer.name)
        if name in taken:
            raise ValueError(f"{filepath}: file layers '{taken[name]}' and '{file_layer.name}' "
                             f"both map to model layer '{name}'")
        taken[name] = file_layer.name
        if excluded(name):
            if name in model_layers:
                report.skipped.append(name)
        elif name in model_layers:
            pairs.append((file_layer, model_layers[name]))
            report.loaded.append(name)
        else:
            report.missing_in_model.append(file_layer.name)
    report.missing_in_file = [n for n in model_layers if n not in taken and not excluded(n)]
    return pairs, report


def _pair_in_order(model, file_layers, filepath):
    model_layers = list(_weighted_layers(model).values())
    if len(model_layers) != len(file_layers):
        raise ValueError(
            f"{filepath}: layer count mismatch for loading in order (by_name=False): the "
            f"model has {len(model_layers)} layers with weights, the file has "
            f"{len(file_layers)}. Load by name (by_name=True) for partial files.")
    report = LoadReport(filepath=filepath, loaded=[layer.name for layer in model_layers])
    return list(zip(file_layers, model_layers)), report


# --- Saving ---------------------------------------------------------------------------

def _bytes_array(names):
    """Names as a fixed-length bytes array: what Keras 2 (h5py 2) wrote, so that
    readers calling ``.decode('utf8')`` on each item work. Empty -> float64 [0]."""
    encoded = [n.encode("utf8") for n in names]
    return np.array(encoded) if encoded else np.zeros((0,), np.float64)


def _write_name_list(node, attr, names):
    data = _bytes_array(names)
    chunks = 1
    while data.nbytes / chunks > _HDF5_ATTR_LIMIT:
        chunks += 1
    if chunks == 1:
        node.attrs[attr] = data
    else:
        for i, part in enumerate(np.array_split(data, chunks)):
            node.attrs[f"{attr}{i}"] = part


def _write_keras2_layout(root, model):
    _write_name_list(root, "layer_names", [layer.name for layer in model.layers])
    root.attrs["backend"] = np.bytes_(KERAS2_BACKEND.encode("utf8"))
    root.attrs["keras_version"] = np.bytes_(str(keras.__version__).encode("utf8"))
    for layer in model.layers:
        group = root.create_group(layer.name)
        entries = _keras2_weight_keys(layer)
        # Keras 2 names: the leaf layer's name, the short name and ':0'.
        names = [key if "/" in key else f"{layer.name}/{key}" for key, _ in entries]
        names = [f"{n}:0" for n in names]
        _write_name_list(group, "weight_names", names)
        for name, (_, var) in zip(names, entries):
            value = np.asarray(var.numpy())
            group.create_dataset(name, data=value)


def save_weights(model, filepath):
    """Write the model's weights in the Keras-2 HDF5 layout, atomically.

    The layout is Matterport's (see the module docstring): root attributes
    ``layer_names``, ``backend='tensorflow'`` and ``keras_version`` (bytes),
    per-layer ``weight_names`` such as ``res2a_branch2a/kernel:0``, nested models
    in their own group under their inner layers' names. Keras 2 (Matterport-era
    code) and Keras 3's ``Model.load_weights('x.h5')`` can read it.

    The file is written to a temporary file in the same folder, flushed and
    fsynced, then renamed over ``filepath``: a process killed while saving leaves
    any previous file at ``filepath`` intact (and at worst a stray
    ``.<name>.*.tmp`` file next to it, which ``fileio.remove_stale_temp_files``
    clears at the next run).

    Raises:
        FileNotFoundError: the folder of ``filepath`` does not exist.
        OutputPathError: it cannot be written (read-only, disk full), naming the file.
    """
    filepath = os.path.abspath(os.fspath(filepath))
    folder = os.path.dirname(filepath)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Cannot save weights to {filepath}: folder {folder} does "
                                "not exist")
    with fileio.atomic_write(filepath, "weights file") as tmp_path:
        with h5py.File(tmp_path, "w") as h5file:
            _write_keras2_layout(h5file, model)


# --- Download ---------------------------------------------------------------------------

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


COCO_WEIGHTS = WeightsSource(COCO_WEIGHTS_URL, COCO_WEIGHTS_FILE,
                             "Matterport's Mask R-CNN COCO weights (ResNet-101, 81 classes)")
RESNET50_IMAGENET = WeightsSource(RESNET50_IMAGENET_NOTOP_URL, RESNET50_IMAGENET_NOTOP_FILE,
                                  "keras-applications ResNet-50 ImageNet weights (no top)")
RESNET101_IMAGENET = WeightsSource(
    RESNET101_KERAS_IMAGENET_NOTOP_URL, RESNET101_KERAS_IMAGENET_NOTOP_FILE,
    "Keras' ResNet-101 ImageNet weights (no top), layer names mapped onto Matterport's")

# Layers whose shapes depend on NUM_CLASSES (skip them unless it is 81).
COCO_CLASS_SPECIFIC_LAYERS = ("mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask")


def imagenet_source(architecture):
    """The ImageNet WeightsSource for "resnet50" or "resnet101".

    Matterport used the ResNet-50 file for both (so ResNet-101's stage 4 blocks g..w
    started random); ResNet-101 here uses Keras' own ResNet-101 file, whose layer
    names `load_weights` maps automatically (name_map="auto").
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


# --- Statistics ---------------------------------------------------------------------------

def weight_stats(model):
    """Per-weight statistics of a model: the data behind ``display_weight_stats``.

    Returns:
        list of WeightStats, one per variable, in Keras-2 save order (top-level
        layers in order, nested models expanded under their inner layer names).
    """
    rows = []
    for layer in model.layers:
        for key, var in _keras2_weight_keys(layer):
            name = f"{key if '/' in key else layer.name + '/' + key}:0"
            rows.append(_stats_row(layer.name, name, _last(key),
                                   np.asarray(var.numpy())))
    return rows


def _stats_row(layer_name, name, short, value):
    values = value.astype(np.float64).ravel()
    if values.size == 0:
        nan = float("nan")
        return WeightStats(layer_name, name, value.shape, nan, nan, nan, nan, nan, ())
    lo, hi = float(values.min()), float(values.max())
    std = float(values.std())
    flags = []
    constant = values.size > 1 and std <= 1e-8 * max(1.0, abs(lo), abs(hi))
    if constant and _INITIAL_CONSTANTS.get(short) != lo:
        flags.append("dead?")
    if max(abs(lo), abs(hi)) > 1000:
        flags.append("overflow?")
    return WeightStats(layer_name, name, tuple(value.shape), lo, hi, float(values.mean()), std,
                       float(np.mean(values == 0)), tuple(flags))


def format_weight_stats(rows):
    """The rows of `weight_stats` as a plain-text table."""
    header = f"{'WEIGHT NAME':<44} {'SHAPE':<20} {'MIN':>11} {'MAX':>11} {'STD':>11} " \
             f"{'ZEROS':>6}  FLAGS"
    lines = [header]
    for r in rows:
        lines.append(f"{r.name:<44} {str(r.shape):<20} {r.min:>11.4g} {r.max:>11.4g} "
                     f"{r.std:>11.4g} {r.zero_share:>6.1%}  {' '.join(r.flags)}")
    return "\n".join(lines)
