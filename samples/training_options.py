"""Command-line options of a training command: learning-rate warm-up and schedule,
a training seed and per-epoch COCO mAP (used by ``samples/tinyvoc.py train``).

- ``add_training_options(parser)``: the options.
- ``schedule_overrides(args)``: the Config attributes they set.
- ``map_callbacks(args, model, val, inference_config)``: the mAP callback they ask for.
- ``seed_initial_weights(args)``: with --train-seed, the model built next starts alike.
"""
from mrcnn.errors import ConfigError
from samples.synthetic_tinyvoc import int_at_least

__all__ = ["add_training_options", "schedule_overrides", "map_callbacks", "seed_initial_weights"]


def add_training_options(parser):
    """Adds --warmup-steps, --lr-schedule, --lr-steps, --lr-drop, --train-rois, --train-seed,
    --epoch-map and --keep-best to an argparse (sub)parser."""
    parser.add_argument("--warmup-steps", type=int_at_least(0), default=None, metavar="N",
                        help="linear learning-rate warm-up over the run's first N steps "
                             "(config LEARNING_RATE_WARMUP_STEPS, default 0)")
    parser.add_argument("--lr-schedule", choices=("constant", "step", "cosine"), default=None,
                        help="constant, step (x --lr-drop after each --lr-steps epoch) or cosine "
                             "(to 0 at the end of each stage) (config LR_SCHEDULE, default constant)")
    parser.add_argument("--lr-steps", type=int_at_least(1), nargs="+", default=None, metavar="EPOCH",
                        help="epochs (counted over the whole run) after which the step "
                             "schedule drops the rate (config LR_STEPS)")
    parser.add_argument("--lr-drop", type=float, default=None,
                        help="factor of each step drop (config LR_DROP, default 0.1)")
    parser.add_argument("--train-rois", type=int_at_least(1), default=None, metavar="N",
                        help="ROIs sampled per image to train the heads (config "
                             "TRAIN_ROIS_PER_IMAGE). Fewer make steps cheaper: the mask head "
                             "runs on every positive ROI, up to a third of them")
    parser.add_argument("--train-seed", type=int, default=None, metavar="SEED",
                        help="make training repeatable: initial weights, data order, "
                             "augmentation, ROI sampling and deterministic TensorFlow kernels "
                             "(default: random; --seed only fixes the train/val split)")
    parser.add_argument("--epoch-map", type=int_at_least(0), default=0, metavar="N",
                        help="after each epoch, COCO bbox/segm mAP of the first N validation "
                             "images, as val_*_AP* columns of training_log.csv and in "
                             "TensorBoard (default 0: off)")
    parser.add_argument("--keep-best", action="store_true",
                        help="with --epoch-map: keep the checkpoint of the best segm AP as "
                             "mask_rcnn_<name>_best.h5 in the run folder")


def schedule_overrides(args):
    """Config attributes set by --warmup-steps, --lr-schedule, --lr-steps, --lr-drop and
    --train-rois."""
    options = {"warmup_steps": "LEARNING_RATE_WARMUP_STEPS", "lr_schedule": "LR_SCHEDULE",
               "lr_steps": "LR_STEPS", "lr_drop": "LR_DROP", "train_rois": "TRAIN_ROIS_PER_IMAGE"}
    overrides = {}
    for option, attr in options.items():
        value = getattr(args, option, None)
        if value is not None:
            overrides[attr] = tuple(value) if isinstance(value, list) else value
    return overrides


def map_callbacks(args, model, val, inference_config):
    """[CocoMAPCallback] for --epoch-map N, else []. Raises ConfigError for --keep-best
    without --epoch-map, or --epoch-map without a validation split."""
    if not args.epoch_map:
        if args.keep_best:
            raise ConfigError("--keep-best needs --epoch-map N (the mAP that decides 'best')")
        return []
    if val is None:
        raise ConfigError("--epoch-map needs a validation split (--val-fraction > 0)")
    from mrcnn.callbacks import CocoMAPCallback
    from mrcnn.model import MaskRCNN

    inference = MaskRCNN("inference", inference_config, args.logs)
    return [CocoMAPCallback(model, inference, val, limit=args.epoch_map, keep_best=args.keep_best)]


def seed_initial_weights(args):
    """With --train-seed, seeds Keras' global generators before the model is built.

    ``MaskRCNN.train(seed=...)`` makes a run repeat from its first step on, but the
    weights that no file provides (all of them with --weights none, the heads with
    imagenet) are drawn when the layers are built, before train() is called."""
    if args.train_seed is not None:
        import keras

        keras.utils.set_random_seed(args.train_seed)
