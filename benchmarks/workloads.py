"""The four benchmark workloads, shared by every implementation.

W1  Reptile serial: MLP 1-64-1 (tanh hidden, linear output, MSE); per task 50 points of a sine
    (A ~ U[0.1, 5], phi ~ U[0, pi], x from linspace(-5, 5, 100), y = A sin(x + phi));
    10 passes over 5 minibatches of 10 = 50 Adam steps (lr 1e-2, fresh state per task);
    theta += 0.1 (theta~ - theta). Unit: tasks/s.
W2  Reptile batched: the same with MLP 1-64-64-1 and 32 tasks per meta-update. Unit: tasks/s.
W3  Meta-SGD logistic: bias-free single layer, 50 inputs, sigmoid + BCE; each task its own
    hyperplane (w ~ N(0, I), x ~ U[-1, 1]^50, y = 1[x.w > 0]), 10 support and 10 query rows;
    exact meta-gradient w.r.t. theta and alpha; 32 tasks per meta-iteration; SGD meta-update.
    Unit: meta-iterations/s.
W4  Meta-SGD sine: MLP 1-40-40-1 ReLU, 10 support and 10 query points, x ~ U[-5, 5]
    (A ~ U[0.1, 5], phi ~ U[0, pi], y = A sin(x - phi)); one inner step; exact meta-gradient;
    25 tasks per meta-iteration; Adam meta-update lr 1e-3. Unit: meta-iterations/s.

All float32. FLOPs count 2 per multiply-add of the matrix products each algorithm needs
(elementwise work is not counted); see ``flops_per_unit``.
"""

from __future__ import annotations

from dataclasses import dataclass



@dataclass(frozen=True)
class Workload:
    name: str
    algorithm: str            # "reptile" | "metasgd"
    sizes: tuple[int, ...]
    activation: str
    output: str
    bias: bool
    loss: str                 # "mse" | "bce"
    task: str                 # "sine-book" | "sine" | "linear-binary"
    support: int
    query: int
    meta_batch: int
    unit: str                 # "tasks/s" | "meta-it/s"
    # Reptile
    inner_lr: float = 1e-2
    inner_epochs: int = 10
    inner_batch: int = 10
    epsilon: float = 0.1
    # Meta-SGD
    inner_steps: int = 1
    alpha_init: float = 0.01
    meta_optimizer: str = "adam"
    meta_lr: float = 1e-3

    @property
    def tasks_per_unit(self) -> int:
        """Tasks in one unit of throughput (a task for Reptile, a meta-iteration for Meta-SGD)."""
        return 1 if self.unit == "tasks/s" else self.meta_batch


WORKLOADS = {
    "W1": Workload("W1", "reptile", (1, 64, 1), "tanh", "identity", True, "mse", "sine-book",
                   support=50, query=1, meta_batch=1, unit="tasks/s"),
    "W2": Workload("W2", "reptile", (1, 64, 64, 1), "tanh", "identity", True, "mse", "sine-book",
                   support=50, query=1, meta_batch=32, unit="tasks/s"),
    "W3": Workload("W3", "metasgd", (50, 1), "identity", "identity", False, "bce", "linear-binary",
                   support=10, query=10, meta_batch=32, unit="meta-it/s", meta_optimizer="sgd", meta_lr=1e-3),
    "W4": Workload("W4", "metasgd", (1, 40, 40, 1), "relu", "identity", True, "mse", "sine",
                   support=10, query=10, meta_batch=25, unit="meta-it/s", meta_optimizer="adam", meta_lr=1e-3),
}


def _products(sizes: tuple[int, ...]) -> tuple[int, int]:
    """(sum over layers of fan_in * fan_out, the same without the first layer)."""
    layers = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return sum(layers), sum(layers[1:])


def flops_per_unit(w: Workload) -> float:
    """2 x multiply-adds of the matrix products per unit of work.

    With S = sum_l fan_in*fan_out and S' = the same sum without the first layer, on r rows:
    forward r*S; a gradient r*(2S + S') (forward, weight gradients, delta propagation); a
    Hessian-vector product r*(2S + 5S') beyond its own forward pass (R-forward S + S',
    R weight gradients S + S', delta and R-delta propagation 3S'). Reptile, per task: 50 minibatch gradients of 10 rows plus a forward on
    the query set. Meta-SGD, per task: J support gradients, one query gradient and (exact) J
    Hessian-vector products on the support set.
    """
    s, s_rest = _products(w.sizes)
    forward = s
    gradient = 2 * s + s_rest
    hvp = 2 * s + 5 * s_rest
    if w.algorithm == "reptile":
        steps = w.inner_epochs * -(-w.support // w.inner_batch)
        macs = steps * w.inner_batch * gradient + w.query * forward
    else:
        macs = (w.inner_steps * w.support * gradient + w.query * gradient
                + w.inner_steps * w.support * (forward + hvp))  # the HVP redoes the forward pass
    return 2.0 * macs * w.tasks_per_unit


def get(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise SystemExit(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}") from None


