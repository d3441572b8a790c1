"""The convolutional benchmark workloads W5 and W6, shared by every implementation.

Network (both): metafast.reference's ``ConvNet`` on (1, 28, 28) images, Conv-4: four blocks of
3x3 convolution (64 channels, stride 2, padding "same": TensorFlow/XLA's SAME rule, the
smaller half of the padding before) -> batch norm with the batch's own statistics (per
channel over rows, height and width, biased variance, eps 1e-5, a learned shift, no scale,
no running averages) -> ReLU, no pooling (28 -> 14 -> 7 -> 4 -> 2); then a head and a dense
layer to 5 logits; softmax cross-entropy (mean over rows) with integer labels.

W5  MAML, Omniglot-shaped: 5-way 1-shot, head "average" (64 features); one inner SGD step of
    lr 0.4 on the 5 support images; loss on 5 query images (1 per class) at the adapted
    parameters; exact (second-order) meta-gradient; 32 tasks per meta-iteration; Adam
    meta-update (lr 1e-3, betas 0.9 and 0.999, eps 1e-8). Unit: meta-iterations/s.
W6  Reptile on the same network with head "flatten" (64 x 2 x 2 = 256 features): 5-way, 10
    training images per class (50 support rows, row r of class r % 5) and 5 query images
    (1 per class, scored only); inner loop 5 Adam steps (lr 1e-3, beta1 0, beta2 0.999, eps
    1e-8, fresh state per task) on the consecutive minibatches of 10 rows (0-9, 10-19, ...; no
    shuffling); 5 tasks per meta-update; theta += epsilon mean_i(theta~_i - theta), epsilon 1.
    Unit: tasks/s.

Tasks come from a fixed synthetic image set (``dataset``: 50 classes x 20 images of 28 x 28,
float32 in [0, 1], each class a random smooth prototype plus noise; made by NumPy from a seed,
no download). A task draws 5 distinct classes (label = position among the 5) and distinct
images within each class; row r of the support set (and of the query set) is an image of
class r % 5. Each implementation draws its episodes inside its timed loop, from the data set
held as its own array, so sampling is part of the work measured (as in W1-W4).

An implementation module (conv_jax.py, conv_torch.py, conv_reference.py, and conv_metafast.py
when metafast has ConvNet learners) provides ``NAME``, ``available()``,
``make_runner(w, threads, seed=0)`` and ``compute(w, fixed)``; see conv_run.py.

All float32. FLOPs count 2 per multiply-add of the convolutions and dense products (batch
norm, activations and the loss are not counted); see ``flops_per_unit``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metafast.reference.convnet import ConvNet, conv_output_size


@dataclass(frozen=True)
class ConvWorkload:
    name: str
    algorithm: str                       # "maml" | "reptile"
    head: str                            # "average" | "flatten"
    support_shots: int                   # support images per class
    query_shots: int                     # query images per class
    meta_batch: int
    unit: str                            # "meta-it/s" | "tasks/s"
    inner_lr: float
    check_tasks: int                     # tasks of the correctness check's fixed meta-batch
    # the network
    input_shape: tuple[int, int, int] = (1, 28, 28)
    channels: tuple[int, ...] = (64, 64, 64, 64)
    ways: int = 5
    kernel_size: int = 3
    stride: int = 2
    padding: str = "same"
    pool: str | None = None
    batch_norm_eps: float = 1e-5
    bias: bool = True
    loss: str = "softmax_ce"
    adam_eps: float = 1e-8
    # MAML: SGD inner steps, Adam meta-update
    inner_steps: int = 1
    meta_lr: float = 1e-3
    meta_betas: tuple[float, float] = (0.9, 0.999)
    # Reptile: Adam inner loop over consecutive minibatches, theta += epsilon mean(theta~ - theta)
    inner_batch: int = 10
    inner_epochs: int = 1
    inner_betas: tuple[float, float] = (0.0, 0.999)
    epsilon: float = 1.0

    @property
    def support(self) -> int:
        return self.ways * self.support_shots

    @property
    def query(self) -> int:
        return self.ways * self.query_shots

    @property
    def inner_updates(self) -> int:
        """Inner-loop updates per task: SGD steps (MAML) or Adam steps (Reptile)."""
        if self.algorithm == "maml":
            return self.inner_steps
        return self.inner_epochs * -(-self.support // self.inner_batch)

    @property
    def tasks_per_unit(self) -> int:
        """Tasks in one unit of throughput (a task for Reptile, a meta-iteration for MAML)."""
        return 1 if self.unit == "tasks/s" else self.meta_batch


WORKLOADS = {
    "W5": ConvWorkload("W5", "maml", "average", support_shots=1, query_shots=1, meta_batch=32, unit="meta-it/s",
                       inner_lr=0.4, check_tasks=32),
    "W6": ConvWorkload("W6", "reptile", "flatten", support_shots=10, query_shots=1, meta_batch=5, unit="tasks/s",
                       inner_lr=1e-3, check_tasks=5),
}


def get(name: str) -> ConvWorkload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise SystemExit(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}") from None


def network(w: ConvWorkload) -> ConvNet:
    """The reference network: its docstring is the definition of the semantics and of the flat
    theta layout (per block conv weight (out, in, k, k), conv bias, bn shift; then dense W
    (features, outputs) and b) that every implementation's ``compute`` returns."""
    return ConvNet(w.input_shape, channels=w.channels, outputs=w.ways, kernel_size=w.kernel_size, stride=w.stride,
                   padding=w.padding, pool=w.pool, batch_norm=True, batch_norm_eps=w.batch_norm_eps,
                   activation="relu", head=w.head, bias=w.bias)


