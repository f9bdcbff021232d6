"""Weights I/O in the Keras-2 HDF5 layout of Matterport's published files.

Keras 3 no longer loads Keras-2 ``.h5`` weight files by layer name in a way that
copes with Matterport's files, and it no longer writes that layout. This module
does both with h5py, for any ``keras.Model``; it knows nothing about Mask R-CNN
(it must not import ``mrcnn.model``): published files, the Keras-ResNet name map and
`describe_checkpoint` live in ``mrcnn.pretrained``, weight statistics in
``mrcnn.weight_stats``; opening and reading a file is ``mrcnn.keras2_h5``'s job
(`read_layout` and `UnreadableWeightsFile` are re-exported here).

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
before it assigns anything: a failed load leaves the model untouched. A file
that matches too little of the model is refused too (see `load_weights`), so a
checkpoint of another model never runs with random weights unnoticed.

Every problem with a file raises `mrcnn.errors.WeightsError` (a ValueError) naming
the file; `UnreadableWeightsFile` marks a file that is itself broken (not HDF5,
truncated, not the Keras-2 layout), which a cache can delete and fetch again.
"""

import dataclasses
import os
import re
from collections.abc import Mapping

import h5py
import keras
import numpy as np

from mrcnn import fileio, keras2_h5
from mrcnn.errors import WeightsError
from mrcnn.keras2_h5 import UnreadableWeightsFile, read_layout  # noqa: F401 (public API)

# What this writer puts into the root attribute 'backend'. Keras-2 readers only
# use it to decide whether conv kernels need Theano flipping; Keras 3 kernels have
# the TensorFlow layout on every backend, so 'tensorflow' is the truthful value.
KERAS2_BACKEND = "tensorflow"

# HDF5 object headers (where attributes live) hold at most 64 KiB; Keras 2.2+
# splits longer name lists into 'layer_names0', 'layer_names1', ...
_HDF5_ATTR_LIMIT = 64512

# Without allow_partial, loading by name must cover at least this share of the
# model's weighted layers (loaded or excluded): a checkpoint of this model covers
# all of them, an ImageNet backbone file about 85% of Mask R-CNN's; a file of
# another model that happens to share a few layer names stays far below.
MIN_MATCHED_SHARE = 0.5

# Problems listed in full in a load error; the rest are counted.
_PROBLEMS_SHOWN = 6


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


def keras2_weight_keys(layer):
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
        short = v.name if twins == 1 else keras2_h5.strip_prefix(v.path, leaf + "/")
        keys.append(short if leaf == layer.name else f"{leaf}/{short}")
    return list(zip(keys, variables))


def _weighted_layers(model):
    """{name: layer} of the model's top-level layers that hold weights, in order."""
    return {layer.name: layer for layer in model.layers if layer.weights}


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


@dataclasses.dataclass
class _Problem:
    """One weight that does not fit: kind is "missing" (not in the file), "shape" or
    "extra" (in the file, not in the model layer)."""

    layer: str
    key: str
    kind: str
    text: str


def _plan_layer(file_layer, layer, filepath):
    """([(variable, dataset)], [_Problem]) for one file-layer/model-layer pair."""
    entries = keras2_weight_keys(layer)
    model_keys = [k for k, _ in entries]
    file_keys = [keras2_h5.file_weight_key(w, file_layer.name) for w in file_layer.weight_names]
    matched = _match_keys(file_keys, model_keys)
    where = f"layer '{layer.name}'" + (
        f" (file layer '{file_layer.name}')" if file_layer.name != layer.name else "")
    plan, problems = [], []
    for i, (key, var) in enumerate(entries):
        model_shape = tuple(var.shape)
        if i not in matched:
            problems.append(_Problem(layer.name, key, "missing", (
                f"{where}: weight '{key}' is missing from the file (model shape "
                f"{_shape_text(model_shape)}, file shape absent)")))
            continue
        weight_name = file_layer.weight_names[matched[i]]
        dataset = keras2_h5.dataset(file_layer, weight_name, filepath)
        if tuple(dataset.shape) != model_shape:
            problems.append(_Problem(layer.name, key, "shape", (
                f"{where}: weight '{key}' ({weight_name}) has file shape "
                f"{_shape_text(dataset.shape)} but model shape {_shape_text(model_shape)}")))
            continue
        plan.append((var, dataset))
    for j in sorted(set(range(len(file_keys))) - set(matched.values())):
        dataset = keras2_h5.dataset(file_layer, file_layer.weight_names[j], filepath)
        problems.append(_Problem(layer.name, file_keys[j], "extra", (
            f"{where}: the file's weight '{file_layer.weight_names[j]}' (file shape "
            f"{_shape_text(dataset.shape)}) has no counterpart in the model layer "
            "(model shape absent)")))
    return plan, problems


