"""PyTorch (eager, CPU): the four workloads with the tasks of a meta-batch batched.

A hand-written batched MLP: every task has its own copy of the parameters, stacked along a
leading task axis (``W`` of shape ``(T, fan_in, fan_out)``, ``b`` of shape ``(T, 1, fan_out)``),
and a layer is one ``torch.baddbmm`` (``torch.bmm`` without biases) over all tasks at once. The
summed per-task mean losses have the per-task gradients as their gradient with respect to
the stacked parameters, so one ``torch.autograd.grad`` call serves all tasks.

- Reptile (W1, W2): the 50 inner Adam steps of all T tasks run together (W1, one task: plain
  2-D ``addmm``). Adam (docs/math.md, section 3, the formula of ``torch.optim.Adam``) is one
  call of ``torch._fused_adam_`` per step, the kernel of ``torch.optim.Adam(fused=True)``, minus the
  optimizer object's Python overhead (about 3 us a step instead of about 40 us for the
  ``_foreach_*`` form, kept as the fallback), under ``torch.no_grad``.
- Meta-SGD (W3, W4): theta is broadcast to the T tasks with ``expand`` (a view), the support
  gradient with respect to the expanded view is taken with ``create_graph=True``, and the mean
  query loss after ``theta - alpha * g`` is differentiated with respect to theta and alpha:
  the exact, second-order meta-gradient. Meta-update: SGD (W3) or Adam on [theta, alpha]
  with one step counter (W4), by the same fused kernel.

Opt-in (not the default): ``METAFAST_BENCH_TORCH_COMPILE=n`` puts the work through
``torch.compile`` (inductor, C++ on the CPU): Reptile's inner loop n passes (5 n steps) per
compiled call, Meta-SGD's whole meta-gradient (``torch.func.grad`` of ``torch.func.grad``). The
first call compiles (5-20 s; about 2 minutes for Reptile with n = 10), within the warm-up.

Tasks are drawn with ``torch.Generator`` in float32 (same distributions as
impl_reference.sample). Parameters are a list of tensors per layer; :func:`compute` returns
flat vectors in metafast's layout (per layer ``W`` row-major, then ``b`` if any).
"""

from __future__ import annotations

import math

import numpy as np

from fixtures import Fixed
from workloads import Workload

NAME = "pytorch"

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def available() -> str | None:
    try:
        import torch  # noqa: F401
    except Exception as error:
        return f"torch is not installed ({type(error).__name__}: {error})".split("\n")[0]
    return None


# --------------------------------------------------------------------------------------------
# Parameters: a flat list [W_1, (b_1,) W_2, (b_2,) ...], W (fan_in, fan_out), b (1, fan_out).

def _layers(w: Workload):
    return list(zip(w.sizes[:-1], w.sizes[1:]))


def _unflatten(w: Workload, flat: np.ndarray):
    import torch
    flat = np.asarray(flat, dtype=np.float32)
    tensors, offset = [], 0
    for fan_in, fan_out in _layers(w):
        tensors.append(torch.tensor(flat[offset: offset + fan_in * fan_out].reshape(fan_in, fan_out)))
        offset += fan_in * fan_out
        if w.bias:
            tensors.append(torch.tensor(flat[offset: offset + fan_out].reshape(1, fan_out)))
            offset += fan_out
    assert offset == flat.size
    return tensors


def _flatten(tensors) -> np.ndarray:
    return np.concatenate([t.detach().numpy().astype(np.float32).ravel() for t in tensors])


