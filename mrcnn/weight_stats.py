"""Weight statistics: the numbers behind Matterport's ``display_weight_stats``.

One home for the per-tensor statistics and their alert flags, used by the plain-text
table (`format_weight_stats`) and by ``visualize.display_weight_stats`` /
``plot_weight_histograms``.

Flags (one definition each, `stats_flags`):

- ``"dead?"``: the tensor is constant (max - min within float rounding of its
  magnitude) and that constant is not the usual initial value of its kind (0 for
  ``bias``/``beta``/``moving_mean``, 1 for ``gamma``/``moving_variance``). The range
  is used, not the std, because it is what Matterport compared (``min == max``)
  and it is known for precomputed rows too; the initial-value exception replaces
  Matterport's "except Conv2D biases": an untouched zero bias or unit gamma is a
  normal, freshly initialised or frozen weight, while a zero gamma or a constant
  kernel silences its channel. One-element tensors are never "dead?".
- ``"overflow?"``: some |value| > 1000 (Matterport's threshold).
"""

import dataclasses

import keras
import numpy as np

from mrcnn.weights import keras2_weight_keys

OVERFLOW_LIMIT = 1000.0

# Relative tolerance of "constant": max - min <= this * max(1, |min|, |max|).
_CONSTANT_RTOL = 1e-8

# A constant tensor equal to its usual initial value is "untrained", not dead.
_INITIAL_CONSTANTS = {"bias": 0.0, "beta": 0.0, "moving_mean": 0.0,
                      "gamma": 1.0, "moving_variance": 1.0}


@dataclasses.dataclass
class WeightStats:
    """Statistics of one weight tensor (one row of `weight_stats`).

    ``name`` is the Keras-2 weight name (``res2a_branch2a/kernel:0``); ``flags``
    holds ``"dead?"`` and/or ``"overflow?"`` (see the module docstring).
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


def short_name(name):
    """'res2a_branch2a/kernel:0' -> 'kernel'."""
    return str(name).split(":")[0].rsplit("/", 1)[-1]


def stats_flags(short, lo, hi, size):
    """The alert flags of a tensor from its weight kind, min, max and element count."""
    flags = []
    constant = size > 1 and hi - lo <= _CONSTANT_RTOL * max(1.0, abs(lo), abs(hi))
    if constant and _INITIAL_CONSTANTS.get(short) != lo:
        flags.append("dead?")
    if max(abs(lo), abs(hi)) > OVERFLOW_LIMIT:
        flags.append("overflow?")
    return tuple(flags)


def weight_stats(model):
    """Per-weight statistics of a model (a keras.Model or the MaskRCNN wrapper).

    Returns:
        list of WeightStats, one per variable, in Keras-2 save order (top-level
        layers in order, nested models expanded under their inner layer names).
    """
    model = getattr(model, "keras_model", model)
    rows = []
    for layer in model.layers:
        for key, var in keras2_weight_keys(layer):
            name = f"{key if '/' in key else layer.name + '/' + key}:0"
            rows.append(tensor_stats(layer.name, name, np.asarray(var.numpy())))
    return rows


def tensor_stats(layer_name, name, value):
    """WeightStats of one tensor."""
    values = np.asarray(value).astype(np.float64).ravel()
    if values.size == 0:
        nan = float("nan")
        return WeightStats(layer_name, name, tuple(np.shape(value)), nan, nan, nan, nan, nan, ())
    lo, hi = float(values.min()), float(values.max())
    return WeightStats(layer_name, name, tuple(np.shape(value)), lo, hi, float(values.mean()),
                       float(values.std()), float(np.mean(values == 0)),
                       stats_flags(short_name(name), lo, hi, values.size))


def summary_stats(name, shape, lo, hi, std):
    """WeightStats from precomputed (name, shape, min, max, std); mean and zero share unknown."""
    lo, hi = float(lo), float(hi)
    size = int(np.prod(shape)) if not isinstance(shape, str) else 2
    nan = float("nan")
    return WeightStats(name.split("/")[0], name, shape, lo, hi, nan, float(std), nan,
                       stats_flags(short_name(name), lo, hi, size))


def format_weight_stats(rows):
    """The rows of `weight_stats` as a plain-text table."""
    header = f"{'WEIGHT NAME':<44} {'SHAPE':<20} {'MIN':>11} {'MAX':>11} {'STD':>11} " \
             f"{'ZEROS':>6}  FLAGS"
    lines = [header]
    for r in rows:
        lines.append(f"{r.name:<44} {str(r.shape):<20} {r.min:>11.4g} {r.max:>11.4g} "
                     f"{r.std:>11.4g} {r.zero_share:>6.1%}  {' '.join(r.flags)}")
    return "\n".join(lines)


def leaf_layers(model, type_names=None):
    """Layers that own weights, nested models expanded and wrappers (TimeDistributed)
    looked through; only those whose class, or a class it derives from, is named in
    ``type_names`` if given (so "Conv2D" takes mrcnn's Conv2D subclasses too)."""
    model = getattr(model, "keras_model", model)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer, type_names)
            continue
        inner = getattr(layer, "layer", None)
        leaf = inner if isinstance(inner, keras.layers.Layer) else layer
        if leaf.weights and (type_names is None
                             or any(cls.__name__ in type_names for cls in type(leaf).__mro__)):
            yield leaf
