"""A bounded check of an installed metafast on one CPU (real or emulated by qemu-user): it
imports, picks the expected level, its gradient and meta-gradient match the NumPy reference in
float64, and a few meta-iterations of each learner train.

    qemu-x86_64 -cpu Haswell python .ci/cpu_smoke.py --expect avx2
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import metafast as mf
from metafast import reference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expect", required=True, help="the level metafast must pick on this CPU")
    args = parser.parse_args(argv)

    info = mf.build_info()
    print(f"cpu: {info['cpu']}; level {info['level']} of {info['levels_supported']} supported, "
          f"{info['levels_built']} built")
    if info["level"] != args.expect:
        print(f"FAIL: picked {info['level']}, expected {args.expect}")
        return 1

    rng = np.random.default_rng(0)
    model = mf.MLP([1, 16, 16, 1], activation="tanh")
    theta = model.init(seed=0, dtype="float64")
    x, y = rng.normal(size=(10, 1)), rng.normal(size=(10, 1))
    _, grad = model.loss_and_grad(theta, x, y, loss="mse")
    _, expected = reference.mlp_loss_and_grad(model, theta, x, y, "mse")
    if not np.allclose(grad, expected, rtol=1e-10, atol=1e-12):
        print("FAIL: the MLP gradient disagrees with the NumPy reference")
        return 1

    tasks = mf.tasks.Sinusoid(support=5, query=5)
    learner = mf.MetaSGD(model, inner_steps=1, dtype="float64", seed=0, num_threads=1)
    batch = tasks.sample(4, seed=1, dtype="float64")
    _, g_theta, g_alpha = learner.meta_gradient(batch)
    _, r_theta, r_alpha = reference.meta_gradient(model, learner.theta, learner.alpha, batch.x_support,
                                                  batch.y_support, batch.x_query, batch.y_query)
    if not (np.allclose(g_theta, r_theta, rtol=1e-9, atol=1e-12) and np.allclose(g_alpha, r_alpha, rtol=1e-9, atol=1e-12)):
        print("FAIL: the Meta-SGD meta-gradient disagrees with the NumPy reference")
        return 1

    for learner in (mf.MetaSGD(model, seed=0), mf.Reptile(model, seed=0)):
        history = learner.fit(tasks, iterations=20, meta_batch=4, progress=False)
        if not np.all(np.isfinite(history)):
            print(f"FAIL: {type(learner).__name__} training gave non-finite losses")
            return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