class _Model:
    """Batched forward pass and mean losses of the workload's MLP."""

    def __init__(self, w: Workload):
        import torch
        import torch.nn.functional as F
        self.w = w
        self.per_layer = 2 if w.bias else 1
        self.hidden = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
                       "identity": lambda z: z}[w.activation]
        assert w.output == "identity"
        self.torch, self.F = torch, F

    def forward(self, params, x):
        """params: [W (T, in, out), b (T|1, 1, out), ...]; x (T, rows, in)."""
        torch, step = self.torch, self.per_layer
        layers = len(params) // step
        a = x
        single = x.dim() == 2  # one task, no task axis: plain addmm/mm (W1)
        for index in range(layers):
            weights = params[index * step]
            if step == 2:
                z = (torch.addmm if single else torch.baddbmm)(params[index * step + 1], a, weights)
            else:
                z = (torch.mm if single else torch.bmm)(a, weights)
            a = self.hidden(z) if index < layers - 1 else z
        return a

    def summed_loss(self, params, x, y):
        """Sum over tasks of each task's mean loss (mse: mean over rows and outputs; bce: sum
        over outputs, mean over rows). x: (T, rows, in), or (rows, in) for one task."""
        out = self.forward(params, x)
        rows = out.shape[-2]
        if self.w.loss == "mse":
            if out.dim() == 2:
                return self.F.mse_loss(out, y)
            return self.F.mse_loss(out, y, reduction="sum") / (rows * out.shape[-1])
        return self.F.binary_cross_entropy_with_logits(out, y, reduction="sum") / rows


def _sampler(w: Workload, generator):
    import torch
    grid = torch.linspace(-5.0, 5.0, 100, dtype=torch.float32)
    support, rows = w.support, w.support + w.query

    def split(x, y):
        return x[:, :support], y[:, :support], x[:, support:], y[:, support:]

    def sample(tasks: int):
        """(xs, ys, xq, yq) float32, as impl_reference.sample draws them (support and query rows
        drawn together, one call per distribution)."""
        g = generator
        if w.task == "linear-binary":
            weights = torch.randn(tasks, w.sizes[0], 1, generator=g)
            x = torch.empty(tasks, rows, w.sizes[0]).uniform_(-1.0, 1.0, generator=g)
            return split(x, (torch.bmm(x, weights) > 0).float())
        amplitude = torch.empty(tasks, 1, 1).uniform_(0.1, 5.0, generator=g)
        phase = torch.empty(tasks, 1, 1).uniform_(0.0, math.pi, generator=g)
        if w.task == "sine-book":
            x = grid[torch.randint(0, 100, (tasks, rows, 1), generator=g)]
            return split(x, torch.sin(x + phase).mul_(amplitude))
        x = torch.empty(tasks, rows, 1).uniform_(-5.0, 5.0, generator=g)
        return split(x, torch.sin(x - phase).mul_(amplitude))

    return sample


class _Adam:
    """Adam in place on a list of tensors (docs/math.md, section 3, the formula of
    ``torch.optim.Adam``): one call of ``torch._fused_adam_``, the CPU kernel behind
    ``torch.optim.Adam(fused=True)``, without the optimizer object's Python overhead; the
    same formula with ``torch._foreach_*`` ops where that kernel is missing."""

    def __init__(self, torch, params, lr: float):
        self.torch, self.params, self.lr = torch, params, lr
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.fused = hasattr(torch, "_fused_adam_")
        self.step_tensor = torch.zeros((), dtype=torch.float32)  # read by the kernel, not changed
        self.steps = [self.step_tensor] * len(params)

    def step(self, grads, t: int):
        """One update with gradients ``grads``; ``t`` the step count, from 1."""
        torch = self.torch
        b1, b2 = ADAM_BETAS
        if self.fused:
            self.step_tensor.fill_(t)
            torch._fused_adam_(self.params, list(grads), self.m, self.v, [], self.steps, lr=self.lr,
                               beta1=b1, beta2=b2, weight_decay=0.0, eps=ADAM_EPS, amsgrad=False, maximize=False)
            return
        torch._foreach_lerp_(self.m, grads, 1 - b1)                 # m = b1 m + (1 - b1) g
        torch._foreach_mul_(self.v, b2)
        torch._foreach_addcmul_(self.v, grads, grads, 1 - b2)       # v = b2 v + (1 - b2) g^2
        denom = torch._foreach_div(self.v, 1 - b2 ** t)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, ADAM_EPS)                        # sqrt(v / (1 - b2^t)) + eps
        torch._foreach_addcdiv_(self.params, self.m, denom, -self.lr / (1 - b1 ** t))


# --------------------------------------------------------------------------------------------
# Reptile