def _resolve_name_map(name_map, file_names):
    """(callable file name -> model name, description or None when no name changes)."""
    if name_map is None:
        mapped = lambda n: n  # noqa: E731
    elif isinstance(name_map, Mapping):
        mapped = lambda n: name_map.get(n, n)  # noqa: E731
    elif callable(name_map) and not isinstance(name_map, str):
        mapped = lambda n: name_map(n) or n  # noqa: E731
    else:
        raise ValueError(f"name_map must be a dict, a callable or None, not {name_map!r} "
                         "(the Keras-ResNet map is mrcnn.pretrained.keras_resnet_layer_name)")
    if not any(mapped(n) != n for n in file_names):
        return mapped, None
    if isinstance(name_map, Mapping):
        return mapped, "dict"
    return mapped, getattr(name_map, "__name__", "callable")


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

def load_weights(model, filepath, by_name=True, exclude=None, name_map=None,
                 allow_partial=False):
    """Load a Keras-2 (or Keras-1) HDF5 weights file into a Keras 3 model.

    Args:
        model: any keras.Model. Its top-level layers are matched with the file's
            layer groups; nested models (``rpn_model``) and wrappers
            (``TimeDistributed``) are loaded as a whole from their group.
        filepath: the ``.h5`` file (weights-only, or a whole saved model with a
            ``model_weights`` group).
        by_name: True: match layers by name (after ``name_map``); layers present
            on only one side are reported. False: pair the weighted layers of
            file and model in order, as Keras 2 did; the counts must be equal.
        exclude: layer names not to load, each a regular expression that must
            match a whole *model* layer name (``re.fullmatch``; a plain name
            matches itself). A non-empty exclude implies by_name=True, as in
            Matterport.
        name_map: file layer name -> model layer name: a dict (names not in it
            are kept), a callable (returning None keeps the name, e.g.
            `mrcnn.pretrained.keras_resnet_layer_name`) or None. Needs by_name=True.
        allow_partial: by name, the loaded and excluded layers must cover at least
            `MIN_MATCHED_SHARE` of the model's weighted layers, so that a file of
            another model is not mistaken for a checkpoint; True accepts any
            number of matched layers but one or more (e.g. a backbone-only file).

    Returns:
        LoadReport.

    Raises:
        FileNotFoundError: no such file.
        WeightsError (a ValueError), naming the file: not a readable Keras-2 HDF5
            file (`UnreadableWeightsFile`); no layer matched, or too few without
            allow_partial; layer count mismatch (by_name=False); weights missing,
            extra or of the wrong shape in layers that are not excluded (counted,
            the first few listed with both shapes, with the ``exclude`` to pass).
            Nothing is assigned then.
    """
    filepath = os.fspath(filepath)
    if exclude:
        by_name = True
    if name_map is not None and not by_name:
        raise ValueError("load_weights: name_map needs by_name=True (layers are paired by "
                         "position otherwise)")
    with keras2_h5.open_h5(filepath) as h5file:
        file_layers = keras2_h5.file_layers(keras2_h5.weights_root(h5file, filepath), filepath)
        if by_name:
            pairs, report = _pair_by_name(model, file_layers, filepath, exclude, name_map)
        else:
            pairs, report = _pair_in_order(model, file_layers, filepath)
        plan, problems = [], []
        for file_layer, layer in pairs:
            layer_plan, layer_problems = _plan_layer(file_layer, layer, filepath)
            plan += layer_plan
            problems += layer_problems
        if by_name:  # after planning: a damaged file is reported as damaged
            _check_coverage(report, file_layers, len(_weighted_layers(model)), allow_partial)
        if problems:
            raise WeightsError(_problems_message(problems, filepath))
        # Read everything before assigning anything: a file that breaks while
        # being read must not leave the model half loaded.
        values = [keras2_h5.read_value(dataset, filepath) for _, dataset in plan]
    for (var, _), value in zip(plan, values):
        var.assign(value.astype(var.dtype, copy=False))
    return report


