"""Exceptions and warnings of metafast beyond ValueError and TypeError."""

from __future__ import annotations


class TrainingDivergedError(FloatingPointError):
    """A meta-iteration produced a non-finite loss, gradient or parameter.

    The learner keeps the parameters and optimizer state of the last finite iteration;
    ``iteration`` is the index of the meta-iteration that failed.
    """

    def __init__(self, iteration: int, detail: str = "", hint: str = "a smaller meta_lr or alpha_init") -> None:
        self.iteration = iteration
        kept = "its initial parameters" if iteration == 0 else f"the parameters of iteration {iteration - 1}"
        super().__init__(
            f"training diverged at meta-iteration {iteration}: the loss or the meta-gradient is not "
            f"finite{detail}; the learner keeps {kept} (try {hint})"
        )


class BeyondTrainedStepsWarning(UserWarning):
    """Adaptation with more steps than a Meta-SGD learner meta-trained with diverged.

    Meta-SGD learns its step sizes alpha for exactly ``inner_steps`` steps; beyond them it
    repeats alpha (with ``alpha_per_step``, its last row), an extrapolation: on a convex
    problem the extra steps may still help, elsewhere the learned steps overshoot. ``evaluate``
    warns when tasks adapted beyond the trained steps diverged, ``adapt`` when its result is
    not finite. To adapt with J steps, meta-train with ``inner_steps=J``.
    """
