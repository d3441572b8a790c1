"""JAX: the four workloads as jitted programs, in the strongest form JAX offers on a CPU.

Every meta-step is pure JAX: tasks are drawn with ``jax.random`` inside the program, the tasks
of a meta-batch are batched with ``vmap``, the Reptile inner loop (50 Adam steps) is a
``lax.scan`` (unrolled by one pass, 5 steps), and ``make_runner`` compiles (ahead of time, in
``make_runner`` itself) a ``lax.scan`` over a fixed chunk of meta-steps, so one Python call (one
dispatch) does a whole chunk of work; ``run(units)`` makes ``ceil(units / chunk)`` such calls.
The Meta-SGD meta-gradient is ``jax.grad`` through the inner step (``jax.grad`` inside
``jax.grad``: exact, second order).

Parameters are kept as a list of ``(W, b)`` (``(W,)`` without biases) per layer, ``W`` of shape
``(fan_in, fan_out)``; :func:`compute` returns flat vectors in metafast's layout (per layer
``W`` row-major, then ``b`` if the model has biases).

Threads: the driver pins the process to ``threads`` cores and sets ``XLA_FLAGS`` before jax is
imported (XLA reads them when its CPU backend starts); this module imports jax lazily for that
reason and does not change them.
"""

from __future__ import annotations

import math

import numpy as np

from fixtures import Fixed
from workloads import Workload

NAME = "jax"

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def available() -> str | None:
    try:
        import jax  # noqa: F401
        import jax.numpy  # noqa: F401
    except Exception as error:  # ImportError, or a broken jaxlib
        return f"jax is not installed ({type(error).__name__}: {error})".split("\n")[0]
    return None


# --------------------------------------------------------------------------------------------
# Model: parameters as a list of (W, b) or (W,), metafast's flat layout at the boundary.

def _layers(w: Workload):
    return list(zip(w.sizes[:-1], w.sizes[1:]))


def _unflatten(w: Workload, flat: np.ndarray):
    import jax.numpy as jnp
    flat = np.asarray(flat, dtype=np.float32)
    params, offset = [], 0
    for fan_in, fan_out in _layers(w):
        weights = flat[offset: offset + fan_in * fan_out].reshape(fan_in, fan_out)
        offset += fan_in * fan_out
        layer = (jnp.asarray(weights),)
        if w.bias:
            layer += (jnp.asarray(flat[offset: offset + fan_out]),)
            offset += fan_out
        params.append(layer)
    assert offset == flat.size
    return params


def _flatten(w: Workload, params) -> np.ndarray:
    parts = []
    for layer in params:  # (W,) or (W, b)
        parts.extend(np.asarray(a, dtype=np.float32).ravel() for a in layer)
    return np.concatenate(parts)


def _init(w: Workload, seed: int):
    """The starting theta of the timed runs: metafast's initializer (only the values differ
    between frameworks' own initializers; the work timed is the same)."""
    from fixtures import model
    return _unflatten(w, model(w).init(seed=seed, dtype="float32"))


