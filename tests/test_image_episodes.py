"""plot.image_episodes draws what it says: a row per class, each query shown framed green
where its prediction is right and red where it is wrong, with the class predicted, and a
title that counts every query; arrays it cannot draw are refused before any figure."""

from __future__ import annotations

import numpy as np
import pytest

import metafast as mf
from metafast import plot

pyplot = pytest.importorskip("matplotlib.pyplot", reason="plots need matplotlib (the plot extra)")


def drawn_axes(monkeypatch):
    axes = []
    savefig = pyplot.Figure.savefig
    monkeypatch.setattr(pyplot.Figure, "savefig", lambda self, *a, **k: (axes.extend(self.axes),
                                                                          savefig(self, *a, **k)))
    return axes


def frames(ax):
    """The colour of each query's frame, and the predicted classes written on them."""
    colours = [patch.get_edgecolor() for patch in ax.patches]
    return colours, [text.get_text() for text in ax.texts]


def test_queries_are_framed_by_whether_their_prediction_is_right(tmp_path, monkeypatch):
    family = mf.tasks.Omniglot("Tagalog", subset="small2", ways=3, shots=2, query=4)
    batch = family.sample(2, seed=5)
    predictions = batch.y_query.copy()
    predictions[0, :2] = (predictions[0, :2] + 1) % 3  # two wrong in the first episode, none in the second
    axes = drawn_axes(monkeypatch)
    shape = (2, -1, 1, 28, 28)
    path = tmp_path / "episodes.png"
    plot.image_episodes(batch.x_support.reshape(shape), batch.y_support, batch.x_query.reshape(shape), batch.y_query,
                        predictions, str(path), max_query=3)
    assert path.read_bytes().startswith(b"\x89PNG")
    panels = [ax for ax in axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["episode 1: 10 of 12 queries right",
                                                 "episode 2: 12 of 12 queries right"]
    red, green = (pyplot.matplotlib.colors.to_rgba(c) for c in ("tab:red", "tab:green"))
    for ax, wrong in zip(panels, (2, 0)):
        colours, labels = frames(ax)
        assert len(colours) == 3 * 3  # max_query of each of the 3 classes
        assert sum(c == red for c in colours) == wrong and sum(c == green for c in colours) == 9 - wrong
        assert set(labels) <= {"0", "1", "2"} and len(labels) == 9
        assert [label.get_text() for label in ax.get_yticklabels()] == ["class 0", "class 1", "class 2"]


def test_one_episode_without_its_leading_axis(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(4) % 2
    plot.image_episodes(rng.random((4, 3, 8, 8)), labels, rng.random((4, 3, 8, 8)), labels, labels[::-1],
                        str(tmp_path / "one.png"))
    assert (tmp_path / "one.png").stat().st_size > 0


@pytest.mark.parametrize("change,message", [
    (dict(support_images=np.zeros((2, 4, 784))), "support_images must have shape (2, 4, 'C', 'H', 'W')"),
    (dict(query_labels=np.zeros((2, 6))), "query_labels must hold class indices"),
    (dict(predictions=np.zeros((2, 5), dtype=np.int64)), "predictions must be integer classes, one per query"),
    (dict(query_images=np.zeros((2, 6, 1, 9, 9))), "the support and query images must be episodes of images of one"),
    (dict(max_query=0), "max_query must be a positive integer, got 0"),
])
def test_arrays_it_cannot_draw_are_refused(tmp_path, change, message):
    arguments = dict(support_images=np.zeros((2, 4, 1, 8, 8)), support_labels=np.zeros((2, 4), dtype=np.int64),
                     query_images=np.zeros((2, 6, 1, 8, 8)), query_labels=np.zeros((2, 6), dtype=np.int64),
                     predictions=np.zeros((2, 6), dtype=np.int64), path=str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plot.image_episodes(**{**arguments, **change})
    assert not (tmp_path / "x.png").exists()
