"""The backbone registry: what `Config.BACKBONE` names.

A backbone is a function with Matterport's contract,

    build(input_image, stage5=True, train_bn=False, norm="batch", groups=32) -> [C1, C2, C3, C4, C5]

(C2..C5 at strides 4, 8, 16, 32, each side exactly twice the next one's; C1 may
be None), registered with everything else the package needs to know about it:
the strides of P2..P6, the layer-name regexes of its stages for the training
presets "3+", "4+", "5+", and the normalisations it supports. `Config`
validation, the graph build and `training.layer_regex` all ask this module, so
adding a backbone is one `register(BackboneSpec(...))` here.

`Config.BACKBONE` may instead be a callable with Matterport's contract
(`BACKBONE(input_image, stage5=True, train_bn=...)`); then `BACKBONE_STRIDES`
(and optionally `COMPUTE_BACKBONE_SHAPE(image_shape)`) describe its maps, and
the stage presets are not available (pass a regex to `train(layers=...)`).

This module imports Keras only when a backbone is built, so `config` can ask it.
"""
import dataclasses

__all__ = ["BackboneSpec", "register", "get", "names", "build", "stage_regex", "DEFAULT_STRIDES"]

# P2..P6 of an FPN over C2..C5 (P6 subsamples P5).
DEFAULT_STRIDES = (4, 8, 16, 32, 64)


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone (see the module docstring for `build`'s contract).

    stage_layers: {"3+": regex, "4+": regex, "5+": regex} of the backbone's own
        layers from that stage on (the heads are added by the presets).
    """
    name: str
    build: object
    stage_layers: dict
    strides: tuple = DEFAULT_STRIDES
    norms: tuple = ("batch",)


_REGISTRY = {}


def register(spec):
    """Add `spec` under `spec.name` (replacing an earlier one of that name)."""
    if set(spec.stage_layers) != {"3+", "4+", "5+"}:
        raise ValueError(f"backbone {spec.name!r}: stage_layers needs the keys '3+', '4+', '5+'")
    _REGISTRY[spec.name] = spec
    return spec


def names():
    return sorted(_REGISTRY)


def get(name):
    """The spec of a registered backbone; ValueError naming the choices otherwise."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; registered: {names()} "
                         "(or give a callable with Matterport's contract)")
    return _REGISTRY[name]


def build(backbone, input_image, train_bn=False, norm="batch", groups=32):
    """[C1..C5] of `backbone` (a registered name or a Matterport-style callable)."""
    if callable(backbone):
        return backbone(input_image, stage5=True, train_bn=train_bn)
    return get(backbone).build(input_image, stage5=True, train_bn=train_bn, norm=norm,
                               groups=groups)


def stage_regex(backbone, preset):
    """Regex of `backbone`'s layers from stage `preset` ("3+", "4+", "5+") on."""
    if callable(backbone):
        raise ValueError(f"layers={preset!r} needs a registered backbone; with a callable "
                         "BACKBONE pass a regex of its layer names")
    return get(backbone).stage_layers[preset]


############################################################
#  ResNet-50/101 (Matterport's, mrcnn.layers.backbone)
############################################################

def _resnet(depth):
    def build_resnet(input_image, stage5=True, train_bn=False, norm="batch", groups=32):
        from mrcnn.layers.backbone import resnet_graph
        return resnet_graph(input_image, f"resnet{depth}", stage5=stage5, train_bn=train_bn,
                            norm=norm, groups=groups)
    return build_resnet


def _resnet_stages(first):
    return "|".join(f"(res{s}.*)|(bn{s}.*)" for s in range(first, 6))


_RESNET_STAGES = {"3+": _resnet_stages(3), "4+": _resnet_stages(4), "5+": _resnet_stages(5)}
for _depth in (50, 101):
    register(BackboneSpec(f"resnet{_depth}", _resnet(_depth), _RESNET_STAGES,
                          norms=("batch", "group")))


############################################################
#  MobileNetV3-Small (keras.applications)
############################################################

# Last layer of each stride in keras.applications.MobileNetV3Small: blocks 0 | 1-2 |
# 3-7 | 8-10 end at strides 4 | 8 | 16 | 32.
_MOBILENET_V3_SMALL_OUTPUTS = ("expanded_conv_project_bn", "expanded_conv_2_add",
                               "expanded_conv_7_add", "expanded_conv_10_add")


def _mobilenet_v3_small(input_image, stage5=True, train_bn=False, norm="batch", groups=32):
    """keras.applications.MobileNetV3Small as a nested model "mobilenet_v3_small",
    randomly initialised (ImageNet weights expect inputs in [-1, 1], not molded
    images). Its BatchNorm layers follow the training flag whatever `train_bn` is.
    """
    import keras
    if norm != "batch":
        raise ValueError(f"mobilenet_v3_small: norm must be 'batch', got {norm!r}")
    app = keras.applications.MobileNetV3Small(
        input_tensor=keras.Input(shape=tuple(input_image.shape[1:])), include_top=False,
        weights=None, include_preprocessing=False)
    outputs = [app.get_layer(name).output for name in _MOBILENET_V3_SMALL_OUTPUTS]
    features = keras.Model(app.inputs, outputs, name="mobilenet_v3_small")(input_image)
    return [None] + list(features)


register(BackboneSpec(
    "mobilenet_v3_small", _mobilenet_v3_small,
    {"3+": r"expanded_conv_([1-9]|10)_.*", "4+": r"expanded_conv_([3-9]|10)_.*",
     "5+": r"expanded_conv_([89]|10)_.*"}))