@dataclass(frozen=True)
class Block:
    """One convolution's geometry: channels, padding (before, after) per axis, output size."""

    in_channels: int
    out_channels: int
    pad_h: tuple[int, int]
    pad_w: tuple[int, int]
    out_h: int
    out_w: int


def blocks(w: ConvWorkload) -> list[Block]:
    """The blocks' geometry by the reference's ``conv_output_size`` (the SAME rule), so that
    every implementation pads explicitly and identically."""
    assert w.pool is None, "max-pool is not part of W5/W6"
    c, h, wd = w.input_shape
    out = []
    for channels in w.channels:
        out_h, *pad_h = conv_output_size(h, w.kernel_size, w.stride, w.padding)
        out_w, *pad_w = conv_output_size(wd, w.kernel_size, w.stride, w.padding)
        out.append(Block(c, channels, tuple(pad_h), tuple(pad_w), out_h, out_w))
        c, h, wd = channels, out_h, out_w
    return out


def init(w: ConvWorkload, seed: int = 0) -> np.ndarray:
    """The starting theta of every timed run and of the check: the reference's initializer."""
    return network(w).init(seed=seed, dtype="float32")


# ------------------------------------------------------------------------------------------
# Data

def dataset(seed: int = 0, classes: int = 50, per_class: int = 20, size: int = 28) -> np.ndarray:
    """(classes, per_class, 1, size, size) float32 in [0, 1]: per class a smooth prototype (a sum
    of four random low-frequency plane waves, scaled to [0.1, 0.9]) plus Gaussian noise of
    standard deviation 0.15, clipped. Fast (a few ms), deterministic given the seed."""
    rng = np.random.default_rng(seed)
    grid = np.arange(size) / size
    u, v = grid[:, None], grid[None, :]
    freq = rng.integers(-3, 4, size=(classes, 4, 2))
    phase = rng.uniform(0.0, 2 * np.pi, size=(classes, 4))
    amplitude = rng.normal(size=(classes, 4))
    waves = amplitude[..., None, None] * np.cos(
        2 * np.pi * (freq[..., 0, None, None] * u + freq[..., 1, None, None] * v) + phase[..., None, None])
    proto = waves.sum(axis=1)
    low = proto.min(axis=(1, 2), keepdims=True)
    high = proto.max(axis=(1, 2), keepdims=True)
    proto = 0.1 + 0.8 * (proto - low) / np.maximum(high - low, 1e-12)
    images = proto[:, None] + 0.15 * rng.normal(size=(classes, per_class, size, size))
    return np.clip(images, 0.0, 1.0).astype(np.float32)[:, :, None]


def labels(w: ConvWorkload, shots: int) -> np.ndarray:
    """Row r's label is r % ways (int32, shape (ways * shots,))."""
    return np.tile(np.arange(w.ways, dtype=np.int32), shots)


def sample(w: ConvWorkload, data: np.ndarray, rng: np.random.Generator, tasks: int):
    """(xs (T, S, C, H, W), ys (T, S) int32, xq (T, Q, C, H, W), yq (T, Q) int32) drawn with NumPy:
    per task ``ways`` distinct classes and ``support_shots + query_shots`` distinct images of each
    (the first ones the support set's). The JAX and PyTorch samplers draw the same way (argsort
    of uniforms) with their own generators."""
    classes, per_class = data.shape[:2]
    shots = w.support_shots + w.query_shots
    chosen = np.argsort(rng.random((tasks, classes)), axis=1)[:, : w.ways]
    images = np.argsort(rng.random((tasks, w.ways, per_class)), axis=2)[..., :shots]
    x = data[chosen[:, :, None], images]              # (T, ways, shots, C, H, W)
    x = x.transpose(0, 2, 1, 3, 4, 5)                 # (T, shots, ways, ...): row r is class r % ways
    xs = x[:, : w.support_shots].reshape(tasks, w.support, *data.shape[2:])
    xq = x[:, w.support_shots:].reshape(tasks, w.query, *data.shape[2:])
    ys = np.broadcast_to(labels(w, w.support_shots), (tasks, w.support)).copy()
    yq = np.broadcast_to(labels(w, w.query_shots), (tasks, w.query)).copy()
    return np.ascontiguousarray(xs), ys, np.ascontiguousarray(xq), yq


@dataclass
class Fixed:
    theta: np.ndarray       # (num_params,) float32, the reference's init
    x_support: np.ndarray   # (T, S, C, H, W) float32
    y_support: np.ndarray   # (T, S) int32
    x_query: np.ndarray     # (T, Q, C, H, W) float32
    y_query: np.ndarray     # (T, Q) int32


