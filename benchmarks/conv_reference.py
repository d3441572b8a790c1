"""metafast.reference's NumPy ConvNet on W5 and W6: the oracle of the correctness check.

Everything is built from the reference's ``loss_and_grad`` and ``hvp`` (hand-derived
backpropagation and R-operator, docs/math.md section 5); :func:`compute` runs them in float64
from the float32 fixed data, so the check measures each implementation's float32 error.

- W5 (MAML, one inner step of lr a): per task theta' = theta - a grad L_S(theta), then
  g = grad L_Q(theta') - a H_S(theta) grad L_Q(theta') (the exact meta-gradient: the chain
  rule through the inner step, whose Jacobian is I - a H_S), averaged over tasks.
- W6 (Reptile): per task the inner Adam steps on consecutive minibatches (fresh state),
  then theta + epsilon mean_i(theta~_i - theta).

:func:`make_runner` times the reference itself (NumPy episodes, float32), for scale only: it
is slow (seconds a meta-iteration) and not run by default.
"""

from __future__ import annotations

import numpy as np

from conv_workloads import ConvWorkload, Fixed, dataset, init, network, sample

NAME = "numpy"


def available() -> str | None:
    return None


def adam(theta, grads, m, v, t: int, lr: float, betas, eps: float):
    """One Adam step (docs/math.md section 3, torch.optim.Adam's formula); returns (theta, m, v)."""
    b1, b2 = betas
    m = b1 * m + (1 - b1) * grads
    v = b2 * v + (1 - b2) * grads * grads
    theta = theta - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return theta, m, v


def maml_meta_gradient(w: ConvWorkload, net, theta, xs, ys, xq, yq):
    """(mean query loss, mean exact meta-gradient) over the tasks of a meta-batch."""
    assert w.inner_steps == 1, "the closed form below is for one inner step"
    a = w.inner_lr
    losses, total = [], np.zeros_like(theta)
    for t in range(xs.shape[0]):
        _, g_support = net.loss_and_grad(theta, xs[t], ys[t], w.loss)
        adapted = theta - a * g_support
        value, g_query = net.loss_and_grad(adapted, xq[t], yq[t], w.loss)
        total += g_query - a * net.hvp(theta, xs[t], ys[t], g_query, w.loss)
        losses.append(value)
    return float(np.mean(losses)), total / xs.shape[0]


def reptile_inner(w: ConvWorkload, net, theta, xs, ys):
    """One task's adapted parameters: fresh Adam, consecutive minibatches, no shuffling."""
    params, m, v = theta.copy(), np.zeros_like(theta), np.zeros_like(theta)
    batches = -(-w.support // w.inner_batch)
    for u in range(w.inner_updates):
        rows = slice((u % batches) * w.inner_batch, (u % batches + 1) * w.inner_batch)
        _, g = net.loss_and_grad(params, xs[rows], ys[rows], w.loss)
        params, m, v = adam(params, g, m, v, u + 1, w.inner_lr, w.inner_betas, w.adam_eps)
    return params


def reptile_step(w: ConvWorkload, net, theta, xs, ys, xq, yq):
    """(new theta, mean query loss at the adapted parameters)."""
    adapted = [reptile_inner(w, net, theta, xs[t], ys[t]) for t in range(xs.shape[0])]
    query_loss = float(np.mean([net.loss(p, xq[t], yq[t], w.loss) for t, p in enumerate(adapted)]))
    return theta + w.epsilon * np.mean([p - theta for p in adapted], axis=0), query_loss


def make_runner(w: ConvWorkload, threads: int, seed: int = 0):
    """run(units) does at least ``units`` units of work, episode sampling included; returns how many."""
    net = network(w)
    data = dataset(seed)
    rng = np.random.default_rng(seed)
    state = {"theta": init(w, seed), "m": 0.0, "v": 0.0, "t": 0}

    def step():
        xs, ys, xq, yq = sample(w, data, rng, w.meta_batch)
        if w.algorithm == "reptile":
            state["theta"], _ = reptile_step(w, net, state["theta"], xs, ys, xq, yq)
            return
        _, g = maml_meta_gradient(w, net, state["theta"], xs, ys, xq, yq)
        state["t"] += 1
        state["theta"], state["m"], state["v"] = adam(state["theta"], g, state["m"], state["v"], state["t"],
                                                      w.meta_lr, w.meta_betas, w.adam_eps)

    def run(units: int) -> int:
        iterations = -(-units * w.tasks_per_unit // w.meta_batch)
        for _ in range(iterations):
            step()
        return iterations * w.meta_batch // w.tasks_per_unit

    return run


def compute(w: ConvWorkload, f: Fixed) -> dict[str, np.ndarray]:
    """W5: {"g_theta": mean meta-gradient at f.theta}; W6: {"theta": theta after one meta-step}.
    Flat, in the reference's layout; float64 (from the float32 inputs)."""
    net = network(w)
    theta = f.theta.astype(np.float64)
    xs, xq = f.x_support.astype(np.float64), f.x_query.astype(np.float64)
    if w.algorithm == "reptile":
        new_theta, _ = reptile_step(w, net, theta, xs, f.y_support, xq, f.y_query)
        return {"theta": new_theta}
    _, g = maml_meta_gradient(w, net, theta, xs, f.y_support, xq, f.y_query)
    return {"g_theta": g}
