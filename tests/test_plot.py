"""The pictures say what they show: raw values beside a centred average the legend names, the
loss on the axis, the tasks in the title, the chance level of classification, and paths of
navigation policies inside their frames."""

from __future__ import annotations

import numpy as np
import pytest

import metafast as mf
from metafast import plot

pyplot = pytest.importorskip("matplotlib.pyplot", reason="plots need matplotlib (the plot extra)")


def test_smoothing_is_centred_so_a_step_stays_where_it_is():
    step = np.r_[np.ones(50), np.full(50, 3.0)]
    smoothed = plot.smooth(step, 11)
    assert smoothed[44] == 1.0 and smoothed[55] == 3.0 and smoothed[49] == pytest.approx((6 * 1 + 5 * 3) / 11)
    np.testing.assert_array_equal(plot.smooth(step, 1), step)


@pytest.mark.parametrize("family,loss,chance", [
    (mf.tasks.GaussianNWay(ways=4), "softmax_ce", np.log(4)),
    (mf.tasks.LinearBinary(), "bce", np.log(2)),
    (mf.tasks.Sinusoid(), "mse", None),
])
def test_training_curves_name_what_they_show(family, loss, chance):
    figure, ax = plot.pyplot().subplots()
    history = np.linspace(2.0, 0.5, 500)
    plot.plot_history(ax, {"Meta-SGD": history}, loss=loss, family=family)
    assert plot.LOSS_NAMES[loss] in ax.get_ylabel()
    assert type(family).__name__ in ax.get_title()
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "Meta-SGD, moving mean of 10 iterations" in labels
    lines = {line.get_label(): line for line in ax.get_lines()}
    if chance is None:
        assert not any(label.startswith("chance") for label in labels)
    else:
        (label,) = [label for label in labels if label.startswith("chance")]
        np.testing.assert_allclose(lines[label].get_ydata(), chance)
    # the raw values are drawn too, every one of them
    assert any(len(line.get_ydata()) == 500 and np.array_equal(line.get_ydata(), history) for line in ax.get_lines())
    plot.pyplot().close(figure)


def test_navigation_paths_stay_inside_their_frames(tmp_path, monkeypatch):
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 8, 2]), inner_trajectories=2, seed=0)
    learner.fit(iterations=2, meta_batch=2, progress=False)
    axes = []
    savefig = plot.pyplot().Figure.savefig
    monkeypatch.setattr(plot.pyplot().Figure, "savefig", lambda self, *a, **k: (axes.extend(self.axes),
                                                                                  savefig(self, *a, **k)))
    goals = np.array([[0.4, -0.4], [-0.3, 0.2]])
    plot.navigation_figure(learner, goals, 1, str(tmp_path / "nav.png"))
    panels = [ax for ax in axes if ax.get_xlabel() == "position x"]
    assert len(panels) == 2 and panels[0].get_ylabel() == "position y"
    for ax in panels:
        (low, high), (bottom, top) = ax.get_xlim(), ax.get_ylim()
        for line in ax.get_lines():
            assert np.all((low <= line.get_xdata()) & (line.get_xdata() <= high))
            assert np.all((bottom <= line.get_ydata()) & (line.get_ydata() <= top))


