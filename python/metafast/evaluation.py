"""The evaluation protocol: query loss (and accuracy) after 0, 1, ... adaptation steps on
held-out tasks, as a mean with a 95% confidence interval over tasks."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional

import numpy as np

from . import _validation

Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal
# An adaptation whose query loss grew beyond this many times the loss before it has diverged
# (it overshoots without bound long before float32 overflows).
DIVERGED_GROWTH = 1e6


def _mean_and_ci(samples: np.ndarray, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the mean of the kept rows and the half-width of its normal 95% interval
    (NaN with fewer than two rows kept; the mean is NaN with none)."""
    mean, half_width = np.full(samples.shape[1], np.nan), np.full(samples.shape[1], np.nan)
    for column in range(samples.shape[1]):
        values = samples[kept[:, column], column]
        if values.size:
            mean[column] = values.mean()
        if values.size >= 2:
            half_width[column] = Z_95 * values.std(ddof=1) / np.sqrt(values.size)
    return mean, half_width


def _same_field(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):  # an array against None is a field that differs
        return _validation.same_array(np.asarray(a), np.asarray(b))
    return bool(a == b)


@dataclass(frozen=True)
class EvaluationReport:
    """Mean query loss (and accuracy, for classification) after each number of adaptation
    steps, with 95% confidence half-widths (``mean ± ci95``) over ``num_tasks`` tasks.

    An adaptation that diverges (steps far beyond those of meta-training, or step sizes too
    large for the task: a query loss that is not finite, or above a million times the task's
    loss before adaptation) is counted apart: ``diverged`` is the fraction of tasks it
    happened to, and the means are over the other tasks. The table
    shows that fraction beside the means whenever it is not zero.

    ``str(report)`` is a table of the rows; :meth:`as_dict` gives them as numbers.

    Attributes
    ----------
    steps : tuple of int
        The numbers of adaptation steps, ascending.
    loss, loss_ci95 : ndarray, shape (len(steps),)
        Mean of what ``metric`` names over the tasks whose adaptation did not diverge, and
        the half-width of its normal 95% confidence interval (NaN with fewer than two such
        tasks; the mean is NaN when every task diverged).
    accuracy, accuracy_ci95 : ndarray or None
        The same for the query accuracy (``bce`` and ``softmax_ce``), else None.
    num_tasks : int
        Tasks evaluated.
    metric : str
        What ``loss`` holds: ``"query loss"``, or ``"return"`` for reinforcement learning.
    diverged : ndarray, shape (len(steps),)
        Fraction of the tasks whose adaptation diverged after each number of steps.
    task_losses, task_accuracies : ndarray, shape (num_tasks, len(steps)), or None
        Each task's value (inf where it diverged) and accuracy, for paired comparisons on the
        same tasks; accuracies None without them.
    """

    steps: tuple[int, ...]
    loss: np.ndarray
    loss_ci95: np.ndarray
    accuracy: Optional[np.ndarray]
    accuracy_ci95: Optional[np.ndarray]
    num_tasks: int
    metric: str = "query loss"  # what the `loss` fields hold ("return" for reinforcement learning)
    diverged: Optional[np.ndarray] = None
    task_losses: Optional[np.ndarray] = None
    task_accuracies: Optional[np.ndarray] = None

    @classmethod
    def from_samples(cls, steps: tuple[int, ...], losses: np.ndarray, accuracies: Optional[np.ndarray],
                     metric: str = "query loss", before: Optional[np.ndarray] = None) -> EvaluationReport:
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
        before : ndarray, shape (num_tasks,), optional
            Each task's loss before adaptation: a loss above ``DIVERGED_GROWTH`` times it
            marks a diverged adaptation too.

        Returns
        -------
        EvaluationReport
            Means and 95% half-widths over the tasks that did not diverge (a loss that is not
            finite, or grew beyond ``DIVERGED_GROWTH`` times ``before``, marks a diverged task).
        """
        losses = _validation.as_array(losses, "losses", np.float64)
        kept = np.isfinite(losses)
        if before is not None:
            with np.errstate(invalid="ignore"):
                kept &= ~(losses > DIVERGED_GROWTH * _validation.as_array(before, "before", np.float64)[:, None])
        loss, loss_ci = _mean_and_ci(losses, kept)
        accuracy = accuracy_ci = None
        if accuracies is not None:
            accuracies = _validation.as_array(accuracies, "accuracies", np.float64)
            accuracy, accuracy_ci = _mean_and_ci(accuracies, kept)
        diverged = 1.0 - kept.mean(axis=0)
        return cls(tuple(steps), loss, loss_ci, accuracy, accuracy_ci, losses.shape[0], metric, diverged, losses,
                   accuracies)

    def __repr__(self) -> str:
        def numbers(values: Optional[np.ndarray]) -> str:
            if values is None:
                return "None"
            shown = [f"{v:.4g}" for v in values[:8]]
            return f"[{', '.join(shown)}{', ...' if len(values) > 8 else ''}]"

        return (f"EvaluationReport(num_tasks={self.num_tasks}, steps={self.steps}, metric={self.metric!r}, "
                f"loss={numbers(self.loss)}, accuracy={numbers(self.accuracy)}, diverged={numbers(self.diverged)})")

    def __eq__(self, other: object) -> bool:
        """Reports are equal when every field is (arrays: same dtypes, shapes and values, NaN
        equal to NaN)."""
        if not isinstance(other, EvaluationReport):
            return NotImplemented
        return all(_same_field(getattr(self, field.name), getattr(other, field.name)) for field in fields(self))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt through the constructor (pickle, copy).
        return (type(self), tuple(getattr(self, field.name) for field in fields(self)))

    def as_dict(self) -> dict[int, dict[str, Any]]:
        """The rows of the report as plain numbers.

        Returns
        -------
        dict
            ``{steps: {"loss": ..., "loss_ci95": ..., ["accuracy": ..., "accuracy_ci95": ...,]
            "diverged": ...}}`` for each number of steps, as Python floats.
        """
        rows: dict[int, dict[str, Any]] = {}
        diverged = np.zeros(len(self.steps)) if self.diverged is None else self.diverged
        for i, step in enumerate(self.steps):
            row = {"loss": float(self.loss[i]), "loss_ci95": float(self.loss_ci95[i])}
            if self.accuracy is not None and self.accuracy_ci95 is not None:
                row.update(accuracy=float(self.accuracy[i]), accuracy_ci95=float(self.accuracy_ci95[i]))
            row["diverged"] = float(diverged[i])
            rows[step] = row
        return rows

    def cell(self, row: int) -> str:
        """Row ``row``'s mean ± 95% half-width of ``loss`` as the table shows it, followed by
        the fraction of diverged tasks when there are any (``"all diverged"`` if every task
        did)."""
        return self._cell(row, with_accuracy=False)

    def _cell(self, row: int, with_accuracy: bool) -> str:
        values = self.as_dict()[self.steps[row]]
        if values["diverged"] == 1.0:
            return f"{'all diverged':>22}"
        text = f"{values['loss']:>11.4g} ± {values['loss_ci95']:<8.2g}"
        if with_accuracy and "accuracy" in values:
            text += f"  {values['accuracy']:>8.3f} ± {values['accuracy_ci95']:<7.2g}"
        return text + (f"  ({values['diverged']:.1%} diverged)" if values["diverged"] else "")

    def __str__(self) -> str:
        header = f"{'steps':>5}  {self.metric:>22}"
        if self.accuracy is not None:
            header += f"  {'accuracy':>18}"
        lines = [f"evaluation on {self.num_tasks} held-out tasks (mean ± 95% CI)", header]
        lines += [f"{step:>5}  {self._cell(row, with_accuracy=True)}".rstrip() for row, step in enumerate(self.steps)]
        if self.diverged is not None and self.diverged.any():
            lines.append("(means over the tasks whose adaptation did not diverge)")
        return "\n".join(lines)
