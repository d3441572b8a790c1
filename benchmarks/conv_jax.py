"""JAX: W5 and W6 (see conv_workloads.py) as jitted programs, in the strongest form measured
on a CPU (impl_jax.py's form, with two changes that the measurements below called for).

Every meta-step is pure JAX: episodes are drawn with ``jax.random`` inside the program from the
data set held as a device array (an argument of the program), the Reptile inner loop (5 Adam
steps) is a fully unrolled ``lax.scan``, and ``make_runner`` compiles the meta-step ahead of
time, so one Python call does a whole meta-step (0.01-1 s of work). MAML's meta-gradient is
``jax.grad`` through the inner step (``jax.grad`` inside ``jax.grad``: exact, second order).

Two departures from impl_jax.py, both measured on the 2-core AMD EPYC (1 thread, JAX 0.10.2,
the second core busy with another job, so +-20%):

- Tasks of a meta-batch (TASKS): unrolled in the program, one after the other, by default.
  ``vmap`` over tasks turns every convolution with per-task weights (MAML's adapted
  parameters, Reptile's inner loop) into a grouped convolution, which XLA's CPU backend ran
  3-13x slower (W5 0.12 vs 1.6 meta-it/s, W6 33 vs 100 tasks/s); ``lax.map`` is a while loop
  (below: W6's five inner loops took 615 ms instead of 59). METAFAST_BENCH_JAX_TASKS=vmap or
  map selects those forms.
- No ``lax.scan`` over a chunk of meta-steps: one meta-step per call (it is long enough to
  hide the dispatch), because the same program inside an XLA while loop (``lax.scan`` or
  ``lax.map``, even of length 1) ran about 8x slower (W6 11 vs 80-100 tasks/s).

The convolution is ``lax.conv_general_dilated`` with explicit (before, after) padding pairs
from the SAME rule (conv_workloads.blocks), not ``padding="SAME"``. Batch norm is written out
(the batch's mean and biased variance per channel, ``rsqrt(var + eps)``, a shift). Layout
(LAYOUT): NHWC images with HWIO kernels inside by default (W6 about 100 tasks/s against 85
with NCHW), converted at the boundary: theta in the reference's layout (conv weight (out, in,
k, k)) to a list of per-block ``(kernel, bias, shift)`` and the dense ``(W, b)``, and back in
:func:`compute`; the data set is transposed once, in make_runner.

Threads: the driver pins the process and sets ``XLA_FLAGS`` before jax is imported (as for
W1-W4); this module imports jax lazily for that reason.
"""

from __future__ import annotations

import os

import numpy as np

from conv_workloads import ConvWorkload, Fixed, blocks, dataset, init, labels, network

NAME = "jax"

# "NHWC" (default) or "NCHW": the layout of images inside the program
# (METAFAST_BENCH_JAX_LAYOUT, so that the other can be measured).
LAYOUT = os.environ.get("METAFAST_BENCH_JAX_LAYOUT", "NHWC").upper()
# How the tasks of a meta-batch are batched (METAFAST_BENCH_JAX_TASKS): "unroll" (default), one
# task after the other in the program; "vmap"; "map" (lax.map: a while loop). See above.
TASKS = os.environ.get("METAFAST_BENCH_JAX_TASKS", "unroll").lower()


def available() -> str | None:
    try:
        import jax  # noqa: F401
        import jax.numpy  # noqa: F401
    except Exception as error:  # ImportError, or a broken jaxlib
        return f"jax is not installed ({type(error).__name__}: {error})".split("\n")[0]
    if LAYOUT not in ("NHWC", "NCHW"):
        return f"METAFAST_BENCH_JAX_LAYOUT={LAYOUT!r}: expected NHWC or NCHW"
    if TASKS not in ("unroll", "vmap", "map"):
        return f"METAFAST_BENCH_JAX_TASKS={TASKS!r}: expected unroll, vmap or map"
    return None


