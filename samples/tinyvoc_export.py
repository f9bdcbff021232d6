"""The ``export`` command of ``samples/tinyvoc.py``: a trained model written for
serving, as a TF SavedModel folder (``serving_default``: one uint8 image in,
detect()'s results out; ``serving_batch``; ``class_names``: the VOC names), a TFLite
file or an ONNX file.

    python samples/tinyvoc.py export --weights=last --out=exported/tinyvoc
    python samples/tinyvoc.py export --weights=run.h5 --out=tinyvoc.tflite --format=tflite
    python samples/tinyvoc.py export --weights=run.h5 --out=tinyvoc.onnx --format=onnx  # needs tf2onnx
    python samples/tinyvoc.py export --weights=last --out=exported/bf16 --precision=mixed_bfloat16

--precision (shared with the other commands) builds the exported graph under that Keras
dtype policy; the signatures' inputs and outputs keep their dtypes.
"""
import os

from mrcnn import fileio
from mrcnn.errors import OutputPathError
from mrcnn.export import FORMATS
from samples.synthetic_tinyvoc import VOC_CLASSES

__all__ = ["add_export_command", "cmd_export"]


def add_export_command(add, inference_model):
    """Registers ``export`` through tinyvoc's ``add(name, func, help, ...)``;
    `inference_model(args)` builds the model and loads --weights."""
    export = add("export", lambda args: cmd_export(args, inference_model),
                 "write the model for serving: a TF SavedModel folder, a TFLite or an ONNX file",
                 dataset=False)
    export.add_argument("--out", required=True, metavar="PATH",
                        help="SavedModel folder (replaced if it holds an earlier export), "
                             ".tflite or .onnx file")
    export.add_argument("--format", default="saved_model", choices=FORMATS,
                        help="saved_model (default), tflite or onnx (needs: pip install tf2onnx)")
    export.add_argument("--min-confidence", type=float, default=None,
                        help="DETECTION_MIN_CONFIDENCE built into the export (default 0.7)")
    return export


def cmd_export(args, inference_model):
    out = os.path.abspath(args.out)
    if args.format != "saved_model":
        fileio.check_output_file(out, "--out file")
    elif os.path.exists(out) and not os.path.isfile(os.path.join(out, "saved_model.pb")):
        raise OutputPathError(f"--out {out} exists and is not a SavedModel folder; "
                              f"give a new folder name")
    else:
        fileio.check_output_folder(os.path.dirname(out), "folder of --out")
    model, weights = inference_model(args)
    path = model.export(out, format=args.format, class_names=["BG"] + list(VOC_CLASSES))
    print(f"Exported {weights or 'the untrained model (--weights none)'} as {args.format} "
          f"({model.config.PRECISION}) to {path}")
    return path
