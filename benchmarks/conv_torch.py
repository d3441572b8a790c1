"""PyTorch (eager, CPU): W5 and W6 (see conv_workloads.py) with torch.func.

The network is a function of a list of parameter tensors (per block conv weight (out, in, k,
k), conv bias, batch-norm shift; then the dense W (features, outputs) and b: the reference's
layout, so theta converts by reshaping): ``F.pad`` with the SAME rule's (before, after) pairs
(conv_workloads.blocks; asymmetric, so not conv2d's ``padding``), ``F.conv2d``, batch norm
written out (the batch's mean and biased variance per channel, ``rsqrt(var + eps)``, a
shift), ReLU, the head, ``addmm``; ``F.cross_entropy`` with the integer labels.

- W5 (MAML): the per-task meta-gradient is ``torch.func.grad`` of the query loss after an
  inner step taken with ``torch.func.grad`` (grad of grad: exact, second order); Adam
  meta-update by impl_torch's fused kernel.
- W6 (Reptile): per task ``torch.func.grad`` steps and a functional Adam (beta1 0, fresh
  state per task) on the consecutive minibatches; theta += epsilon mean(theta~ - theta).

Tasks of a meta-batch (TASKS, from METAFAST_BENCH_TORCH_TASKS): "vmap" (default),
``torch.func.vmap`` over the tasks (W5: of the grad of grad; W6: of the whole inner loop and
of the query loss), where convolutions with per-task weights become grouped convolutions; or
"loop", one task after the other. Both agree with the reference (batch norm written out has no
trouble with vmap); vmap measured 10-20% faster (2-core AMD EPYC, 1 thread: W5 3.1 vs 2.8
meta-it/s, W6 50 vs 42 tasks/s).

Episodes are drawn with a ``torch.Generator`` from the data set held as a tensor, inside the
timed loop. Threads: ``torch.set_num_threads(threads)`` in make_runner.
"""

from __future__ import annotations

import os

import numpy as np

from conv_workloads import ConvWorkload, Fixed, blocks, dataset, init, labels, network

NAME = "pytorch"

TASKS = os.environ.get("METAFAST_BENCH_TORCH_TASKS", "vmap").lower()


def available() -> str | None:
    try:
        import torch  # noqa: F401
        import torch.func  # noqa: F401
    except Exception as error:
        return f"torch is not installed ({type(error).__name__}: {error})".split("\n")[0]
    if TASKS not in ("loop", "vmap"):
        return f"METAFAST_BENCH_TORCH_TASKS={TASKS!r}: expected loop or vmap"
    return None


# --------------------------------------------------------------------------------------------
# Parameters: [kernel, bias, shift] per block, then [W, b]; the reference's shapes.

def _unflatten(w: ConvWorkload, flat: np.ndarray):
    import torch
    assert w.bias, "W5/W6 have biases"
    layers = network(w).unflatten(np.asarray(flat, dtype=np.float32))
    names = [("weight", "bias", "shift")] * len(w.channels) + [("weight", "bias")]
    return [torch.tensor(np.ascontiguousarray(layer[name])) for layer, keys in zip(layers, names) for name in keys]


def _flatten(w: ConvWorkload, tensors) -> np.ndarray:
    arrays = [t.detach().numpy().astype(np.float32) for t in tensors]
    layers = [dict(zip(("weight", "bias", "shift"), arrays[3 * i: 3 * i + 3])) for i in range(len(w.channels))]
    layers.append(dict(zip(("weight", "bias"), arrays[3 * len(w.channels):])))
    return network(w).flatten(layers)