# --------------------------------------------------------------------------------------------
# Parameters and images: the reference's layout at the boundary, LAYOUT inside.

def _unflatten(w: ConvWorkload, flat: np.ndarray):
    """[(kernel, bias, shift) per block, (W, b)] as jax arrays; kernel OIHW or HWIO."""
    import jax.numpy as jnp
    assert w.bias, "W5/W6 have biases"
    layers = network(w).unflatten(np.asarray(flat, dtype=np.float32))
    params = []
    for layer in layers[:-1]:
        kernel = layer["weight"] if LAYOUT == "NCHW" else layer["weight"].transpose(2, 3, 1, 0)
        params.append(tuple(jnp.asarray(a) for a in (kernel, layer["bias"], layer["shift"])))
    params.append((jnp.asarray(layers[-1]["weight"]), jnp.asarray(layers[-1]["bias"])))
    return params


def _flatten(w: ConvWorkload, params) -> np.ndarray:
    layers = []
    for kernel, bias, shift in params[:-1]:
        kernel = np.asarray(kernel, dtype=np.float32)
        layers.append({"weight": kernel if LAYOUT == "NCHW" else kernel.transpose(3, 2, 0, 1),
                       "bias": np.asarray(bias, dtype=np.float32), "shift": np.asarray(shift, dtype=np.float32)})
    layers.append({"weight": np.asarray(params[-1][0], dtype=np.float32),
                   "bias": np.asarray(params[-1][1], dtype=np.float32)})
    return network(w).flatten(layers)


def _images(x: np.ndarray):
    """(..., C, H, W) NumPy images to a jax array in LAYOUT."""
    import jax.numpy as jnp
    x = np.asarray(x, dtype=np.float32)
    return jnp.asarray(x if LAYOUT == "NCHW" else np.moveaxis(x, -3, -1))


# --------------------------------------------------------------------------------------------
# The workload as pure functions