def _functions(w: Workload):
    """Pure functions of the workload: forward, loss, samplers, steps."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    hidden = {"tanh": jnp.tanh, "relu": jax.nn.relu, "identity": lambda z: z,
              "sigmoid": jax.nn.sigmoid}[w.activation]
    assert w.output == "identity"

    def forward(params, x):
        a = x
        for index, layer in enumerate(params):
            z = a @ layer[0]
            if w.bias:
                z = z + layer[1]
            a = hidden(z) if index < len(params) - 1 else z
        return a

    if w.loss == "mse":
        def loss(params, x, y):
            return jnp.mean((forward(params, x) - y) ** 2)
    else:  # binary cross-entropy on logits, mean over rows
        def loss(params, x, y):
            z = forward(params, x)
            return jnp.sum(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z)))) / z.shape[0]

    def sample(key, tasks):
        """(xs, ys, xq, yq), float32, as impl_reference.sample draws them."""
        if w.task == "linear-binary":
            dim = w.sizes[0]
            k1, k2, k3 = jax.random.split(key, 3)
            weights = jax.random.normal(k1, (tasks, dim, 1), jnp.float32)
            xs = jax.random.uniform(k2, (tasks, w.support, dim), jnp.float32, -1.0, 1.0)
            xq = jax.random.uniform(k3, (tasks, w.query, dim), jnp.float32, -1.0, 1.0)
            ys = (jnp.einsum("tkd,tdo->tko", xs, weights) > 0).astype(jnp.float32)
            yq = (jnp.einsum("tkd,tdo->tko", xq, weights) > 0).astype(jnp.float32)
            return xs, ys, xq, yq
        k1, k2, k3, k4 = jax.random.split(key, 4)
        amplitude = jax.random.uniform(k1, (tasks, 1, 1), jnp.float32, 0.1, 5.0)
        phase = jax.random.uniform(k2, (tasks, 1, 1), jnp.float32, 0.0, math.pi)
        if w.task == "sine-book":
            grid = jnp.linspace(-5.0, 5.0, 100, dtype=jnp.float32)
            xs = grid[jax.random.randint(k3, (tasks, w.support, 1), 0, 100)]
            xq = grid[jax.random.randint(k4, (tasks, w.query, 1), 0, 100)]
            return xs, amplitude * jnp.sin(xs + phase), xq, amplitude * jnp.sin(xq + phase)
        xs = jax.random.uniform(k3, (tasks, w.support, 1), jnp.float32, -5.0, 5.0)
        xq = jax.random.uniform(k4, (tasks, w.query, 1), jnp.float32, -5.0, 5.0)
        return xs, amplitude * jnp.sin(xs - phase), xq, amplitude * jnp.sin(xq - phase)

    tree_map = jax.tree_util.tree_map
    grad_loss = jax.grad(loss)

    # ---------------- Reptile
    batches = -(-w.support // w.inner_batch)
    assert w.support % w.inner_batch == 0, "minibatches of equal size assumed"
    updates = w.inner_epochs * batches
    b1, b2 = ADAM_BETAS
    steps = np.arange(1, updates + 1, dtype=np.float64)
    bias1 = (1.0 - b1 ** steps).astype(np.float32)           # bias corrections, exact per step
    bias2 = (1.0 - b2 ** steps).astype(np.float32)
    which = (np.arange(updates) % batches).astype(np.int32)  # minibatch of each update, in order

    def inner_loop(theta, xs, ys):
        """One task: fresh Adam, `updates` steps on consecutive minibatches; returns theta~."""
        xb = xs.reshape(batches, w.inner_batch, xs.shape[-1])
        yb = ys.reshape(batches, w.inner_batch, ys.shape[-1])
        zeros = tree_map(jnp.zeros_like, theta)

        def step(carry, schedule):
            params, m, v = carry
            index, c1, c2 = schedule
            g = grad_loss(params, xb[index], yb[index])
            m = tree_map(lambda m_, g_: b1 * m_ + (1 - b1) * g_, m, g)
            v = tree_map(lambda v_, g_: b2 * v_ + (1 - b2) * g_ * g_, v, g)
            params = tree_map(lambda p, m_, v_: p - w.inner_lr * (m_ / c1) / (jnp.sqrt(v_ / c2) + ADAM_EPS),
                              params, m, v)
            return (params, m, v), None

        (params, _, _), _ = lax.scan(step, (theta, zeros, zeros),
                                     (jnp.asarray(which), jnp.asarray(bias1), jnp.asarray(bias2)),
                                     unroll=batches)
        return params

    def reptile_step(theta, batch):
        xs, ys, xq, yq = batch
        if w.meta_batch == 1:  # serial Reptile: no vmap, one task
            adapted = tree_map(lambda a: a[None], inner_loop(theta, xs[0], ys[0]))
        else:
            adapted = jax.vmap(inner_loop, in_axes=(None, 0, 0))(theta, xs, ys)
        query_loss = jnp.mean(jax.vmap(loss)(adapted, xq, yq))  # scored, as metafast does
        theta = tree_map(lambda p, a: p + w.epsilon * jnp.mean(a - p[None], axis=0), theta, adapted)
        return theta, query_loss

    # ---------------- Meta-SGD
    def task_query_loss(theta, alpha, xs, ys, xq, yq):
        params = theta
        for _ in range(w.inner_steps):
            g = grad_loss(params, xs, ys)
            params = tree_map(lambda p, a, g_: p - a * g_, params, alpha, g)
        return loss(params, xq, yq)

    def mean_query_loss(theta, alpha, batch):
        xs, ys, xq, yq = batch
        return jnp.mean(jax.vmap(task_query_loss, in_axes=(None, None, 0, 0, 0, 0))(theta, alpha, xs, ys, xq, yq))

    meta_value_and_grad = jax.value_and_grad(mean_query_loss, argnums=(0, 1))

    return dict(sample=sample, reptile_step=reptile_step, meta_value_and_grad=meta_value_and_grad)


def _chunk(w: Workload) -> int:
    """Meta-steps per jitted call (roughly 10-50 ms of work on one core)."""
    return {"W1": 32, "W2": 2, "W3": 256, "W4": 64}.get(w.name, 8)


def make_runner(w: Workload, threads: int, seed: int = 0):
    import jax
    import jax.numpy as jnp
    from jax import lax

    fns = _functions(w)
    sample = fns["sample"]
    chunk = _chunk(w)
    tree_map = jax.tree_util.tree_map
    theta = _init(w, seed)
    key = jax.random.PRNGKey(seed)

    if w.algorithm == "reptile":
        def one(carry, _):
            theta, key = carry
            key, sub = jax.random.split(key)
            theta, query_loss = fns["reptile_step"](theta, sample(sub, w.meta_batch))
            return (theta, key), query_loss

        state = (theta, key)
    else:
        alpha = tree_map(lambda p: jnp.full_like(p, w.alpha_init), theta)
        b1, b2 = ADAM_BETAS

        def one(carry, _):
            theta, alpha, m, v, t, key = carry
            key, sub = jax.random.split(key)
            query_loss, (g_theta, g_alpha) = fns["meta_value_and_grad"](theta, alpha, sample(sub, w.meta_batch))
            params, grads = (theta, alpha), (g_theta, g_alpha)
            if w.meta_optimizer == "sgd":
                params = tree_map(lambda p, g: p - w.meta_lr * g, params, grads)
            else:  # Adam on [theta, alpha], one step counter
                t = t + 1
                m = tree_map(lambda m_, g: b1 * m_ + (1 - b1) * g, m, grads)
                v = tree_map(lambda v_, g: b2 * v_ + (1 - b2) * g * g, v, grads)
                c1, c2 = 1 - b1 ** t, 1 - b2 ** t
                params = tree_map(lambda p, m_, v_: p - w.meta_lr * (m_ / c1) / (jnp.sqrt(v_ / c2) + ADAM_EPS),
                                  params, m, v)
            return (params[0], params[1], m, v, t, key), query_loss

        zeros = tree_map(jnp.zeros_like, (theta, alpha))
        state = (theta, alpha, zeros, zeros, jnp.float32(0.0), key)

    def chunk_of_steps(state):
        state, losses = lax.scan(one, state, None, length=chunk)
        return state, losses[-1]

    # Compiled here, ahead of time, and run once (results dropped: the state does not move), so
    # that no call of run() pays for compilation, not even the first.
    many = jax.jit(chunk_of_steps).lower(state).compile()
    jax.block_until_ready(many(state))
    holder = [state]
    units_per_chunk = chunk * w.meta_batch // w.tasks_per_unit

    def run(units: int) -> int:
        calls = max(1, -(-units // units_per_chunk))
        state = holder[0]
        for _ in range(calls):
            state, query_loss = many(state)
        jax.block_until_ready((state, query_loss))
        holder[0] = state
        return calls * units_per_chunk

    return run


def compute(w: Workload, f: Fixed) -> dict[str, np.ndarray]:
    import jax
    import jax.numpy as jnp

    fns = _functions(w)
    theta = _unflatten(w, f.theta)
    batch = tuple(jnp.asarray(a, dtype=jnp.float32) for a in (f.x_support, f.y_support, f.x_query, f.y_query))
    if w.algorithm == "reptile":
        new_theta, _ = jax.jit(fns["reptile_step"])(theta, batch)
        return {"theta": _flatten(w, new_theta)}
    alpha = _unflatten(w, f.alpha)
    _, (g_theta, g_alpha) = jax.jit(fns["meta_value_and_grad"])(theta, alpha, batch)
    return {"g_theta": _flatten(w, g_theta), "g_alpha": _flatten(w, g_alpha)}