def _check_coverage(report, file_layers, model_weighted, allow_partial):
    """WeightsError when loading by name matched no layer, or too few (see load_weights)."""
    examples = ", ".join(f.name for f in file_layers[:3]) + (" ..." if len(file_layers) > 3 else "")
    if not report.loaded:
        raise WeightsError(
            f"{report.filepath}: none of the file's {len(file_layers)} weighted layers "
            f"({examples or 'none'}) matches a layer of the model by name, so nothing would be "
            "loaded: the file holds the weights of another model")
    covered = len(report.loaded) + len(report.skipped)
    if not allow_partial and covered < MIN_MATCHED_SHARE * model_weighted:
        raise WeightsError(
            f"{report.filepath}: only {len(report.loaded)} of the model's {model_weighted} "
            f"weighted layers match a layer of the file by name (the file has "
            f"{len(file_layers)}: {examples}), so most of the model would keep random "
            "weights. Pass allow_partial=True to load a partial file (e.g. a backbone).")


def _problems_message(problems, filepath):
    """Count, the first few problems with both shapes, and the exclude that skips them."""
    layers = list(dict.fromkeys(p.layer for p in problems))
    lines = [f"Cannot load {filepath}: {len(problems)} weight(s) in {len(layers)} layer(s) "
             "do not fit the model:"]
    lines += ["  " + p.text for p in problems[:_PROBLEMS_SHOWN]]
    if len(problems) > _PROBLEMS_SHOWN:
        lines.append(f"  ... and {len(problems) - _PROBLEMS_SHOWN} more")
    norm_hint = _normalization_hint(problems)
    if norm_hint:
        lines.append(norm_hint)
    lines.append(f"To leave these layers untouched, pass exclude={_exclude_suggestion(layers)} "
                 "(regular expressions matching whole layer names), e.g. the class-specific "
                 "heads when the number of classes differs.")
    return "\n".join(lines)


_MOVING_STATISTICS = ("moving_mean", "moving_variance")


def _normalization_hint(problems):
    """A sentence when the mismatch is BatchNorm statistics on one side only."""
    if any(p.kind == "extra" and _last(p.key) in _MOVING_STATISTICS for p in problems):
        return ("The file's normalization layers hold BatchNorm moving statistics that the "
                "model's lack: the file comes from a BatchNorm model and this model uses "
                "another normalization (e.g. GroupNorm; Mask R-CNN: BACKBONE_NORM).")
    if any(p.kind == "missing" and _last(p.key) in _MOVING_STATISTICS for p in problems):
        return ("The model's BatchNorm layers need moving statistics the file lacks: the file "
                "comes from a model with another normalization (e.g. GroupNorm).")
    return None


def _exclude_suggestion(layers):
    """The layer names as an exclude list; many names shortened to 'prefix.*' patterns."""
    if len(layers) <= _PROBLEMS_SHOWN:
        return repr([re.escape(name) for name in layers])
    prefixes = dict.fromkeys(re.match(r"[A-Za-z]*", name).group() or name for name in layers)
    return repr([f"{prefix}.*" for prefix in prefixes])


def _pair_by_name(model, file_layers, filepath, exclude, name_map):
    model_layers = _weighted_layers(model)
    mapped, description = _resolve_name_map(name_map, [f.name for f in file_layers])
    excluded = _exclude_matcher(exclude)
    report = LoadReport(filepath=filepath, name_map=description)
    pairs, taken = [], {}
    for file_layer in file_layers:
        name = mapped(file_layer.name)
        if name in taken:
            raise WeightsError(f"{filepath}: file layers '{taken[name]}' and "
                               f"'{file_layer.name}' both map to model layer '{name}'")
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
        raise WeightsError(
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
        entries = keras2_weight_keys(layer)
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