def _functions(w: ConvWorkload):
    """loss(params, x, y), the per-meta-batch MAML meta-gradient and the Reptile inner loop."""
    import torch
    import torch.nn.functional as F
    from torch.func import grad, grad_and_value, vmap

    geometry = blocks(w)

    def forward(params, x):
        """Logits (rows, ways) of images x (rows, C, H, W)."""
        for i, g in enumerate(geometry):
            kernel, bias, shift = params[3 * i: 3 * i + 3]
            z = F.conv2d(F.pad(x, (*g.pad_w, *g.pad_h)), kernel, bias, stride=w.stride)
            centred = z - z.mean(dim=(0, 2, 3), keepdim=True)
            variance = (centred * centred).mean(dim=(0, 2, 3), keepdim=True)  # biased
            x = torch.relu(centred * torch.rsqrt(variance + w.batch_norm_eps) + shift.view(1, -1, 1, 1))
        h = x.mean(dim=(2, 3)) if w.head == "average" else x.flatten(1)  # (C, H, W) in C order
        weights, bias = params[-2:]
        return torch.addmm(bias, h, weights)

    def loss(params, x, y):
        return F.cross_entropy(forward(params, x), y)  # mean over rows

    loss_grad = grad(loss)

    # ---------------- MAML
    def task_query_loss(params, xs, ys, xq, yq):
        adapted = params
        for _ in range(w.inner_steps):
            adapted = [p - w.inner_lr * g for p, g in zip(adapted, loss_grad(adapted, xs, ys))]
        return loss(adapted, xq, yq)

    task_meta_grad = grad_and_value(task_query_loss)
    batched_meta_grad = vmap(task_meta_grad, in_dims=(None, 0, 0, 0, 0))

    def meta_gradient(params, batch):
        """(mean meta-gradient as a list like params, mean query loss) over the tasks of batch."""
        tasks = batch[0].shape[0]
        if TASKS == "vmap":
            grads, values = batched_meta_grad(params, *batch)
            return [g.mean(0) for g in grads], values.mean()
        total, value = None, 0.0
        for task in zip(*batch):
            grads, v = task_meta_grad(params, *task)
            total = grads if total is None else [a.add_(b) for a, b in zip(total, grads)]
            value += v
        return [g.div_(tasks) for g in total], value / tasks

    # ---------------- Reptile
    batches = max(1, w.support // w.inner_batch)
    b1, b2 = w.inner_betas

    def inner_loop(theta, xs, ys):
        """One task: fresh Adam, the updates on consecutive minibatches; returns theta~."""
        params = list(theta)
        m = [torch.zeros_like(p) for p in params]
        v = [torch.zeros_like(p) for p in params]
        for u in range(w.inner_updates):
            rows = slice((u % batches) * w.inner_batch, (u % batches + 1) * w.inner_batch)
            g = loss_grad(params, xs[rows], ys[rows])
            c1, c2 = 1 - b1 ** (u + 1), 1 - b2 ** (u + 1)
            m = [b1 * m_ + (1 - b1) * g_ for m_, g_ in zip(m, g)]
            v = [b2 * v_ + (1 - b2) * g_ * g_ for v_, g_ in zip(v, g)]
            params = [p - w.inner_lr * (m_ / c1) / (torch.sqrt(v_ / c2) + w.adam_eps) for p, m_, v_ in zip(params, m, v)]
        return params

    batched_inner = vmap(inner_loop, in_dims=(None, 0, 0))

    def reptile_step(theta, batch):
        """theta after one meta-step (a new list), and the mean query loss at the adapted
        parameters (the score, as W1/W2 compute it)."""
        xs, ys, xq, yq = batch
        tasks = xs.shape[0]
        if TASKS == "vmap":
            adapted = batched_inner(theta, xs, ys)
            query_loss = vmap(loss)(adapted, xq, yq).mean()
            return [p + w.epsilon * (a - p).mean(0) for p, a in zip(theta, adapted)], query_loss
        total, query_loss = [torch.zeros_like(p) for p in theta], 0.0
        for t in range(tasks):
            adapted = inner_loop(theta, xs[t], ys[t])
            query_loss += loss(adapted, xq[t], yq[t]) / tasks
            for s, a, p in zip(total, adapted, theta):
                s.add_(a - p)
        return [p + (w.epsilon / tasks) * s for p, s in zip(theta, total)], query_loss

    return dict(loss=loss, meta_gradient=meta_gradient, reptile_step=reptile_step)


def _sampler(w: ConvWorkload, data, generator):
    """sample(tasks) -> (xs, ys, xq, yq) drawn as conv_workloads.sample draws them (argsort of
    uniforms: distinct classes, distinct images per class; row r of class r % ways)."""
    import torch
    classes, per_class = data.shape[:2]
    shots = w.support_shots + w.query_shots
    y_support = torch.from_numpy(labels(w, w.support_shots).astype(np.int64))
    y_query = torch.from_numpy(labels(w, w.query_shots).astype(np.int64))

    def sample(tasks: int):
        chosen = torch.rand(tasks, classes, generator=generator).argsort(dim=1)[:, : w.ways]
        images = torch.rand(tasks, w.ways, per_class, generator=generator).argsort(dim=2)[..., :shots]
        x = data[chosen[:, :, None], images].transpose(1, 2)      # (T, shots, ways, C, H, W)
        xs = x[:, : w.support_shots].reshape(tasks, w.support, *data.shape[2:])
        xq = x[:, w.support_shots:].reshape(tasks, w.query, *data.shape[2:])
        return xs, y_support.expand(tasks, -1), xq, y_query.expand(tasks, -1)

    return sample


def make_runner(w: ConvWorkload, threads: int, seed: int = 0):
    """run(units) does at least ``units`` units of work, episode sampling included; returns how many."""
    import torch

    from impl_torch import ADAM_BETAS, ADAM_EPS, _Adam

    torch.set_num_threads(threads)
    fns = _functions(w)
    sample = _sampler(w, torch.from_numpy(dataset(seed)), torch.Generator().manual_seed(seed))
    theta = _unflatten(w, init(w, seed))

    if w.algorithm == "reptile":
        def step():
            new_theta, _ = fns["reptile_step"](theta, sample(w.meta_batch))
            theta[:] = new_theta
    else:
        assert (w.meta_betas, w.adam_eps) == (ADAM_BETAS, ADAM_EPS), "impl_torch's Adam has the same constants"
        adam = _Adam(torch, theta, w.meta_lr)
        count = [0]

        def step():
            grads, _ = fns["meta_gradient"](theta, sample(w.meta_batch))
            count[0] += 1
            adam.step(grads, count[0])  # in place on theta

    def run(units: int) -> int:
        iterations = -(-units * w.tasks_per_unit // w.meta_batch)
        for _ in range(iterations):
            step()
        return iterations * w.meta_batch // w.tasks_per_unit

    return run


def compute(w: ConvWorkload, f: Fixed) -> dict[str, np.ndarray]:
    """W5: {"g_theta": mean meta-gradient at f.theta}; W6: {"theta": theta after one meta-step};
    flat, in the reference's layout."""
    import torch

    fns = _functions(w)
    theta = _unflatten(w, f.theta)
    batch = (torch.from_numpy(np.ascontiguousarray(f.x_support, dtype=np.float32)),
             torch.from_numpy(f.y_support.astype(np.int64)),
             torch.from_numpy(np.ascontiguousarray(f.x_query, dtype=np.float32)),
             torch.from_numpy(f.y_query.astype(np.int64)))
    if w.algorithm == "reptile":
        new_theta, _ = fns["reptile_step"](theta, batch)
        return {"theta": _flatten(w, new_theta)}
    grads, _ = fns["meta_gradient"](theta, batch)
    return {"g_theta": _flatten(w, grads)}
