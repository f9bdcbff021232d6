"""The file side of the Keras-2 (and Keras-1) HDF5 weights layout: open a file,
list its weighted layers and their weight names, read values.

`mrcnn.weights` matches what is read here with a model's layers and writes the
layout; the layout itself is described in its module docstring. Every failure
raises `UnreadableWeightsFile` naming the file, so callers (and a download cache)
can tell a broken file from one that does not fit a model.
"""

import dataclasses
import os
import re

import h5py
import numpy as np

from mrcnn.errors import WeightsError

# Keras-1 weight names -> Keras-2 short names.
_KERAS1_ALIASES = {"W": "kernel", "b": "bias", "running_mean": "moving_mean",
                   "running_std": "moving_variance"}


class UnreadableWeightsFile(WeightsError):
    """The file itself is broken: not HDF5, truncated, or not in the Keras-2 layout."""


# --- File side ---------------------------------------------------------------------

@dataclasses.dataclass
class FileLayer:
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
        raise UnreadableWeightsFile(_not_keras2_message(node, attr, filepath))
    return names


def _not_keras2_message(node, attr, filepath):
    if node.name == "/" and ("vars" in node or "layers" in node):
        # Keras 3's Model.save_weights("x.weights.h5") writes 'layers/<name>/vars/0'.
        return (f"{filepath}: this is a Keras 3 '.weights.h5' file (keras.Model.save_weights), "
                "not the Keras-2 HDF5 layout read here; save with mrcnn.weights.save_weights "
                "(MaskRCNN.save_weights) or load it with keras.Model.load_weights")
    where = node.name if node.name != "/" else "the root"
    return (f"{filepath}: {where} has no '{attr}' attribute, so this is not a Keras-2 HDF5 "
            "weights file (truncated, damaged or another format)")


def open_h5(filepath):
    """Open for reading; any failure becomes one clear error naming the file."""
    filepath = os.fspath(filepath)
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"Weights file not found: {filepath}")
    try:
        return h5py.File(filepath, "r")
    except (OSError, ValueError) as err:
        reason = str(err) or type(err).__name__
        raise UnreadableWeightsFile(
            f"{filepath}: not a readable HDF5 weights file (empty, truncated, damaged or "
            f"another format such as text): {reason}") from None


def weights_root(h5file, filepath):
    """The group holding 'layer_names': the root, or 'model_weights' of a saved model."""
    has_names = any(re.fullmatch(r"layer_names\d*", a) for a in h5file.attrs)
    if not has_names and "model_weights" in h5file:
        return h5file["model_weights"]
    return h5file


def file_layers(root, filepath):
    """The file's layers that hold weights, in file order."""
    layers = []
    for name in _read_name_list(root, "layer_names", filepath):
        if name not in root:
            raise UnreadableWeightsFile(
                f"{filepath}: 'layer_names' lists '{name}' but the file has no group of that "
                "name (truncated or damaged file)")
        group = root[name]
        weight_names = _read_name_list(group, "weight_names", filepath)
        if weight_names:
            layers.append(FileLayer(name, group, weight_names))
    return layers


def read_layout(filepath):
    """What a Keras-2 (or Keras-1) weights file holds, without reading any values.

    Returns:
        {file layer name: [(weight key, shape)]} for the layers with weights, in
        file order. Keys are relative to the layer (``kernel``, ``moving_mean``;
        ``rpn_conv_shared/kernel`` inside a nested model; Keras-1 names are
        translated), shapes are int tuples.

    Raises:
        FileNotFoundError: no such file.
        UnreadableWeightsFile: not a readable Keras-2 HDF5 file (names the file).
    """
    filepath = os.fspath(filepath)
    with open_h5(filepath) as h5file:
        layout = {}
        for layer in file_layers(weights_root(h5file, filepath), filepath):
            layout[layer.name] = [
                (file_weight_key(name, layer.name),
                 tuple(int(d) for d in dataset(layer, name, filepath).shape))
                for name in layer.weight_names]
    return layout


def file_weight_key(weight_name, group_name):
    """File weight name -> key comparable with `_keras2_weight_keys`.

    'conv1/kernel:0' in group 'conv1' -> 'kernel';
    'rpn_conv_shared/kernel:0' in group 'rpn_model' -> 'rpn_conv_shared/kernel';
    Keras 1's 'res2a_branch2a_W_1:0' in group 'res2a_branch2a' -> 'kernel'.
    """
    name = re.sub(r":\d+$", "", weight_name)
    if "/" in name:
        return strip_prefix(name, group_name + "/")
    name = strip_prefix(name, group_name + "_")
    name = re.sub(r"_\d+$", "", name)  # Keras 1's uniquifying suffix
    return _KERAS1_ALIASES.get(name, name)


def dataset(file_layer, weight_name, filepath):
    try:
        node = file_layer.group[weight_name]
    except (KeyError, OSError, ValueError):
        raise UnreadableWeightsFile(f"{filepath}: layer '{file_layer.name}' lists weight '{weight_name}' "
                         "but the file has no readable dataset for it (truncated or damaged "
                         "file)") from None
    if not isinstance(node, h5py.Dataset):
        raise UnreadableWeightsFile(f"{filepath}: layer '{file_layer.name}': '{weight_name}' is a group, "
                         "not a weight dataset")
    return node


def read_value(dataset, filepath):
    try:
        return np.asarray(dataset[()])
    except (OSError, ValueError, RuntimeError) as err:
        raise UnreadableWeightsFile(f"{filepath}: cannot read weight '{dataset.name}' (truncated or "
                         f"damaged file): {err}") from None


def strip_prefix(text, prefix):
    """``text`` without a leading ``prefix`` (unchanged if it has none)."""
    return text[len(prefix):] if text.startswith(prefix) else text
