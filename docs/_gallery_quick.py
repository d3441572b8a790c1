"""How the gallery runs the examples: without progress bars (a page shows what an example
prints, not its bar), and with METAFAST_DOCS_QUICK=1 (the test suite's build of the site)
every training stopped after a few meta-iterations. sphinx-gallery calls ``gallery_training``
before each example (``reset_modules`` in conf.py)."""

from __future__ import annotations

import os

from metafast.learner import Learner

QUICK_ITERATIONS = 5
_train = Learner._train


def _gallery_train(self, iterations, run_chunk, progress, *args, **kwargs):
    if os.environ.get("METAFAST_DOCS_QUICK", "0") == "1":
        iterations = min(iterations, QUICK_ITERATIONS)
    return _train(self, iterations, run_chunk, False, *args, **kwargs)


def gallery_training(gallery_conf, fname):
    Learner._train = _gallery_train
