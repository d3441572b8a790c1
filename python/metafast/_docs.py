"""Docstring text that several functions share, written once.

A docstring names a fragment on a line of its own, ``{name}``, indented as the text should be;
:func:`shared_docs` puts the fragment there.
"""

from __future__ import annotations

import re
import textwrap
from typing import TypeVar

FRAGMENTS = {
    "training loop parameters": """\
progress : bool
    Show a tqdm progress bar.
callback : callable, optional
    ``callback(learner, iteration, value)`` with the last value of the history (the loss;
    the return for reinforcement learning), called between chunks (a few times a second)
    and after the last iteration; return True to stop training.
checkpoint : str or path-like, optional
    Where ``checkpoint_every`` saves the learner (atomically).
checkpoint_every : int, optional
    Save the learner to ``checkpoint`` whenever the iteration count reaches a multiple of
    this; ``mf.load(checkpoint).fit(...)`` then resumes bit for bit.
on_divergence : {"raise", "skip"}
    What a non-finite loss, meta-gradient or update does: stop with TrainingDivergedError
    (naming the iteration, keeping the last finite state), or skip that batch (no update,
    NaN in the history) and go on.
""",
    "comm parameter": """\
comm : mpi4py.MPI.Comm, optional
    Spread every meta-batch over the processes of this MPI communicator (each computes a
    contiguous share of the tasks, with its own threads): theta, alpha, the optimizer state
    and the history are bit-identical to one process's, for any number of processes. Every
    process calls ``fit`` alike; the first writes checkpoints and shows progress. Needs
    ``pip install "metafast[mpi]"``; see :mod:`metafast.distributed`.
""",
    "training loop notes": """\
Training runs in chunks of meta-iterations in the core, without the GIL. Ctrl-C (SIGINT)
stops it at the end of the current chunk (within about a tenth of a second) and raises
KeyboardInterrupt; the learner then holds the last completed meta-iteration, its history
matches, and ``fit`` can simply be called again.
""",
    "meta-optimizer parameters": """\
meta_optimizer : {"adam", "sgd"}
    Update of ``[theta, alpha]`` with the mean meta-gradient over a meta-batch.
meta_lr : float
    Meta learning rate (beta).
""",
    "alpha learning rate": """\
alpha_lr : float, optional
    alpha's meta learning rate. By default ``meta_lr``, and with several inner steps
    ``meta_lr`` times alpha's initial scale (``alpha_init``, or the middle of its range;
    ``meta_lr`` itself when alpha starts at 0). Adam moves every entry by about its learning
    rate per update, whatever the entry's size: at ``meta_lr`` an alpha of 0.01 changes by a
    tenth each meta-iteration. After one inner step the adapted parameters are linear in
    alpha and an alpha too large costs a bounded loss; after k steps the loss grows like
    ``(1 - alpha * curvature)**(2k)`` once alpha passes the stable step size, so training with
    several steps soon diverges unless alpha moves at the pace theta moves relative to its size.
""",
    "multi-step parameters": """\
alpha_per_step : bool
    One alpha vector per inner step (MAML++'s per-step learning rates, generalised per
    parameter): ``alpha`` has shape (inner_steps, num_params), and steps beyond
    ``inner_steps`` in ``adapt`` and ``evaluate`` reuse the last row.
clip_grad_norm : float, optional
    Clip the mean meta-gradient to this Euclidean norm before each update (the exact
    gradient scaled by ``min(1, clip_grad_norm / norm)``, the norm summed in one fixed order,
    so results stay the same for any number of threads and processes).
init : str, ("normal", std) or array, optional
    Initial theta: a scheme of :meth:`MLP.init` ("auto": He for layers before a ReLU, Glorot
    otherwise; "he"; "glorot"; "pytorch", ``torch.nn.Linear``'s default; ("normal", std),
    MAML's is ("normal", 0.01)), or theta itself. None (the default) is "auto" with one inner
    step and "glorot" with more: He's larger first-layer weights make the support loss so
    curved that several steps of 0.01 overflow on some tasks (docs/math.md, "The default
    initialisation"). The two are the same for networks without ReLU.
""",
    "theta and x": """\
theta : ndarray, shape (num_params,)
    Parameters, float32 or float64: the dtype of the computation and of the results.
x : array, shape (rows, sizes[0])
    Inputs, one sample per row; floats or integers, converted to theta's dtype.
""",
    "targets": """\
y : array
    Targets: ``(rows, sizes[-1])`` numbers (converted to theta's dtype), or ``(rows,)``
    integer class labels for ``"softmax_ce"``.
""",
    "loss": """\
loss : {"mse", "bce", "softmax_ce"}
    The loss (see the class's Notes).
""",
    "binary task parameters": """\
dim : int
    Input width.
support, query : int
    Points in the support and query sets.
""",
    "adam parameters": """\
adam_betas : (float, float)
    Adam's decay rates of the first and second moment estimates.
adam_eps : float
    Adam's denominator constant.
""",
}

_PLACEHOLDER = re.compile(r"^([ \t]*)\{(" + "|".join(map(re.escape, FRAGMENTS)) + r")\}\n", re.MULTILINE)

Documented = TypeVar("Documented")


def shared_docs(documented: Documented) -> Documented:
    """Fills the fragment placeholders of a function's or class's docstring (a decorator)."""
    doc = documented.__doc__
    if doc:  # None under python -OO
        documented.__doc__ = _PLACEHOLDER.sub(lambda m: textwrap.indent(FRAGMENTS[m.group(2)], m.group(1)), doc)
    return documented