# The check's MAML tasks keep every ReLU input at least this far from 0 (float64 reference).
# Why: the meta-gradient jumps where a ReLU input crosses 0 (the mask of relu' changes, and the
# second-order term with it); float32 implementations compute these inputs to about 4e-6
# (measured: JAX, the reference in float32), so an input within that of 0 may take either
# side, and one such pixel moved one task's meta-gradient by 3% in JAX's vmap (not a bug:
# the same program in float64 agrees with the reference to 1e-15). A random W5 task has about
# 1.4 inputs within 1e-5 of 0, so about a quarter of the candidates are kept. W6's check needs
# no such filter: an Adam step hardly depends on one pixel of the gradient.
KINK_MARGIN = 1e-5


def relu_margin(w: ConvWorkload, net: ConvNet, theta: np.ndarray, xs, ys, xq, yq) -> float:
    """The smallest |ReLU input| of one MAML task's forward passes (support at theta, query at
    the adapted parameters), in float64. Reads the reference's per-block forward quantities
    (``ConvNet._forward``, the pass its loss_and_grad runs)."""
    passes, adapted = [], theta.astype(np.float64)
    for _ in range(w.inner_steps):
        passes.append((adapted, xs))
        adapted = adapted - w.inner_lr * net.loss_and_grad(adapted, xs.astype(np.float64), ys, w.loss)[1]
    passes.append((adapted, xq))
    return min(float(np.abs(block.y).min()) for params, x in passes
               for block in net._forward(params, x.astype(np.float64))[1])


def fixed(w: ConvWorkload, seed: int = 2024) -> Fixed:
    """The correctness check's data: theta from the reference's init and ``check_tasks`` tasks
    (the timed meta-batch: the NumPy reference does it in under a second); for MAML, tasks
    drawn one at a time and kept if clear of ReLU kinks (KINK_MARGIN)."""
    data = dataset(seed)
    rng = np.random.default_rng(seed)
    theta = init(w, seed)
    if w.algorithm != "maml":
        return Fixed(theta, *sample(w, data, rng, w.check_tasks))
    net, kept = network(w), []
    for _ in range(100 * w.check_tasks):
        task = sample(w, data, rng, 1)
        if relu_margin(w, net, theta, *(a[0] for a in task)) >= KINK_MARGIN:
            kept.append(task)
            if len(kept) == w.check_tasks:
                return Fixed(theta, *(np.concatenate(parts) for parts in zip(*kept)))
    raise RuntimeError(f"{w.name}: fewer than {w.check_tasks} tasks clear of ReLU kinks by {KINK_MARGIN}")


def conv_biases(w: ConvWorkload) -> np.ndarray:
    """Boolean mask of theta's convolution biases. Batch norm subtracts each channel's mean right
    after the convolution, so these entries do not change the network's function and their
    gradient is exactly 0; a float32 implementation computes it as rounding noise (~1e-9),
    which MAML's SGD step leaves negligible but Adam (eps 1e-8) turns into steps of up to its
    learning rate in W6. The check compares them apart (reported, not judged)."""
    net = network(w)
    mask = np.zeros(net.num_params, dtype=bool)
    for layer in net.unflatten(np.arange(net.num_params))[:-1]:  # each entry's index, per block
        mask[layer["bias"].astype(np.int64)] = True
    return mask


# ------------------------------------------------------------------------------------------
# FLOPs

def _products(w: ConvWorkload) -> tuple[int, int]:
    """Per row: (sum over layers of multiply-adds, the same without the first layer). A
    convolution does out_h * out_w * out_channels * in_channels * k^2; the dense layer
    features * outputs."""
    k2 = w.kernel_size ** 2
    layers = [b.out_h * b.out_w * b.out_channels * b.in_channels * k2 for b in blocks(w)]
    layers.append(network(w).features * w.ways)
    return sum(layers), sum(layers[1:])


def flops_per_unit(w: ConvWorkload) -> float:
    """2 x multiply-adds of the convolutions and dense products per unit of work.

    The convention of workloads.py, with a convolution's multiply-adds in place of fan_in *
    fan_out (its weight gradient and its input gradient each cost as many as its forward
    pass): with S = the sum over layers and S' = the same without the first layer (whose
    input gradient nobody needs), on r rows: forward r S; a gradient r (2S + S'); a
    Hessian-vector product r (2S + 5S') beyond its own forward pass. MAML, per task: one
    support gradient, one query gradient at the adapted parameters, and the second-order
    term as a Hessian-vector product on the support set with its forward pass (what the
    reference computes; autodiff's backward through the inner step does the same products).
    Reptile, per task: the inner steps' gradients on minibatches of 10 rows plus a forward
    pass on the query set.
    """
    s, s_rest = _products(w)
    forward = s
    gradient = 2 * s + s_rest
    hvp = 2 * s + 5 * s_rest
    if w.algorithm == "reptile":
        macs = w.inner_updates * w.inner_batch * gradient + w.query * forward
    else:
        macs = (w.inner_steps * w.support * gradient + w.query * gradient
                + w.inner_steps * w.support * (forward + hvp))
    return 2.0 * macs * w.tasks_per_unit
