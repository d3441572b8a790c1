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
    assert "Meta-SGD, mean of 10 iterations" in labels
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
