"""Exceptions of metafast beyond ValueError and TypeError."""

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
