"""Task families, sampled natively by the C++ core.

Synthetic families draw each task afresh (:class:`Sinusoid`, :class:`LinearBinary`,
:class:`SeedBinary`, :class:`GaussianNWay`); data-set families draw tasks from the user's
arrays (:class:`Classification`, :class:`Regression`, :class:`TaskPool`, with
:func:`split_classes` for held-out classes), and :class:`Omniglot` from the characters
shipped with metafast.

Task ``i`` of meta-iteration ``k`` in a run seeded with ``s`` comes from a counter-based
random stream keyed by ``(s, k, i)``: a batch is the same whatever the number of threads,
and ``family.sample(T, seed=s, iteration=k)`` returns exactly the tasks that
``fit(family, meta_batch=T)`` of a learner seeded with ``s`` trains on at iteration ``k``.

Anywhere a family is accepted, a Python callable ``sampler(num_tasks, rng) -> TaskBatch``
works too (``rng`` is a seeded ``numpy.random.Generator``); it runs on a slower path that
returns to Python once per meta-iteration.
"""

from .data import Classification, DataFamily, Regression, TaskPool, split_classes
from .omniglot import Omniglot
from .family import FAMILIES, Sampler, TaskFamily, Tasks, check_tasks, family_from_config, sample_with
from .synthetic import GaussianNWay, LinearBinary, SeedBinary, Sinusoid

__all__ = [
    "TaskFamily",
    "DataFamily",
    "Sinusoid",
    "LinearBinary",
    "SeedBinary",
    "GaussianNWay",
    "Classification",
    "Regression",
    "TaskPool",
    "Omniglot",
    "split_classes",
    "FAMILIES",
    "Sampler",
    "Tasks",
    "check_tasks",
    "family_from_config",
    "sample_with",
]