def legend_labels(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


@pytest.mark.parametrize("iterations,label", [(1, "per iteration"), (100, "per iteration"),
                                              (499, "per iteration"), (500, "moving mean of 10 iterations"),
                                              (20_000, "moving mean of 400 iterations")])
def test_short_runs_are_drawn_per_iteration(iterations, label):
    # a "mean of 2 iterations" says nothing: runs too short for 10 are drawn as they are
    figure, ax = plot.pyplot().subplots()
    history = np.linspace(2.0, 0.5, iterations)
    plot.plot_history(ax, {"Reptile": history}, loss="mse")
    assert legend_labels(ax) == [f"Reptile, {label}"]
    plot.pyplot().close(figure)


def captured_axes(monkeypatch):
    """The axes of every figure the plot module saves."""
    axes = []
    savefig = plot.pyplot().Figure.savefig
    monkeypatch.setattr(plot.pyplot().Figure, "savefig", lambda self, *a, **k: (axes.extend(self.axes),
                                                                                  savefig(self, *a, **k)))
    return axes


def one_input_regression(seed):
    """A Regression family of one input whose true function is not a sine: y = x^2."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (200, 1))
    return mf.tasks.Regression(x, x**2 + np.repeat(np.arange(10.0), 20)[:, None], np.repeat(np.arange(10), 20),
                               support=5, query=5)


@pytest.mark.parametrize("family,true_curve", [(mf.tasks.Sinusoid(), True), (one_input_regression(0), False)],
                         ids=["sine", "regression"])
def test_the_true_function_is_drawn_for_sine_tasks_only(tmp_path, monkeypatch, family, true_curve):
    learner = mf.MetaSGD(mf.MLP([1, 8, 1]), num_threads=1)
    learner.fit(family, iterations=2, meta_batch=2, progress=False)
    axes = captured_axes(monkeypatch)
    tasks = [family.sample(1, seed=s) for s in (1, 2)]
    plot.adaptation_figure(tasks, {"Meta-SGD": (learner, 1)}, {"Meta-SGD": learner.history},
                           str(tmp_path / "a.png"), family=family)
    panels = [ax for ax in axes if ax.get_xlabel() == "x"]
    assert len(panels) == 2
    labels = legend_labels(panels[0])
    assert ("true" in labels) == true_curve and ("query" in labels) != true_curve
    assert {"support", "Meta-SGD, before", "Meta-SGD, 1 step"} <= set(labels)
    for ax, task in zip(panels, tasks):
        if true_curve:  # the sine through the task's points: it passes through every one
            (line,) = [line for line in ax.get_lines() if line.get_label() == "true"]
            x = task.x_support[0, :, 0]
            np.testing.assert_allclose(np.interp(x, line.get_xdata(), line.get_ydata()), task.y_support[0, :, 0],
                                       atol=0.05)


def test_plot_sine_adaptation_is_kept_and_draws_what_plot_adaptation_draws_for_sines():
    """The name of earlier versions, with its old signature (ax, task, learners)."""
    learner = mf.MetaSGD(mf.MLP([1, 8, 1]), num_threads=1)
    task = mf.tasks.Sinusoid().sample(1, seed=3)
    figure, (old, new) = pyplot.subplots(1, 2)
    try:
        plot.plot_sine_adaptation(old, task, {"Meta-SGD": (learner, 1)})
        plot.plot_adaptation(new, task, {"Meta-SGD": (learner, 1)}, mf.tasks.Sinusoid())
        labels = [line.get_label() for line in old.get_lines()]
        assert labels == [line.get_label() for line in new.get_lines()] and "true" in labels
        assert [c.get_label() for c in old.collections] == [c.get_label() for c in new.collections] == ["support"]
        for a, b in zip(old.get_lines(), new.get_lines()):
            np.testing.assert_array_equal(a.get_xydata(), b.get_xydata())
    finally:
        pyplot.close(figure)


@pytest.mark.parametrize("family,message", [(mf.tasks.LinearBinary(dim=3), "got 3 inputs and 1 outputs"),
                                            (mf.tasks.GaussianNWay(dim=1), "got class labels")],
                         ids=["three-inputs", "labels"])
def test_adaptation_figure_refuses_tasks_it_cannot_draw(tmp_path, family, message):
    with pytest.raises(ValueError, match=f"tasks\\[0\\] must have one input and one real target per point.*{message}"):
        plot.adaptation_figure([family.sample(1)], {}, {}, str(tmp_path / "a.png"), family=family)
    assert not (tmp_path / "a.png").exists()


def test_navigation_legend_entries_all_show_something(tmp_path, monkeypatch):
    learner = mf.rl.MetaSGDRL(mf.MLP([2, 8, 2]), inner_trajectories=2, seed=0, num_threads=1)
    learner.fit(iterations=2, meta_batch=2, progress=False)
    axes = captured_axes(monkeypatch)
    plot.navigation_figure(learner, np.array([[0.4, -0.4]]), 1, str(tmp_path / "nav.png"))
    panel, curve = axes
    assert legend_labels(panel) == ["before adaptation", "after 1 step", "start", "goal"]
    assert legend_labels(curve) == ["Meta-SGD, per iteration"]  # not "mean of 2 iterations"
    (before,) = [line for line in panel.get_lines() if line.get_label() == "before adaptation"]
    (start,) = [c for c in panel.collections if c.get_label() == "start"]
    # however short the path before adaptation, its end shows: a marker drawn above the start's
    assert before.get_marker() not in ("None", "", None) and before.get_markevery() == [len(before.get_xdata()) - 1]
    assert before.get_zorder() > start.get_zorder()
    assert before.get_color() != "tab:blue"  # not the after-adaptation colour
