"""Pictures of meta-learning with matplotlib (an optional dependency: ``pip install
'metafast[plot]'``): adaptation to held-out tasks of one input (sine waves, with their true
function), meta-training curves, and the paths of navigation policies."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .task_batch import TaskBatch
from .tasks import Sinusoid


class PlottingUnavailable(ImportError):
    """matplotlib is not installed."""


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend, or a clear error.

    Returns
    -------
    module
        ``matplotlib.pyplot``.

    Raises
    ------
    PlottingUnavailable
        When matplotlib is not installed; the message says how to install it.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlottingUnavailable(
            "plotting needs matplotlib: install it with pip install 'metafast[plot]'"
        ) from None
    return plt


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over ``window`` values (fewer where the series ends), so that a
    change in the data is drawn where it happens, not ``window`` iterations late.

    Parameters
    ----------
    values : array_like, shape (n,)
        The series.
    window : int
        Values averaged per point (at least 1).

    Returns
    -------
    ndarray, shape (n,)
        Point ``i`` is the mean of ``values[max(0, i - window // 2) : i + (window + 1) // 2]``.
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    index = np.arange(len(values))
    starts = np.maximum(index - window // 2, 0)
    stops = np.minimum(index + (window + 1) // 2, len(values))
    return (sums[stops] - sums[starts]) / (stops - starts)


# The narrowest moving average a training curve is drawn with; shorter runs are drawn as they are.
MIN_WINDOW = 10

LOSS_NAMES = {"mse": "mean squared error", "bce": "binary cross-entropy", "softmax_ce": "cross-entropy"}


def chance_level(loss: str | None, family: Any) -> tuple[float, str] | None:
    """The query loss of guessing, for classification: ln 2 for binary tasks, ln N for N-way."""
    if loss == "bce":
        return float(np.log(2)), "chance (ln 2)"
    ways = getattr(family, "ways", None)
    if loss == "softmax_ce" and ways:
        return float(np.log(ways)), f"chance (ln {ways})"
    return None


def plot_history(ax: Any, histories: dict[str, np.ndarray], loss: str | None = None, family: Any = None,
                 metric: str = "query loss after adaptation") -> None:
    """Meta-training curves of several learners: every iteration's value, faint, and a centred
    moving average over 1/50 of the run (the legend says how many iterations); a run too short
    for an average of ``MIN_WINDOW`` iterations is drawn as it is ("per iteration"). Loss
    curves on a log scale, with the chance level of classification tasks.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    histories : dict of str to ndarray
        Each learner's label and its history (one value per meta-iteration).
    loss : {"mse", "bce", "softmax_ce"}, optional
        The loss, named on the axis.
    family : TaskFamily, optional
        The tasks, named in the title (and their number of classes for the chance level).
    metric : str
        What the histories hold; "mean return after adaptation" for reinforcement learning
        (a linear scale).
    """
    for (label, history), color in zip(histories.items(), ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        iterations = np.arange(1, len(history) + 1)
        window = len(history) // 50
        if window < MIN_WINDOW:  # a short run: its values as they are, an average of 2 would only blur them
            ax.plot(iterations, history, color=color, label=f"{label}, per iteration")
            continue
        ax.plot(iterations, history, color=color, lw=0.5, alpha=0.25)
        ax.plot(iterations, smooth(history, window), color=color, label=f"{label}, moving mean of {window} iterations")
    chance = chance_level(loss, family)
    if chance is not None:
        ax.axhline(chance[0], color="gray", ls="--", lw=1, label=chance[1])
    if loss is not None:
        ax.set_yscale("log")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel(metric + (f" ({LOSS_NAMES[loss]})" if loss in LOSS_NAMES else ""))
    ax.set_title("meta-training" + (f" on {type(family).__name__} tasks" if family is not None else ""))
    ax.legend(fontsize=8)


def check_one_dimensional(task: Any, name: str) -> None:
    """A task :func:`plot_adaptation` can draw: a TaskBatch of real targets, one input and one
    output per point."""
    if not isinstance(task, TaskBatch):
        raise TypeError(f"{name} must be a metafast.TaskBatch, got {type(task).__name__}")
    if task.has_labels or task.input_width != 1 or task.y_support.shape[-1] != 1:
        what = "class labels" if task.has_labels else f"{task.input_width} inputs and {task.y_support.shape[-1]} outputs"
        raise ValueError(f"{name} must have one input and one real target per point to be drawn as a curve, got {what}")


def plot_adaptation(ax: Any, task: TaskBatch, learners: dict[str, tuple[Any, int]], family: Any = None) -> None:
    """One held-out task of one input and one output: its support points, and each learner's
    prediction before and after ``steps`` adaptation steps. For sine tasks (``family`` a
    :class:`~metafast.tasks.Sinusoid`) the true function is drawn too; for any other family,
    whose true function the figure does not know, the query points are drawn instead.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    task : TaskBatch
        Its first task is drawn; inputs and targets of width 1.
    learners : dict of str to (learner, int)
        Each learner's label, the learner (with ``adapt`` and ``predict``) and the number of
        adaptation steps to show; at most three.
    family : TaskFamily, optional
        The family the task came from.
    """
    check_one_dimensional(task, "task")
    x_support, y_support = task.x_support[0, :, 0], task.y_support[0, :, 0]
    x_query, y_query = task.x_query[0, :, 0], task.y_query[0, :, 0]
    x_all, y_all = np.concatenate([x_support, x_query]), np.concatenate([y_support, y_query])
    grid = np.linspace(x_all.min() - 0.5, x_all.max() + 0.5, 200)[:, None]
    if isinstance(family, Sinusoid):
        # A sine task is noiseless and A sin(x + s phi) = a sin x + b cos x: the least-squares fit
        # through the task's own points is its true function.
        coef, *_ = np.linalg.lstsq(np.column_stack([np.sin(x_all), np.cos(x_all)]), y_all, rcond=None)
        ax.plot(grid[:, 0], coef[0] * np.sin(grid[:, 0]) + coef[1] * np.cos(grid[:, 0]), color="black", lw=2,
                label="true")
    else:
        ax.scatter(x_query, y_query, facecolors="none", edgecolors="gray", zorder=3, label="query")
    ax.scatter(x_support, y_support, color="black", zorder=3, label="support")
    for (label, (learner, steps)), color in zip(learners.items(), ("tab:blue", "tab:orange", "tab:green")):
        params = learner.adapt(task.x_support[0], task.y_support[0], steps=steps)
        ax.plot(grid[:, 0], learner.predict(grid), color=color, ls=":", label=f"{label}, before")
        ax.plot(grid[:, 0], learner.predict(grid, params), color=color, label=f"{label}, {steps} step{'s' * (steps != 1)}")
    ax.set_xlabel("x")


def plot_sine_adaptation(ax: Any, task: TaskBatch, learners: dict[str, tuple[Any, int]]) -> None:
    """One held-out sine task: its support points, the sine it came from, and each learner's
    prediction before and after ``steps`` adaptation steps.

    Kept for compatibility: it is :func:`plot_adaptation` with a
    :class:`~metafast.tasks.Sinusoid` family, which draws any task of one input and one output.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    task : TaskBatch
        One sine task (its first task is drawn), inputs and targets of width 1.
    learners : dict of str to (learner, int)
        As in :func:`plot_adaptation`.
    """
    plot_adaptation(ax, task, learners, Sinusoid())


def adaptation_figure(tasks: Sequence[TaskBatch], learners: dict[str, tuple[Any, int]],
                      histories: dict[str, np.ndarray], path: str, family: Any = None) -> None:
    """Held-out tasks on top, meta-training curves below; written to ``path`` (PNG).

    Parameters
    ----------
    tasks : sequence of TaskBatch
        One-task batches of one input and one output, a column each (see
        :func:`plot_adaptation`).
    learners : dict of str to (learner, int)
        As in :func:`plot_adaptation`.
    histories : dict of str to ndarray
        As in :func:`plot_history`.
    path : str
        The PNG file to write.
    family : TaskFamily, optional
        The tasks' family, named in the title of the curves; the true function is drawn for
        a :class:`~metafast.tasks.Sinusoid` only.
    """
    for index, task in enumerate(tasks):  # before any figure is made
        check_one_dimensional(task, f"tasks[{index}]")
    loss = next((getattr(learner, "loss", None) for learner, _ in learners.values()), None) or "mse"
    plt = pyplot()
    figure = plt.figure(figsize=(4.2 * max(len(tasks), 1), 7.5), layout="constrained")
    grid = figure.add_gridspec(2, max(len(tasks), 1))
    for column, task in enumerate(tasks):
        ax = figure.add_subplot(grid[0, column])
        plot_adaptation(ax, task, learners, family)
        ax.set_title(f"held-out task {column + 1}")
        if column == 0:
            ax.set_ylabel("y")
            ax.legend(fontsize=7, loc="lower left")
    plot_history(figure.add_subplot(grid[1, :]), histories, loss=loss, family=family)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def history_figure(histories: dict[str, np.ndarray], path: str, loss: str | None = None, family: Any = None) -> None:
    """Meta-training curves alone, written to ``path`` (PNG).

    Parameters
    ----------
    histories : dict of str to ndarray
        As in :func:`plot_history`.
    path : str
        The PNG file to write.
    loss, family : optional
        As in :func:`plot_history`.
    """
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    plot_history(ax, histories, loss=loss, family=family)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def mean_paths(policy: Any, theta: np.ndarray, goals: np.ndarray, env: Any) -> np.ndarray:
    """The paths of a navigation policy that always takes its mean action, from the origin.

    Parameters
    ----------
    policy : metafast.rl.GaussianPolicy
        The policy; only its mean network is used.
    theta : ndarray
        Policy parameters (the mean network's, then log_std).
    goals : ndarray, shape (goals, 2)
        One path per goal.
    env : metafast.rl.Navigation2D
        The environment (its ``step`` and ``horizon``).

    Returns
    -------
    ndarray, shape (goals, env.horizon + 1, 2)
        Positions after 0, 1, ... steps; a path stays put once it has reached its goal.
    """
    positions = np.zeros((len(goals), 2))
    params = theta[: policy.model.num_params].astype(np.float64)
    paths = [positions.copy()]
    active = np.ones(len(goals), dtype=bool)
    for _ in range(env.horizon):
        actions = policy.model.forward(params, positions)
        moved, _, reached = env.step(positions, actions, goals)
        positions = np.where(active[:, None], moved, positions)
        active &= ~reached
        paths.append(positions.copy())
    return np.stack(paths, axis=1)


def navigation_figure(learner: Any, goals: np.ndarray, steps: int, path: str) -> None:
    """For each goal: the paths of the policy's mean before (dashed, gray, ending in a cross)
    and after ``steps`` adaptation steps, and the meta-training curve; written to ``path`` (PNG).

    Parameters
    ----------
    learner : metafast.rl.MetaSGDRL
        A learner on :class:`metafast.rl.Navigation2D`.
    goals : ndarray, shape (goals, 2)
        A column per goal; goal ``i`` adapts with noise seed ``i``.
    steps : int
        Adaptation steps.
    path : str
        The PNG file to write.
    """
    plt = pyplot()
    figure = plt.figure(figsize=(4.2 * len(goals), 7.5), layout="constrained")
    grid = figure.add_gridspec(2, len(goals))
    before = mean_paths(learner.policy, learner.theta, goals, learner.env)
    afters = [mean_paths(learner.policy, learner.adapt(goal, steps=steps, seed=column), goal[None], learner.env)[0]
              for column, goal in enumerate(goals)]
    # One frame for every panel, holding every path and goal with a margin.
    reach = max(0.6, float(np.abs(before).max()), max(float(np.abs(a).max()) for a in afters),
                float(np.abs(goals).max())) * 1.1
    for column, (goal, after) in enumerate(zip(goals, afters)):
        ax = figure.add_subplot(grid[0, column])
        # Before adaptation the policy does not know the goal, and a meta-trained one often stays
        # near the start: its path is drawn above the start's marker and ends in a cross, so
        # that it shows however short it is.
        ax.plot(*before[column].T, ls="--", color="tab:gray", marker="X", markevery=[len(before[column]) - 1],
                zorder=4, label="before adaptation")
        ax.plot(*after.T, color="tab:blue", label=f"after {steps} step{'s' * (steps != 1)}")
        ax.scatter([0], [0], facecolors="none", edgecolors="black", marker="o", s=60, zorder=3, label="start")
        ax.scatter([goal[0]], [goal[1]], color="tab:red", marker="*", s=150, zorder=3, label="goal")
        ax.set_xlim(-reach, reach)
        ax.set_ylim(-reach, reach)
        ax.set_aspect("equal")
        ax.set_xlabel("position x")
        ax.set_title(f"goal {column + 1}: ({goal[0]:.2f}, {goal[1]:.2f})")
        if column == 0:
            ax.set_ylabel("position y")
            ax.legend(fontsize=7, loc="lower left")
    plot_history(figure.add_subplot(grid[1, :]), {"Meta-SGD": learner.history}, family=learner.env,
                 metric="mean return after adaptation")
    figure.savefig(path, dpi=110)
    plt.close(figure)