def _functions(w: ConvWorkload):
    import jax
    import jax.numpy as jnp
    from jax import lax

    tree_map = jax.tree_util.tree_map
    geometry = blocks(w)
    nchw = LAYOUT == "NCHW"
    numbers = ("NCHW", "OIHW", "NCHW") if nchw else ("NHWC", "HWIO", "NHWC")
    stats_axes = (0, 2, 3) if nchw else (0, 1, 2)     # batch norm: per channel over rows, H, W
    spatial = (2, 3) if nchw else (1, 2)

    def per_task(f, shared, batch):
        """f(shared, *task) for every task of batch (a tuple of arrays or trees of arrays with a
        leading task axis), stacked."""
        if TASKS == "map":
            return lax.map(lambda task: f(shared, *task), batch)
        if TASKS == "vmap":
            return jax.vmap(f, in_axes=(None,) + (0,) * len(batch))(shared, *batch)
        tasks = jax.tree_util.tree_leaves(batch)[0].shape[0]
        results = [f(shared, *tree_map(lambda a: a[t], batch)) for t in range(tasks)]
        return tree_map(lambda *parts: jnp.stack(parts), *results)

    def channel(v):
        return v[:, None, None] if nchw else v

    def forward(params, x):
        """Logits (rows, ways) of images x (rows, ...) in LAYOUT."""
        for (kernel, bias, shift), g in zip(params[:-1], geometry):
            z = lax.conv_general_dilated(x, kernel, (w.stride, w.stride), (g.pad_h, g.pad_w),
                                         dimension_numbers=numbers) + channel(bias)
            centred = z - jnp.mean(z, axis=stats_axes, keepdims=True)
            variance = jnp.mean(centred * centred, axis=stats_axes, keepdims=True)  # biased
            x = jax.nn.relu(centred * lax.rsqrt(variance + w.batch_norm_eps) + channel(shift))
        if w.head == "average":
            h = jnp.mean(x, axis=spatial)
        else:  # the reference flattens (C, H, W) in C order
            h = (x if nchw else jnp.transpose(x, (0, 3, 1, 2))).reshape(x.shape[0], -1)
        weights, bias = params[-1]
        return h @ weights + bias

    def loss(params, x, y):
        """Softmax cross-entropy with integer labels, mean over rows."""
        log_p = jax.nn.log_softmax(forward(params, x))
        return -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=1))

    grad_loss = jax.grad(loss)
    shots = w.support_shots + w.query_shots
    y_support, y_query = jnp.asarray(labels(w, w.support_shots)), jnp.asarray(labels(w, w.query_shots))

    def sample(key, data, tasks):
        """(xs, ys, xq, yq) drawn as conv_workloads.sample draws them, from data (classes,
        per_class, image in LAYOUT)."""
        k1, k2 = jax.random.split(key)
        classes, per_class = data.shape[:2]
        chosen = jnp.argsort(jax.random.uniform(k1, (tasks, classes)), axis=1)[:, : w.ways]
        images = jnp.argsort(jax.random.uniform(k2, (tasks, w.ways, per_class)), axis=2)[..., :shots]
        x = jnp.swapaxes(data[chosen[:, :, None], images], 1, 2)   # (T, shots, ways, ...): row r of class r % ways
        image = data.shape[2:]
        xs = x[:, : w.support_shots].reshape(tasks, w.support, *image)
        xq = x[:, w.support_shots:].reshape(tasks, w.query, *image)
        return (xs, jnp.broadcast_to(y_support, (tasks, w.support)), xq,
                jnp.broadcast_to(y_query, (tasks, w.query)))

    # ---------------- MAML
    def task_query_loss(params, xs, ys, xq, yq):
        adapted = params
        for _ in range(w.inner_steps):
            g = grad_loss(adapted, xs, ys)
            adapted = tree_map(lambda p, g_: p - w.inner_lr * g_, adapted, g)
        return loss(adapted, xq, yq)

    def mean_query_loss(params, batch):
        return jnp.mean(per_task(task_query_loss, params, batch))

    meta_value_and_grad = jax.value_and_grad(mean_query_loss)

    # ---------------- Reptile
    batches = max(1, w.support // w.inner_batch)
    b1, b2 = w.inner_betas
    steps = np.arange(1, w.inner_updates + 1, dtype=np.float64)
    bias1 = (1.0 - b1 ** steps).astype(np.float32)           # bias corrections, exact per step
    bias2 = (1.0 - b2 ** steps).astype(np.float32)
    which = (np.arange(w.inner_updates) % batches).astype(np.int32)

    def inner_loop(theta, xs, ys):
        """One task: fresh Adam, the updates on consecutive minibatches; returns theta~."""
        assert w.support % w.inner_batch == 0, "minibatches of equal size assumed"
        xb = xs.reshape(batches, w.inner_batch, *xs.shape[1:])
        yb = ys.reshape(batches, w.inner_batch)
        zeros = tree_map(jnp.zeros_like, theta)

        def step(carry, schedule):
            params, m, v = carry
            index, c1, c2 = schedule
            g = grad_loss(params, xb[index], yb[index])
            m = tree_map(lambda m_, g_: b1 * m_ + (1 - b1) * g_, m, g)
            v = tree_map(lambda v_, g_: b2 * v_ + (1 - b2) * g_ * g_, v, g)
            params = tree_map(lambda p, m_, v_: p - w.inner_lr * (m_ / c1) / (jnp.sqrt(v_ / c2) + w.adam_eps),
                              params, m, v)
            return (params, m, v), None

        (params, _, _), _ = lax.scan(step, (theta, zeros, zeros),
                                     (jnp.asarray(which), jnp.asarray(bias1), jnp.asarray(bias2)),
                                     unroll=True)
        return params

    def reptile_step(theta, batch):
        xs, ys, xq, yq = batch
        adapted = per_task(inner_loop, theta, (xs, ys))
        # the score, as W1/W2 compute it
        query_loss = jnp.mean(per_task(lambda _, *task: loss(*task), None, (adapted, xq, yq)))
        theta = tree_map(lambda p, a: p + w.epsilon * jnp.mean(a - p[None], axis=0), theta, adapted)
        return theta, query_loss

    return dict(forward=forward, loss=loss, sample=sample, meta_value_and_grad=meta_value_and_grad,
                reptile_step=reptile_step)


def _chunk(w: ConvWorkload) -> int:
    """Meta-steps per jitted call: one, no while loop (see the module's docstring); a larger
    chunk would run a lax.scan over meta-steps, as impl_jax.py does."""
    return 1


def make_runner(w: ConvWorkload, threads: int, seed: int = 0):
    """run(units) does at least ``units`` units of work, episode sampling included; returns how many."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    fns = _functions(w)
    sample = fns["sample"]
    chunk = _chunk(w)
    tree_map = jax.tree_util.tree_map
    data = _images(dataset(seed))  # an argument of the program, not a 3 MB constant in it
    theta = _unflatten(w, init(w, seed))
    key = jax.random.PRNGKey(seed)

    if w.algorithm == "reptile":
        def one(data, carry):
            theta, key = carry
            key, sub = jax.random.split(key)
            theta, query_loss = fns["reptile_step"](theta, sample(sub, data, w.meta_batch))
            return (theta, key), query_loss

        state = (theta, key)
    else:
        b1, b2 = w.meta_betas

        def one(data, carry):
            theta, m, v, t, key = carry
            key, sub = jax.random.split(key)
            query_loss, grads = fns["meta_value_and_grad"](theta, sample(sub, data, w.meta_batch))
            t = t + 1
            m = tree_map(lambda m_, g: b1 * m_ + (1 - b1) * g, m, grads)
            v = tree_map(lambda v_, g: b2 * v_ + (1 - b2) * g * g, v, grads)
            c1, c2 = 1 - b1 ** t, 1 - b2 ** t
            theta = tree_map(lambda p, m_, v_: p - w.meta_lr * (m_ / c1) / (jnp.sqrt(v_ / c2) + w.adam_eps),
                             theta, m, v)
            return (theta, m, v, t, key), query_loss

        zeros = tree_map(jnp.zeros_like, theta)
        state = (theta, zeros, zeros, jnp.float32(0.0), key)

    def chunk_of_steps(state, data):
        if chunk == 1:
            return one(data, state)
        state, losses = lax.scan(lambda carry, _: one(data, carry), state, None, length=chunk)
        return state, losses[-1]

    # Compiled here, ahead of time, and run once (results dropped: the state does not move), so
    # that no call of run() pays for compilation, not even the first.
    many = jax.jit(chunk_of_steps).lower(state, data).compile()
    jax.block_until_ready(many(state, data))
    holder = [state]
    units_per_chunk = chunk * w.meta_batch // w.tasks_per_unit

    def run(units: int) -> int:
        calls = max(1, -(-units // units_per_chunk))
        state = holder[0]
        for _ in range(calls):
            state, query_loss = many(state, data)
        jax.block_until_ready((state, query_loss))
        holder[0] = state
        return calls * units_per_chunk

    return run


def compute(w: ConvWorkload, f: Fixed) -> dict[str, np.ndarray]:
    """W5: {"g_theta": mean meta-gradient at f.theta}; W6: {"theta": theta after one meta-step};
    flat, in the reference's layout."""
    import jax
    import jax.numpy as jnp

    fns = _functions(w)
    theta = _unflatten(w, f.theta)
    batch = (_images(f.x_support), jnp.asarray(f.y_support), _images(f.x_query), jnp.asarray(f.y_query))
    if w.algorithm == "reptile":
        new_theta, _ = jax.jit(fns["reptile_step"])(theta, batch)
        return {"theta": _flatten(w, new_theta)}
    _, grads = jax.jit(fns["meta_value_and_grad"])(theta, batch)
    return {"g_theta": _flatten(w, grads)}