def _reptile_step(model: _Model, theta, batch, w: Workload):
    """One batched Reptile meta-step in place on theta (list of tensors); returns the mean
    query loss at the adapted parameters (metafast computes it too)."""
    torch = model.torch
    xs, ys, xq, yq = batch
    tasks = xs.shape[0]
    if tasks == 1:  # serial Reptile: 2-D tensors, addmm
        xs, ys, xq, yq = xs[0], ys[0], xq[0], yq[0]
        params = [p.clone().requires_grad_() for p in theta]
    else:           # a copy of theta per task along a leading task axis
        params = [p.unsqueeze(0).repeat(tasks, 1, 1).requires_grad_() for p in theta]
    size = w.inner_batch
    batches = -(-w.support // size)
    xb = [xs[..., i * size:(i + 1) * size, :].contiguous() for i in range(batches)]
    yb = [ys[..., i * size:(i + 1) * size, :].contiguous() for i in range(batches)]
    passes = _compile_passes()
    if passes:
        params = _compiled_inner(model, w, passes)(params, xb, yb)
    else:
        adam = _Adam(torch, params, w.inner_lr)  # fresh state per task
        for u in range(w.inner_epochs * batches):
            b = u % batches
            grads = torch.autograd.grad(model.summed_loss(params, xb[b], yb[b]), params)
            with torch.no_grad():
                adam.step(grads, u + 1)
    with torch.no_grad():
        query_loss = model.summed_loss(params, xq, yq) / tasks
        for p, adapted in zip(theta, params):
            delta = adapted - p
            p.add_(delta if tasks == 1 else delta.mean(0), alpha=w.epsilon)  # theta += eps mean_i(theta~_i - theta)
    return query_loss


# Opt-in: torch.compile (inductor), with METAFAST_BENCH_TORCH_COMPILE=n (n >= 1). Reptile: one
# compiled function runs n passes over the support set (n = 1: 5 steps a call; n = inner_epochs:
# the whole inner loop unrolled, one call per task, the fastest and by far the slowest to
# compile). Meta-SGD (any n): the meta-gradient is torch.func.grad over a function that uses
# torch.func.grad for the inner step (exact, second order), compiled. Default (unset or 0):
# eager autograd as above. Compiled code is cached per (workload, n, intra-op threads).

_COMPILED: dict = {}


def _compile_passes() -> int:
    import os
    value = os.environ.get("METAFAST_BENCH_TORCH_COMPILE", "").strip()
    return int(value) if value else 0


def _compiled_inner(model: _Model, w: Workload, passes: int):
    """A function (params, xb, yb) -> adapted params running the whole inner loop (fresh
    Adam, the same formula), by calls of one torch.compile'd function of `passes` passes."""
    import torch
    from torch.func import grad

    key = ("reptile", w, passes, torch.get_num_threads())
    if key in _COMPILED:
        return _COMPILED[key]

    batches = -(-w.support // w.inner_batch)
    if w.inner_epochs % passes:
        raise ValueError(f"METAFAST_BENCH_TORCH_COMPILE={passes} must divide inner_epochs={w.inner_epochs}")
    b1, b2 = ADAM_BETAS
    lr = w.inner_lr
    t = torch.arange(1, w.inner_epochs * batches + 1, dtype=torch.float64)
    bias1 = (1 - b1 ** t).float().view(-1, passes * batches)   # per call, per step: 1 - b1^t
    bias2 = (1 - b2 ** t).float().view(-1, passes * batches)
    loss_grad = grad(model.summed_loss)

    def chunk(params, m, v, xb, yb, c1, c2):
        for j in range(passes * batches):
            g = loss_grad(params, xb[j % batches], yb[j % batches])
            m = [b1 * m_ + (1 - b1) * g_ for m_, g_ in zip(m, g)]
            v = [b2 * v_ + (1 - b2) * g_ * g_ for v_, g_ in zip(v, g)]
            params = [p - lr * (m_ / c1[j]) / (torch.sqrt(v_ / c2[j]) + ADAM_EPS) for p, m_, v_ in zip(params, m, v)]
        return params, m, v

    compiled = torch.compile(chunk, dynamic=False)

    def inner(params, xb, yb):
        params = [p.detach() for p in params]
        m = [torch.zeros_like(p) for p in params]
        v = [torch.zeros_like(p) for p in params]
        for c1, c2 in zip(bias1, bias2):
            params, m, v = compiled(params, m, v, xb, yb, c1, c2)
        return params

    _COMPILED[key] = inner
    return inner


# --------------------------------------------------------------------------------------------
# Meta-SGD

def _compiled_meta_gradient(model: _Model, w: Workload):
    """torch.compile'd (theta, alpha, xs, ys, xq, yq) -> ((g_theta, g_alpha), mean query loss)."""
    import torch
    from torch.func import grad, grad_and_value

    key = ("metasgd", w, torch.get_num_threads())
    if key not in _COMPILED:
        support_grad = grad(model.summed_loss)

        def mean_query_loss(theta, alpha, xs, ys, xq, yq):
            tasks = xs.shape[0]
            params = [p.expand(tasks, *p.shape) for p in theta]  # per-task gradients below
            for _ in range(w.inner_steps):
                g = support_grad(params, xs, ys)
                params = [p - a * g_ for p, a, g_ in zip(params, alpha, g)]
            return model.summed_loss(params, xq, yq) / tasks

        _COMPILED[key] = torch.compile(grad_and_value(mean_query_loss, argnums=(0, 1)), dynamic=False)
    return _COMPILED[key]


def _meta_gradient(model: _Model, theta, alpha, batch, w: Workload):
    """Mean query loss and exact meta-gradients (lists like theta) on a meta-batch."""
    torch = model.torch
    if _compile_passes():
        (g_theta, g_alpha), query_loss = _compiled_meta_gradient(model, w)(
            [p.detach() for p in theta], [a.detach() for a in alpha], *batch)
        return query_loss, g_theta, g_alpha
    xs, ys, xq, yq = batch
    tasks = xs.shape[0]
    params = [p.expand(tasks, *p.shape) for p in theta]   # theta broadcast to every task (a view)
    for _ in range(w.inner_steps):
        grads = torch.autograd.grad(model.summed_loss(params, xs, ys), params, create_graph=True)
        params = [p - a * g for p, a, g in zip(params, alpha, grads)]
    query_loss = model.summed_loss(params, xq, yq) / tasks
    grads = torch.autograd.grad(query_loss, list(theta) + list(alpha))
    return query_loss.detach(), grads[:len(theta)], grads[len(theta):]


# --------------------------------------------------------------------------------------------
# Interface

def make_runner(w: Workload, threads: int, seed: int = 0):
    import torch
    from fixtures import model as mf_model

    torch.set_num_threads(threads)
    model = _Model(w)
    generator = torch.Generator().manual_seed(seed)
    sample = _sampler(w, generator)
    theta = _unflatten(w, mf_model(w).init(seed=seed, dtype="float32"))

    if w.algorithm == "reptile":
        def step():
            _reptile_step(model, theta, sample(w.meta_batch), w)
    else:
        for p in theta:
            p.requires_grad_()
        alpha = [torch.full_like(p, w.alpha_init).requires_grad_() for p in theta]
        both = theta + alpha
        adam = _Adam(torch, both, w.meta_lr)  # on [theta, alpha], one step counter
        count = [0]

        def step():
            _, g_theta, g_alpha = _meta_gradient(model, theta, alpha, sample(w.meta_batch), w)
            grads = list(g_theta) + list(g_alpha)
            with torch.no_grad():
                if w.meta_optimizer == "sgd":
                    torch._foreach_add_(both, grads, alpha=-w.meta_lr)
                else:
                    count[0] += 1
                    adam.step(grads, count[0])

    if _compile_passes():
        step()  # compiles now (one meta-step taken), not in the first call of run()

    def run(units: int) -> int:
        iterations = -(-units * w.tasks_per_unit // w.meta_batch)
        for _ in range(iterations):
            step()
        return iterations * w.meta_batch // w.tasks_per_unit

    return run


def compute(w: Workload, f: Fixed) -> dict[str, np.ndarray]:
    import torch

    model = _Model(w)
    theta = _unflatten(w, f.theta)
    batch = tuple(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
                  for a in (f.x_support, f.y_support, f.x_query, f.y_query))
    if w.algorithm == "reptile":
        _reptile_step(model, theta, batch, w)
        return {"theta": _flatten(theta)}
    for p in theta:
        p.requires_grad_()
    alpha = [t.requires_grad_() for t in _unflatten(w, f.alpha)]
    _, g_theta, g_alpha = _meta_gradient(model, theta, alpha, batch, w)
    return {"g_theta": _flatten(g_theta), "g_alpha": _flatten(g_alpha)}
