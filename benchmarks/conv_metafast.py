"""metafast itself on W5 and W6 (conv_workloads.py): fit() on a native Classification family of
the benchmark's images, chunks of meta-iterations in C++, episodes drawn in the core.

- W5: ``mf.MAML`` on a ``mf.ConvNet`` (Conv-4, average head), one SGD inner step of 0.4, exact
  second-order meta-gradient, Adam meta-update.
- W6: ``mf.Reptile`` on the same network with the flatten head, 5 Adam steps (beta1 0, a fresh
  state per task) over the consecutive minibatches of 10 support rows, epsilon 1.

Both start from the reference's initial theta (``conv_workloads.init``), as every implementation
does. Threads: the learner's ``num_threads``."""

from __future__ import annotations

import numpy as np

import metafast as mf
from conv_workloads import ConvWorkload, Fixed, dataset, init

NAME = "metafast"


def available() -> str | None:
    return None


def network(w: ConvWorkload) -> mf.ConvNet:
    return mf.ConvNet(w.input_shape, channels=w.channels, outputs=w.ways, kernel_size=w.kernel_size, stride=w.stride,
                      padding=w.padding, pool=w.pool, batch_norm=True, batch_norm_eps=w.batch_norm_eps,
                      activation="relu", head=w.head, bias=w.bias)


def learner(w: ConvWorkload, threads: int, seed: int = 0, dtype: str = "float32"):
    common = dict(loss=w.loss, dtype=dtype, seed=seed, num_threads=threads, adam_eps=w.adam_eps)
    if w.algorithm == "maml":
        return mf.MAML(network(w), inner_lr=w.inner_lr, inner_steps=w.inner_steps, meta_optimizer="adam",
                       meta_lr=w.meta_lr, adam_betas=w.meta_betas, init=init(w, seed), **common)
    rep = mf.Reptile(network(w), inner_optimizer="adam", inner_lr=w.inner_lr, adam_betas=w.inner_betas,
                     inner_epochs=w.inner_epochs, inner_batch=w.inner_batch, epsilon=w.epsilon, **common)
    rep.theta = init(w, seed)
    return rep


def family(w: ConvWorkload, seed: int = 0) -> mf.tasks.Classification:
    data = dataset(seed)  # (classes, per_class, C, H, W)
    classes, per_class = data.shape[:2]
    return mf.tasks.Classification(data.reshape(classes * per_class, *data.shape[2:]),
                                   np.repeat(np.arange(classes), per_class), ways=w.ways, shots=w.support_shots,
                                   query=w.query_shots)


def make_runner(w: ConvWorkload, threads: int, seed: int = 0):
    """run(units) does at least `units` units of work, episode sampling included; returns how many."""
    learn, tasks = learner(w, threads, seed), family(w, seed)

    def run(units: int) -> int:
        iterations = -(-units * w.tasks_per_unit // w.meta_batch)
        learn.fit(tasks, iterations=iterations, meta_batch=w.meta_batch, progress=False)
        return iterations * w.meta_batch // w.tasks_per_unit

    return run


def compute(w: ConvWorkload, f: Fixed) -> dict[str, np.ndarray]:
    """W5 in float32, as timed. W6 in float64 (the same core, instantiated for double): in float32
    W6's result is chaotic where a ReLU input lies within rounding of 0 after an Adam step
    (beta1 0 makes each step lr times about the gradient's sign), and 2 of the 5 fixed tasks
    have such inputs (within 2e-6 of 0 on the reference's trajectory): metafast's float32 run
    puts them on the other side (theta differs by 6e-4 and 2.6e-3 there; its gradients at its
    own parameters agree with the reference to 1e-6), JAX's and PyTorch's rounding happened to
    fall on the reference's side."""
    learn = learner(w, threads=1, dtype="float32" if w.algorithm == "maml" else "float64")
    batch = mf.TaskBatch(f.x_support, f.y_support.astype(np.int64), f.x_query, f.y_query.astype(np.int64))
    learn.theta = f.theta
    if w.algorithm == "maml":
        _, g_theta = learn.meta_gradient(batch)
        return {"g_theta": g_theta}
    learn.meta_step(batch)
    return {"theta": learn.theta}
