"""Learning-rate schedules: linear warm-up, then constant, step drops or cosine.

The schedule is a ``keras.optimizers.schedules.LearningRateSchedule`` (registered,
with ``get_config``), so an optimizer using it serialises. It maps the optimizer's
step counter to a learning rate. ``MaskRCNN.train`` compiles a new optimizer on
every call (Matterport's heads-then-all recipe calls it twice), so its counter
starts at 0 each time; ``initial_step`` (the steps of the epochs already done)
turns it into the run's global step, which warm-up and step drops are counted in:
a second ``train()`` call, or a resumed run, does not warm up again.

With ``g`` the global step and ``base`` the learning rate of the call:

- warm-up: for ``g < warmup_steps`` the rate is multiplied by
  ``warmup_factor + (1 - warmup_factor) * g / warmup_steps`` (torchvision's and
  Detectron2's linear warm-up).
- "constant": ``base``.
- "step": ``base * drop ** k``, ``k`` the number of ``boundaries`` (global steps)
  with ``g >= boundary``.
- "cosine": ``base * (1 + cos(pi * p)) / 2``, ``p = (g - start) / (end - start)``
  clipped to [0, 1], from ``start`` (this call's first step) to ``end`` (its last):
  each ``train()`` call decays from its own rate to 0.
"""
import math

import keras
from keras import ops

SCHEDULES = ("constant", "step", "cosine")


@keras.saving.register_keras_serializable(package="mrcnn")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then a constant, step or cosine schedule (module docstring).

    Args:
        base_learning_rate: the rate after warm-up (before any drop).
        schedule: "constant", "step" or "cosine".
        warmup_steps: global steps of linear warm-up (0: none).
        warmup_factor: the rate at global step 0, as a fraction of the base rate.
        boundaries: "step": global steps at which the rate is multiplied by `drop`.
        drop: "step": the factor of each drop.
        initial_step: global step of the optimizer's step 0.
        total_steps: "cosine": global step at which the rate reaches 0.
    """

    def __init__(self, base_learning_rate, schedule="constant", warmup_steps=0,
                 warmup_factor=0.001, boundaries=(), drop=0.1, initial_step=0, total_steps=None):
        if schedule not in SCHEDULES:
            raise ValueError(f"WarmupSchedule: schedule must be one of {SCHEDULES}, got {schedule!r}")
        if warmup_steps < 0 or not 0 <= warmup_factor <= 1:
            raise ValueError(f"WarmupSchedule: need warmup_steps >= 0 and 0 <= warmup_factor <= 1, "
                             f"got {warmup_steps}, {warmup_factor}")
        if schedule == "cosine" and (total_steps is None or total_steps <= initial_step):
            raise ValueError(f"WarmupSchedule: cosine needs total_steps > initial_step "
                             f"({initial_step}), got {total_steps}")
        self.base_learning_rate = float(base_learning_rate)
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)
        self.boundaries = [int(b) for b in boundaries]
        self.drop = float(drop)
        self.initial_step = int(initial_step)
        self.total_steps = None if total_steps is None else int(total_steps)

    def __call__(self, step):
        g = ops.cast(step, "float32") + self.initial_step
        rate = ops.convert_to_tensor(self.base_learning_rate, "float32")
        if self.schedule == "step":
            drops = sum(ops.cast(g >= b, "float32") for b in self.boundaries) if self.boundaries else 0.0
            rate = rate * ops.power(self.drop, drops)
        elif self.schedule == "cosine":
            span = self.total_steps - self.initial_step
            progress = ops.clip((g - self.initial_step) / span, 0.0, 1.0)
            rate = rate * 0.5 * (1.0 + ops.cos(math.pi * progress))
        if self.warmup_steps:
            alpha = ops.minimum(g / self.warmup_steps, 1.0)
            rate = rate * (self.warmup_factor + (1.0 - self.warmup_factor) * alpha)
        return rate

    def get_config(self):
        return {"base_learning_rate": self.base_learning_rate, "schedule": self.schedule,
                "warmup_steps": self.warmup_steps, "warmup_factor": self.warmup_factor,
                "boundaries": list(self.boundaries), "drop": self.drop,
                "initial_step": self.initial_step, "total_steps": self.total_steps}


def schedule_from_config(config, learning_rate, initial_epoch, epochs):
    """The `WarmupSchedule` of one ``train()`` call, or the plain float `learning_rate`
    when the config asks for neither warm-up nor a schedule (Matterport's behaviour).

    config: LR_SCHEDULE, LR_STEPS (epochs), LR_DROP, LEARNING_RATE_WARMUP_STEPS,
        LEARNING_RATE_WARMUP_FACTOR and STEPS_PER_EPOCH.
    initial_epoch, epochs: the epochs done before the call and at its end.
    """
    if config.LR_SCHEDULE == "constant" and not config.LEARNING_RATE_WARMUP_STEPS:
        return learning_rate
    steps = config.STEPS_PER_EPOCH
    return WarmupSchedule(
        learning_rate, schedule=config.LR_SCHEDULE,
        warmup_steps=config.LEARNING_RATE_WARMUP_STEPS,
        warmup_factor=config.LEARNING_RATE_WARMUP_FACTOR,
        boundaries=[int(e) * steps for e in config.LR_STEPS], drop=config.LR_DROP,
        initial_step=initial_epoch * steps, total_steps=epochs * steps)
