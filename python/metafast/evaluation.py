"""The evaluation protocol: query loss (and accuracy) after 0, 1, ... adaptation steps on
held-out tasks, as a mean with a 95% confidence interval over tasks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def _mean_and_ci(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and half-widths of their normal 95% intervals (NaN for one task)."""
    count = samples.shape[0]
    with np.errstate(invalid="ignore", over="ignore"):  # diverged tasks have infinite loss
        mean = samples.mean(axis=0)
        if count < 2:
            return mean, np.full_like(mean, np.nan)
        return mean, Z_95 * samples.std(axis=0, ddof=1) / np.sqrt(count)


@dataclass(frozen=True)
class EvaluationReport:
    """Mean query loss (and accuracy, for classification) after each number of adaptation
    steps, with 95% confidence half-widths (``mean ± ci95``) over ``num_tasks`` tasks.

    ``str(report)`` is a table of the rows; :meth:`as_dict` gives them as numbers.

    Attributes
    ----------
    steps : tuple of int
        The numbers of adaptation steps, ascending.
    loss, loss_ci95 : ndarray, shape (len(steps),)
        Mean over tasks of what ``metric`` names, and the half-width of its normal 95%
        confidence interval (NaN for one task). A task whose adaptation diverged counts as
        an infinite loss, so the mean is then infinite too.
    accuracy, accuracy_ci95 : ndarray or None
        The same for the query accuracy (``bce`` and ``softmax_ce``), else None.
    num_tasks : int
        Tasks evaluated.
    metric : str
        What ``loss`` holds: ``"query loss"``, or ``"return"`` for reinforcement learning.
    """

    steps: tuple[int, ...]
    loss: np.ndarray
    loss_ci95: np.ndarray
    accuracy: Optional[np.ndarray]
    accuracy_ci95: Optional[np.ndarray]
    num_tasks: int
    metric: str = "query loss"  # what the `loss` fields hold ("return" for reinforcement learning)

    @classmethod
    def from_samples(cls, steps: tuple[int, ...], losses: np.ndarray, accuracies: Optional[np.ndarray],
                     metric: str = "query loss") -> EvaluationReport:
        """The report of per-task results.

        Parameters
        ----------
        steps : tuple of int
            The numbers of adaptation steps, one per column of the samples.
        losses : ndarray, shape (num_tasks, len(steps))
            Each task's loss (or return) after each number of steps.
        accuracies : ndarray of the same shape, or None
            Each task's accuracy, for classification.
        metric : str
            What ``losses`` holds.

        Returns
        -------
        EvaluationReport
            Means and 95% half-widths over the tasks.
        """
        loss, loss_ci = _mean_and_ci(losses)
        accuracy = accuracy_ci = None
        if accuracies is not None:
            accuracy, accuracy_ci = _mean_and_ci(accuracies)
        return cls(tuple(steps), loss, loss_ci, accuracy, accuracy_ci, losses.shape[0], metric)

    def as_dict(self) -> dict[int, dict[str, Any]]:
        """The rows of the report as plain numbers.

        Returns
        -------
        dict
            ``{steps: {"loss": ..., "loss_ci95": ..., ["accuracy": ..., "accuracy_ci95": ...]}}``
            for each number of steps, as Python floats.
        """
        rows: dict[int, dict[str, Any]] = {}
        for i, step in enumerate(self.steps):
            row = {"loss": float(self.loss[i]), "loss_ci95": float(self.loss_ci95[i])}
            if self.accuracy is not None and self.accuracy_ci95 is not None:
                row.update(accuracy=float(self.accuracy[i]), accuracy_ci95=float(self.accuracy_ci95[i]))
            rows[step] = row
        return rows

    def __str__(self) -> str:
        header = f"{'steps':>5}  {self.metric:>22}"
        if self.accuracy is not None:
            header += f"  {'accuracy':>18}"
        lines = [f"evaluation on {self.num_tasks} held-out tasks (mean ± 95% CI)", header]
        for step, row in self.as_dict().items():
            line = f"{step:>5}  {row['loss']:>11.4g} ± {row['loss_ci95']:<8.2g}"
            if "accuracy" in row:
                line += f"  {row['accuracy']:>8.3f} ± {row['accuracy_ci95']:<7.2g}"
            lines.append(line)
        return "\n".join(lines)
