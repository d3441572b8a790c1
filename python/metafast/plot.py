"""Pictures of meta-learning with matplotlib (an optional dependency: ``pip install
'metafast[plot]'``): adaptation to held-out tasks of one input (sine waves, with their true
function), meta-training curves, the paths of navigation policies, and few-shot episodes of
images with the classes predicted for their queries."""

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


def _episodes(images: Any, labels: Any, name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (episodes, rows, C, H, W) and labels (episodes, rows), from one episode's arrays
    (rows, C, H, W) and (rows,) or several episodes'."""
    labels = np.asarray(labels)
    images = np.asarray(images)
    if labels.ndim == 1:
        labels, images = labels[None], images[None]
    if labels.ndim != 2 or labels.dtype.kind not in "iu" or np.any(labels < 0):
        raise ValueError(f"{labels_name} must hold class indices (non-negative integers), shape (rows,) or "
                         f"(episodes, rows), got dtype {labels.dtype} and shape {labels.shape}")
    if images.ndim != 5 or images.shape[:2] != labels.shape or images.shape[2] not in (1, 3):
        raise ValueError(f"{name} must have shape {(*labels.shape, 'C', 'H', 'W')} (an image of 1 or 3 channels "
                         f"per label of {labels_name}), got {images.shape}")
    return images, labels


def image_episodes(support_images: Any, support_labels: Any, query_images: Any, query_labels: Any,
                   predictions: Any, path: str, max_query: int = 5, cmap: str = "gray_r") -> None:
    """Few-shot episodes of images, side by side, written to ``path`` (PNG): in each, one row
    per class with its support images, then, past a gap, up to ``max_query`` of its query
    images, each framed and labelled with the class predicted for it, green where it is
    right and red where it is wrong. The title counts every query, shown or not.

    Parameters
    ----------
    support_images : array_like, shape (episodes, rows, C, H, W) or (rows, C, H, W)
        The support images (C = 1, drawn with ``cmap`` over the episode's range of values, or
        C = 3, RGB in [0, 1]).
    support_labels : array_like of int, shape (episodes, rows) or (rows,)
        Their classes, 0 .. ways - 1: class ``c`` is row ``c``.
    query_images, query_labels : array_like
        The query set, as the support set (its own number of rows).
    predictions : array_like of int, shape of ``query_labels``
        The class predicted for each query image.
    path : str
        The PNG file to write.
    max_query : int
        Query images shown per class.
    cmap : str
        The colour map of one-channel images: ``"gray_r"`` draws high values dark (the ink of
        ink-high images such as Omniglot's).
    """
    support, support_labels = _episodes(support_images, support_labels, "support_images", "support_labels")
    query, query_labels = _episodes(query_images, query_labels, "query_images", "query_labels")
    predictions = np.asarray(predictions)
    if predictions.ndim == 1:
        predictions = predictions[None]
    if predictions.shape != query_labels.shape or predictions.dtype.kind not in "iu":
        raise ValueError(f"predictions must be integer classes, one per query image: shape {query_labels.shape}, "
                         f"got dtype {predictions.dtype} and shape {predictions.shape}")
    if len(support) != len(query) or support.shape[2:] != query.shape[2:]:
        raise ValueError(f"the support and query images must be episodes of images of one shape, got "
                         f"{support.shape} and {query.shape}")
    if isinstance(max_query, bool) or not isinstance(max_query, (int, np.integer)) or max_query < 1:
        raise ValueError(f"max_query must be a positive integer, got {max_query!r}")
    plt = pyplot()
    colormap = plt.get_cmap(cmap)
    _, channels, height, width = support.shape[1:]
    pad = max(2, height // 7)
    cell_h, cell_w = height + 2 * pad, width + 2 * pad
    ways = int(max(support_labels.max(initial=0), query_labels.max(initial=0))) + 1
    shots = max(int(np.sum(support_labels[e] == c)) for e in range(len(support)) for c in range(ways))
    shown = min(max_query, max(int(np.sum(query_labels[e] == c)) for e in range(len(query)) for c in range(ways)))
    columns = shots + 1 + shown  # the support images, a gap, the query images
    figure, axes = plt.subplots(1, len(support), figsize=(0.62 * columns * len(support) + 0.8, 0.62 * ways + 1.1),
                                layout="constrained", squeeze=False)
    for episode, ax in enumerate(axes[0]):
        values = np.concatenate([support[episode].ravel(), query[episode].ravel()])
        low, high = float(values.min()), float(values.max())

        def rgb(image: np.ndarray) -> np.ndarray:
            if channels == 3:
                return np.clip(np.moveaxis(image, 0, -1), 0.0, 1.0)
            return colormap((image[0] - low) / (high - low) if high > low else np.zeros_like(image[0]))[..., :3]

        canvas = np.ones((ways * cell_h, columns * cell_w, 3))
        frames = []  # (row, column, prediction, right) of each query shown
        for c in range(ways):
            for column, image in enumerate(support[episode][support_labels[episode] == c]):
                canvas[c * cell_h + pad:c * cell_h + pad + height,
                       column * cell_w + pad:column * cell_w + pad + width] = rgb(image)
            rows = np.flatnonzero(query_labels[episode] == c)[:shown]
            for k, row in enumerate(rows):
                column = shots + 1 + k
                canvas[c * cell_h + pad:c * cell_h + pad + height,
                       column * cell_w + pad:column * cell_w + pad + width] = rgb(query[episode][row])
                frames.append((c, column, int(predictions[episode][row]), int(predictions[episode][row]) == c))
        ax.imshow(canvas, interpolation="nearest")
        for c, column, predicted, right in frames:
            color = "tab:green" if right else "tab:red"
            ax.add_patch(plt.Rectangle((column * cell_w + pad / 2 - 0.5, c * cell_h + pad / 2 - 0.5), width + pad,
                                       height + pad, fill=False, edgecolor=color, linewidth=2))
            ax.text(column * cell_w + cell_w - pad, c * cell_h + pad, str(predicted), color="white", fontsize=7,
                    ha="right", va="top", fontweight="bold", bbox=dict(boxstyle="square,pad=0.1", color=color))
        right = int(np.sum(predictions[episode] == query_labels[episode]))
        ax.set_title(f"episode {episode + 1}: {right} of {query_labels.shape[1]} queries right", fontsize=9)
        ax.set_xticks([(shots * cell_w) / 2 - 0.5, (shots + 1 + shown / 2) * cell_w - 0.5], ["support", "query"])
        ax.set_yticks([(c + 0.5) * cell_h - 0.5 for c in range(ways)], [f"class {c}" for c in range(ways)])
        ax.tick_params(length=0, labelsize=8)
        for spine in ax.spines.values():
            spine.set_visible(False)
    figure.suptitle("each row a class; a query's frame and label: the class predicted (green right, red wrong)",
                    fontsize=9)
    figure.savefig(path, dpi=110)
    plt.close(figure)
